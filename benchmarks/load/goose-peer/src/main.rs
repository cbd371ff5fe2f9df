//! Benchmark peer: the same load as nowait.yaml (one task, GET /, no wait) written for Goose.

use goose::prelude::*;

async fn get_root(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .register_scenario(scenario!("Hammer").register_transaction(transaction!(get_root)))
        .execute()
        .await?;
    Ok(())
}

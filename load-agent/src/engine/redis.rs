//! One user's Redis client: its own connection, commands sent as the scenario writes them.

use std::time::Duration;

use redis::Value;

pub struct RedisUser {
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
}

fn open(host: &str, port: u16) -> Result<redis::Client, String> {
    redis::Client::open(format!("redis://{host}:{port}/")).map_err(|e| format!("redis://{host}:{port}: {e}"))
}

/// Checks at the start of a run that the target answers PING: a run against an unreachable Redis fails at once.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let client = open(host, port)?;
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<Value>(&mut connection).await
    };
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot reach redis://{host}:{port}: {e}")),
        Err(_) => Err(format!("cannot reach redis://{host}:{port}: no answer within {:.1} s", timeout.as_secs_f64())),
    }
}

impl RedisUser {
    pub fn new(host: &str, port: u16) -> Result<RedisUser, String> {
        Ok(RedisUser { client: open(host, port)?, connection: None })
    }

    /// Sends one command; the reply's size in bytes is its "content length". A Redis error reply is a failure.
    pub async fn send(&mut self, args: &[String]) -> Result<u64, String> {
        if self.connection.is_none() {
            let connection =
                self.client.get_multiplexed_async_connection().await.map_err(|e| format!("ConnectionError: {e}"))?;
            self.connection = Some(connection);
        }
        let connection = self.connection.as_mut().expect("just set");
        let mut command = redis::cmd(&args[0]);
        for arg in &args[1..] {
            command.arg(arg);
        }
        match command.query_async::<Value>(connection).await {
            Ok(Value::ServerError(e)) => Err(format!("RedisError: {e}")),
            Ok(value) => Ok(reply_bytes(&value)),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => {
                self.connection = None;
                Err(format!("ConnectionError: {e}"))
            }
            Err(e) => Err(format!("RedisError: {e}")),
        }
    }

    /// Drops the connection after a timeout left a reply pending.
    pub fn reset_connection(&mut self) {
        self.connection = None;
    }
}

fn reply_bytes(value: &Value) -> u64 {
    match value {
        Value::BulkString(bytes) => bytes.len() as u64,
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => text.len() as u64,
        Value::Array(items) | Value::Set(items) => items.iter().map(reply_bytes).sum(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| reply_bytes(k) + reply_bytes(v)).sum(),
        _ => 0,
    }
}

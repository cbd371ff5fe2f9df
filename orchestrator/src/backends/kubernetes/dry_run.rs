//! `orch run --dry-run`: for every kubernetes cell, the API calls that would change the cluster (method, path,
//! body), made against the real cluster's current state but never sent. Reads (the safety checks, the replicas
//! to restore) do reach the cluster; nothing is written there, and no run folder is created.

use anyhow::Result;

use super::lifecycle::prepare;
use super::settings::KubernetesRun;
use crate::cell::{Backend, Cell, CellConfig, Policy};

/// Prints each kubernetes cell's writes; a cell that would be refused says why. Returns the refusals.
pub fn run(
    cells: &[Cell],
    run: &KubernetesRun,
    build_policy: impl Fn(&CellConfig) -> Box<dyn Policy>,
) -> Result<Vec<(String, String)>> {
    let mut run = run.clone();
    run.dry_run = true;
    let mut refused = Vec::new();
    for cell in cells.iter().filter(|c| c.config.backend == Backend::Kubernetes) {
        println!("cell {}", cell.id);
        let prepared = match prepare(&cell.id, &cell.config, &run, build_policy(&cell.config)) {
            Ok(prepared) => prepared,
            Err(e) => {
                println!("  would refuse: {e:#}");
                refused.push((cell.id.clone(), format!("{e:#}")));
                continue;
            }
        };
        let super::lifecycle::Prepared { runtime, api, app, mut restore, policy, hpas, server } = prepared;
        println!("  cluster {server}, namespace {}", app.namespace);
        let initial = policy.initial_replicas();
        let before = restore.snapshot_replicas();
        runtime.block_on(async {
            for ((deployment, &want), (_, had)) in app.deployments.iter().zip(&initial).zip(&before) {
                if *had != want as i32 {
                    api.scale(deployment, want as i32).await?;
                }
            }
            for hpa in hpas.iter().flatten() {
                api.create_hpa(hpa).await?;
            }
            let acting = if hpas.is_some() { "the cluster's HPA controller" } else { "the policy" };
            println!(
                "  ... then {} s of load from the agents to {}, {acting} patching spec.replicas of the scale \
                 subresource ...",
                cell.config.scenario.duration_s().round(),
                run.target
            );
            for hpa in hpas.iter().flatten() {
                api.delete_hpa(hpa.metadata.name.as_deref().unwrap_or_default()).await?;
            }
            for (deployment, had) in &before {
                api.scale(deployment, *had).await?;
            }
            super::safety::hand_back(&api, &mut restore.take_over).await
        })?;
        restore.forget();
        println!("  {} calls that write, none made", api.recorded().len());
    }
    Ok(refused)
}

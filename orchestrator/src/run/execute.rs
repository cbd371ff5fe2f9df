//! One cell in this process, into its folder: config.yaml, then run.log (the cell's tracing, as JSON lines),
//! metrics.csv (a row per second), summary.json, and whatever its backend writes (agents/, agents.json, ...).
//! `orch cell` runs it inside its status and signal handling; tests call [`run_cell`] directly.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::backends::CellRun;
use crate::cell::{CancelToken, Cell, CellSummary};
use crate::run_folder::{self, MetricsTable};
use crate::settings::emulated::EmulatedRun;

/// Runs one cell into `dir`, in this process: config.yaml, run.log, metrics.csv, summary.json (an emulated cell adds
/// agents/, agents.json and emulator.json; `emulated` says where its load comes from).
pub fn run_cell(cell: &Cell, dir: &Path, emulated: Option<&EmulatedRun>) -> Result<CellSummary> {
    write_cell_config(cell, dir)?;
    let cancel = CancelToken::new();
    execute_cell(&CellRun { id: &cell.id, config: &cell.config, dir, emulated, kubernetes: None, cancel: &cancel })
}

/// Creates the cell folder and writes its resolved config.yaml, the input `orch cell` reads.
pub fn write_cell_config(cell: &Cell, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_yaml = crate::cell::config_yaml(&cell.config)
        .map_err(|e| anyhow::anyhow!(e))
        .context("serializing the cell config")?;
    run_folder::write_atomically(&dir.join(run_folder::CONFIG_YAML), config_yaml.as_bytes())
}

/// Runs a cell whose folder exists: run.log, metrics.csv, summary.json, and whatever its backend writes.
pub fn execute_cell(cell: &CellRun<'_>) -> Result<CellSummary> {
    let dir = cell.dir;
    crate::run::rl_training::copy_training_csv(cell.config, dir)?;
    let log = File::create(dir.join(run_folder::RUN_LOG)).context("creating run.log")?;
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(Mutex::new(log))
        .with_current_span(false)
        .with_span_list(false)
        .without_time()
        .finish();
    let service_names: Vec<&str> = cell.config.app.services.iter().map(|s| s.name.as_str()).collect();
    let mut metrics = MetricsTable::create(&dir.join(run_folder::METRICS_CSV), &service_names)?;

    let mut write_error = None;
    let summary = tracing::subscriber::with_default(subscriber, || {
        tracing::info!(cell = %cell.id, app = %cell.config.app.name, policy = %cell.config.policy.name(),
            scenario = %cell.config.scenario.name, seed = cell.config.seed, backend = cell.config.backend.name(),
            "cell started");
        if let Some(checkpoint) = crate::run::rl_training::rl_config(cell.config).and_then(|rl| rl.checkpoint.as_ref())
        {
            tracing::info!(checkpoint = %checkpoint.display(), "rl policy loaded");
        }
        let policy = crate::run::policies::build_policy(cell.config);
        let summary = crate::backends::run(
            cell,
            policy,
            |second| {
                if write_error.is_none()
                    && let Err(e) = metrics.push(second)
                {
                    write_error = Some(e);
                }
            },
            |t, service, from, to, reason| {
                tracing::info!(t, service, from, to, reason, "scaled");
            },
        );
        // A figure that is not a number fails the cell here, with its reason, rather than reaching summary.json
        // as a null that nothing downstream can read.
        let summary = match summary.and_then(|summary| Ok(summary.check_figures().map(|()| summary)?)) {
            Ok(summary) => summary,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cell failed");
                return Err(e);
            }
        };
        tracing::info!(
            pod_minutes = summary.pod_minutes,
            slo_violation_seconds_pct = summary.slo_violation_seconds_pct,
            slo_p95_ms = summary.slo_p95_ms,
            scaling_actions = summary.scaling_actions,
            "cell finished"
        );
        Ok(summary)
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing metrics.csv");
    }
    metrics.finish()?;
    File::open(dir.join(run_folder::RUN_LOG)).and_then(|f| f.sync_data()).context("syncing run.log")?;
    let json = serde_json::to_vec_pretty(&summary).context("serializing summary.json")?;
    run_folder::write_atomically(&dir.join(run_folder::SUMMARY_JSON), &json)?;
    Ok(summary)
}

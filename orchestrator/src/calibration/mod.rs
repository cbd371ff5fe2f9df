//! `orch calibrate`: the simulator measured against real CPUs.
//!
//! A calibration file ([`spec`]) names apps, pod counts and offered loads. Each point of the sweep ([`sweep`]) runs
//! as an emulated cell in the burning mode (each pod a cgroup whose CFS quota is its CPU limit, real threads
//! burning each call's CPU, real HTTP from local load agents), through the ordinary runner, so the points keep
//! their logs, resume after an interruption and show in a report. Its simulator twin runs in this process on the
//! same cell config, every time the command runs (a resumed sweep compares the simulator as it is now with the
//! emulation measured before). [`table`] writes the error table into the run folder.

pub mod spec;
pub mod sweep;
pub mod table;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cell::{Backend, CellSummary};
use crate::matrix::Matrix;
use crate::run::interrupt::Interrupt;
use crate::run::runner::{RunOptions, RunOutcome, run_matrix};
use crate::run::selection::Selection;
use crate::settings::simulator::SimulatorSettings;
pub use spec::CalibrationSpec;
use table::{Measured, Row};

/// The error table's files in the run folder.
pub const TABLE_CSV: &str = "calibration.csv";
pub const TABLE_MD: &str = "calibration.md";

pub struct CalibrateOptions {
    pub logs_dir: PathBuf,
    pub tag: String,
    pub resume: bool,
    /// The load-agent binary for the local agents (default: next to orch).
    pub load_agent_bin: Option<PathBuf>,
    /// The orch binary the cells run in.
    pub program: PathBuf,
    pub interrupt: std::sync::Arc<Interrupt>,
}

/// What a sweep gave.
pub struct Calibration {
    pub run: RunOutcome,
    pub rows: Vec<Row>,
}

/// Runs the sweep's emulated points (those not finished before, on resume), simulates every point and writes the
/// table into the run folder.
pub fn calibrate(spec: &CalibrationSpec, options: &CalibrateOptions) -> Result<Calibration> {
    let points = sweep::points(spec);
    // The generated matrix lives beside the run folder: a run folder holds only what the runner writes.
    let inputs = options.logs_dir.join(".calibration").join(&options.tag);
    if !options.resume && options.logs_dir.join(&options.tag).exists() {
        bail!(
            "{} already exists: choose another --tag, or continue it with --resume {}",
            options.logs_dir.join(&options.tag).display(),
            options.tag
        );
    }
    fs::create_dir_all(&inputs).with_context(|| format!("creating {}", inputs.display()))?;
    let matrix_file = sweep::write_matrix(spec, &points, &inputs)?;
    let mut matrix = Matrix::load(&matrix_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(run) = matrix.emulated.as_mut() {
        run.load_agent_bin = options.load_agent_bin.clone();
        let users = matrix.cells.iter().map(|c| crate::agents::peak_users(&c.config.scenario.shape)).max();
        crate::agents::preflight(run.agents_setup(), users.unwrap_or(0))?;
    }
    let run_options = RunOptions {
        logs_dir: options.logs_dir.clone(),
        tag: options.tag.clone(),
        resume: options.resume,
        force: false,
        retry_failed: options.resume,
        selection: Selection::new(&[], &[]).expect("an empty selection"),
        program: options.program.clone(),
        interrupt: options.interrupt.clone(),
    };
    let run = run_matrix(&matrix, &run_options)?;
    let rows = points.iter().map(|point| measure_point(&matrix, &run, point)).collect::<Result<Vec<_>>>()?;
    fs::write(run.run_dir.join(TABLE_CSV), table::to_csv(&rows)).context("writing the calibration table")?;
    fs::write(run.run_dir.join(TABLE_MD), table::to_markdown(&rows)).context("writing the calibration table")?;
    Ok(Calibration { run, rows })
}

/// A point's emulated figures (if its cell succeeded) and its simulator twin's, simulated now.
fn measure_point(matrix: &Matrix, run: &RunOutcome, point: &sweep::SweepPoint) -> Result<Row> {
    let cell = matrix
        .cells
        .iter()
        .find(|c| {
            c.config.app.name == point.app
                && c.config.policy.name() == point.policy()
                && c.config.scenario.name == point.scenario()
        })
        .context("a sweep point without its cell")?;
    let emulated = match run.summaries.iter().find(|s| s.cell == cell.id) {
        Some(summary) => Some(table::measured_emulated(&run.run_dir, summary)?),
        None => None,
    };
    let simulate = |settings: SimulatorSettings| {
        let mut config = cell.config.clone();
        config.backend = Backend::Sim;
        config.simulator = Some(settings);
        let mut policy = crate::run::policies::build_policy(&config);
        let (seconds, summary) = crate::backends::sim::simulate_collect(&cell.id, &config, policy.as_mut());
        simulated(&summary, &seconds)
    };
    Ok(Row {
        point: point.clone(),
        emulated,
        sim: Some(simulate(SimulatorSettings::default())),
        legacy: Some(simulate(SimulatorSettings::LEGACY)),
    })
}

/// A simulated point's figures; CFS counters summed over seconds and services (None: the model has none).
fn simulated(summary: &CellSummary, seconds: &[crate::cell::SecondMetrics]) -> Measured {
    let total = |get: fn(&crate::cell::ServiceSecond) -> Option<f64>| {
        seconds.iter().flat_map(|s| s.services.iter().map(get)).sum::<Option<f64>>()
    };
    Measured {
        achieved_rps: summary.mean_achieved_rps,
        percentiles: [summary.slo_p50_ms, summary.slo_p95_ms, summary.slo_p99_ms],
        throttled_periods: total(|s| s.cfs_throttled_periods),
        periods: total(|s| s.cfs_periods),
    }
}

/// The default tag of a sweep: its name and the time.
pub fn default_tag(spec: &CalibrationSpec) -> String {
    format!("{}-{}", spec.name, load_agent::clock::compact(load_agent::clock::now_unix_s()))
}

/// The folder a finished sweep's table is in.
pub fn table_path(run_dir: &Path) -> PathBuf {
    run_dir.join(TABLE_MD)
}

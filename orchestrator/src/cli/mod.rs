//! The `orch` command line: the top-level [`Cli`] and its [`Command`]s; each subcommand's arguments and handler
//! live in the file named after it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod calibrate;
pub mod cell;
pub mod cell_job;
pub mod emulate;
pub mod eval;
pub mod logs;
pub mod plan;
pub mod report;
pub mod run;
pub mod status;
pub mod train;

/// Batch experiment orchestrator for autoscaling research.
///
/// A matrix file names apps, load scenarios, policies and seeds; `orch run` runs every combination (a cell) and
/// writes its config, status, log, per-second metrics and summary under logs/<run-tag>/<cell-id>/. An interrupted
/// run (Ctrl-C, crash, kill -9) continues with `orch run --resume <run-tag>`.
#[derive(Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the cells of a matrix (each in its own `orch cell` process), or resume a run.
    Run(run::RunArgs),
    /// Serve an app model as the emulated backend does, on its own, until Ctrl-C (for load tests and benchmarks).
    Emulate(emulate::EmulateArgs),
    /// List the cells of a matrix without running them.
    Plan { matrix: PathBuf },
    /// Show where each cell of a run stands: state, attempt, time, heartbeat of running cells, error.
    Status {
        run_tag: String,
        #[arg(long, default_value = "logs")]
        logs_dir: PathBuf,
    },
    /// Print a cell's run.log (and its process's stderr.log to stderr).
    Logs {
        /// The cell id, with or without its hash.
        cell: String,
        /// The run the cell is in, when several runs have it.
        #[arg(long, value_name = "RUN_TAG")]
        run: Option<String>,
        #[arg(long, default_value = "logs")]
        logs_dir: PathBuf,
    },
    /// Run one planned cell of a run folder in this process (what `orch run` starts for each cell, and what a
    /// Kubernetes Job runs). Exit codes: 0 succeeded, 1 failed, 75 transient failure, 101 panic, 130 cancelled.
    Cell {
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        cell: String,
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// One attempt of a planned cell as a Kubernetes Job (what `orch run` starts per attempt with `executor:
    /// kubernetes`): creates the ConfigMap and Job, follows the pod, exits with the cell's exit code.
    #[command(hide = true)]
    CellJob {
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        cell: String,
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// Render the HTML report of a run folder (also done at the end of `orch run`).
    Report(report::ReportArgs),
    /// Train one RL autoscaler on the simulator (outside a matrix).
    Train(train::TrainArgs),
    /// Evaluate an RL checkpoint in one simulated cell.
    Eval(eval::EvalArgs),
    /// Measure the simulator against real CPUs: a load sweep on the burning emulation (a CPU cgroup per pod,
    /// root and cgroup v1) beside the simulator, and the error table (calibration.md in the run folder).
    Calibrate(calibrate::CalibrateArgs),
}

/// Exit code for bad input: nothing was written.
const EXIT_CONFIG: u8 = 2;

/// What a command that runs cells needs first: a valid run tag, Ctrl-C handling, and the orch binary the cells
/// run in; the exit code when one is missing.
fn run_setup(tag: &str) -> Result<(std::sync::Arc<crate::run::interrupt::Interrupt>, PathBuf), ExitCode> {
    if tag.is_empty() || tag.starts_with('.') || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(config_error(format!(
            "--tag {tag:?} must be letters, digits, '-', '_' or '.', not starting with '.'"
        )));
    }
    let interrupt = crate::run::interrupt::Interrupt::new();
    if let Err(e) = interrupt.install() {
        eprintln!("warning: {e:#}");
    }
    match std::env::current_exe() {
        Ok(program) => Ok((interrupt, program)),
        Err(e) => {
            eprintln!("error: cannot find the orch binary to run cells with: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_CONFIG)
}

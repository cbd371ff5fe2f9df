//! `orch`: run autoscaling experiment matrices.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use orchestrator::matrix::Matrix;
use orchestrator::runner::{RunOptions, run_matrix};

/// Batch experiment orchestrator for autoscaling research.
///
/// A matrix file names apps, load scenarios, policies and seeds; `orch run` runs every combination (a cell) and
/// writes its config, log, per-second metrics and summary under logs/<run-tag>/<cell-id>/.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every cell of a matrix.
    Run {
        /// The matrix file, e.g. experiments/matrix.yaml.
        matrix: PathBuf,
        /// Name of this run's folder under the logs directory [default: <matrix name>-<UTC time>].
        #[arg(long)]
        tag: Option<String>,
        /// Where run folders are written.
        #[arg(long, default_value = "logs")]
        logs_dir: PathBuf,
        /// Cells run at once [default: the matrix's strategy.max_parallel, else the number of cores].
        #[arg(long)]
        max_parallel: Option<usize>,
    },
    /// List the cells of a matrix without running them.
    Plan { matrix: PathBuf },
    /// Train one RL autoscaler on the simulator (outside a matrix).
    Train(orchestrator::rl::cli::TrainArgs),
    /// Evaluate an RL checkpoint in one simulated cell.
    Eval(orchestrator::rl::cli::EvalArgs),
}

/// Exit code for bad input: nothing was written.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Train(args) => rl_exit(orchestrator::rl::cli::train(&args)),
        Command::Eval(args) => rl_exit(orchestrator::rl::cli::eval(&args)),
        Command::Plan { matrix } => match Matrix::load(&matrix) {
            Ok(matrix) => {
                println!("{:<70} {:<18} {:<14} {:<12} {:>6}", "CELL", "APP", "POLICY", "SCENARIO", "SEED");
                for cell in &matrix.cells {
                    let c = &cell.config;
                    println!(
                        "{:<70} {:<18} {:<14} {:<12} {:>6}",
                        cell.id,
                        c.app.name,
                        c.policy.name(),
                        c.scenario.name,
                        c.seed
                    );
                }
                println!("{} cells", matrix.cells.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { matrix, tag, logs_dir, max_parallel } => {
            let mut matrix = match Matrix::load(&matrix) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match max_parallel {
                Some(0) => {
                    eprintln!("error: --max-parallel must be at least 1");
                    return ExitCode::from(EXIT_CONFIG);
                }
                Some(n) => matrix.max_parallel = n,
                None => {}
            }
            let tag = tag.unwrap_or_else(|| {
                format!("{}-{}", matrix.name, load_agent::clock::compact(load_agent::clock::now_unix_s()))
            });
            if tag.is_empty()
                || tag.starts_with('.')
                || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                eprintln!("error: --tag {tag:?} must be letters, digits, '-', '_' or '.', not starting with '.'");
                return ExitCode::from(EXIT_CONFIG);
            }
            let started = Instant::now();
            eprintln!(
                "running {} cells of {} as {tag} ({} at once)",
                matrix.cells.len(),
                matrix.name,
                matrix.max_parallel
            );
            match run_matrix(&matrix, &RunOptions { logs_dir, tag }) {
                Ok(outcome) => {
                    eprintln!(
                        "{} cells succeeded, {} failed in {:.1}s; results in {}",
                        outcome.summaries.len(),
                        outcome.failed.len(),
                        started.elapsed().as_secs_f64(),
                        outcome.run_dir.display()
                    );
                    for (cell, message) in &outcome.failed {
                        eprintln!("failed: {cell}: {message}");
                    }
                    if outcome.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Exit status of `orch train` / `orch eval`: 2 for bad input, 1 for other failures.
fn rl_exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<orchestrator::rl::cli::BadInput>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

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
        #[command(flatten)]
        agents: AgentArgs,
    },
    /// Serve an app model as the emulated backend does, on its own, until Ctrl-C (for load tests and benchmarks).
    Emulate(EmulateArgs),
    /// List the cells of a matrix without running them.
    Plan { matrix: PathBuf },
}

/// Where emulated cells get their load.
#[derive(clap::Args)]
struct AgentArgs {
    /// Load agents for emulated cells, comma-separated base URLs (replaces the matrix's emulated.agents; their
    /// token comes from the variable emulated.agents.token_env names, ORCH_AGENT_TOKEN by default).
    #[arg(long, env = "ORCH_AGENTS", value_name = "URL,...")]
    agents: Option<String>,
    /// The load-agent binary for local agents [default: ORCH_LOAD_AGENT_BIN, else next to orch].
    #[arg(long, value_name = "PATH")]
    load_agent_bin: Option<PathBuf>,
}

#[derive(clap::Args)]
struct EmulateArgs {
    /// The app model, e.g. experiments/apps/online-boutique.yaml.
    app: PathBuf,
    /// Where the app listens (HTTP, or RESP for a Redis app).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Where the pod-control API and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:9090")]
    control_listen: std::net::SocketAddr,
    /// Emulated seconds per wall second of control time (pod start-up, metrics windows).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Requests one pod serves at once.
    #[arg(long, default_value_t = 1)]
    pod_concurrency: u32,
    /// Replicas every deployment starts with: initial (the model's), max, or a number (within each one's bounds).
    #[arg(long, default_value = "initial")]
    replicas: orchestrator::emulated::standalone::StartReplicas,
    /// Seconds a request may take inside the app before it fails with 504.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Exit code for bad input: nothing was written.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan { matrix } => match Matrix::load(&matrix) {
            Ok(matrix) => {
                println!(
                    "{:<70} {:<18} {:<14} {:<12} {:>6} {:<8}",
                    "CELL", "APP", "POLICY", "SCENARIO", "SEED", "BACKEND"
                );
                for cell in &matrix.cells {
                    let c = &cell.config;
                    println!(
                        "{:<70} {:<18} {:<14} {:<12} {:>6} {:<8}",
                        cell.id,
                        c.app.name,
                        c.policy.name(),
                        c.scenario.name,
                        c.seed,
                        c.backend.name()
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
        Command::Emulate(args) => emulate(args),
        Command::Run { matrix, tag, logs_dir, max_parallel, agents } => {
            let mut matrix = match Matrix::load(&matrix) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if let Err(e) = apply_agent_args(&mut matrix, agents) {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
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

/// Applies --agents / ORCH_AGENTS and --load-agent-bin, then checks remote agents before anything is written.
fn apply_agent_args(matrix: &mut Matrix, args: AgentArgs) -> Result<(), String> {
    let Some(mut run) = matrix.emulated.take() else {
        return match (args.agents, args.load_agent_bin) {
            (None, None) => Ok(()),
            // ORCH_AGENTS set in the environment is no error for a matrix without emulated cells.
            _ if std::env::var_os("ORCH_AGENTS").is_some() => Ok(()),
            _ => Err("--agents and --load-agent-bin are for emulated cells; this matrix has none".into()),
        };
    };
    if let Some(list) = args.agents {
        run = run.with_agent_urls(orchestrator::emulated::settings::parse_agent_list(&list, "--agents")?);
    }
    run.load_agent_bin = args.load_agent_bin;
    let users = matrix
        .cells
        .iter()
        .filter(|c| c.config.backend == orchestrator::matrix::Backend::Emulated)
        .map(|c| orchestrator::agents::peak_users(&c.config.scenario.shape))
        .max()
        .unwrap_or(0);
    orchestrator::agents::preflight_remote(&run, users)?;
    matrix.emulated = Some(run);
    Ok(())
}

fn emulate(args: EmulateArgs) -> ExitCode {
    use orchestrator::emulated::standalone::{Options, load, serve};
    if !(args.time_scale.is_finite() && args.time_scale >= 1.0) {
        eprintln!("error: --time-scale must be at least 1");
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.pod_concurrency == 0 || !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        eprintln!("error: --pod-concurrency and --request-timeout must be positive");
        return ExitCode::from(EXIT_CONFIG);
    }
    let options = Options {
        app_file: args.app,
        listen: args.listen,
        control_listen: args.control_listen,
        model: orchestrator::emulated::EmulatedModel {
            time_scale: args.time_scale,
            pod_concurrency: args.pod_concurrency,
        },
        replicas: args.replicas,
        request_timeout: std::time::Duration::from_secs_f64(args.request_timeout),
        seed: args.seed,
    };
    let app = match load(&options) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match serve(app, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

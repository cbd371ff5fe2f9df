//! `orch`: run autoscaling experiment matrices.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use orchestrator::fault::FaultPlan;
use orchestrator::interrupt::{EXIT_INTERRUPTED, Interrupt};
use orchestrator::matrix::Matrix;
use orchestrator::run_folder::{RUN_JSON, RunInfo};
use orchestrator::runner::{Refused, RunOptions, run_matrix};
use orchestrator::selection::Selection;
use orchestrator::{cell_process, inspect, run_folder};

mod report_cli;

/// Batch experiment orchestrator for autoscaling research.
///
/// A matrix file names apps, load scenarios, policies and seeds; `orch run` runs every combination (a cell) and
/// writes its config, status, log, per-second metrics and summary under logs/<run-tag>/<cell-id>/. An interrupted
/// run (Ctrl-C, crash, kill -9) continues with `orch run --resume <run-tag>`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cells of a matrix (each in its own `orch cell` process), or resume a run.
    Run {
        /// The matrix file, e.g. experiments/matrix.yaml [default with --resume: the file the run recorded].
        #[arg(required_unless_present = "resume")]
        matrix: Option<PathBuf>,
        /// Name of this run's folder under the logs directory [default: <matrix name>-<UTC time>].
        #[arg(long, conflicts_with = "resume")]
        tag: Option<String>,
        /// Continue this run: finished cells are kept untouched, unfinished ones run again. Refused if the
        /// matrix now gives other cells, unless --force.
        #[arg(long, value_name = "RUN_TAG")]
        resume: Option<String>,
        /// With --resume: continue even though the matrix's cells changed.
        #[arg(long, requires = "resume")]
        force: bool,
        /// With --resume: run failed cells again too.
        #[arg(long, requires = "resume")]
        retry_failed: bool,
        /// Run only cells whose KEY matches GLOB (keys: app, policy, scenario, seed, backend, cell); repeat to AND.
        /// The other cells stay planned for a later --resume.
        #[arg(long, value_name = "KEY=GLOB")]
        filter: Vec<String>,
        /// Run only this cell (its id, with or without the hash); repeatable.
        #[arg(long, value_name = "CELL_ID")]
        only: Vec<String>,
        /// Where run folders are written.
        #[arg(long, default_value = "logs")]
        logs_dir: PathBuf,
        /// Cells run at once [default: the matrix's strategy.max_parallel, else the number of cores].
        #[arg(long)]
        max_parallel: Option<usize>,
        #[command(flatten)]
        agents: AgentArgs,
        /// Print the API calls kubernetes cells would make to change the cluster (method, path, body) and make
        /// none of them; reads still reach the cluster. Nothing is written under the logs directory.
        #[arg(long, conflicts_with = "resume")]
        dry_run: bool,
    },
    /// Serve an app model as the emulated backend does, on its own, until Ctrl-C (for load tests and benchmarks).
    Emulate(EmulateArgs),
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
    Report(report_cli::ReportArgs),
    /// Train one RL autoscaler on the simulator (outside a matrix).
    Train(orchestrator::rl::cli::TrainArgs),
    /// Evaluate an RL checkpoint in one simulated cell.
    Eval(orchestrator::rl::cli::EvalArgs),
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

fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_CONFIG)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Report(args) => report_cli::run(args),
        Command::Train(args) => rl_exit(orchestrator::rl::cli::train(&args)),
        Command::Eval(args) => rl_exit(orchestrator::rl::cli::eval(&args)),
        Command::Plan { matrix } => plan(&matrix),
        Command::Status { run_tag, logs_dir } => match inspect::status_report(&logs_dir, &run_tag) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Logs { cell, run, logs_dir } => match inspect::find_cell(&logs_dir, &cell, run.as_deref()) {
            Ok(dir) => {
                let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
                print!("{log}");
                let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                if !stderr.is_empty() {
                    eprintln!("--- {} ---", dir.join("stderr.log").display());
                    eprint!("{stderr}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Cell { run_dir, cell, attempt } => {
            std::process::exit(cell_process::run(&run_dir, &cell, attempt));
        }
        Command::CellJob { run_dir, cell, attempt } => {
            std::process::exit(orchestrator::kubernetes::jobs::run_attempt(&run_dir, &cell, attempt));
        }
        Command::Emulate(args) => emulate(args),
        Command::Run {
            matrix,
            tag,
            resume,
            force,
            retry_failed,
            filter,
            only,
            logs_dir,
            max_parallel,
            agents,
            dry_run,
        } => {
            let matrix_file = match (matrix, &resume) {
                (Some(file), _) => file,
                (None, Some(tag)) => match run_folder::read_json::<RunInfo>(&logs_dir.join(tag).join(RUN_JSON)) {
                    Ok(info) => PathBuf::from(info.matrix_file),
                    // A folder without run.json: its orch was stopped before recording which matrix it ran.
                    Err(_) if logs_dir.join(tag).is_dir() && !logs_dir.join(tag).join(RUN_JSON).exists() => {
                        return config_error(format!(
                            "{} has no run.json: its orch was stopped before the run started, so it does not say \
                             which matrix to run; start it with `orch run MATRIX --tag {tag}` (or `orch run MATRIX \
                             --resume {tag}`)",
                            logs_dir.join(tag).display()
                        ));
                    }
                    Err(e) => return config_error(format!("{e:#}: there is no run {tag:?} to resume")),
                },
                (None, None) => unreachable!("clap requires a matrix without --resume"),
            };
            let mut matrix = match Matrix::load(&matrix_file) {
                Ok(m) => m,
                Err(e) => return config_error(e),
            };
            if dry_run {
                return kubernetes_dry_run(&matrix);
            }
            if let Err(e) = apply_agent_args(&mut matrix, agents) {
                return config_error(e);
            }
            match max_parallel {
                Some(0) => return config_error("--max-parallel must be at least 1"),
                Some(n) => matrix.max_parallel = n,
                None => {}
            }
            let selection = match Selection::new(&filter, &only) {
                Ok(s) => s,
                Err(e) => return config_error(e),
            };
            match FaultPlan::from_env() {
                Ok(Some(_)) => {
                    eprintln!("warning: {} is set: matching cells fail on purpose", orchestrator::fault::ENV_VAR)
                }
                Ok(None) => {}
                Err(e) => return config_error(e),
            }
            let tag = resume.clone().or(tag).unwrap_or_else(|| {
                format!("{}-{}", matrix.name, load_agent::clock::compact(load_agent::clock::now_unix_s()))
            });
            if tag.is_empty()
                || tag.starts_with('.')
                || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return config_error(format!(
                    "--tag {tag:?} must be letters, digits, '-', '_' or '.', not starting with '.'"
                ));
            }
            let interrupt = Interrupt::new();
            if let Err(e) = interrupt.install() {
                eprintln!("warning: {e:#}");
            }
            let program = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: cannot find the orch binary to run cells with: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = RunOptions {
                logs_dir,
                tag: tag.clone(),
                resume: resume.is_some(),
                force,
                retry_failed,
                selection,
                program,
                interrupt,
            };
            let started = Instant::now();
            let verb = if options.resume { "resuming" } else { "running" };
            eprintln!(
                "{verb} {} ({} cells, {} at once) as {tag}",
                matrix.name,
                matrix.cells.len(),
                matrix.max_parallel
            );
            match run_matrix(&matrix, &options) {
                Ok(outcome) => {
                    let mut line = format!(
                        "{} cells to run: {} succeeded, {} failed, {} cancelled, {} skipped, {} not started, in {:.1}s",
                        outcome.selected,
                        outcome.succeeded,
                        outcome.failed.len(),
                        outcome.cancelled,
                        outcome.skipped,
                        outcome.not_started,
                        started.elapsed().as_secs_f64()
                    );
                    if outcome.kept + outcome.kept_failed > 0 {
                        line.push_str(&format!(
                            "; kept {} finished and {} failed cells from before (--retry-failed runs failed ones again)",
                            outcome.kept, outcome.kept_failed
                        ));
                    }
                    eprintln!("{line}");
                    eprintln!(
                        "{} cells in summary.csv; results in {}",
                        outcome.summaries.len(),
                        outcome.run_dir.display()
                    );
                    for (cell, message) in &outcome.failed {
                        eprintln!("failed: {cell}: {message}");
                    }
                    // What finished is reported, also after an interruption.
                    let reported = report_cli::after_run(&outcome.run_dir);
                    if outcome.interrupted {
                        eprintln!("interrupted: continue with `orch run --resume {tag}`");
                        ExitCode::from(EXIT_INTERRUPTED)
                    } else if reported && outcome.failed.is_empty() && outcome.skipped == 0 && outcome.cancelled == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) if e.is::<Refused>() => config_error(e),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `orch plan`: each cell is printed as soon as it is resolved, so a large matrix shows its first cells at once and
/// the cells are never all held in memory.
fn plan(matrix_file: &std::path::Path) -> ExitCode {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0usize;
    let mut write_error = None;
    let mut header_written = false;
    let result = Matrix::load_each(matrix_file, &mut |cell| {
        if write_error.is_some() {
            return;
        }
        let c = &cell.config;
        let mut line = String::new();
        if !header_written {
            header_written = true;
            line.push_str(&format!(
                "{:<70} {:<18} {:<20} {:<12} {:>6} {:<8}\n",
                "CELL", "APP", "POLICY", "SCENARIO", "SEED", "BACKEND"
            ));
        }
        line.push_str(&format!(
            "{:<70} {:<18} {:<20} {:<12} {:>6} {:<8}\n",
            cell.id,
            c.app.name,
            c.policy.name(),
            c.scenario.name,
            c.seed,
            c.backend.name()
        ));
        count += 1;
        // Flushed every so often, so a reader sees the first cells while the rest are resolved.
        let written = out.write_all(line.as_bytes()).and_then(|()| if count % 64 == 1 { out.flush() } else { Ok(()) });
        if let Err(e) = written {
            write_error = Some(e);
        }
    });
    if let Err(e) = result {
        return config_error(e);
    }
    let finished = match write_error {
        Some(e) => Err(e),
        None if !header_written => writeln!(
            out,
            "{:<70} {:<18} {:<20} {:<12} {:>6} {:<8}\n0 cells",
            "CELL", "APP", "POLICY", "SCENARIO", "SEED", "BACKEND"
        )
        .and_then(|()| out.flush()),
        None => writeln!(out, "{count} cells").and_then(|()| out.flush()),
    };
    match finished {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`orch plan m.yaml | head`) is no failure of the plan.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the plan: {e}");
            ExitCode::FAILURE
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

/// `orch run --dry-run`: the kubernetes cells' writes, printed, none made.
fn kubernetes_dry_run(matrix: &Matrix) -> ExitCode {
    if let Some(executor) = &matrix.executor
        && let Err(e) = orchestrator::kubernetes::jobs::print_dry_run(executor, &matrix.name, &matrix.cells)
    {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let Some(run) = &matrix.kubernetes else {
        if matrix.executor.is_some() {
            return ExitCode::SUCCESS;
        }
        return config_error("--dry-run shows what kubernetes cells or Jobs would do; this matrix has neither");
    };
    match orchestrator::kubernetes::dry_run::run(matrix, run) {
        Ok(refused) if refused.is_empty() => ExitCode::SUCCESS,
        Ok(refused) => {
            eprintln!("{} cells would be refused", refused.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Applies --agents / ORCH_AGENTS and --load-agent-bin, then checks remote agents before anything is written.
fn apply_agent_args(matrix: &mut Matrix, args: AgentArgs) -> Result<(), String> {
    if let Some(run) = matrix.kubernetes.as_mut() {
        if let Some(list) = &args.agents {
            let urls = orchestrator::emulated::settings::parse_agent_list(list, "--agents")?;
            let agents = run.agent_run().with_agent_urls(urls);
            run.agents = agents.agents;
        }
        run.load_agent_bin = args.load_agent_bin.clone();
        let users = matrix
            .cells
            .iter()
            .filter(|c| c.config.backend == orchestrator::matrix::Backend::Kubernetes)
            .map(|c| orchestrator::agents::peak_users(&c.config.scenario.shape))
            .max()
            .unwrap_or(0);
        orchestrator::agents::preflight(&run.agent_run(), users)?;
    }
    let Some(mut run) = matrix.emulated.take() else {
        if matrix.kubernetes.is_some() {
            return Ok(());
        }
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
    orchestrator::agents::preflight(&run, users)?;
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

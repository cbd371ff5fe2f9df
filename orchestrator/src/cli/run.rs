//! `orch run`: arguments, checks of the command line against the matrix, and the run's closing lines and exit
//! code; the work is in crate::run::runner.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::{config_error, report, run_setup};
use crate::matrix::Matrix;
use crate::run::fault::FaultPlan;
use crate::run::interrupt::EXIT_INTERRUPTED;
use crate::run::runner::{Refused, RunOptions, run_matrix};
use crate::run::selection::Selection;
use crate::run_folder::{self, RUN_JSON, RunInfo};

/// The arguments of `orch run`.
#[derive(clap::Args)]
pub struct RunArgs {
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

/// `orch run`.
pub fn run(args: RunArgs) -> ExitCode {
    let RunArgs { matrix, tag, resume, force, retry_failed, filter, only, logs_dir, max_parallel, agents, dry_run } =
        args;
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
            eprintln!("warning: {} is set: matching cells fail on purpose", crate::run::fault::ENV_VAR)
        }
        Ok(None) => {}
        Err(e) => return config_error(e),
    }
    let tag = resume
        .clone()
        .or(tag)
        .unwrap_or_else(|| format!("{}-{}", matrix.name, load_agent::clock::compact(load_agent::clock::now_unix_s())));
    let (interrupt, program) = match run_setup(&tag) {
        Ok(setup) => setup,
        Err(code) => return code,
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
    eprintln!("{verb} {} ({} cells, {} at once) as {tag}", matrix.name, matrix.cells.len(), matrix.max_parallel);
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
            eprintln!("{} cells in summary.csv; results in {}", outcome.summaries.len(), outcome.run_dir.display());
            for (cell, message) in &outcome.failed {
                eprintln!("failed: {cell}: {message}");
            }
            // What finished is reported, also after an interruption.
            let reported = report::after_run(&outcome.run_dir);
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

/// `orch run --dry-run`: the kubernetes cells' writes, printed, none made.
fn kubernetes_dry_run(matrix: &Matrix) -> ExitCode {
    if let Some(executor) = &matrix.executor
        && let Err(e) = crate::run::executor::kubernetes_jobs::print_dry_run(executor, &matrix.name, &matrix.cells)
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
    match crate::backends::kubernetes::dry_run::run(&matrix.cells, run, crate::run::policies::build_policy) {
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
            let urls = crate::settings::emulated::parse_agent_list(list, "--agents").map_err(|e| e.to_string())?;
            run.agents = run.agents.with_urls(urls);
        }
        run.load_agent_bin = args.load_agent_bin.clone();
        let users = matrix
            .cells
            .iter()
            .filter(|c| c.config.backend == crate::cell::Backend::Kubernetes)
            .map(|c| crate::agents::peak_users(&c.config.scenario.shape))
            .max()
            .unwrap_or(0);
        crate::agents::preflight(run.agents_setup(), users).map_err(|e| e.to_string())?;
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
        run = run.with_agent_urls(
            crate::settings::emulated::parse_agent_list(&list, "--agents").map_err(|e| e.to_string())?,
        );
    }
    run.load_agent_bin = args.load_agent_bin;
    let users = matrix
        .cells
        .iter()
        .filter(|c| c.config.backend == crate::cell::Backend::Emulated)
        .map(|c| crate::agents::peak_users(&c.config.scenario.shape))
        .max()
        .unwrap_or(0);
    crate::agents::preflight(run.agents_setup(), users).map_err(|e| e.to_string())?;
    matrix.emulated = Some(run);
    Ok(())
}

//! Runs a matrix into its run folder logs/<run-tag>/: plans every cell, runs the selected ones through the
//! [`Supervisor`] (a process per cell), resumes an interrupted run, and writes summary.csv in plan order.

use std::fs::{self};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cell::{Cell, CellSummary};
use crate::matrix::Matrix;
use crate::run::executor::Executor;
use crate::run::interrupt::Interrupt;
use crate::run::plan_diff;
use crate::run::selection::Selection;
use crate::run::supervisor::{Control, Outcome, Prepare, Supervisor};
use crate::run_folder::{self, CellState, CellStatus, RUN_JSON, RunInfo, RunLock};

pub struct RunOptions {
    pub logs_dir: PathBuf,
    pub tag: String,
    /// Continue the existing run folder `tag` instead of creating it.
    pub resume: bool,
    /// With `resume`: accept a matrix whose cells changed.
    pub force: bool,
    /// With `resume`: run failed cells again.
    pub retry_failed: bool,
    /// The cells this invocation runs; the others are planned (or keep their state) for a later `--resume`.
    pub selection: Selection,
    /// The `orch` binary that runs each cell (`orch cell`).
    pub program: PathBuf,
    pub interrupt: Arc<Interrupt>,
}

impl RunOptions {
    /// A fresh run of every cell, with this executable as the cell runner.
    pub fn new(logs_dir: impl Into<PathBuf>, tag: impl Into<String>) -> Result<RunOptions> {
        Ok(RunOptions {
            logs_dir: logs_dir.into(),
            tag: tag.into(),
            resume: false,
            force: false,
            retry_failed: false,
            selection: Selection::default(),
            program: std::env::current_exe().context("finding the orch binary")?,
            interrupt: Interrupt::new(),
        })
    }
}

/// The run cannot go ahead as asked (a changed matrix on resume, a selection naming no cell): bad input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a matrix run produced.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    /// Every succeeded cell of the run folder, in plan order (what summary.csv holds).
    pub summaries: Vec<CellSummary>,
    /// Cells that failed in this invocation: (id, error).
    pub failed: Vec<(String, String)>,
    /// Cells this invocation was to run, and how they ended.
    pub selected: usize,
    pub succeeded: usize,
    /// Left planned: Ctrl-C came first.
    pub not_started: usize,
    /// Cells already finished that a resume kept untouched.
    pub kept: usize,
    /// Failed cells a resume kept (no --retry-failed).
    pub kept_failed: usize,
    pub cancelled: usize,
    pub skipped: usize,
    /// Ctrl-C stopped the run.
    pub interrupted: bool,
}

/// Runs the selected cells of `matrix`; a failing cell is recorded and does not stop the others.
pub fn run_matrix(matrix: &Matrix, options: &RunOptions) -> Result<RunOutcome> {
    // RL cells: their model is trained (or found) once per (app, policy, seed) before the first of them runs.
    run_matrix_with(matrix, options, &crate::run::rl_training::TrainModels)
}

/// [`run_matrix`] with a preparation step before groups of cells.
pub fn run_matrix_with(matrix: &Matrix, options: &RunOptions, prepare: &dyn Prepare) -> Result<RunOutcome> {
    let run_dir = options.logs_dir.join(&options.tag);
    options.selection.check(&matrix.cells).map_err(|e| Refused(e.to_string()))?;
    let matrix_bytes = fs::read(&matrix.file).with_context(|| format!("reading {}", matrix.file.display()))?;
    let ids: Vec<String> = matrix.cells.iter().map(|c| c.id.clone()).collect();
    let (lock, mut info) = if options.resume {
        open_for_resume(matrix, options, &run_dir, &matrix_bytes)?
    } else {
        let lock = if !run_dir.exists() {
            fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
            RunLock::acquire(&run_dir)?
        } else if run_dir.join(RUN_JSON).exists() {
            bail!(
                "{} already exists: choose another --tag, or continue it with --resume {}",
                run_dir.display(),
                options.tag
            );
        } else {
            let lock = run_folder::take_over_unstarted(&run_dir)
                .with_context(|| format!("{} already exists: choose another --tag", run_dir.display()))?;
            eprintln!("{}", unstarted_note(&run_dir));
            lock
        };
        (lock, new_run_info(matrix, &matrix_bytes))
    };
    run_folder::write_atomically(&run_dir.join(run_folder::MATRIX_YAML), &matrix_bytes)?;
    run_folder::write_json(&run_dir.join(RUN_JSON), &info)?;
    if let Some(emulated) = &matrix.emulated {
        run_folder::write_json(&run_dir.join(crate::settings::emulated::RUN_FILE), emulated)?;
    }
    if let Some(kubernetes) = &matrix.kubernetes {
        run_folder::write_json(&run_dir.join(crate::backends::kubernetes::settings::RUN_FILE), kubernetes)?;
    }
    let executor = Executor::of(matrix.executor.as_ref());
    executor.start_run(&run_dir, &options.tag)?;

    // Every cell of the plan gets a folder with its config and a status; the selected unfinished ones run.
    let planned = plan_cells(matrix, options, &run_dir)?;
    let to_run: Vec<&Cell> =
        matrix.cells.iter().zip(&planned).filter(|(_, p)| **p == Planned::ToRun).map(|(c, _)| c).collect();
    let kept = planned.iter().filter(|p| **p == Planned::Kept).count();
    let kept_failed = planned.iter().filter(|p| **p == Planned::KeptFailed).count();

    let control = Arc::new(Control::default());
    {
        let control = Arc::clone(&control);
        let run_dir = run_dir.clone();
        let ids = ids.clone();
        let executor = executor.clone();
        let tag = options.tag.clone();
        options.interrupt.on_hard_stop(Box::new(move || {
            control.hard_stop(&run_dir);
            if let Err(e) = executor.clean_up(&tag) {
                eprintln!("error: {e:#}");
            }
            let _ = write_summary_from_folder(&run_dir, &ids);
        }));
    }
    let progress = Progress::new(to_run.len());
    let on_finish = |_: usize, cell: &Cell, outcome: &Outcome, took: Duration| progress.finished(cell, outcome, took);
    let supervisor = Supervisor {
        run_dir: &run_dir,
        program: &options.program,
        executor: &executor,
        strategy: &matrix.strategy,
        max_parallel: matrix.max_parallel,
        interrupt: &options.interrupt,
        prepare,
        control,
        on_finish: &on_finish,
    };
    let outcomes = supervisor.run(&to_run);
    progress.done();
    // Nothing of the run stays in the cluster: every attempt's Job and the cells' ConfigMaps go.
    if let Err(e) = executor.clean_up(&options.tag) {
        eprintln!("error: {e:#}");
    }
    let interrupted = options.interrupt.requested();
    let budget_spent = Supervisor::budget_spent(&outcomes, &matrix.strategy);
    let mut failed = Vec::new();
    let (mut succeeded, mut cancelled, mut skipped, mut not_started) = (0, 0, 0, 0);
    for (cell, outcome) in to_run.iter().zip(&outcomes) {
        match outcome {
            Outcome::Failed(message) => failed.push((cell.id.clone(), message.clone())),
            Outcome::Cancelled => cancelled += 1,
            // Not started because failures stopped the run: skipped. After Ctrl-C they stay planned.
            Outcome::NotStarted if budget_spent && !interrupted => {
                let dir = run_folder::cell_dir(&run_dir, &cell.id);
                let mut status = run_folder::read_status(&dir)?;
                let why = format!("skipped: {} cells failed, the strategy's limit", failed_count(&outcomes));
                status.finish(CellState::Skipped, Some(why), Vec::new(), run_folder::now_unix_s());
                run_folder::write_status(&dir, &status)?;
                run_folder::append_event(&dir, "skipped", serde_json::json!({}))?;
                skipped += 1;
            }
            Outcome::NotStarted => not_started += 1,
            Outcome::Succeeded => succeeded += 1,
        }
    }
    let summaries = write_summary_from_folder(&run_dir, &ids)?;
    options.interrupt.clear_hard_stop();
    info.finished_unix_s = (!interrupted).then(run_folder::now_unix_s);
    run_folder::write_json(&run_dir.join(RUN_JSON), &info)?;
    drop(lock);
    Ok(RunOutcome {
        run_dir,
        summaries,
        failed,
        selected: to_run.len(),
        succeeded,
        not_started,
        kept,
        kept_failed,
        cancelled,
        skipped,
        interrupted,
    })
}

/// What planning decided for one cell of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    ToRun,
    /// Selected, already succeeded: untouched.
    Kept,
    /// Selected, failed before, no --retry-failed: untouched.
    KeptFailed,
    /// Not selected this time.
    Left,
}

/// Writes each cell's config.yaml, status and first event (or, on resume, keeps what finished). Cells are planned
/// by a few threads at once: the work is mostly waiting for fsync, which the file system batches.
fn plan_cells(matrix: &Matrix, options: &RunOptions, run_dir: &Path) -> Result<Vec<Planned>> {
    const PLANNERS: usize = 8;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Planned>>>> = Mutex::new((0..matrix.cells.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..PLANNERS.min(matrix.cells.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(cell) = matrix.cells.get(index) else { break };
                    let planned = plan_cell(cell, options, run_dir);
                    results.lock().expect("plan results")[index] = Some(planned);
                }
            });
        }
    });
    results.into_inner().expect("plan results").into_iter().map(|r| r.expect("every cell planned")).collect()
}

fn plan_cell(cell: &Cell, options: &RunOptions, run_dir: &Path) -> Result<Planned> {
    let dir = run_folder::cell_dir(run_dir, &cell.id);
    let recorded = if options.resume { run_folder::read_status(&dir).ok() } else { None };
    let selected = options.selection.matches(cell);
    match recorded.as_ref().map(|s| s.state) {
        Some(CellState::Succeeded) if dir.join(run_folder::SUMMARY_JSON).is_file() => {
            return Ok(if selected { Planned::Kept } else { Planned::Left });
        }
        Some(CellState::Failed) if !options.retry_failed => {
            return Ok(if selected { Planned::KeptFailed } else { Planned::Left });
        }
        // A cell left running by an orch that died: it is not running now.
        Some(CellState::Running) if !selected => {
            mark_interrupted(&dir)?;
            return Ok(Planned::Left);
        }
        Some(_) if !selected => return Ok(Planned::Left),
        _ => {}
    }
    run_folder::clear_attempt_outputs(&dir)?;
    super::execute::write_cell_config(cell, &dir)?;
    run_folder::write_status(&dir, &CellStatus::planned(cell))?;
    run_folder::append_event(&dir, "planned", serde_json::json!({"resumed": options.resume}))?;
    Ok(if selected { Planned::ToRun } else { Planned::Left })
}

fn failed_count(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|o| matches!(o, Outcome::Failed(_))).count()
}

/// run.json of a run starting now.
fn new_run_info(matrix: &Matrix, matrix_bytes: &[u8]) -> RunInfo {
    RunInfo {
        format: run_folder::FORMAT,
        matrix_name: matrix.name.clone(),
        matrix_file: matrix.file.display().to_string(),
        matrix_sha256: run_folder::sha256_hex(matrix_bytes),
        git_commit: run_folder::git_commit(matrix.file.parent().unwrap_or(Path::new("."))),
        host: run_folder::host_name(),
        orch_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_s: run_folder::now_unix_s(),
        finished_unix_s: None,
        baseline: matrix.baseline.clone(),
        cells: matrix.cells.iter().map(|c| c.id.clone()).collect(),
    }
}

fn unstarted_note(run_dir: &Path) -> String {
    format!(
        "{} has no run.json: the orch that created it was stopped before the run started; starting the run afresh",
        run_dir.display()
    )
}

/// Locks the run folder and checks the matrix still gives the recorded plan (or `--force` accepts the new one).
/// A folder left before run.json was written holds no run yet: it is taken over and the run starts afresh.
fn open_for_resume(
    matrix: &Matrix,
    options: &RunOptions,
    run_dir: &Path,
    matrix_bytes: &[u8],
) -> Result<(RunLock, RunInfo)> {
    let run_json = run_dir.join(RUN_JSON);
    if !run_json.is_file() && run_dir.is_dir() {
        let lock = run_folder::take_over_unstarted(run_dir)
            .map_err(|e| Refused(format!("{e:#}: there is no run {:?} to resume", options.tag)))?;
        eprintln!("{}", unstarted_note(run_dir));
        return Ok((lock, new_run_info(matrix, matrix_bytes)));
    }
    if !run_json.is_file() {
        return Err(Refused(format!(
            "{} does not exist: there is no run {:?} to resume",
            run_json.display(),
            options.tag
        ))
        .into());
    }
    // Compared before taking the lock, so a refused resume writes nothing at all.
    let mut info: RunInfo = run_folder::read_json(&run_json)?;
    let diff = plan_diff::diff(run_dir, &info.cells, &matrix.cells);
    if !diff.is_empty() && !options.force {
        return Err(Refused(format!(
            "{} gives other cells than run {} was planned with:\n{diff}run with --force to continue with the new \
             plan (finished cells still in it are kept; the others move to {}/superseded/)",
            matrix.file.display(),
            options.tag,
            run_dir.display()
        ))
        .into());
    }
    let lock = RunLock::acquire(run_dir).map_err(|e| Refused(format!("{e:#}")))?;
    // Another orch may have changed the run between the first read and the lock.
    let fresh: RunInfo = run_folder::read_json(&run_json)?;
    if fresh.cells != info.cells {
        return Err(Refused(format!("run {} changed while it was being resumed; try again", options.tag)).into());
    }
    info = fresh;
    if !diff.is_empty() {
        eprintln!("--force: continuing run {} with the new plan:\n{diff}", options.tag);
        let superseded = run_dir.join("superseded");
        for id in diff.gone() {
            let from = run_folder::cell_dir(run_dir, id);
            if from.is_dir() {
                fs::create_dir_all(&superseded).context("creating superseded/")?;
                fs::rename(&from, superseded.join(id)).with_context(|| format!("moving {} aside", from.display()))?;
            }
        }
    }
    info.matrix_name = matrix.name.clone();
    info.matrix_file = matrix.file.display().to_string();
    info.matrix_sha256 = run_folder::sha256_hex(matrix_bytes);
    info.orch_version = env!("CARGO_PKG_VERSION").to_string();
    info.baseline = matrix.baseline.clone();
    info.cells = matrix.cells.iter().map(|c| c.id.clone()).collect();
    info.finished_unix_s = None;
    Ok((lock, info))
}

fn mark_interrupted(dir: &Path) -> Result<()> {
    let mut status = run_folder::read_status(dir)?;
    let why = "cancelled: the orch running it stopped (crash or kill)".to_string();
    status.finish(CellState::Cancelled, Some(why.clone()), Vec::new(), run_folder::now_unix_s());
    run_folder::write_status(dir, &status)?;
    run_folder::append_event(dir, "cancelled", serde_json::json!({"error": why}))
}

/// summary.csv from the succeeded cells' summary.json files, in plan order: the same bytes whether the run went
/// through at once or was resumed. A summary.json that cannot be read (corrupt, or with null figures from an
/// older version) leaves its cell out with a warning: one bad cell does not cost the run its summary.
pub fn write_summary_from_folder(run_dir: &Path, ids: &[String]) -> Result<Vec<CellSummary>> {
    let mut summaries = Vec::new();
    for id in ids {
        let dir = run_folder::cell_dir(run_dir, id);
        if run_folder::read_status(&dir).is_ok_and(|s| s.state == CellState::Succeeded) {
            match read_summary(&dir.join(run_folder::SUMMARY_JSON)) {
                Ok(summary) => summaries.push(summary),
                Err(e) => eprintln!("warning: {id}: left out of summary.csv: {e:#}"),
            }
        }
    }
    run_folder::write_summary_csv(&run_dir.join(run_folder::SUMMARY_CSV), &summaries)?;
    Ok(summaries)
}

/// A cell's summary.json, with every field present and every figure a finite number. The type's serde defaults
/// let the report read hand-made summaries; summary.csv must never show a default 0 for a figure the file lacks.
fn read_summary(path: &Path) -> Result<CellSummary> {
    let raw: serde_json::Value = run_folder::read_json(path)?;
    let summary: CellSummary =
        serde_json::from_value(raw.clone()).with_context(|| format!("reading {}", path.display()))?;
    let written = serde_json::to_value(&summary)?;
    let fields = written.as_object().map(|o| o.keys().collect::<Vec<_>>()).unwrap_or_default();
    // `backend` alone may be absent: summaries written before it existed are simulator cells.
    if let Some(missing) = fields.into_iter().find(|f| *f != "backend" && raw.get(f.as_str()).is_none()) {
        bail!("{}: field `{missing}` is missing", path.display());
    }
    summary.check_figures().with_context(|| format!("{}", path.display()))?;
    Ok(summary)
}

/// A progress bar on a terminal, a line per cell otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: Mutex<usize>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} cells {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress { bar, total, done: Mutex::new(0) }
    }

    fn finished(&self, cell: &Cell, outcome: &Outcome, took: Duration) {
        let word = match outcome {
            Outcome::Succeeded => "done".to_string(),
            Outcome::Failed(message) => format!("FAILED ({message})"),
            Outcome::Cancelled => "cancelled".to_string(),
            Outcome::NotStarted => return,
        };
        let line = format!("{word} {} in {:.2}s", cell.id, took.as_secs_f64());
        let mut done = self.done.lock().expect("progress");
        *done += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_message(cell.id.clone());
                bar.inc(1);
                if !matches!(outcome, Outcome::Succeeded) {
                    bar.println(line);
                }
            }
            None => eprintln!("[{}/{}] {line}", *done, self.total),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

//! `orch cell --run-dir DIR --cell ID`: runs one planned cell of a run folder in this process.
//!
//! It reads the resolved config.yaml the planner wrote (and checks it still hashes to the cell id), marks the cell
//! running with a heartbeat every [`HEARTBEAT_INTERVAL`], runs it, and writes the final status itself: succeeded,
//! failed (with the error and the tail of run.log) or cancelled. A panic is caught and reported as a failure.
//! `orch run` starts one such process per cell attempt and supervises it; a Kubernetes Job can run the same command.
//!
//! Exit codes: 0 succeeded, 1 failed, 75 failed transiently (worth a retry), 101 panicked, 130 cancelled.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::backends::CellRun;
use crate::backends::kubernetes::settings::KubernetesRun;
use crate::cell::outcome::{
    self, CANCEL_GRACE, EXIT_CANCELLED, EXIT_FAILED, EXIT_PANICKED, EXIT_SUCCEEDED, EXIT_TRANSIENT,
};
use crate::cell::{CancelToken, Cancelled, Cell, TransientError};
use crate::run::execute;
use crate::run::fault::{Fault, FaultPlan};
use crate::run_folder::{self, CellState, CellStatus, LOG_TAIL_LINES};
use crate::settings::emulated::EmulatedRun;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// What the main thread, the heartbeat and the signal handler share. `status` becomes `None` once the final
/// state is written: nobody writes status.json after that.
struct Shared {
    dir: PathBuf,
    status: Mutex<Option<CellStatus>>,
    /// Cancelled by the first SIGTERM or SIGINT; the cell's code polls it and winds down.
    cancel: CancelToken,
}

impl Shared {
    /// Writes the final state unless someone already did; says whether this call did.
    fn finish(&self, state: CellState, error: Option<String>) -> bool {
        let mut guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut status) = guard.take() else { return false };
        let tail = if state == CellState::Failed {
            run_folder::tail(&self.dir.join(run_folder::RUN_LOG), LOG_TAIL_LINES)
        } else {
            Vec::new()
        };
        status.finish(state, error.clone(), tail, run_folder::now_unix_s());
        status.heartbeat_unix_s = status.finished_unix_s;
        if let Err(e) = run_folder::write_status(&self.dir, &status) {
            eprintln!("error: writing status.json: {e:#}");
        }
        let fields = serde_json::json!({"attempt": status.attempt, "error": error, "pid": std::process::id()});
        if let Err(e) = run_folder::append_event(&self.dir, state.name(), fields) {
            eprintln!("error: writing events.jsonl: {e:#}");
        }
        true
    }

    fn beat(&self) -> bool {
        let mut guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let Some(status) = guard.as_mut() else { return false };
        status.heartbeat_unix_s = Some(run_folder::now_unix_s());
        if let Err(e) = run_folder::write_status(&self.dir, status) {
            eprintln!("error: writing the heartbeat: {e:#}");
        }
        true
    }
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Runs the cell and returns the process exit code.
pub fn run(run_dir: &Path, cell_id: &str, attempt: u32) -> i32 {
    let dir = run_folder::cell_dir(run_dir, cell_id);
    let cell = match load_cell(&dir, cell_id).and_then(|cell| crate::run::rl_training::attach_trained(&cell, run_dir)) {
        Ok(cell) => cell,
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("error: {message}");
            // Record it where a status already exists; without one there is no cell to speak of.
            if let Ok(mut status) = run_folder::read_status(&dir) {
                status.attempt = attempt;
                status.finish(CellState::Failed, Some(message), Vec::new(), run_folder::now_unix_s());
                let _ = run_folder::write_status(&dir, &status);
            }
            return EXIT_FAILED;
        }
    };
    let faults = match FaultPlan::from_env() {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_FAILED;
        }
    };

    let now = run_folder::now_unix_s();
    let mut status = run_folder::read_status(&dir).unwrap_or_else(|_| CellStatus::planned(&cell));
    // `orch run` marks the attempt running just before starting us; run alone (by hand, by a Job), we do.
    if !(status.state == CellState::Running && status.attempt == attempt) {
        status.state = CellState::Running;
        status.attempt = attempt;
        status.started_unix_s = Some(now);
        status.heartbeat_unix_s = Some(now);
        status.finished_unix_s = None;
        status.error = None;
        status.log_tail.clear();
        if let Err(e) = run_folder::write_status(&dir, &status) {
            eprintln!("error: writing status.json: {e:#}");
            return EXIT_TRANSIENT;
        }
    }
    let shared = Arc::new(Shared { dir: dir.clone(), status: Mutex::new(Some(status)), cancel: CancelToken::new() });
    start_heartbeat(Arc::clone(&shared));
    install_signal_handler(Arc::clone(&shared));
    panic::set_hook(Box::new(|info| {
        // "panicked at file:line:col:\nmessage" on one line.
        let message = info.to_string().replacen(":\n", ": ", 1).replace('\n', " ");
        eprintln!("{message}");
        *PANIC_MESSAGE.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }));

    let fault = faults.as_ref().and_then(|plan| plan.for_cell(cell_id)).cloned();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(fault) = &fault {
            eprintln!("warning: {}: injecting {fault:?} into {cell_id}", crate::run::fault::ENV_VAR);
            let fields = serde_json::json!({"attempt": attempt, "fault": format!("{fault:?}")});
            let _ = run_folder::append_event(&dir, "fault_injected", fields);
            inject(fault, attempt, &shared)?;
        }
        let emulated = emulated_run(run_dir, &cell)?;
        let kubernetes = kubernetes_run(run_dir, &cell)?;
        let run = CellRun {
            id: &cell.id,
            config: &cell.config,
            dir: &dir,
            emulated: emulated.as_ref(),
            kubernetes: kubernetes.as_ref(),
            cancel: &shared.cancel,
        };
        execute::execute_cell(&run)
    }));
    let (state, error, code) = match result {
        Ok(Ok(_)) => (CellState::Succeeded, None, EXIT_SUCCEEDED),
        Ok(Err(e)) if e.is::<Cancelled>() => (CellState::Cancelled, Some("cancelled".to_string()), EXIT_CANCELLED),
        Ok(Err(e)) => {
            let message = format!("{e:#}");
            log_error(&dir, "cell failed", "error", &message);
            (CellState::Failed, Some(message), outcome::exit_code_of(&e))
        }
        Err(_) => {
            let message = PANIC_MESSAGE.lock().unwrap_or_else(|p| p.into_inner()).take();
            let message = message.unwrap_or_else(|| "panicked".to_string());
            log_error(&dir, "cell panicked", "panic", &message);
            (CellState::Failed, Some(message), EXIT_PANICKED)
        }
    };
    if shared.finish(state, error) { code } else { EXIT_CANCELLED }
}

/// Where an emulated cell gets its load: what `orch run` recorded in the run folder.
fn emulated_run(run_dir: &Path, cell: &Cell) -> Result<Option<EmulatedRun>> {
    if cell.config.backend != crate::cell::Backend::Emulated {
        return Ok(None);
    }
    let file = run_dir.join(crate::settings::emulated::RUN_FILE);
    let run = run_folder::read_json(&file).context("reading the run's emulated settings")?;
    Ok(Some(run))
}

/// Which cluster a kubernetes cell runs on and where its load comes from: what `orch run` recorded.
fn kubernetes_run(run_dir: &Path, cell: &Cell) -> Result<Option<KubernetesRun>> {
    if cell.config.backend != crate::cell::Backend::Kubernetes {
        return Ok(None);
    }
    let file = run_dir.join(crate::backends::kubernetes::settings::RUN_FILE);
    let run = run_folder::read_json(&file).context("reading the run's kubernetes settings")?;
    Ok(Some(run))
}

fn load_cell(dir: &Path, cell_id: &str) -> Result<Cell> {
    let config_file = dir.join(run_folder::CONFIG_YAML);
    let config = crate::cell::read_config_yaml(&config_file).map_err(|e| anyhow!("{e}"))?;
    let id = crate::cell::cell_id(&config);
    if id != cell_id {
        bail!("{} resolves to cell {id}, not {cell_id}: it was edited after planning", config_file.display());
    }
    Ok(Cell { id, config, timeout: Duration::MAX })
}

fn start_heartbeat(shared: Arc<Shared>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(HEARTBEAT_INTERVAL);
            if !shared.beat() {
                break;
            }
        }
    });
}

/// SIGINT or SIGTERM: ask the cell to stop, give it [`CANCEL_GRACE`], then record it cancelled and exit. A second
/// signal exits at once.
fn install_signal_handler(shared: Arc<Shared>) {
    let result = ctrlc::set_handler(move || {
        if !shared.cancel.cancel() {
            if shared.finish(CellState::Cancelled, Some("cancelled (second signal)".into())) {
                std::process::exit(EXIT_CANCELLED);
            }
            return;
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            std::thread::sleep(CANCEL_GRACE);
            let message = format!("cancelled: did not stop within {}s", CANCEL_GRACE.as_secs());
            if shared.finish(CellState::Cancelled, Some(message)) {
                std::process::exit(EXIT_CANCELLED);
            }
        });
    });
    if let Err(e) = result {
        eprintln!("warning: cannot handle signals: {e}");
    }
}

fn inject(fault: &Fault, attempt: u32, shared: &Shared) -> Result<()> {
    match fault {
        Fault::Panic => panic!("injected fault: panic"),
        Fault::Hang => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Fault::Abort => std::process::abort(),
        Fault::Error => bail!("injected fault: error"),
        Fault::Transient { attempts } if attempt <= *attempts => {
            Err(TransientError(format!("injected fault: transient failure on attempt {attempt} of {attempts}")).into())
        }
        Fault::Transient { .. } => Ok(()),
        Fault::Sleep(duration) => {
            let until = Instant::now() + *duration;
            while Instant::now() < until {
                shared.cancel.check()?;
                std::thread::sleep(Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())));
            }
            Ok(())
        }
    }
}

/// Appends an error line to run.log in the shape of its other lines, so the log's tail tells what went wrong.
fn log_error(dir: &Path, message: &str, key: &str, detail: &str) {
    let line =
        serde_json::json!({"level": "ERROR", "fields": {"message": message, key: detail}, "target": module_path!()});
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(run_folder::RUN_LOG)) {
        let _ = writeln!(file, "{line}");
    }
}

//! Runs cells as child processes (`orch cell`), a few at a time, and makes sure none can take the matrix down.
//!
//! Per cell attempt: mark it running, start `orch cell` in its own process group (killed with us if we die),
//! wait for it, and read what it recorded. A cell past its timeout is killed and failed; a transient failure is
//! retried with exponential backoff; a panic or error is failed with its message and log tail. When the failure
//! budget (`fail_fast`, `max_failures`) is spent or the user presses Ctrl-C, no further cell starts and running
//! ones are cancelled (SIGTERM, then SIGKILL after a grace period).
//!
//! Before a cell starts, the [`Prepare`] step of its group (if any) runs once: the place where, for example, an
//! RL policy is trained once for every scenario cell that evaluates it.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cell::Cell;
use crate::cell::outcome;
use crate::cell::outcome::CANCEL_GRACE;
use crate::duration;
use crate::matrix::ExecutionStrategy;
use crate::run::executor::Executor;
use crate::run::executor::local::{self, Attempt};
use crate::run::interrupt::Interrupt;
use crate::run_folder::{self, CellState, CellStatus, LOG_TAIL_LINES};

/// After SIGTERM, how long a cancelled cell gets before SIGKILL (its own grace plus time to write its status).
pub const KILL_AFTER: Duration = Duration::from_secs(CANCEL_GRACE.as_secs() + 3);
/// Longest wait between two retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Work shared by a group of cells that must be done before any of them runs.
pub trait Prepare: Sync {
    /// Cells with the same key share one preparation; `None` needs none.
    fn key(&self, cell: &Cell) -> Option<String>;
    /// Runs once per key, before the first of its cells starts; an error fails every cell of the group.
    fn prepare(&self, key: &str, cells: &[&Cell], run_dir: &Path) -> Result<()>;
}

pub struct NoPreparation;

impl Prepare for NoPreparation {
    fn key(&self, _: &Cell) -> Option<String> {
        None
    }
    fn prepare(&self, _: &str, _: &[&Cell], _: &Path) -> Result<()> {
        Ok(())
    }
}

/// How one cell's run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    Cancelled,
    /// Never started: the run stopped first.
    NotStarted,
}

/// What the hard stop (a second Ctrl-C) needs: the running children and the lock on the parent's status writes.
#[derive(Default)]
pub struct Control {
    /// Cell id -> pid of its process (also its process group), while not yet reaped.
    running: Mutex<BTreeMap<String, i32>>,
    /// Held for every status write of this process; the hard stop takes it and never gives it back.
    writes: Mutex<()>,
}

impl Control {
    fn writes(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills every running cell, waits for it, records it cancelled. Leaves the write lock held (the process is
    /// about to exit) so no other thread writes after it.
    pub fn hard_stop(&self, run_dir: &Path) {
        let guard = self.writes();
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for (id, &pid) in running.iter() {
            signal_cell(pid, libc::SIGKILL);
            // SAFETY: reaping a child we started and have not reaped (it is in `running`).
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            let dir = run_folder::cell_dir(run_dir, id);
            mark(&dir, CellState::Cancelled, "cancelled: orch was interrupted twice and killed the cell".into());
        }
        std::mem::forget(running);
        std::mem::forget(guard);
    }
}

/// Rewrites a cell's status as `state` with `error` (and the log tail for failures), and logs the event.
fn mark(dir: &Path, state: CellState, error: String) {
    let Ok(mut status) = run_folder::read_status(dir) else { return };
    let tail = if state == CellState::Failed { failure_tail(dir) } else { Vec::new() };
    status.finish(state, Some(error.clone()), tail, run_folder::now_unix_s());
    if let Err(e) = run_folder::write_status(dir, &status) {
        eprintln!("error: {}: {e:#}", dir.display());
    }
    let _ = run_folder::append_event(dir, state.name(), serde_json::json!({"attempt": status.attempt, "error": error}));
}

/// run.log's last lines, then the process's stderr's (where a crash that wrote no log speaks).
fn failure_tail(dir: &Path) -> Vec<String> {
    let mut tail = run_folder::tail(&dir.join(run_folder::RUN_LOG), LOG_TAIL_LINES);
    let stderr = run_folder::tail(&dir.join(run_folder::STDERR_LOG), LOG_TAIL_LINES / 2);
    tail.extend(stderr.into_iter().map(|line| format!("stderr: {line}")));
    tail
}

/// How a child process ended, from the supervisor's side.
enum Exit {
    Status(ExitStatus),
    TimedOut,
    Cancelled,
}

/// Runs cells in their own processes.
pub struct Supervisor<'a> {
    pub run_dir: &'a Path,
    /// The `orch` binary to start as `orch cell`.
    pub program: &'a Path,
    /// Where each attempt runs: its subcommand and how a timeout stops it.
    pub executor: &'a Executor,
    pub strategy: &'a ExecutionStrategy,
    pub max_parallel: usize,
    pub interrupt: &'a Interrupt,
    pub prepare: &'a dyn Prepare,
    pub control: Arc<Control>,
    /// Called with each finished cell (index into `cells`, outcome), e.g. for progress.
    pub on_finish: &'a (dyn Fn(usize, &Cell, &Outcome, Duration) + Sync),
}

/// One group's preparation: run by the first cell that needs it, awaited by the others.
type Preparation = OnceLock<Result<(), PreparationFailed>>;

/// A group's preparation failed: the error chain as text, which every cell of the group reports.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
struct PreparationFailed(String);

/// An attempt that failed in a way worth retrying, with what the cell recorded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransientFailure(String);

struct RunState<'c> {
    next: AtomicUsize,
    failures: AtomicU32,
    /// The failure budget is spent: start nothing, cancel what runs.
    stop: AtomicBool,
    preparations: Mutex<HashMap<String, Arc<Preparation>>>,
    cells: &'c [&'c Cell],
}

impl Supervisor<'_> {
    /// Runs `cells` in order, `max_parallel` at a time; one outcome per cell.
    pub fn run(&self, cells: &[&Cell]) -> Vec<Outcome> {
        let state = RunState {
            next: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            stop: AtomicBool::new(false),
            preparations: Mutex::new(HashMap::new()),
            cells,
        };
        let outcomes: Mutex<Vec<Outcome>> = Mutex::new(vec![Outcome::NotStarted; cells.len()]);
        let workers = self.max_parallel.min(cells.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !self.stopping(&state) {
                        let index = state.next.fetch_add(1, Ordering::SeqCst);
                        let Some(cell) = cells.get(index) else { break };
                        let started = Instant::now();
                        let outcome = match self.prepared(&state, cell) {
                            Ok(()) => self.run_attempts(cell, &state),
                            Err(message) => {
                                let message = format!("preparation failed: {message}");
                                let _w = self.control.writes();
                                mark(&self.dir(cell), CellState::Failed, message.clone());
                                Outcome::Failed(message)
                            }
                        };
                        if matches!(outcome, Outcome::Failed(_)) {
                            let failed = state.failures.fetch_add(1, Ordering::SeqCst) + 1;
                            if self.strategy.max_failures.is_some_and(|max| failed >= max) {
                                state.stop.store(true, Ordering::SeqCst);
                            }
                        }
                        (self.on_finish)(index, cell, &outcome, started.elapsed());
                        outcomes.lock().expect("outcomes")[index] = outcome;
                    }
                });
            }
        });
        outcomes.into_inner().expect("outcomes")
    }

    /// Whether the failure budget was spent (as opposed to a Ctrl-C).
    pub fn budget_spent(outcomes: &[Outcome], strategy: &ExecutionStrategy) -> bool {
        let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed(_))).count() as u32;
        strategy.max_failures.is_some_and(|max| failed >= max)
    }

    fn stopping(&self, state: &RunState) -> bool {
        self.interrupt.requested() || state.stop.load(Ordering::SeqCst)
    }

    fn dir(&self, cell: &Cell) -> PathBuf {
        run_folder::cell_dir(self.run_dir, &cell.id)
    }

    fn prepared(&self, state: &RunState, cell: &Cell) -> Result<(), PreparationFailed> {
        let Some(key) = self.prepare.key(cell) else { return Ok(()) };
        let once = Arc::clone(state.preparations.lock().expect("preparations").entry(key.clone()).or_default());
        once.get_or_init(|| {
            let group: Vec<&Cell> =
                state.cells.iter().copied().filter(|c| self.prepare.key(c).as_deref() == Some(&key)).collect();
            self.prepare.prepare(&key, &group, self.run_dir).map_err(|e| PreparationFailed(format!("{e:#}")))
        })
        .clone()
    }

    fn run_attempts(&self, cell: &Cell, state: &RunState) -> Outcome {
        let dir = self.dir(cell);
        let attempts = self.strategy.retries + 1;
        for attempt in 1..=attempts {
            let transient_error = match self.attempt(cell, &dir, attempt, state) {
                Ok(Ok(outcome)) => return outcome,
                Ok(Err(TransientFailure(message))) => message,
                Err(e) => format!("cannot run the cell: {e:#}"),
            };
            if attempt == attempts || self.stopping(state) {
                let _w = self.control.writes();
                ensure_failed(&dir, &transient_error);
                return Outcome::Failed(transient_error);
            }
            let backoff = self.strategy.retry_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
            {
                let _w = self.control.writes();
                // Planned again while it waits, so whatever stops orch now, a resume runs the cell.
                if let Ok(mut status) = run_folder::read_status(&dir) {
                    status.state = CellState::Planned;
                    status.error = Some(transient_error.clone());
                    let _ = run_folder::write_status(&dir, &status);
                }
                let _ = run_folder::append_event(
                    &dir,
                    "retry",
                    serde_json::json!({"attempt": attempt, "error": transient_error, "backoff_s": backoff.as_secs_f64()}),
                );
            }
            eprintln!(
                "retry {} (attempt {} of {attempts}) in {}: {transient_error}",
                cell.id,
                attempt + 1,
                duration::format(backoff)
            );
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if self.stopping(state) {
                    let _w = self.control.writes();
                    mark(
                        &dir,
                        CellState::Cancelled,
                        format!("cancelled while waiting to retry after: {transient_error}"),
                    );
                    return Outcome::Cancelled;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!("the last attempt returns")
    }

    /// One attempt: `Ok(Ok(outcome))` when it is final, `Ok(Err(failure))` for a transient failure.
    fn attempt(
        &self,
        cell: &Cell,
        dir: &Path,
        attempt: u32,
        state: &RunState,
    ) -> Result<Result<Outcome, TransientFailure>> {
        let child = {
            let _w = self.control.writes();
            if attempt > 1 {
                run_folder::clear_attempt_outputs(dir)?;
            }
            let mut status = run_folder::read_status(dir).unwrap_or_else(|_| CellStatus::planned(cell));
            let now = run_folder::now_unix_s();
            status.state = CellState::Running;
            status.attempt = attempt;
            status.started_unix_s = Some(now);
            status.heartbeat_unix_s = Some(now);
            status.finished_unix_s = None;
            status.error = None;
            status.log_tail.clear();
            run_folder::write_status(dir, &status)?;
            let child = self.spawn(cell, dir, attempt)?;
            run_folder::append_event(dir, "started", serde_json::json!({"attempt": attempt, "pid": child.id()}))?;
            self.control.running.lock().expect("running").insert(cell.id.clone(), child.id() as i32);
            child
        };
        let exit = self.supervise(child, cell, state);
        let _w = self.control.writes();
        let recorded = run_folder::read_status(dir).ok();
        let recorded_state = recorded.as_ref().map(|s| s.state);
        let recorded_error = recorded.as_ref().and_then(|s| s.error.clone());
        Ok(match exit {
            Exit::TimedOut => {
                let message = format!("timed out after {} and was killed", duration::format(cell.timeout));
                mark(dir, CellState::Failed, message.clone());
                Ok(Outcome::Failed(message))
            }
            Exit::Cancelled if recorded_state == Some(CellState::Succeeded) => Ok(Outcome::Succeeded),
            Exit::Cancelled => {
                if recorded_state != Some(CellState::Cancelled) {
                    mark(dir, CellState::Cancelled, "cancelled: the run was stopped".into());
                }
                Ok(Outcome::Cancelled)
            }
            Exit::Status(status) => match (status.code(), status.signal()) {
                (Some(outcome::EXIT_SUCCEEDED), _) if recorded_state == Some(CellState::Succeeded) => {
                    // An empty stderr.log says nothing; keep the folder to the files that do.
                    let stderr = dir.join(run_folder::STDERR_LOG);
                    if std::fs::metadata(&stderr).is_ok_and(|m| m.len() == 0) {
                        let _ = std::fs::remove_file(stderr);
                    }
                    Ok(Outcome::Succeeded)
                }
                (Some(outcome::EXIT_TRANSIENT), _) => {
                    Err(TransientFailure(recorded_error.unwrap_or_else(|| "failed transiently".to_string())))
                }
                (Some(code), _) => {
                    let message = match (recorded_state, recorded_error) {
                        (Some(CellState::Failed), Some(error)) => error,
                        _ => format!("orch cell exited with code {code} without recording a result"),
                    };
                    ensure_failed(dir, &message);
                    Ok(Outcome::Failed(message))
                }
                // Killed by someone else: SIGKILL is usually the OOM killer or an operator, worth another try;
                // any other signal (SIGSEGV, SIGABRT) is a crash of the cell itself.
                (None, Some(libc::SIGKILL)) => Err(TransientFailure("killed by SIGKILL (out of memory?)".to_string())),
                (None, signal) => {
                    let message = format!("crashed: killed by {}", signal_name(signal.unwrap_or(0)));
                    ensure_failed(dir, &message);
                    Ok(Outcome::Failed(message))
                }
            },
        })
    }

    fn spawn(&self, cell: &Cell, dir: &Path, attempt: u32) -> Result<Child> {
        let attempt = Attempt { program: self.program, run_dir: self.run_dir, cell_id: &cell.id, attempt, dir };
        local::start(self.executor.cell_command(), &attempt)
    }

    /// Waits for the child, killing it on timeout and cancelling it when the run stops.
    fn supervise(&self, mut child: Child, cell: &Cell, state: &RunState) -> Exit {
        let pid = child.id() as libc::pid_t;
        let started = Instant::now();
        let mut terminated_at: Option<Instant> = None;
        let mut exit = None;
        loop {
            if has_exited(pid) {
                let mut running = self.control.running.lock().expect("running");
                running.remove(&cell.id);
                let status = child.wait().expect("waiting for a child that exited");
                drop(running);
                return exit.unwrap_or(Exit::Status(status));
            }
            let elapsed = started.elapsed();
            if exit.is_none() && elapsed >= cell.timeout {
                if self.executor.kill_on_timeout() {
                    signal_cell(pid, libc::SIGKILL);
                } else {
                    // `orch cell-job` needs its grace to delete the Job, else the cell runs on in the cluster.
                    signal_cell(pid, libc::SIGTERM);
                    terminated_at = Some(Instant::now());
                }
                exit = Some(Exit::TimedOut);
            } else if exit.is_none() && self.stopping(state) {
                signal_cell(pid, libc::SIGTERM);
                terminated_at = Some(Instant::now());
                exit = Some(Exit::Cancelled);
            } else if terminated_at.is_some_and(|t| t.elapsed() >= KILL_AFTER) {
                signal_cell(pid, libc::SIGKILL);
            }
            // Short cells are checked often, long ones every 50 ms.
            std::thread::sleep((elapsed / 10).clamp(Duration::from_millis(1), Duration::from_millis(50)));
        }
    }
}

/// Signals a cell's process group (it and whatever it started), or the process alone if it has no group of its
/// own. Only called while the child is not yet reaped, so the pid is still ours.
fn signal_cell(pid: libc::pid_t, signal: i32) {
    // SAFETY: kill has no memory effects; the pid belongs to our unreaped child.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            libc::kill(pid, signal);
        }
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// Whether the child has exited, without reaping it (so its pid cannot be reused while we may still signal it).
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid with WNOWAIT only inspects the child's state; siginfo_t is plain data.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        r == 0 && info.si_pid() != 0
    }
}

/// Records a failure unless the cell already recorded one with its own message.
fn ensure_failed(dir: &Path, message: &str) {
    let recorded = run_folder::read_status(dir).ok();
    let already = recorded.as_ref().is_some_and(|s| s.state == CellState::Failed && s.error.is_some());
    if already {
        // Keep the cell's own error; add the stderr tail it could not know about.
        if let Some(mut status) = recorded {
            let tail = failure_tail(dir);
            if tail.len() > status.log_tail.len() {
                status.log_tail = tail;
                let _ = run_folder::write_status(dir, &status);
            }
        }
        return;
    }
    mark(dir, CellState::Failed, message.to_string());
}

//! The scenario engine: runs a scenario's users against a target with Locust's semantics and records every
//! request into a [`Collector`], closing one window per second of run time.
//!
//! - [`target`]: where requests go (`http://host:port[/base]` or `redis://host:port`).
//! - [`runner`]: one run from start to end: start time, shape, windows, deadline, stop.
//! - [`closed`] and [`open`]: the closed model (users follow stages or ramps at their spawn rate) and the open
//!   model (iterations at an arrival rate on a pool of users); [`assign`] says which global user runs on which
//!   agent, as which class, with which random stream, so several agents split a run exactly.
//! - [`user`]: one user's loop; [`compile`]: the scenario prepared for fast requests; [`http`], [`cookies`] and
//!   [`redis`]: the clients; [`record`]: outcomes on their way to the collector; [`monitor`]: generator health.

mod assign;
mod closed;
mod compile;
mod cookies;
mod http;
mod http1;
mod monitor;
mod open;
mod record;
mod redis;
mod runner;
mod target;
mod user;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::protocol::{ChangeRun, GeneratorHealth, RunState};
use crate::scenario::{LoadShape, Scenario, UsersTarget};
use crate::stats::Collector;
use monitor::Monitor;
pub use target::Target;

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub scenario: Scenario,
    pub target: Target,
    pub seed: u64,
    /// This agent's share: user i (0-based, in spawn order) runs here when i % agent_count == agent_index.
    pub agent_index: u32,
    pub agent_count: u32,
    /// Common start time; `None` = now.
    pub start_at: Option<SystemTime>,
    /// Hard stop this long after the start.
    pub deadline: Option<Duration>,
    /// Cap on this agent's users.
    pub max_users: u32,
}

/// A snapshot of a run's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStatus {
    pub state: RunState,
    pub started_at_unix_ms: Option<u64>,
    pub elapsed_s: f64,
    pub users: u64,
    pub target_users: u64,
    pub dropped_iterations: u64,
    pub windows_closed: u64,
    pub health: GeneratorHealth,
    pub error: Option<String>,
}

/// The shape in force, which a change can replace from a given moment on.
struct ShapeState {
    shape: LoadShape,
    /// Run time at which `shape`'s time 0 lies.
    offset_s: f64,
    /// A user target set by a change, in force until the shape ends.
    override_target: Option<UsersTarget>,
    /// Counts replacements of the shape, so the runner notices them.
    version: u64,
}

impl ShapeState {
    /// Closed model: the user target at run time `t`; `None` once the shape has ended.
    fn users_target(&self, t: f64) -> Option<UsersTarget> {
        let from_shape = self.shape.users_target(t - self.offset_s)?;
        Some(self.override_target.unwrap_or(from_shape))
    }

    /// Open model: the arrival rate at run time `t`; `None` once the shape has ended.
    fn arrival_rate(&self, t: f64) -> Option<f64> {
        self.shape.arrival_rate(t - self.offset_s)
    }
}

/// Progress the runner publishes.
struct Progress {
    state: RunState,
    error: Option<String>,
    started: Option<Instant>,
    /// Run time at the end, frozen once the run is over.
    ended_elapsed_s: Option<f64>,
    health: GeneratorHealth,
}

struct Shared {
    collector: Arc<Mutex<Collector>>,
    progress: Mutex<Progress>,
    shape: Mutex<ShapeState>,
    /// The scenario as planned, to validate changed shapes against.
    scenario: Scenario,
    users: AtomicU64,
    target_users: AtomicU64,
    started_at_unix_ms: AtomicU64,
    windows_closed: AtomicU64,
    dropped_iterations: AtomicU64,
    in_flight: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    over: watch::Sender<Option<RunState>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        lock(&self.progress)
    }

    fn elapsed_s(&self) -> f64 {
        let progress = self.progress();
        progress.ended_elapsed_s.unwrap_or_else(|| progress.started.map_or(0.0, |s| s.elapsed().as_secs_f64()))
    }
}

/// How long after a stop (or its deadline) a run may take to end before its tasks are aborted: its users' drain
/// time has passed by then, so only a runner that stopped making progress is cut short.
const ABORT_AFTER: Duration = Duration::from_secs(10);

/// Makes a stop and the deadline pre-emptive: once either has come and `drain` plus [`ABORT_AFTER`] has passed
/// without the run ending, aborts its runner (whose users go with it).
async fn enforce_end(
    shared: Arc<Shared>,
    latest_deadline: Option<Instant>,
    drain: Duration,
    runner: tokio::task::AbortHandle,
) {
    let mut over = shared.over.subscribe();
    let mut stop = shared.stop.subscribe();
    let end_asked = async {
        match latest_deadline {
            Some(deadline) => tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            },
            None => {
                let _ = stop.wait_for(|s| *s).await;
            }
        }
    };
    tokio::select! {
        _ = over.wait_for(Option::is_some) => return,
        _ = end_asked => {}
    }
    tokio::select! {
        _ = over.wait_for(Option::is_some) => {}
        _ = tokio::time::sleep(drain + ABORT_AFTER) => {
            tracing::warn!("a run did not end within {:?} of its stop or deadline: aborting it", drain + ABORT_AFTER);
            runner.abort();
        }
    }
}

/// A started run. Cloning gives another handle to the same run.
#[derive(Clone)]
pub struct RunHandle {
    shared: Arc<Shared>,
}

impl RunHandle {
    /// Starts `plan` on the current tokio runtime. The run follows its shape to the end (or its deadline) with no
    /// further calls.
    pub fn start(plan: RunPlan) -> RunHandle {
        let start_unix_s =
            plan.start_at.unwrap_or_else(SystemTime::now).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let shared = Arc::new(Shared {
            collector: Arc::new(Mutex::new(Collector::new(start_unix_s))),
            progress: Mutex::new(Progress {
                state: RunState::Scheduled,
                error: None,
                started: None,
                ended_elapsed_s: None,
                health: Monitor::idle_health(),
            }),
            shape: Mutex::new(ShapeState {
                shape: plan.scenario.shape.clone(),
                offset_s: 0.0,
                override_target: None,
                version: 0,
            }),
            scenario: plan.scenario.clone(),
            users: AtomicU64::new(0),
            target_users: AtomicU64::new(0),
            started_at_unix_ms: AtomicU64::new(0),
            windows_closed: AtomicU64::new(0),
            dropped_iterations: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU64::new(0)),
            stop: watch::channel(false).0,
            over: watch::channel(None).0,
        });
        let handle = RunHandle { shared: shared.clone() };
        let latest_deadline = plan.deadline.map(|deadline| {
            let until_start = plan.start_at.and_then(|at| at.duration_since(SystemTime::now()).ok());
            Instant::now() + until_start.unwrap_or_default() + runner::PROBE_TIMEOUT + deadline
        });
        // The longer of the two drains: a run stopped near its deadline may be draining as after the deadline.
        let drain =
            runner::drain_time(Duration::from_secs_f64(plan.scenario.request_timeout_s.clamp(0.0, 3600.0)), false);
        let run = tokio::spawn(runner::run(plan, shared.clone()));
        tokio::spawn(enforce_end(shared.clone(), latest_deadline, drain, run.abort_handle()));
        tokio::spawn(async move {
            let result = match run.await {
                Ok(result) => result.map_err(|error| (RunState::Failed, error)),
                Err(e) if e.is_cancelled() => Err((
                    RunState::Stopped,
                    format!("the run did not end within {} s of its stop: it was aborted", ABORT_AFTER.as_secs()),
                )),
                Err(e) => Err((RunState::Failed, format!("the engine failed: {e}"))),
            };
            let final_state = {
                let mut progress = shared.progress();
                let state = match result {
                    Ok(state) => state,
                    Err((state, error)) => {
                        progress.error = Some(error);
                        state
                    }
                };
                let elapsed = progress.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                progress.ended_elapsed_s = Some(elapsed);
                progress.state = state;
                state
            };
            shared.users.store(0, Ordering::Relaxed);
            shared.target_users.store(0, Ordering::Relaxed);
            shared.over.send_replace(Some(final_state));
        });
        handle
    }

    /// Stops the run: users finish the request in flight and start no other. Idempotent.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Changes the user target (and spawn rate) or replaces the shape from now on.
    ///
    /// `users` (with `spawn_rate`, by default the current stage's) holds from now until the shape ends; a `shape`
    /// replaces the shape with its time counted from now (and drops an earlier user target).
    pub fn change(&self, change: &ChangeRun) -> Result<(), String> {
        if self.shared.progress().state.is_over() || self.shared.over.borrow().is_some() {
            return Err("the run is over".into());
        }
        let elapsed = self.shared.elapsed_s();
        let mut shape = lock(&self.shared.shape);
        if let Some(new_shape) = &change.shape {
            if change.users.is_some() || change.spawn_rate.is_some() {
                return Err("give either a shape or users (and spawn_rate), not both".into());
            }
            if new_shape.is_open() != shape.shape.is_open() {
                return Err("a run cannot switch between the closed (users) and the open (arrival_rate) model".into());
            }
            let mut scenario = self.shared.scenario.clone();
            scenario.shape = new_shape.clone();
            scenario.validate().map_err(|(field, message)| format!("{field}: {message}"))?;
            let version = shape.version + 1;
            *shape = ShapeState { shape: new_shape.clone(), offset_s: elapsed, override_target: None, version };
            return Ok(());
        }
        let Some(users) = change.users else {
            return Err(match change.spawn_rate {
                Some(_) => "spawn_rate needs users".into(),
                None => "give users (and optionally spawn_rate) or a shape".into(),
            });
        };
        if shape.shape.is_open() {
            return Err("an open-model (arrival_rate) run has no user target: change its shape".into());
        }
        if let Some(rate) = change.spawn_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("spawn_rate must be a positive number, got {rate}"));
        }
        let Some(current) = shape.shape.users_target(elapsed - shape.offset_s) else {
            return Err("the shape has ended".into());
        };
        let spawn_rate = change.spawn_rate.unwrap_or(current.spawn_rate);
        shape.override_target = Some(UsersTarget { users, spawn_rate });
        Ok(())
    }

    pub fn status(&self) -> EngineStatus {
        let (state, error, health) = {
            let progress = self.shared.progress();
            (progress.state, progress.error.clone(), progress.health.clone())
        };
        let started = self.shared.started_at_unix_ms.load(Ordering::Relaxed);
        EngineStatus {
            state,
            started_at_unix_ms: (started > 0).then_some(started),
            elapsed_s: self.shared.elapsed_s(),
            users: self.shared.users.load(Ordering::Relaxed),
            target_users: self.shared.target_users.load(Ordering::Relaxed),
            dropped_iterations: self.shared.dropped_iterations.load(Ordering::Relaxed),
            windows_closed: self.shared.windows_closed.load(Ordering::Relaxed),
            health,
            error,
        }
    }

    /// The run's statistics; the engine closes one window per second of run time.
    pub fn collector(&self) -> Arc<Mutex<Collector>> {
        self.shared.collector.clone()
    }

    /// Resolves when the run is over, with its final state.
    pub async fn wait(&self) -> RunState {
        let mut over = self.shared.over.subscribe();
        loop {
            if let Some(state) = *over.borrow_and_update() {
                return state;
            }
            if over.changed().await.is_err() {
                return self.shared.progress().state;
            }
        }
    }
}

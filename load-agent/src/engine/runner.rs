//! One run from start to end: waits for the common start time, drives the closed or open model from the shape (as
//! changes leave it), moves request records into the collector and closes one window per second of run time, watches
//! the generator, and ends at the shape's end (Finished), at stop() or the deadline (Stopped), or on a fatal error
//! (Failed). At the end, users finish the request in flight (for a bounded time, see [`drain_time`]), so the agent
//! and the target agree on counts.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::assign::ClassTable;
use super::closed::ClosedUsers;
use super::compile::Compiled;
use super::monitor::{Monitor, runtime_cores};
use super::open::OpenUsers;
use super::record::{Record, Recorder};
use super::user::RunCtx;
use super::{RunPlan, Shared, Target, lock, redis};
use crate::protocol::RunState;
use crate::scenario::LoadShape;
use crate::stats::Collector;

/// The longest the runner sleeps: how often it re-reads the shape and moves records into the collector.
const TICK: Duration = Duration::from_millis(10);
/// Longest wait for a Redis target to answer at the start.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// At the deadline or the shape's end, users finish the request in flight for at most this long (or the request
/// timeout, when shorter), plus [`DRAIN_MARGIN`] to record a timeout; what is still running then is aborted.
const MAX_DRAIN: Duration = Duration::from_secs(5);
const DRAIN_MARGIN: Duration = Duration::from_secs(1);
/// After a stop, whoever asked waits for the run to be over: requests in flight get this long at most.
const MAX_DRAIN_AFTER_STOP: Duration = Duration::from_millis(500);

/// How long users may finish their requests in flight once the run ends, by a stop (`stopped`) or otherwise.
pub(super) fn drain_time(timeout: Duration, stopped: bool) -> Duration {
    if stopped { (timeout + DRAIN_MARGIN).min(MAX_DRAIN_AFTER_STOP) } else { timeout.min(MAX_DRAIN) + DRAIN_MARGIN }
}

/// Tasks aborted when dropped: users never outlive their run, even one cancelled mid-drain.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

enum Model {
    Closed(ClosedUsers),
    Open(OpenUsers),
}

impl Model {
    fn users(&self) -> u64 {
        match self {
            Model::Closed(users) => users.users(),
            Model::Open(pool) => pool.users(),
        }
    }
}

/// Records on their way into the collector's one-second windows.
struct Windows {
    collector: Arc<Mutex<Collector>>,
    recorder: Arc<Recorder>,
    batch: Vec<Record>,
    spare: Vec<Record>,
    /// Windows closed so far; window k covers run time [k, k + 1) s.
    closed: u64,
}

impl Windows {
    /// Run time at which the open window ends.
    fn next_end(&self, started: Instant) -> Instant {
        started + Duration::from_secs(self.closed + 1)
    }

    /// Moves buffered records into the collector, closing (with `users`) every window that ended by `now_us` of run
    /// time; each record goes to the window it completed in. Returns how many windows were closed.
    fn flush(&mut self, now_us: u64, users: u64) -> u64 {
        self.recorder.take(&mut self.batch, &mut self.spare);
        let mut collector = lock(&self.collector);
        let mut closed = 0;
        let mut end_us = (self.closed + 1) * 1_000_000;
        if end_us <= now_us {
            self.batch.sort_unstable_by_key(|r| r.done_us);
        }
        while end_us <= now_us {
            self.recorder.record_until(&mut self.batch, end_us, &mut collector);
            collector.close_window(users);
            self.closed += 1;
            closed += 1;
            end_us += 1_000_000;
        }
        self.recorder.record_until(&mut self.batch, u64::MAX, &mut collector);
        closed
    }

    /// Records everything left and closes the last, partial window.
    fn finish(&mut self, users: u64) {
        self.recorder.take(&mut self.batch, &mut self.spare);
        let mut collector = lock(&self.collector);
        self.recorder.record_until(&mut self.batch, u64::MAX, &mut collector);
        collector.close_window(users);
        self.closed += 1;
    }
}

fn micros_since(started: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(started).as_micros() as u64
}

pub(super) async fn run(plan: RunPlan, shared: Arc<Shared>) -> Result<RunState, String> {
    if plan.agent_index >= plan.agent_count.max(1) {
        return Err(format!("agent_index {} must be below agent_count {}", plan.agent_index, plan.agent_count));
    }
    if matches!(plan.scenario.shape, LoadShape::Trace(_)) {
        return Err("the scenario's trace shape was not resolved (load it from its file)".into());
    }
    let compiled = Arc::new(Compiled::new(&plan.scenario, &plan.target)?);
    let timeout = Duration::from_secs_f64(plan.scenario.request_timeout_s);
    let mut stop = shared.stop.subscribe();

    if let Target::Redis { host, port } = &plan.target {
        tokio::select! {
            probe = redis::probe(host, *port, timeout.min(PROBE_TIMEOUT)) => probe?,
            _ = stop.wait_for(|s| *s) => return Ok(RunState::Stopped),
        }
    }
    if let Some(start_at) = plan.start_at
        && let Ok(delay) = start_at.duration_since(SystemTime::now())
    {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Ok(RunState::Stopped),
        }
    }

    let started = Instant::now();
    {
        let mut progress = shared.progress();
        progress.started = Some(started);
        progress.state = RunState::Running;
    }
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64);
    shared.started_at_unix_ms.store(unix_ms, Ordering::Relaxed);

    let recorder = Arc::new(Recorder::new(compiled.stats_keys.clone()));
    let ctx = Arc::new(RunCtx {
        compiled,
        recorder: recorder.clone(),
        in_flight: shared.in_flight.clone(),
        timeout,
        started,
        target: plan.target.clone(),
    });
    let mut classes = ClassTable::new(plan.scenario.users.iter().map(|u| u.weight));
    let (index, count) = (plan.agent_index, plan.agent_count.max(1));
    let mut model = if plan.scenario.shape.is_open() {
        Model::Open(OpenUsers::new(index, count, plan.max_users, plan.seed))
    } else {
        Model::Closed(ClosedUsers::new(index, count, plan.max_users, plan.seed))
    };
    let mut shape_version = None;
    let mut monitor = Monitor::start(runtime_cores());
    let mut windows =
        Windows { collector: shared.collector.clone(), recorder, batch: Vec::new(), spare: Vec::new(), closed: 0 };
    let deadline = plan.deadline.map(|d| started + d);
    let mut last_elapsed = 0.0;

    let result: Result<RunState, String> = async {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(started).as_secs_f64();
            let dt = elapsed - last_elapsed;
            last_elapsed = elapsed;

            // Windows first: a window's user count is the count at its end.
            if windows.flush(micros_since(started, now), model.users()) > 0 {
                let health = monitor.close_second(elapsed, shared.in_flight.load(Ordering::Relaxed));
                shared.progress().health = health;
                shared.windows_closed.store(windows.closed, Ordering::Relaxed);
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(RunState::Stopped);
            }

            let next_change = match &mut model {
                Model::Closed(users) => {
                    let Some(target) = lock(&shared.shape).users_target(elapsed) else {
                        return Ok(RunState::Finished);
                    };
                    users.step(&ctx, &mut classes, target, dt)?;
                    shared.users.store(users.users(), Ordering::Relaxed);
                    shared.target_users.store(users.share(target.users as u64), Ordering::Relaxed);
                    users.next_change_in(target)
                }
                Model::Open(pool) => {
                    let (rate, replaced) = {
                        let shape = lock(&shared.shape);
                        let replaced = match (&shape.shape, shape_version != Some(shape.version)) {
                            (LoadShape::ArrivalRate(open), true) => Some(open.clone()),
                            _ => None,
                        };
                        shape_version = Some(shape.version);
                        (shape.arrival_rate(elapsed), replaced)
                    };
                    if let Some(open) = replaced {
                        pool.configure(&open, &ctx, &mut classes)?;
                    }
                    let Some(rate) = rate else { return Ok(RunState::Finished) };
                    pool.advance(elapsed, rate, started, &ctx, &mut classes)?;
                    shared.users.store(pool.users(), Ordering::Relaxed);
                    shared.target_users.store(pool.users(), Ordering::Relaxed);
                    shared.dropped_iterations.store(pool.dropped(), Ordering::Relaxed);
                    pool.next_due_in(rate)
                }
            };

            let mut wake = (now + TICK).min(windows.next_end(started));
            if let Some(next) = next_change {
                wake = wake.min(now + next);
            }
            if let Some(deadline) = deadline {
                wake = wake.min(deadline);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = stop.wait_for(|s| *s) => return Ok(RunState::Stopped),
            }
        }
    }
    .await;

    // Users finish the request in flight and start no other; windows keep closing meanwhile.
    let users_at_end = model.users();
    let mut tasks = AbortOnDrop(match &mut model {
        Model::Closed(users) => users.stop_all(),
        Model::Open(pool) => pool.stop_all(),
    });
    let grace_end = Instant::now() + drain_time(timeout, *stop.borrow());
    loop {
        tasks.0.retain(|task| !task.is_finished());
        let now = Instant::now();
        if windows.flush(micros_since(started, now), tasks.0.len() as u64) > 0 {
            shared.windows_closed.store(windows.closed, Ordering::Relaxed);
        }
        if tasks.0.is_empty() || now >= grace_end {
            break;
        }
        tokio::time::sleep_until((now + TICK).min(grace_end).into()).await;
    }
    drop(tasks);
    monitor.stop();
    windows.finish(users_at_end);
    shared.windows_closed.store(windows.closed, Ordering::Relaxed);
    shared.users.store(0, Ordering::Relaxed);
    if let Model::Open(pool) = &model {
        shared.dropped_iterations.store(pool.dropped(), Ordering::Relaxed);
    }
    result
}

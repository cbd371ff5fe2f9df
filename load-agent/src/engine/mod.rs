//! The scenario engine: runs a scenario's users against a target with Locust's semantics and records every
//! request into a [`Collector`], closing one window per second of run time.
//!
//! Users ramp toward the shape's target at its spawn rate (a new stage pre-empts an unfinished ramp), each with
//! its own seeded RNG, connection and cookie jar. Several agents split one run: the user spawned i-th runs on the
//! agent with index `i % agent_count`.

mod http;
mod monitor;
mod redis;
mod target;
mod user;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::protocol::{ChangeRun, GeneratorHealth, RunState};
use crate::scenario::{LoadShape, Scenario, UsersTarget, step_users};
use crate::stats::Collector;
use monitor::Monitor;
pub use target::Target;
use user::{Client, UserEnv, run_open_user, run_user};

/// How often the spawner re-evaluates the shape.
const SPAWN_TICK: Duration = Duration::from_millis(50);

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
}

struct Shared {
    collector: Arc<Mutex<Collector>>,
    state: Mutex<(RunState, Option<String>)>,
    shape: Mutex<ShapeState>,
    users: AtomicU64,
    target_users: AtomicU64,
    started_at_unix_ms: AtomicU64,
    windows_closed: AtomicU64,
    dropped_iterations: AtomicU64,
    in_flight: Arc<AtomicU64>,
    health: Mutex<GeneratorHealth>,
    started: Mutex<Option<Instant>>,
    /// Run time at the end, frozen once the run is over.
    ended_elapsed_s: Mutex<Option<f64>>,
    stop: watch::Sender<bool>,
    over: watch::Sender<Option<RunState>>,
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
            state: Mutex::new((RunState::Scheduled, None)),
            shape: Mutex::new(ShapeState { shape: plan.scenario.shape.clone(), offset_s: 0.0, override_target: None }),
            users: AtomicU64::new(0),
            target_users: AtomicU64::new(0),
            started_at_unix_ms: AtomicU64::new(0),
            windows_closed: AtomicU64::new(0),
            dropped_iterations: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU64::new(0)),
            health: Mutex::new(Monitor::idle_health()),
            started: Mutex::new(None),
            ended_elapsed_s: Mutex::new(None),
            stop: watch::channel(false).0,
            over: watch::channel(None).0,
        });
        let handle = RunHandle { shared: shared.clone() };
        tokio::spawn(async move {
            let final_state = match run(plan, shared.clone()).await {
                Ok(state) => state,
                Err(error) => {
                    shared.state.lock().expect("state lock").1 = Some(error);
                    RunState::Failed
                }
            };
            let elapsed = shared.started.lock().expect("started lock").map(|s| s.elapsed().as_secs_f64());
            *shared.ended_elapsed_s.lock().expect("ended lock") = Some(elapsed.unwrap_or(0.0));
            shared.state.lock().expect("state lock").0 = final_state;
            shared.users.store(0, Ordering::Relaxed);
            shared.over.send_replace(Some(final_state));
        });
        handle
    }

    /// Stops the run: users finish the request in flight and start no other. Idempotent.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Changes the user target (and spawn rate) or replaces the shape from now on.
    pub fn change(&self, change: &ChangeRun) -> Result<(), String> {
        let elapsed = self.elapsed_s();
        let mut shape = self.shared.shape.lock().expect("shape lock");
        if let Some(new_shape) = &change.shape {
            if change.users.is_some() || change.spawn_rate.is_some() {
                return Err("give either a shape or users/spawn_rate, not both".into());
            }
            if new_shape.is_open() != shape.shape.is_open() {
                return Err("a run cannot switch between closed (users) and open (arrival rate) shapes".into());
            }
            *shape = ShapeState { shape: new_shape.clone(), offset_s: elapsed, override_target: None };
            return Ok(());
        }
        let Some(users) = change.users else { return Err("give users (and optionally spawn_rate) or a shape".into()) };
        let current = shape.shape.users_target(elapsed - shape.offset_s).or(shape.override_target);
        let spawn_rate = change.spawn_rate.or(current.map(|c| c.spawn_rate)).unwrap_or(f64::INFINITY);
        if spawn_rate.is_nan() || spawn_rate <= 0.0 {
            return Err(format!("spawn_rate must be positive, got {spawn_rate}"));
        }
        shape.override_target = Some(UsersTarget { users, spawn_rate });
        Ok(())
    }

    pub fn status(&self) -> EngineStatus {
        let (state, error) = self.shared.state.lock().expect("state lock").clone();
        let started = self.shared.started_at_unix_ms.load(Ordering::Relaxed);
        EngineStatus {
            state,
            started_at_unix_ms: (started > 0).then_some(started),
            elapsed_s: self.elapsed_s(),
            users: self.shared.users.load(Ordering::Relaxed),
            target_users: self.shared.target_users.load(Ordering::Relaxed),
            dropped_iterations: self.shared.dropped_iterations.load(Ordering::Relaxed),
            windows_closed: self.shared.windows_closed.load(Ordering::Relaxed),
            health: self.shared.health.lock().expect("health lock").clone(),
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
                return self.shared.state.lock().expect("state lock").0;
            }
        }
    }

    fn elapsed_s(&self) -> f64 {
        if let Some(ended) = *self.shared.ended_elapsed_s.lock().expect("ended lock") {
            return ended;
        }
        self.shared.started.lock().expect("started lock").map_or(0.0, |s| s.elapsed().as_secs_f64())
    }
}

/// Users assigned so far to each class, for Locust-2-style proportional assignment in spawn order.
struct ClassAssigner {
    weights: Vec<f64>,
    total: f64,
    assigned: Vec<f64>,
}

impl ClassAssigner {
    fn new(scenario: &Scenario) -> ClassAssigner {
        let weights: Vec<f64> = scenario.users.iter().map(|u| u.weight as f64).collect();
        ClassAssigner { total: weights.iter().sum(), assigned: vec![0.0; weights.len()], weights }
    }

    /// The class of the next user: the one furthest below its share, so any prefix of users is proportional.
    fn next(&mut self) -> usize {
        let n = self.assigned.iter().sum::<f64>() + 1.0;
        let class = (0..self.weights.len())
            .max_by(|&a, &b| {
                let deficit = |c: usize| n * self.weights[c] / self.total - self.assigned[c];
                deficit(a).partial_cmp(&deficit(b)).expect("finite").then(b.cmp(&a))
            })
            .expect("at least one class");
        self.assigned[class] += 1.0;
        class
    }
}

/// The open model's users: each waits for iterations on its own channel and reports back when it is free.
struct OpenPool {
    preallocated: u64,
    max_users: u64,
    senders: Vec<tokio::sync::mpsc::Sender<Instant>>,
    tasks: Vec<JoinHandle<()>>,
    free: Vec<usize>,
    free_tx: tokio::sync::mpsc::UnboundedSender<usize>,
    free_rx: tokio::sync::mpsc::UnboundedReceiver<usize>,
    /// Iterations due so far, over all agents (fractional between ticks).
    due: f64,
    /// Iterations handed out so far, over all agents.
    issued: u64,
}

impl OpenPool {
    fn new(preallocated: u64, max_users: u64) -> OpenPool {
        let (free_tx, free_rx) = tokio::sync::mpsc::unbounded_channel();
        OpenPool {
            preallocated,
            max_users: max_users.max(preallocated),
            senders: Vec::new(),
            tasks: Vec::new(),
            free: Vec::new(),
            free_tx,
            free_rx,
            due: 0.0,
            issued: 0,
        }
    }

    fn spawn(&mut self, env: &Arc<UserEnv>, class: usize, rng: ChaCha8Rng, client: Client) {
        let id = self.senders.len();
        let (sender, iterations) = tokio::sync::mpsc::channel(1);
        self.senders.push(sender);
        self.tasks.push(tokio::spawn(run_open_user(
            env.clone(),
            class,
            id,
            rng,
            client,
            iterations,
            self.free_tx.clone(),
        )));
        self.free.push(id);
    }

    /// Adds `iterations` due over the last tick; returns, for each that falls to this agent, where within the tick
    /// (0..=1) it was due. Iteration k runs on the agent with index k % count.
    fn due_iterations(&mut self, iterations: f64, index: u32, count: u32) -> Vec<f64> {
        let before = self.due;
        self.due += iterations;
        let mut out = Vec::new();
        while (self.issued + 1) as f64 <= self.due {
            let k = self.issued;
            self.issued += 1;
            if k % count.max(1) as u64 == index as u64 {
                out.push((((k + 1) as f64 - before) / iterations).clamp(0.0, 1.0));
            }
        }
        out
    }

    /// Hands an iteration to a free user; false when none is free.
    fn dispatch(&mut self, intended_start: Instant) -> bool {
        while let Ok(id) = self.free_rx.try_recv() {
            self.free.push(id);
        }
        match self.free.pop() {
            Some(id) => self.senders[id].try_send(intended_start).is_ok(),
            None => false,
        }
    }
}

/// Users of `global` that fall to this agent.
fn local_share(global: u64, index: u32, count: u32) -> u64 {
    let (index, count) = (index as u64, count.max(1) as u64);
    if global > index { (global - index).div_ceil(count) } else { 0 }
}

async fn run(plan: RunPlan, shared: Arc<Shared>) -> Result<RunState, String> {
    let redis_target = matches!(plan.target, Target::Redis { .. });
    let classes = Arc::new(user::compile(&plan.scenario, redis_target)?);
    let mut stop = shared.stop.subscribe();

    if let Some(start_at) = plan.start_at
        && let Ok(delay) = start_at.duration_since(SystemTime::now())
    {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Ok(RunState::Stopped),
        }
    }
    let started = Instant::now();
    *shared.started.lock().expect("started lock") = Some(started);
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    shared.started_at_unix_ms.store(unix_ms, Ordering::Relaxed);
    shared.state.lock().expect("state lock").0 = RunState::Running;

    let env = Arc::new(UserEnv {
        scenario: Arc::new(plan.scenario.clone()),
        classes,
        collector: shared.collector.clone(),
        in_flight: shared.in_flight.clone(),
        timeout: Duration::from_secs_f64(plan.scenario.request_timeout_s),
    });
    let mut assigner = ClassAssigner::new(&plan.scenario);
    let mut users: Vec<(watch::Sender<bool>, JoinHandle<()>)> = Vec::new();
    let mut spawned_global = 0u64;
    let mut current_users = 0.0f64;
    let mut monitor = Monitor::new(tokio::runtime::Handle::current().metrics().num_workers());
    let mut next_window = started + Duration::from_secs(1);
    let mut ticker = tokio::time::interval(SPAWN_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = started;

    let new_client = |target: &Target| -> Result<Client, String> {
        Ok(match target {
            Target::Http { host, port, base_path } => Client::Http(http::HttpUser::new(host, *port, base_path)),
            Target::Redis { host, port } => Client::Redis(redis::RedisUser::new(host, *port)?),
        })
    };
    let user_rng = |index: u64| ChaCha8Rng::seed_from_u64(plan.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut pool = match &plan.scenario.shape {
        LoadShape::ArrivalRate(open) => Some(OpenPool::new(
            local_share(open.preallocated_users as u64, plan.agent_index, plan.agent_count),
            local_share(open.max_users as u64, plan.agent_index, plan.agent_count).min(plan.max_users as u64),
        )),
        _ => None,
    };
    if let Some(pool) = &mut pool {
        for _ in 0..pool.preallocated {
            let client = new_client(&plan.target)?;
            pool.spawn(&env, assigner.next(), user_rng(pool.senders.len() as u64), client);
        }
        shared.users.store(pool.senders.len() as u64, Ordering::Relaxed);
    }

    let final_state = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break RunState::Stopped,
        }
        let now = Instant::now();
        monitor.timer_lag(now.duration_since(last_tick).saturating_sub(SPAWN_TICK));
        let dt = now.duration_since(last_tick).as_secs_f64();
        last_tick = now;
        let elapsed = now.duration_since(started).as_secs_f64();
        while now >= next_window {
            let count = shared.users.load(Ordering::Relaxed);
            shared.collector.lock().expect("collector lock").close_window(count);
            shared.windows_closed.fetch_add(1, Ordering::Relaxed);
            *shared.health.lock().expect("health lock") =
                monitor.close_second(elapsed, shared.in_flight.load(Ordering::Relaxed));
            next_window += Duration::from_secs(1);
        }
        if plan.deadline.is_some_and(|d| elapsed >= d.as_secs_f64()) {
            break RunState::Stopped;
        }
        if let Some(pool) = &mut pool {
            let rate = {
                let shape = shared.shape.lock().expect("shape lock");
                shape.shape.arrival_rate(elapsed - shape.offset_s)
            };
            let Some(rate) = rate else { break RunState::Finished };
            let tick = Duration::from_secs_f64(dt);
            let due = pool.due_iterations(rate * dt, plan.agent_index, plan.agent_count);
            for fraction in due {
                let intended_start = now - tick + tick.mul_f64(fraction);
                if !pool.dispatch(intended_start) {
                    if (pool.senders.len() as u64) < pool.max_users {
                        let client = new_client(&plan.target)?;
                        pool.spawn(&env, assigner.next(), user_rng(pool.senders.len() as u64), client);
                        pool.dispatch(intended_start);
                    } else {
                        shared.dropped_iterations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            shared.users.store(pool.senders.len() as u64, Ordering::Relaxed);
            shared.target_users.store(pool.senders.len() as u64, Ordering::Relaxed);
            continue;
        }
        let target = {
            let shape = shared.shape.lock().expect("shape lock");
            // A changed user target holds until the shape itself ends.
            shape
                .shape
                .users_target(elapsed - shape.offset_s)
                .map(|from_shape| shape.override_target.unwrap_or(from_shape))
        };
        let Some(target) = target else { break RunState::Finished };
        current_users = step_users(current_users, target, dt);
        let global = (current_users + 1e-9).floor() as u64;
        let wanted = local_share(global, plan.agent_index, plan.agent_count).min(plan.max_users as u64);
        shared.target_users.store(
            local_share(target.users as u64, plan.agent_index, plan.agent_count).min(plan.max_users as u64),
            Ordering::Relaxed,
        );
        while (users.len() as u64) < wanted {
            // Advance the global spawn order to this agent's next user, assigning classes to everyone's users.
            loop {
                let index = spawned_global;
                let class = assigner.next();
                spawned_global += 1;
                if index % plan.agent_count.max(1) as u64 == plan.agent_index as u64 {
                    let (stop_user, stop_rx) = watch::channel(false);
                    let rng = ChaCha8Rng::seed_from_u64(plan.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let client = match &plan.target {
                        Target::Http { host, port, base_path } => {
                            Client::Http(http::HttpUser::new(host, *port, base_path))
                        }
                        Target::Redis { host, port } => Client::Redis(redis::RedisUser::new(host, *port)?),
                    };
                    users.push((stop_user, tokio::spawn(run_user(env.clone(), class, rng, client, stop_rx))));
                    break;
                }
            }
        }
        while (users.len() as u64) > wanted {
            // Locust stops the most recently started users first.
            let (stop_user, task) = users.pop().expect("non-empty");
            stop_user.send_replace(true);
            drop(task);
        }
        shared.users.store(users.len() as u64, Ordering::Relaxed);
    };

    // Let in-flight requests complete (bounded by the request timeout) so the agent and the target agree on counts.
    for (stop_user, _) in &users {
        stop_user.send_replace(true);
    }
    let mut tasks: Vec<JoinHandle<()>> = users.into_iter().map(|(_, task)| task).collect();
    if let Some(pool) = pool {
        // Closing the iteration channels ends each open-model user after its current iteration.
        tasks.extend(pool.tasks);
    }
    let grace = env.timeout + Duration::from_secs(1);
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
        }
    }
    // The last, partial window holds the requests that completed after the final full second.
    shared.collector.lock().expect("collector lock").close_window(0);
    shared.windows_closed.fetch_add(1, Ordering::Relaxed);
    Ok(final_state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_split_users_exactly() {
        for global in 0..50u64 {
            let total: u64 = (0..3).map(|i| local_share(global, i, 3)).sum();
            assert_eq!(total, global);
        }
        assert_eq!(local_share(5, 0, 2), 3);
        assert_eq!(local_share(5, 1, 2), 2);
    }

    #[test]
    fn classes_are_assigned_in_proportion_in_any_prefix() {
        let scenario = Scenario::parse(
            "users:\n  - {name: a, weight: 3, tasks: [{name: t, requests: [{method: GET, path: /}]}]}\n  - {name: b, weight: 1, tasks: [{name: t, requests: [{method: GET, path: /}]}]}\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}\n",
            std::path::Path::new("s.yaml"),
        )
        .unwrap();
        let mut assigner = ClassAssigner::new(&scenario);
        let picks: Vec<usize> = (0..8).map(|_| assigner.next()).collect();
        assert_eq!(picks.iter().filter(|&&c| c == 0).count(), 6);
        assert_eq!(picks[..4].iter().filter(|&&c| c == 1).count(), 1);
    }
}

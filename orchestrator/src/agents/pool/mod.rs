//! The agents of one cell: their runs (users split by agent_index/agent_count, one common start time), a poller
//! that fetches every run's closed one-second windows just after each second ends, loss detection and handling,
//! and at the end the agents' Locust CSVs.
//!
//! A run's window j covers second `offset + j` of the cell (wall seconds since the common start); a run that takes
//! over a lost agent's users starts on a whole second, so its windows line up with everyone else's.
//!
//! An agent is lost when it stops answering for [`LOSS_AFTER`], answers that its run is unknown or refused, or its
//! run failed or was stopped before the end. The loss is recorded (which agent, when, its last figures) and handled
//! as the matrix says: its users start again on the remaining agents from the next whole second, or the cell fails
//! naming it. Load never decays silently: every loss is in agents.json and in the cell's log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use load_agent::client::{AgentClient, ClientError};
use load_agent::protocol::{RunState, RunStatus, StartRun, WindowSnapshot};
use load_agent::scenario::Scenario;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::task::{JoinHandle, JoinSet};

use super::local::LocalAgent;
use super::preflight::{self, Candidate};
use super::takeover::remainder;
use crate::emulated::settings::OnLoss;

/// An agent that answers nothing for this long is lost.
pub const LOSS_AFTER: Duration = Duration::from_millis(2500);
/// Longest a poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// Polls happen this long after each second ends, when every agent has closed its window.
const POLL_AFTER_SECOND: Duration = Duration::from_millis(150);
/// Time between sending the runs and their common start.
const START_LEAD: Duration = Duration::from_millis(1500);

/// One agent of the pool.
pub struct AgentSpec {
    pub name: String,
    pub client: AgentClient,
    /// The process, for agents orch started.
    pub local: Option<LocalAgent>,
}

struct Agent {
    name: String,
    client: AgentClient,
    pid: Option<u32>,
}

/// The figures of a run's last status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunFigures {
    pub requests: u64,
    pub failures: u64,
    pub users: u64,
    pub windows_closed: u64,
}

struct RunSlot {
    agent: usize,
    run_id: String,
    agent_index: u32,
    agent_count: u32,
    offset: u64,
    takeover_of: Option<String>,
    /// Windows received and not yet taken, by cell second.
    windows: BTreeMap<u64, WindowSnapshot>,
    /// Windows received so far (the next expected index).
    delivered: u64,
    over: Option<RunState>,
    total_windows: Option<u64>,
    lost: bool,
    last_contact: Instant,
    last_contact_unix_s: f64,
    last: RunFigures,
    generator_suspect: Option<String>,
    error: Option<String>,
    files: Vec<String>,
    /// When the run was meant to start (Unix ms), until its start has been checked.
    start_due_unix_ms: Option<u64>,
}

/// A run that starts further than this from the common start has its windows shifted: say so.
const START_TOLERANCE_MS: u64 = 200;

impl RunSlot {
    fn done(&self) -> bool {
        self.lost || self.total_windows.is_some_and(|total| self.over.is_some() && self.delivered >= total)
    }
}

/// What the cell's runs replay.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The (time-compressed) scenario the agents run.
    pub scenario: Scenario,
    pub target: String,
    pub seed: u64,
    /// Emulated seconds per wall second, to stamp losses in emulated time.
    pub time_scale: f64,
}

#[derive(Clone)]
struct Started {
    plan: Plan,
    origin: Instant,
    origin_unix_ms: u64,
    duration_s: f64,
    grace_s: f64,
}

/// A lost agent, as agents.json records it.
#[derive(Debug, Clone, Serialize)]
pub struct Loss {
    pub agent: String,
    pub url: String,
    pub reason: String,
    pub last_contact_unix_s: f64,
    /// Emulated seconds since the cell started.
    pub last_contact_emulated_s: f64,
    pub detected_unix_s: f64,
    pub detected_emulated_s: f64,
    /// The last cell second it delivered a window for.
    pub last_window: Option<u64>,
    /// Its runs' figures at their last status.
    pub last: RunFigures,
    /// What was done: the runs that took its users over, or why the cell failed.
    pub handled: String,
}

/// A message for the cell's log (the poller runs off the cell's thread, whose log it cannot write).
#[derive(Debug, Clone)]
pub struct PoolEvent {
    pub warning: bool,
    pub message: String,
}

#[derive(Default)]
struct State {
    started: Option<Started>,
    runs: Vec<RunSlot>,
    lost: Vec<bool>,
    losses: Vec<Loss>,
    failure: Option<String>,
    events: Vec<PoolEvent>,
}

struct Shared {
    agents: Vec<Agent>,
    on_loss: OnLoss,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn describe(&self, agent: usize) -> String {
        format!("agent {} ({})", self.agents[agent].name, self.agents[agent].client.url())
    }
}

fn unix_now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The agents of one cell.
pub struct AgentPool {
    runtime: Handle,
    shared: Arc<Shared>,
    _local: Vec<LocalAgent>,
    poller: Option<JoinHandle<()>>,
}

impl AgentPool {
    /// Checks every agent (concurrently) before anything starts; the error names the first agent that fails.
    /// `users` is the most users the scenario runs at once, split over the agents.
    pub fn connect(
        runtime: Handle,
        specs: Vec<AgentSpec>,
        token_env: Option<&str>,
        users: u64,
        on_loss: OnLoss,
    ) -> Result<AgentPool, String> {
        let count = specs.len() as u64;
        let mut local = Vec::new();
        let mut agents = Vec::new();
        for spec in specs {
            let pid = spec.local.as_ref().map(LocalAgent::pid);
            if let Some(process) = spec.local {
                local.push(process);
            }
            agents.push(Agent { name: spec.name, client: spec.client, pid });
        }
        let share = users.div_ceil(count.max(1));
        runtime.block_on(async {
            let mut checks = JoinSet::new();
            for (index, agent) in agents.iter().enumerate() {
                let (name, client) = (agent.name.clone(), agent.client.clone());
                let token_env = token_env.map(str::to_string);
                checks.spawn(async move {
                    let candidate = Candidate { name: &name, client: &client, token_env: token_env.as_deref() };
                    (index, preflight::check(&candidate, share).await)
                });
            }
            let mut errors: Vec<(usize, String)> = Vec::new();
            while let Some(result) = checks.join_next().await {
                if let Ok((index, Err(message))) = result {
                    errors.push((index, message));
                }
            }
            errors.sort();
            match errors.into_iter().next() {
                Some((_, message)) => Err(message),
                None => Ok(()),
            }
        })?;
        let lost = vec![false; agents.len()];
        let shared = Arc::new(Shared { agents, on_loss, state: Mutex::new(State { lost, ..State::default() }) });
        Ok(AgentPool { runtime, shared, _local: local, poller: None })
    }

    pub fn agent_names(&self) -> Vec<String> {
        self.shared.agents.iter().map(|a| a.name.clone()).collect()
    }

    /// Starts one run per agent, all at a common start time a moment from now; returns that start. On any
    /// refusal, the runs already started are stopped and the error names the agent.
    pub fn start(&mut self, plan: Plan, grace_s: f64) -> Result<Instant, String> {
        let count = self.shared.agents.len() as u32;
        let duration_s = plan.scenario.duration_s();
        let start_at = SystemTime::now() + START_LEAD;
        let origin_unix_ms = start_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let shared = self.shared.clone();
        let created: Vec<(usize, Result<String, ClientError>)> = self.runtime.block_on(async {
            let mut starts = JoinSet::new();
            for (index, agent) in shared.agents.iter().enumerate() {
                let client = agent.client.clone();
                let start = StartRun {
                    scenario: plan.scenario.clone(),
                    target: plan.target.clone(),
                    seed: plan.seed,
                    agent_index: index as u32,
                    agent_count: count,
                    start_at_unix_ms: Some(origin_unix_ms),
                    // A safety net: the agents stop by themselves if orch goes away.
                    deadline_s: Some(duration_s + grace_s + 10.0),
                };
                starts.spawn(async move {
                    let created = match tokio::time::timeout(Duration::from_secs(10), client.start_run(&start)).await {
                        Ok(result) => result.map(|c| c.run_id),
                        Err(_) => Err(ClientError::Transport {
                            agent: client.url().to_string(),
                            message: "no answer to the start within 10 s".into(),
                        }),
                    };
                    (index, created)
                });
            }
            let mut out = Vec::new();
            while let Some(Ok(result)) = starts.join_next().await {
                out.push(result);
            }
            out.sort_by_key(|(index, _)| *index);
            out
        });
        let origin = Instant::now() + start_at.duration_since(SystemTime::now()).unwrap_or_default();
        let mut failure = None;
        let mut state = self.shared.state();
        for (index, result) in created {
            match result {
                Ok(run_id) => {
                    let mut run = RunSlot::new(index, run_id, index as u32, count, 0, None, origin);
                    run.start_due_unix_ms = Some(origin_unix_ms);
                    state.runs.push(run);
                }
                Err(e) => {
                    let what = if e.status() == Some(409) { "is busy" } else { "refused the run" };
                    failure.get_or_insert(format!("{} {what}: {}", self.shared.describe(index), preflight::strip(&e)));
                }
            }
        }
        if let Some(message) = failure {
            drop(state);
            self.stop_all();
            return Err(message);
        }
        state.started = Some(Started { plan, origin, origin_unix_ms, duration_s, grace_s });
        drop(state);
        self.poller = Some(self.runtime.spawn(poll_loop(self.shared.clone())));
        Ok(origin)
    }

    /// True when every run that covers cell second `second` has delivered its window (or is lost or over).
    pub fn window_complete(&self, second: u64) -> bool {
        let state = self.shared.state();
        state.runs.iter().all(|run| {
            second < run.offset
                || run.lost
                || run.delivered > second - run.offset
                || run.over.is_some() && run.total_windows.is_some_and(|total| total <= second - run.offset)
        })
    }

    /// Takes every run's window of cell second `second`.
    pub fn take_window(&self, second: u64) -> Vec<WindowSnapshot> {
        let mut state = self.shared.state();
        state.runs.iter_mut().filter_map(|run| run.windows.remove(&second)).collect()
    }

    /// Every window received and not yet taken, by cell second (at the end: the tail after the last row).
    pub fn take_all(&self) -> BTreeMap<u64, Vec<WindowSnapshot>> {
        let mut state = self.shared.state();
        let mut out: BTreeMap<u64, Vec<WindowSnapshot>> = BTreeMap::new();
        for run in &mut state.runs {
            for (second, window) in std::mem::take(&mut run.windows) {
                out.entry(second).or_default().push(window);
            }
        }
        out
    }

    /// True once every run is over with all its windows delivered, or lost.
    pub fn all_done(&self) -> bool {
        self.shared.state().runs.iter().all(RunSlot::done)
    }

    /// Waits (up to `limit`) until every run is done; runs still going on then are recorded as lost.
    pub fn wait_done(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.all_done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.all_done() {
            let mut guard = self.shared.state();
            let state = &mut *guard;
            let stragglers: Vec<usize> = state.runs.iter().filter(|r| !r.done()).map(|r| r.agent).collect();
            for agent in stragglers {
                let reason =
                    format!("its run did not finish within {:.0} s of the scenario's end", limit.as_secs_f64());
                record_loss(&self.shared, state, agent, reason, "the cell ended without its last windows");
            }
        }
    }

    /// The failure that ends the cell, if any (a lost agent with on_loss: fail, or no agent left).
    pub fn failure(&self) -> Option<String> {
        self.shared.state().failure.clone()
    }

    pub fn take_events(&self) -> Vec<PoolEvent> {
        std::mem::take(&mut self.shared.state().events)
    }

    /// Stops every run still going on (best effort, a few seconds at most) and records the state they stop in.
    pub fn stop_all(&self) {
        let targets: Vec<(usize, AgentClient, String)> = {
            let state = self.shared.state();
            state
                .runs
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.lost && r.over.is_none())
                .map(|(i, r)| (i, self.shared.agents[r.agent].client.clone(), r.run_id.clone()))
                .collect()
        };
        if targets.is_empty() {
            return;
        }
        let stopped: Vec<(usize, RunStatus)> = self.runtime.block_on(async {
            let mut stops = JoinSet::new();
            for (index, client, run) in targets {
                stops.spawn(async move {
                    match tokio::time::timeout(POLL_TIMEOUT, client.stop(&run)).await {
                        Ok(Ok(status)) => Some((index, status)),
                        _ => None,
                    }
                });
            }
            let mut out = Vec::new();
            while let Some(result) = stops.join_next().await {
                if let Ok(Some(stopped)) = result {
                    out.push(stopped);
                }
            }
            out
        });
        let mut state = self.shared.state();
        for (index, status) in stopped {
            let run = &mut state.runs[index];
            run.over = Some(if status.state.is_over() { status.state } else { RunState::Stopped });
            run.last = RunFigures {
                requests: status.requests,
                failures: status.failures,
                users: status.users,
                windows_closed: status.windows_closed,
            };
        }
    }

    /// Stops the poller, downloads each run's Locust CSVs into `agents_dir/<agent>/` (a takeover run's into
    /// `agents_dir/<agent>/takeover-of-<lost agent>/`) and returns the record for agents.json.
    pub fn finish(&mut self, agents_dir: &Path) -> Result<AgentsReport> {
        self.stop_all();
        if let Some(poller) = self.poller.take() {
            poller.abort();
        }
        let targets: Vec<(usize, AgentClient, String, std::path::PathBuf)> = {
            let state = self.shared.state();
            state
                .runs
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.lost)
                .map(|(i, r)| {
                    let agent = &self.shared.agents[r.agent];
                    let mut dir = agents_dir.join(&agent.name);
                    if let Some(lost) = &r.takeover_of {
                        dir = dir.join(format!("takeover-of-{lost}"));
                    }
                    (i, agent.client.clone(), r.run_id.clone(), dir)
                })
                .collect()
        };
        let downloaded: Vec<(usize, Result<Vec<String>>)> = self.runtime.block_on(async {
            let mut downloads = JoinSet::new();
            for (index, client, run, dir) in targets {
                downloads.spawn(async move { (index, download_csvs(&client, &run, &dir).await) });
            }
            let mut out = Vec::new();
            while let Some(Ok(result)) = downloads.join_next().await {
                out.push(result);
            }
            out
        });
        let mut state = self.shared.state();
        let mut problems = Vec::new();
        for (index, result) in downloaded {
            match result {
                Ok(files) => state.runs[index].files = files,
                Err(e) => {
                    let run = &state.runs[index];
                    problems.push(format!("{}: {e:#}", self.shared.describe(run.agent)));
                }
            }
        }
        let report = AgentsReport {
            format: 1,
            agents: self
                .shared
                .agents
                .iter()
                .zip(&state.lost)
                .map(|(a, &lost)| AgentReport {
                    name: a.name.clone(),
                    url: a.client.url().to_string(),
                    local: a.pid.is_some(),
                    pid: a.pid,
                    lost,
                })
                .collect(),
            runs: state
                .runs
                .iter()
                .map(|r| RunReport {
                    agent: self.shared.agents[r.agent].name.clone(),
                    run_id: r.run_id.clone(),
                    agent_index: r.agent_index,
                    agent_count: r.agent_count,
                    from_second: r.offset,
                    takeover_of: r.takeover_of.clone(),
                    state: r.over,
                    lost: r.lost,
                    figures: r.last.clone(),
                    windows_received: r.delivered,
                    generator_suspect: r.generator_suspect.clone(),
                    error: r.error.clone(),
                    files: r.files.clone(),
                })
                .collect(),
            losses: state.losses.clone(),
            requests: state.runs.iter().map(|r| r.last.requests).sum(),
            failures: state.runs.iter().map(|r| r.last.failures).sum(),
            download_errors: problems,
        };
        Ok(report)
    }
}

impl Drop for AgentPool {
    fn drop(&mut self) {
        if let Some(poller) = self.poller.take() {
            poller.abort();
            self.stop_all();
        }
    }
}

impl RunSlot {
    fn new(
        agent: usize,
        run_id: String,
        agent_index: u32,
        agent_count: u32,
        offset: u64,
        takeover_of: Option<String>,
        now: Instant,
    ) -> RunSlot {
        RunSlot {
            agent,
            run_id,
            agent_index,
            agent_count,
            offset,
            takeover_of,
            windows: BTreeMap::new(),
            delivered: 0,
            over: None,
            total_windows: None,
            lost: false,
            last_contact: now.max(Instant::now()),
            last_contact_unix_s: unix_now_s(),
            last: RunFigures::default(),
            generator_suspect: None,
            error: None,
            files: Vec::new(),
            start_due_unix_ms: None,
        }
    }
}

/// agents.json
#[derive(Debug, Clone, Serialize)]
pub struct AgentsReport {
    pub format: u32,
    pub agents: Vec<AgentReport>,
    pub runs: Vec<RunReport>,
    pub losses: Vec<Loss>,
    /// Requests the agents counted (their runs' last cumulative figures).
    pub requests: u64,
    pub failures: u64,
    pub download_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    pub name: String,
    pub url: String,
    pub local: bool,
    pub pid: Option<u32>,
    pub lost: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub agent: String,
    pub run_id: String,
    pub agent_index: u32,
    pub agent_count: u32,
    /// The cell second its first window covers.
    pub from_second: u64,
    pub takeover_of: Option<String>,
    pub state: Option<RunState>,
    pub lost: bool,
    pub figures: RunFigures,
    pub windows_received: u64,
    pub generator_suspect: Option<String>,
    pub error: Option<String>,
    pub files: Vec<String>,
}

/// The Locust CSVs a run leaves, downloaded once its files are final.
const CSV_FILES: [&str; 3] = ["locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv"];

async fn download_csvs(client: &AgentClient, run: &str, dir: &Path) -> Result<Vec<String>> {
    // The agent writes status.json last: once it says the run is over, the other files are final.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = tokio::time::timeout(POLL_TIMEOUT, client.download(run, "status.json")).await;
        let over = match status {
            Ok(Ok(bytes)) => serde_json::from_slice::<RunStatus>(&bytes).is_ok_and(|s| s.state.is_over()),
            _ => false,
        };
        if over {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("run {run}: its files were not final within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for name in CSV_FILES {
        let bytes = tokio::time::timeout(Duration::from_secs(30), client.download(run, name))
            .await
            .map_err(|_| anyhow::anyhow!("run {run}: downloading {name} took over 30 s"))?
            .map_err(|e| anyhow::anyhow!("run {run}: {name}: {e}"))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.push(name.to_string());
    }
    Ok(files)
}

enum PollOutcome {
    Status(Box<RunStatus>, Vec<WindowSnapshot>),
    Failed(ClientError),
}

async fn poll_run(client: &AgentClient, run: &str, delivered: u64) -> PollOutcome {
    let timeout = |message: &str| {
        PollOutcome::Failed(ClientError::Transport { agent: client.url().to_string(), message: message.to_string() })
    };
    let status = match tokio::time::timeout(POLL_TIMEOUT, client.status(run)).await {
        Err(_) => return timeout("no answer to a poll within 2 s"),
        Ok(Err(e)) => return PollOutcome::Failed(e),
        Ok(Ok(status)) => status,
    };
    let mut windows = Vec::new();
    if status.windows_closed > delivered {
        let last_is_next = status.windows_closed == delivered + 1;
        match &status.window {
            Some(window) if last_is_next && window.index == delivered => windows.push(window.clone()),
            _ => match tokio::time::timeout(POLL_TIMEOUT, client.windows(run, delivered)).await {
                Err(_) => return timeout("no answer to a poll within 2 s"),
                Ok(Err(e)) => return PollOutcome::Failed(e),
                Ok(Ok(list)) => windows = list.windows,
            },
        }
    }
    PollOutcome::Status(Box::new(status), windows)
}

async fn poll_loop(shared: Arc<Shared>) {
    let Some(started) = shared.state().started.clone() else { return };
    let mut second = 1u64;
    loop {
        let due = started.origin + Duration::from_secs(second) + POLL_AFTER_SECOND;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            // Late (a busy machine): poll now and aim at the next second.
            second = (now.duration_since(started.origin).as_secs_f64() - POLL_AFTER_SECOND.as_secs_f64())
                .floor()
                .max(second as f64) as u64;
        }
        poll_once(&shared, &started).await;
        if shared.state().runs.iter().all(RunSlot::done) {
            return;
        }
        second += 1;
    }
}

async fn poll_once(shared: &Arc<Shared>, started: &Started) {
    let targets: Vec<(usize, AgentClient, String, u64)> = {
        let state = shared.state();
        state
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.done())
            .map(|(i, r)| (i, shared.agents[r.agent].client.clone(), r.run_id.clone(), r.delivered))
            .collect()
    };
    let mut polls = JoinSet::new();
    for (index, client, run, delivered) in targets {
        polls.spawn(async move { (index, poll_run(&client, &run, delivered).await) });
    }
    let mut outcomes = Vec::new();
    while let Some(Ok(outcome)) = polls.join_next().await {
        outcomes.push(outcome);
    }
    let mut newly_lost = Vec::new();
    {
        let mut guard = shared.state();
        let state = &mut *guard;
        let elapsed_s = started.origin.elapsed().as_secs_f64();
        for (index, outcome) in outcomes {
            let run = &mut state.runs[index];
            if run.lost {
                continue;
            }
            match outcome {
                PollOutcome::Status(status, windows) => {
                    run.last_contact = Instant::now();
                    run.last_contact_unix_s = unix_now_s();
                    for window in windows {
                        if window.index == run.delivered {
                            run.windows.insert(run.offset + window.index, window);
                            run.delivered += 1;
                        }
                    }
                    run.last = RunFigures {
                        requests: status.requests,
                        failures: status.failures,
                        users: status.users,
                        windows_closed: status.windows_closed,
                    };
                    let mut events = Vec::new();
                    if let (Some(due), Some(started)) = (run.start_due_unix_ms, status.started_at_unix_ms) {
                        run.start_due_unix_ms = None;
                        if started.abs_diff(due) > START_TOLERANCE_MS {
                            events.push(format!(
                                "{}: started {} ms {} the common start (a late start or its clock is off): its \
                                 windows are shifted by that much",
                                shared.describe(run.agent),
                                started.abs_diff(due),
                                if started > due { "after" } else { "before" }
                            ));
                        }
                    }
                    if status.health.suspect && run.generator_suspect.is_none() {
                        let reason = status.health.reason.clone().unwrap_or_else(|| "saturated".into());
                        events.push(format!(
                            "{}: the generator is saturated, its latencies are suspect: {reason}",
                            shared.describe(run.agent)
                        ));
                        run.generator_suspect = Some(reason);
                    }
                    if status.state.is_over() && run.over.is_none() {
                        run.over = Some(status.state);
                        run.total_windows = Some(status.windows_closed);
                        run.error = status.error.clone();
                        let early = elapsed_s < started.duration_s - 1.0;
                        if status.state == RunState::Failed || (status.state == RunState::Stopped && early) {
                            let why = status.error.clone().unwrap_or_else(|| format!("{:?}", status.state));
                            newly_lost.push((run.agent, format!("its run ended early: {why}")));
                        }
                    }
                    for message in events {
                        state.events.push(PoolEvent { warning: true, message });
                    }
                }
                PollOutcome::Failed(error) => {
                    let definitive = matches!(error.status(), Some(401 | 403 | 404));
                    if definitive || run.last_contact.elapsed() >= LOSS_AFTER {
                        newly_lost.push((run.agent, preflight::strip(&error)));
                    }
                }
            }
        }
    }
    newly_lost.sort();
    newly_lost.dedup_by_key(|(agent, _)| *agent);
    for (agent, reason) in newly_lost {
        handle_loss(shared, started, agent, reason).await;
    }
}

/// Marks `agent` and its runs lost and records the loss (with `handled` as a first account of what happens).
fn record_loss(shared: &Shared, state: &mut State, agent: usize, reason: String, handled: &str) -> Option<usize> {
    if state.lost[agent] {
        return None;
    }
    state.lost[agent] = true;
    let origin = state.started.as_ref().map(|s| (s.origin, s.plan.time_scale));
    let mut last = RunFigures::default();
    let mut last_window = None;
    let mut last_contact_unix_s: f64 = 0.0;
    let mut last_contact = None;
    for run in state.runs.iter_mut().filter(|r| r.agent == agent) {
        run.lost = true;
        last.requests += run.last.requests;
        last.failures += run.last.failures;
        last.users += run.last.users;
        last.windows_closed += run.last.windows_closed;
        if run.delivered > 0 {
            last_window = last_window.max(Some(run.offset + run.delivered - 1));
        }
        last_contact_unix_s = last_contact_unix_s.max(run.last_contact_unix_s);
        last_contact = last_contact.max(Some(run.last_contact));
    }
    let emulated = |at: Option<Instant>| match (origin, at) {
        (Some((origin, scale)), Some(at)) => {
            let seconds = if at >= origin {
                at.duration_since(origin).as_secs_f64()
            } else {
                -origin.duration_since(at).as_secs_f64()
            };
            seconds * scale
        }
        _ => 0.0,
    };
    let loss = Loss {
        agent: shared.agents[agent].name.clone(),
        url: shared.agents[agent].client.url().to_string(),
        reason: reason.clone(),
        last_contact_unix_s,
        last_contact_emulated_s: emulated(last_contact),
        detected_unix_s: unix_now_s(),
        detected_emulated_s: emulated(Some(Instant::now())),
        last_window,
        last,
        handled: handled.to_string(),
    };
    state.events.push(PoolEvent {
        warning: true,
        message: format!(
            "{} lost at {:.0} s (emulated; last answer at {:.0} s): {reason}",
            shared.describe(agent),
            loss.detected_emulated_s,
            loss.last_contact_emulated_s
        ),
    });
    state.losses.push(loss);
    Some(state.losses.len() - 1)
}

async fn handle_loss(shared: &Arc<Shared>, started: &Started, agent: usize, reason: String) {
    let (loss, orphans) = {
        let mut guard = shared.state();
        let state = &mut *guard;
        let Some(loss) = record_loss(shared, state, agent, reason.clone(), "") else { return };
        let orphans: Vec<(u32, u32)> = state
            .runs
            .iter()
            .filter(|r| r.agent == agent && r.over.is_none())
            .map(|r| (r.agent_index, r.agent_count))
            .collect();
        (loss, orphans)
    };
    let who = shared.describe(agent);
    let set_handled = |handled: String, failure: Option<String>| {
        let mut state = shared.state();
        state.losses[loss].handled = handled.clone();
        state.events.push(PoolEvent { warning: failure.is_some(), message: format!("{who}: {handled}") });
        if let Some(failure) = failure {
            state.failure.get_or_insert(failure);
        }
    };
    let at = started.origin.elapsed().as_secs_f64() * started.plan.time_scale;
    if shared.on_loss == OnLoss::Fail {
        let failure = format!("{who} was lost at {at:.0} s of the cell: {reason} (emulated.agents.on_loss is fail)");
        set_handled("the cell failed (on_loss: fail)".into(), Some(failure));
        return;
    }
    // The next whole second far enough ahead for the start to arrive.
    let from = (started.origin.elapsed().as_secs_f64() + 1.0).ceil();
    let mut accounts = Vec::new();
    for (agent_index, agent_count) in orphans {
        let Some(shape) = remainder(&started.plan.scenario.shape, from) else {
            accounts.push("nothing to redistribute: the scenario had ended".to_string());
            continue;
        };
        let mut scenario = started.plan.scenario.clone();
        scenario.shape = shape;
        let start = StartRun {
            scenario,
            target: started.plan.target.clone(),
            seed: started.plan.seed,
            agent_index,
            agent_count,
            start_at_unix_ms: Some(started.origin_unix_ms + (from * 1000.0) as u64),
            deadline_s: Some(started.duration_s - from + started.grace_s + 10.0),
        };
        // The remaining agents, the least loaded first.
        let survivors: Vec<usize> = {
            let state = shared.state();
            let mut survivors: Vec<(usize, usize)> = (0..shared.agents.len())
                .filter(|&a| !state.lost[a])
                .map(|a| (state.runs.iter().filter(|r| r.agent == a && !r.done()).count(), a))
                .collect();
            survivors.sort();
            survivors.into_iter().map(|(_, a)| a).collect()
        };
        let mut refusals = Vec::new();
        let mut taken = None;
        for survivor in survivors {
            let client = shared.agents[survivor].client.clone();
            match tokio::time::timeout(Duration::from_secs(5), client.start_run(&start)).await {
                Ok(Ok(created)) => {
                    taken = Some((survivor, created.run_id));
                    break;
                }
                Ok(Err(e)) => refusals.push(format!("{}: {}", shared.describe(survivor), preflight::strip(&e))),
                Err(_) => refusals.push(format!("{}: no answer within 5 s", shared.describe(survivor))),
            }
        }
        match taken {
            Some((survivor, run_id)) => {
                let name = shared.agents[agent].name.clone();
                let mut state = shared.state();
                let mut slot = RunSlot::new(
                    survivor,
                    run_id.clone(),
                    agent_index,
                    agent_count,
                    from as u64,
                    Some(name),
                    started.origin + Duration::from_secs_f64(from),
                );
                slot.start_due_unix_ms = start.start_at_unix_ms;
                state.runs.push(slot);
                accounts.push(format!(
                    "users {agent_index} of every {agent_count} moved to {} (run {run_id}) from second {from:.0} \
                     ({:.0} s emulated)",
                    shared.describe(survivor),
                    from * started.plan.time_scale
                ));
            }
            None => {
                let why = if refusals.is_empty() { "no agent is left".to_string() } else { refusals.join("; ") };
                let failure =
                    format!("{who} was lost at {at:.0} s of the cell ({reason}) and no agent took its users: {why}");
                set_handled(format!("redistribution failed: {why}"), Some(failure));
                return;
            }
        }
    }
    set_handled(accounts.join("; "), None);
}

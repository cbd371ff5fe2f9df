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
//!
//! `start` checks the agents and starts their runs, `poll` fetches their windows every second, `loss`
//! records a lost agent and hands its users over, and `finish` downloads the CSVs and writes the record for
//! agents.json.

mod finish;
mod loss;
mod poll;
mod start;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use load_agent::client::AgentClient;
use load_agent::protocol::{RunState, RunStatus, WindowSnapshot};
use load_agent::scenario::Scenario;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::task::{JoinHandle, JoinSet};

use super::local::LocalAgent;
use crate::settings::emulated::OnLoss;
use loss::record_loss;

pub use finish::{AgentReport, AgentsReport, RunReport};

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
    pub fn agent_names(&self) -> Vec<String> {
        self.shared.agents.iter().map(|a| a.name.clone()).collect()
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

//! The control API's wire types (JSON over HTTP, under `/v1`), shared by the agent and its client in `orch`.
//!
//! | method and path                     | body           | answer                                   |
//! |-------------------------------------|----------------|------------------------------------------|
//! | GET  /v1/health                     |                | [`Health`]                               |
//! | GET  /v1/info                       |                | [`AgentInfo`]                            |
//! | POST /v1/runs                       | [`StartRun`]   | 201 [`RunCreated`]                       |
//! | GET  /v1/runs                       |                | [`RunList`]                              |
//! | GET  /v1/runs/{id}                  |                | [`RunStatus`] (with the last closed window) |
//! | GET  /v1/runs/{id}/windows?since=N  |                | [`WindowList`]: closed windows N, N+1, … |
//! | GET  /v1/runs/{id}/stats            |                | [`crate::stats::StatsSnapshot`] (cumulative) |
//! | PATCH /v1/runs/{id}                 | [`ChangeRun`]  | [`RunStatus`]                            |
//! | POST /v1/runs/{id}/stop             |                | [`RunStatus`] (idempotent), see below    |
//! | GET  /v1/runs/{id}/files            |                | [`FileList`]                             |
//! | GET  /v1/runs/{id}/files/{name}     |                | the file's bytes                         |
//! | GET  /metrics                       |                | Prometheus text, locust_exporter names   |
//!
//! Errors answer with [`ApiError`]: 400 (invalid body, `field` names the path), 401 (token), 403 (target not
//! allowed), 404 (unknown run or file), 409 (agent busy), 413 (body too large). A scenario's sizes and numbers have
//! documented limits ([`crate::scenario::limits`]); a body over one is a 400 naming the field, and every request of
//! a scenario must suit the target's protocol (`redis` requests a `redis://` target, HTTP requests an `http://` one).
//!
//! A stop answers once the run is over (users finish requests in flight for 0.5 s at most), so its state is final
//! and the agent's run slot free; after 1.5 s it answers anyway, with the state then. A run ends at its deadline
//! whatever its shape, and is aborted if it has not ended 10 s after its stop or deadline plus its drain time.

use serde::{Deserialize, Serialize};

use crate::scenario::{LoadShape, Scenario};
use crate::stats::EntrySnapshot;

/// Bumped on any incompatible change of these types; `orch` refuses agents of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Header carrying the bearer token: `Authorization: Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    pub protocol_version: u32,
    pub cores: usize,
    pub limits: Limits,
    pub active_runs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Most users one run may have on this agent.
    pub max_users: u32,
    pub max_concurrent_runs: usize,
    /// Largest request body the control API accepts.
    pub max_body_bytes: usize,
}

fn one() -> u32 {
    1
}

/// Starts a run of `scenario` against `target` (an `http://`/`https://` base URL, or `redis://host:port`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub scenario: Scenario,
    pub target: String,
    #[serde(default)]
    pub seed: u64,
    /// This agent's share of the users: users are dealt round-robin, user i runs on agent i % agent_count.
    #[serde(default)]
    pub agent_index: u32,
    /// How many agents share the run: 1 to 256.
    #[serde(default = "one")]
    pub agent_count: u32,
    /// Common start time of all agents (Unix ms); absent = now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_unix_ms: Option<u64>,
    /// Hard stop after this many seconds from the start, whatever the shape says (at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCreated {
    pub run_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for its common start time.
    Scheduled,
    Running,
    /// Followed its shape to the end.
    Finished,
    /// Stopped by a stop call or its deadline.
    Stopped,
    Failed,
}

impl RunState {
    pub fn is_over(self) -> bool {
        matches!(self, RunState::Finished | RunState::Stopped | RunState::Failed)
    }
}

/// One closed one-second window in wire form: histograms included, so windows of several agents merge exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    /// Index of the window since the run started (0, 1, 2, …).
    pub index: u64,
    pub start_unix_s: u64,
    pub users: u64,
    pub entries: Vec<EntrySnapshot>,
    pub total: EntrySnapshot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowList {
    pub windows: Vec<WindowSnapshot>,
}

/// How the generator itself is doing: a saturated generator measures itself, not the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    /// CPU used by the agent process, in % of one core, over the last second.
    pub cpu_pct: f64,
    /// How late timers fired (p99 over the last second), in ms.
    pub timer_lag_p99_ms: f64,
    pub in_flight: u64,
    /// True once the generator was saturated at some point; `reason` says when and why.
    pub suspect: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub run_id: String,
    pub state: RunState,
    pub started_at_unix_ms: Option<u64>,
    pub elapsed_s: f64,
    pub users: u64,
    pub target_users: u64,
    pub requests: u64,
    pub failures: u64,
    /// Open model: iterations that found no free user.
    pub dropped_iterations: u64,
    /// The last closed window, if any.
    pub window: Option<WindowSnapshot>,
    pub windows_closed: u64,
    pub health: GeneratorHealth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunStatus>,
}

/// Changes a running run: a new user target (and spawn rate), or a whole new shape from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<LoadShape>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileList {
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// For invalid bodies: the path of the offending field, e.g. `scenario.users[0].tasks[1].weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

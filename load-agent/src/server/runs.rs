//! The agent's runs: a registry of live runs (driven by the engine in this process) and stored ones (over, their
//! files final: finished here or left by an earlier process), and the `/v1/runs` handlers over it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use tokio::task::JoinHandle;

use super::errors::AgentError;
use super::files::{new_run_id, valid_run_id};
use super::{AppState, ServerConfig, start, store};
use crate::engine::{RunHandle, RunPlan};
use crate::protocol::{RunCreated, RunList, RunStatus, StartRun, WindowList};
use crate::stats::StatsSnapshot;

/// A run this process drives.
#[derive(Clone)]
pub struct LiveRun {
    pub handle: RunHandle,
    pub request: StartRun,
    /// Files of the run that could not be written: shown in its status until they are.
    pub writes: store::WriteProblems,
}

pub enum Run {
    Live(LiveRun),
    /// A run over, served from its folder: one this process finished, or one an earlier process left.
    Stored {
        status: RunStatus,
    },
}

pub struct RunEntry {
    pub id: String,
    pub dir: PathBuf,
    pub created_unix_ms: u64,
    pub run: Run,
}

impl RunEntry {
    pub fn status(&self) -> RunStatus {
        match &self.run {
            Run::Live(live) => {
                let mut status = store::live_status(&self.id, &live.handle);
                live.writes.apply(&mut status);
                status
            }
            Run::Stored { status, .. } => status.clone(),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(&self.run, Run::Live(live) if !live.handle.status().state.is_over())
    }
}

/// The run `/metrics` shows.
pub enum Latest {
    Live(RunHandle),
    Stored(PathBuf),
}

pub struct Registry {
    runs_dir: PathBuf,
    runs: Mutex<BTreeMap<String, RunEntry>>,
    /// Serializes starts, so the run limit holds while a start writes its folder.
    start_gate: tokio::sync::Mutex<()>,
    /// The tasks keeping live runs' folders current, awaited at shutdown.
    persisting: Mutex<Vec<JoinHandle<()>>>,
    /// Turns true at shutdown: tasks still retrying a run's files make one last attempt.
    closing: tokio::sync::watch::Sender<bool>,
    retention: store::Retention,
}

/// How long a stop waits for its run to end before answering: runs against a target that answers stop within a few
/// milliseconds, and `orch` gives a stop 2 s.
const STOP_WAIT: Duration = Duration::from_millis(1500);

/// The runtime runs execute on: threads of their own, so however hard a run works the control API (and the signal
/// that stops the agent) is served by other threads, and the process exits without waiting for the engine's.
/// `None` if it could not be built: runs then share the API's runtime.
fn engine_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static ENGINE: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let built = tokio::runtime::Builder::new_multi_thread().thread_name("load-engine").enable_all().build();
            built.map_err(|e| tracing::warn!("no runtime of their own for runs ({e}): they share the API's")).ok()
        })
        .as_ref()
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Registry {
    /// Opens DATA_DIR/runs, reading the runs an earlier process left there (and deleting those beyond the
    /// retention limits).
    pub fn open(config: &ServerConfig) -> std::io::Result<Registry> {
        let runs_dir = store::open_runs_dir(&config.data_dir)?;
        let runs = store::load_stored(&runs_dir, valid_run_id)
            .into_iter()
            .map(|stored| {
                let entry = RunEntry {
                    id: stored.id.clone(),
                    dir: stored.dir,
                    created_unix_ms: stored.created_unix_ms,
                    run: Run::Stored { status: stored.status },
                };
                (stored.id, entry)
            })
            .collect();
        let registry = Registry {
            runs_dir,
            runs: Mutex::new(runs),
            start_gate: tokio::sync::Mutex::new(()),
            persisting: Mutex::new(Vec::new()),
            closing: tokio::sync::watch::channel(false).0,
            retention: store::Retention { keep_runs: config.keep_runs, keep_days: config.keep_days },
        };
        registry.prune();
        Ok(registry)
    }

    /// Deletes the runs over that the retention limits no longer keep, oldest first.
    fn prune(&self) {
        let doomed: Vec<(String, PathBuf, store::PruneReason)> = {
            let mut runs = self.runs();
            let ages: Vec<store::RunAge> = runs
                .values()
                .map(|r| store::RunAge {
                    id: r.id.clone(),
                    created_unix_ms: r.created_unix_ms,
                    // A live run is never deleted, even once over: its files may still be being written.
                    over: matches!(r.run, Run::Stored { .. }),
                })
                .collect();
            let chosen = self.retention.select(&ages, now_unix_ms());
            chosen.into_iter().filter_map(|(id, why)| runs.remove(&id).map(|run| (id, run.dir, why))).collect()
        };
        for (id, dir, why) in doomed {
            match store::remove_run_dir(&dir) {
                Ok(()) => tracing::info!(run = %id, dir = %dir.display(), "deleted the run's folder: {why}"),
                Err(e) => {
                    tracing::warn!(run = %id, dir = %dir.display(), "cannot delete the run's folder ({why}): {e}")
                }
            }
        }
    }

    fn runs(&self) -> MutexGuard<'_, BTreeMap<String, RunEntry>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs not over yet.
    pub fn active(&self) -> usize {
        self.runs().values().filter(|r| r.is_active()).count()
    }

    /// Looks a run up; malformed and unknown ids are both 404.
    pub fn with_run<T>(&self, id: &str, f: impl FnOnce(&RunEntry) -> Result<T, AgentError>) -> Result<T, AgentError> {
        let runs = self.runs();
        match runs.get(id).filter(|_| valid_run_id(id)) {
            Some(run) => f(run),
            None => Err(AgentError::NotFound(format!("no run {id:?} on this agent"))),
        }
    }

    pub fn dir_of(&self, id: &str) -> Result<PathBuf, AgentError> {
        self.with_run(id, |run| Ok(run.dir.clone()))
    }

    /// Every run, oldest first.
    pub fn list(&self) -> Vec<RunStatus> {
        let runs = self.runs();
        let mut entries: Vec<&RunEntry> = runs.values().collect();
        entries.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        entries.into_iter().map(RunEntry::status).collect()
    }

    /// The run created last.
    pub fn latest(&self) -> Option<Latest> {
        let runs = self.runs();
        let latest = runs.values().max_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)))?;
        Some(match &latest.run {
            Run::Live(live) => Latest::Live(live.handle.clone()),
            Run::Stored { .. } => Latest::Stored(latest.dir.clone()),
        })
    }

    /// Starts a checked run unless `max_runs` runs are going on already (409); writes its folder first. Once the
    /// run is over and its final files are written, it is served from them and its statistics leave memory.
    pub async fn start(
        self: &Arc<Self>,
        request: StartRun,
        request_json: Vec<u8>,
        plan: RunPlan,
        max_runs: usize,
    ) -> Result<String, AgentError> {
        let _gate = self.start_gate.lock().await;
        let active = self.active();
        if active >= max_runs {
            return Err(AgentError::Conflict(format!(
                "the agent already runs {active} run(s), its limit (--max-runs {max_runs}); stop one or wait"
            )));
        }
        let id = loop {
            let id = new_run_id();
            // symlink_metadata: a dangling link counts as taken too.
            if !self.runs().contains_key(&id) && std::fs::symlink_metadata(self.runs_dir.join(&id)).is_err() {
                break id;
            }
        };
        let dir = self.runs_dir.join(&id);
        let status = store::initial_status(&id);
        let written = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || store::create_run_dir(&dir, &request_json, &status)).await
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(AgentError::Internal(format!("cannot create {}: {e}", dir.display()))),
            Err(e) => return Err(AgentError::Internal(e.to_string())),
        }
        let handle = {
            let _engine = engine_runtime().map(|runtime| runtime.enter());
            RunHandle::start(plan)
        };
        let writes = store::WriteProblems::default();
        tracing::info!(run = %id, target = %request.target, scenario = %request.scenario.name, "run started");
        let entry = RunEntry {
            id: id.clone(),
            dir: dir.clone(),
            created_unix_ms: now_unix_ms(),
            run: Run::Live(LiveRun { handle: handle.clone(), request, writes: writes.clone() }),
        };
        // Registered before its files are kept, so the end of the run always finds it to retire.
        self.runs().insert(id.clone(), entry);
        let task = {
            let (registry, id, closing) = (Arc::clone(self), id.clone(), self.closing.subscribe());
            tokio::spawn(async move {
                if store::persist(id.clone(), dir, handle, writes, closing).await {
                    registry.retire(&id);
                    let _ = tokio::task::spawn_blocking(move || registry.prune()).await;
                }
            })
        };
        let mut persisting = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        persisting.retain(|t| !t.is_finished());
        persisting.push(task);
        Ok(id)
    }

    /// Turns a live run that is over into a stored one (its files are final).
    fn retire(&self, id: &str) {
        let mut runs = self.runs();
        if let Some(entry) = runs.get_mut(id)
            && let Run::Live(live) = &entry.run
            && live.handle.status().state.is_over()
        {
            let status = store::live_status(id, &live.handle);
            tracing::info!(run = %id, state = ?status.state, requests = status.requests, "run over");
            entry.run = Run::Stored { status };
        }
    }

    /// Stops every live run and waits (up to `grace`) until their folders hold their final files.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.send_replace(true);
        for entry in self.runs().values() {
            if let Run::Live(live) = &entry.run {
                live.handle.stop();
            }
        }
        let tasks = std::mem::take(&mut *self.persisting.lock().unwrap_or_else(|e| e.into_inner()));
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("some runs did not finish writing their files in {grace:?}");
        }
    }
}

fn body_of(body: Result<Bytes, BytesRejection>, state: &AppState) -> Result<Bytes, AgentError> {
    body.map_err(|rejection| AgentError::from_bytes_rejection(rejection, state.config.max_body_bytes))
}

/// POST /v1/runs
pub async fn start_run(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunCreated>), AgentError> {
    let body = body_of(body, &state)?;
    let (request, plan) = start::check_start(&body, &state.config)?;
    let request_json = store::compact_request(&body);
    let run_id = state.registry.start(request, request_json, plan, state.config.max_runs).await?;
    Ok((StatusCode::CREATED, Json(RunCreated { run_id })))
}

/// GET /v1/runs
pub async fn list_runs(State(state): State<AppState>) -> Json<RunList> {
    Json(RunList { runs: state.registry.list() })
}

/// GET /v1/runs/{id}
pub async fn run_status(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<RunStatus>, AgentError> {
    let UrlPath(id) = path?;
    state.registry.with_run(&id, |run| Ok(Json(run.status())))
}

/// PATCH /v1/runs/{id}
pub async fn change_run(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunStatus>, AgentError> {
    let UrlPath(id) = path?;
    let body = body_of(body, &state)?;
    state.registry.with_run(&id, |run| {
        let over = || AgentError::Conflict(format!("run {id} is over ({:?}): it cannot change", run.status().state));
        let Run::Live(live) = &run.run else { return Err(over()) };
        if live.handle.status().state.is_over() {
            return Err(over());
        }
        let change = start::check_change(&body, &live.request, state.config.max_users)?;
        live.handle.change(&change).map_err(|message| {
            if live.handle.status().state.is_over() { over() } else { AgentError::Invalid { field: None, message } }
        })?;
        Ok(Json(run.status()))
    })
}

/// POST /v1/runs/{id}/stop: idempotent; answers once the run is over (its final state, its slot free), or after
/// [`STOP_WAIT`] with its state then, if its users are still finishing slow requests.
pub async fn stop_run(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<RunStatus>, AgentError> {
    let UrlPath(id) = path?;
    let live = state.registry.with_run(&id, |run| {
        Ok(match &run.run {
            Run::Live(live) => {
                live.handle.stop();
                Some(live.handle.clone())
            }
            Run::Stored { .. } => None,
        })
    })?;
    if let Some(handle) = live {
        let _ = tokio::time::timeout(STOP_WAIT, handle.wait()).await;
    }
    state.registry.with_run(&id, |run| Ok(Json(run.status())))
}

/// Where a run's figures come from: this process's memory, or the run's folder.
enum Source<T> {
    Memory(T),
    Disk(PathBuf),
}

#[derive(serde::Deserialize)]
pub struct Since {
    #[serde(default)]
    since: u64,
}

/// GET /v1/runs/{id}/windows?since=N
pub async fn windows(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Json<WindowList>, AgentError> {
    let UrlPath(id) = path?;
    // An unknown run is a 404 whatever the query says.
    state.registry.with_run(&id, |_| Ok(()))?;
    let Query(Since { since }) = query
        .map_err(|e| AgentError::invalid("since", format!("must be a window index (0, 1, …): {}", e.body_text())))?;
    let source = state.registry.with_run(&id, |run| {
        Ok(match &run.run {
            Run::Live(live) => {
                let collector = live.handle.collector();
                let stats = collector.lock().unwrap_or_else(|e| e.into_inner());
                let windows = stats.history().iter().enumerate().skip(usize::try_from(since).unwrap_or(usize::MAX));
                Source::Memory(windows.map(|(i, w)| store::window_snapshot(i as u64, w)).collect())
            }
            Run::Stored { .. } => Source::Disk(run.dir.clone()),
        })
    })?;
    let windows = match source {
        Source::Memory(windows) => windows,
        Source::Disk(dir) => tokio::task::spawn_blocking(move || store::stored_windows(&dir, since))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
            .map_err(|e| AgentError::Internal(format!("reading run {id}'s windows: {e}")))?,
    };
    Ok(Json(WindowList { windows }))
}

/// GET /v1/runs/{id}/stats
pub async fn stats(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<StatsSnapshot>, AgentError> {
    let UrlPath(id) = path?;
    let source = state.registry.with_run(&id, |run| {
        Ok(match &run.run {
            Run::Live(live) => {
                Source::Memory(live.handle.collector().lock().unwrap_or_else(|e| e.into_inner()).snapshot())
            }
            Run::Stored { .. } => Source::Disk(run.dir.clone()),
        })
    })?;
    match source {
        Source::Memory(snapshot) => Ok(Json(snapshot)),
        Source::Disk(dir) => tokio::task::spawn_blocking(move || store::stored_stats(&dir))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
            .map(Json)
            .ok_or_else(|| AgentError::NotFound(format!("run {id} left no stats"))),
    }
}

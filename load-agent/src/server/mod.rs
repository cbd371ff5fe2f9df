//! The control API (`/v1`, see [`crate::protocol`]): start, watch, change and stop runs; fetch their files.

mod auth;
mod errors;
mod metrics;
mod runs;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rand::Rng;

use crate::engine::{RunHandle, RunPlan, Target};
use crate::protocol::{
    AgentInfo, ChangeRun, FileEntry, FileList, Health, Limits, PROTOCOL_VERSION, RunCreated, RunList, RunStatus,
    StartRun, WindowList,
};
use crate::scenario::LoadShape;
pub use errors::AgentError;
use runs::{RunEntry, live_status, safe_file_name, valid_run_id, window_snapshot};

/// How the agent was started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub token: Option<String>,
    /// `host:port` targets runs may use; empty = any, allowed only when listening on loopback.
    pub allow_targets: Vec<String>,
    pub listening_on_loopback: bool,
    pub data_dir: PathBuf,
    pub max_users: u32,
    pub max_runs: usize,
    pub max_body_bytes: usize,
}

#[derive(Clone)]
pub struct AppState {
    config: Arc<ServerConfig>,
    runs: Arc<Mutex<BTreeMap<String, RunEntry>>>,
    /// The run /metrics shows: the one started last.
    latest: Arc<Mutex<Option<String>>>,
}

/// The agent's router, with runs an earlier process left in the data directory.
pub fn router(config: ServerConfig) -> std::io::Result<Router> {
    let runs_dir = config.data_dir.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let stored = runs::load_stored(&runs_dir).into_iter().map(|r| (r.id.clone(), r)).collect();
    let max_body = config.max_body_bytes;
    let state = AppState { config: Arc::new(config), runs: Arc::new(Mutex::new(stored)), latest: Arc::default() };
    Ok(Router::new()
        .route("/v1/health", get(|| async { Json(Health { status: "ok".into() }) }))
        .route("/v1/info", get(info))
        .route("/v1/runs", post(start_run).get(list_runs))
        .route("/v1/runs/{id}", get(run_status).patch(change_run))
        .route("/v1/runs/{id}/stop", post(stop_run))
        .route("/v1/runs/{id}/windows", get(windows))
        .route("/v1/runs/{id}/stats", get(stats))
        .route("/v1/runs/{id}/files", get(files))
        .route("/v1/runs/{id}/files/{name}", get(download))
        .route("/metrics", get(prometheus))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state))
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, config: ServerConfig) -> std::io::Result<()> {
    let app = router(config)?;
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}

async fn info(State(state): State<AppState>) -> Json<AgentInfo> {
    let active = state.runs.lock().expect("runs lock").values().filter(|r| is_active(r)).count();
    Json(AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: PROTOCOL_VERSION,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        limits: Limits {
            max_users: state.config.max_users,
            max_concurrent_runs: state.config.max_runs,
            max_body_bytes: state.config.max_body_bytes,
        },
        active_runs: active,
    })
}

fn is_active(run: &RunEntry) -> bool {
    run.live.as_ref().is_some_and(|h| !h.status().state.is_over())
}

fn invalid(field: &str, message: impl Into<String>) -> AgentError {
    AgentError::Invalid { field: Some(field.to_string()), message: message.into() }
}

/// Most users a shape asks for at any moment.
fn peak_users(shape: &LoadShape) -> u64 {
    match shape {
        LoadShape::Stages(stages) => stages.iter().map(|s| s.users as u64).max().unwrap_or(0),
        LoadShape::Ramps(ramps) => ramps.iter().map(|r| r.users as u64).max().unwrap_or(0),
        LoadShape::ArrivalRate(open) => open.max_users as u64,
        LoadShape::Trace(_) => 0,
    }
}

async fn start_run(State(state): State<AppState>, body: Bytes) -> Result<impl IntoResponse, AgentError> {
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let mut request: StartRun = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        AgentError::Invalid { field: (path != ".").then_some(path), message: e.inner().to_string() }
    })?;
    if request.scenario.name.is_empty() {
        request.scenario.name = "scenario".into();
    }
    request.scenario.validate().map_err(|(field, message)| invalid(&format!("scenario.{field}"), message))?;
    let target = Target::parse(&request.target).map_err(|message| invalid("target", message))?;
    if request.agent_count == 0 {
        return Err(invalid("agent_count", "must be at least 1"));
    }
    if request.agent_index >= request.agent_count {
        return Err(invalid("agent_index", format!("must be below agent_count {}", request.agent_count)));
    }
    if let Some(deadline) = request.deadline_s
        && !(deadline.is_finite() && deadline > 0.0)
    {
        return Err(invalid("deadline_s", format!("must be a positive number, got {deadline}")));
    }
    let share = peak_users(&request.scenario.shape).div_ceil(request.agent_count as u64);
    if share > state.config.max_users as u64 {
        return Err(invalid(
            "scenario.shape",
            format!("asks this agent for {share} users; it allows at most {} (--max-users)", state.config.max_users),
        ));
    }
    let authority = target.authority();
    let allowed = if state.config.allow_targets.is_empty() {
        state.config.listening_on_loopback
    } else {
        state.config.allow_targets.contains(&authority)
    };
    if !allowed {
        return Err(AgentError::Forbidden(format!(
            "target {authority} is not allowed: start the agent with --allow-target {authority}"
        )));
    }

    let mut runs = state.runs.lock().expect("runs lock");
    let active = runs.values().filter(|r| is_active(r)).count();
    if active >= state.config.max_runs {
        return Err(AgentError::Busy(format!(
            "the agent already runs {active} run(s), its limit (--max-runs {})",
            state.config.max_runs
        )));
    }
    let id = format!("{:016x}", rand::thread_rng().r#gen::<u64>());
    let dir = state.config.data_dir.join("runs").join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::Internal(format!("creating {}: {e}", dir.display())))?;
    runs::write_atomically(&dir.join("request.json"), &serde_json::to_vec_pretty(&request).expect("serializes"))
        .map_err(|e| AgentError::Internal(format!("writing request.json: {e}")))?;
    let handle = RunHandle::start(RunPlan {
        scenario: request.scenario,
        target,
        seed: request.seed,
        agent_index: request.agent_index,
        agent_count: request.agent_count,
        start_at: request.start_at_unix_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        deadline: request.deadline_s.map(Duration::from_secs_f64),
        max_users: state.config.max_users,
    });
    tokio::spawn(runs::persist(id.clone(), dir.clone(), handle.clone()));
    runs.insert(id.clone(), RunEntry { id: id.clone(), dir, live: Some(handle), stored: None });
    *state.latest.lock().expect("latest lock") = Some(id.clone());
    Ok((StatusCode::CREATED, Json(RunCreated { run_id: id })))
}

fn status_of(run: &RunEntry) -> RunStatus {
    match (&run.live, &run.stored) {
        (Some(handle), _) => live_status(&run.id, handle),
        (None, Some(stored)) => stored.clone(),
        (None, None) => unreachable!("a run is live or stored"),
    }
}

/// Looks a run up; malformed and unknown ids are both 404.
fn with_run<T>(
    state: &AppState,
    id: &str,
    f: impl FnOnce(&RunEntry) -> Result<T, AgentError>,
) -> Result<T, AgentError> {
    let runs = state.runs.lock().expect("runs lock");
    match runs.get(id).filter(|_| valid_run_id(id)) {
        Some(run) => f(run),
        None => Err(AgentError::NotFound(format!("no run {id:?} on this agent"))),
    }
}

async fn list_runs(State(state): State<AppState>) -> Json<RunList> {
    let runs = state.runs.lock().expect("runs lock");
    Json(RunList { runs: runs.values().map(status_of).collect() })
}

async fn run_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<RunStatus>, AgentError> {
    with_run(&state, &id, |run| Ok(Json(status_of(run))))
}

async fn change_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RunStatus>, AgentError> {
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let change: ChangeRun = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        AgentError::Invalid { field: (path != ".").then_some(path), message: e.inner().to_string() }
    })?;
    with_run(&state, &id, |run| {
        let handle = run.live.as_ref().filter(|h| !h.status().state.is_over());
        let Some(handle) = handle else { return Err(AgentError::Busy(format!("run {id} is over"))) };
        handle.change(&change).map_err(|message| AgentError::Invalid { field: None, message })?;
        Ok(Json(status_of(run)))
    })
}

async fn stop_run(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<RunStatus>, AgentError> {
    with_run(&state, &id, |run| {
        if let Some(handle) = &run.live {
            handle.stop();
        }
        Ok(Json(status_of(run)))
    })
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn windows(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(Since { since }): Query<Since>,
) -> Result<Json<WindowList>, AgentError> {
    with_run(&state, &id, |run| {
        let windows = match &run.live {
            Some(handle) => {
                let collector = handle.collector();
                let stats = collector.lock().expect("collector lock");
                stats
                    .history()
                    .iter()
                    .enumerate()
                    .skip(since as usize)
                    .map(|(i, w)| window_snapshot(i as u64, w))
                    .collect()
            }
            None => runs::stored_windows(&run.dir, since),
        };
        Ok(Json(WindowList { windows }))
    })
}

async fn stats(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse, AgentError> {
    with_run(&state, &id, |run| match &run.live {
        Some(handle) => {
            let snapshot = handle.collector().lock().expect("collector lock").snapshot();
            Ok(Json(serde_json::to_value(snapshot).expect("serializes")))
        }
        None => std::fs::read(run.dir.join("stats.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .map(Json)
            .ok_or_else(|| AgentError::NotFound(format!("run {id} left no stats"))),
    })
}

async fn files(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<FileList>, AgentError> {
    with_run(&state, &id, |run| {
        let mut files: Vec<FileEntry> = std::fs::read_dir(&run.dir)
            .map_err(|e| AgentError::Internal(e.to_string()))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                safe_file_name(&name).then(|| FileEntry { bytes: e.metadata().map_or(0, |m| m.len()), name })
            })
            .filter(|f| !f.name.ends_with(".tmp"))
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Json(FileList { files }))
    })
}

async fn download(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<impl IntoResponse, AgentError> {
    let not_found = || AgentError::NotFound(format!("run {id} has no file {name:?}"));
    let dir = with_run(&state, &id, |run| Ok(run.dir.clone()))?;
    if !safe_file_name(&name) {
        return Err(not_found());
    }
    let path = dir.join(&name);
    // The name cannot hold separators, but check where it resolves anyway (links).
    let resolved = path.canonicalize().map_err(|_| not_found())?;
    let root = dir.canonicalize().map_err(|_| not_found())?;
    if resolved.parent() != Some(root.as_path()) || !resolved.is_file() {
        return Err(not_found());
    }
    let bytes = std::fs::read(&resolved).map_err(|_| not_found())?;
    let content_type = match name.rsplit('.').next() {
        Some("csv") => "text/csv",
        Some("json") | Some("jsonl") => "application/json",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes))
}

async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let latest = state.latest.lock().expect("latest lock").clone();
    let handle = latest.and_then(|id| state.runs.lock().expect("runs lock").get(&id).and_then(|r| r.live.clone()));
    let text = match handle {
        Some(handle) => {
            let status = handle.status();
            let collector = handle.collector();
            let stats = collector.lock().expect("collector lock");
            metrics::render(Some((&stats, !status.state.is_over(), status.users)))
        }
        None => metrics::render(None),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

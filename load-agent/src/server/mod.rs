//! The control API (see [`crate::protocol`] for the routes and wire types): start, watch, change and stop runs;
//! fetch their files; Prometheus metrics.
//!
//! - [`errors`]: the typed errors and their status codes; every answer, errors included, is JSON.
//! - [`guard`]: Host, Origin and Content-Type, so no web page in a browser can drive the agent.
//! - [`auth`]: the bearer token, compared in constant time; only `/v1/health` is open without it.
//! - [`start`]: request bodies checked field by field (400), the allow-list (403), the user cap.
//! - [`runs`]: the registry of live and stored runs, the run limit (409) and the `/v1/runs` handlers.
//! - [`store`]: each run's folder under `--data-dir`, kept current while it runs and read back after a restart.
//! - [`files`]: listing and downloads that cannot leave a run's folder.
//! - [`metrics`]: `/metrics` with locust_exporter's names.
//! - [`connections`]: the accept loop: header and idle timeouts, the connection cap, graceful shutdown.

mod auth;
mod connections;
mod errors;
mod files;
mod guard;
mod metrics;
mod runs;
mod start;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::protocol::{AgentInfo, Health, Limits, PROTOCOL_VERSION};
pub use auth::{token_matches, usable_token};
pub use connections::{ConnectionLimits, default_max_connections};
pub use errors::AgentError;
pub use files::{safe_file_name, valid_run_id};
pub use guard::check_allow_host;
use runs::Registry;
pub use start::{check_allow_target, shape_over_cap};
pub use store::INTERRUPTED;

/// How the agent was started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token every route but `/v1/health` needs; `None` = open (allowed on loopback only).
    pub token: Option<String>,
    /// `host:port` targets runs may use. When empty, an agent listening on loopback allows any target with a token
    /// and loopback targets without one; an agent beyond loopback allows none.
    pub allow_targets: Vec<String>,
    /// Names clients may give in the Host header besides the agent's own address (checked without a token only).
    pub allow_hosts: Vec<String>,
    pub listening_on_loopback: bool,
    /// The address the agent serves on, for the Host check; [`serve`] sets it from its listener.
    pub local_addr: Option<SocketAddr>,
    /// Timeouts and the connection cap of [`serve`].
    pub connections: ConnectionLimits,
    /// Runs keep their files under `data_dir/runs/<run_id>/`.
    pub data_dir: PathBuf,
    /// Most users one run may have on this agent.
    pub max_users: u32,
    /// Most runs going on at once.
    pub max_runs: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Runs kept (the newest); older runs that are over are deleted. 0 = no limit.
    pub keep_runs: usize,
    /// Runs over and created more than this many days ago are deleted. 0 = no limit.
    pub keep_days: u64,
}

impl ServerConfig {
    /// The defaults of the command line, for `data_dir`, on loopback and without a token.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            token: None,
            allow_targets: Vec::new(),
            allow_hosts: Vec::new(),
            listening_on_loopback: true,
            local_addr: None,
            connections: ConnectionLimits::default(),
            data_dir: data_dir.into(),
            max_users: 50_000,
            max_runs: 2,
            max_body_bytes: 1 << 20,
            keep_runs: 1000,
            keep_days: 30,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    config: Arc<ServerConfig>,
    registry: Arc<Registry>,
}

impl AppState {
    /// Opens the data directory, with the runs an earlier process left there.
    pub fn new(config: ServerConfig) -> std::io::Result<AppState> {
        let registry = Registry::open(&config)?;
        Ok(AppState { config: Arc::new(config), registry: Arc::new(registry) })
    }

    /// Stops every live run and waits (up to `grace`) until their folders hold their final files.
    pub async fn shutdown(&self, grace: Duration) {
        self.registry.shutdown(grace).await;
    }
}

/// The agent's routes over `state`.
pub fn routes(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/v1/health", get(|| async { Json(Health { status: "ok".into() }) }))
        .route("/v1/info", get(info))
        .route("/v1/runs", post(runs::start_run).get(runs::list_runs))
        .route("/v1/runs/{id}", get(runs::run_status).patch(runs::change_run))
        .route("/v1/runs/{id}/stop", post(runs::stop_run))
        .route("/v1/runs/{id}/windows", get(runs::windows))
        .route("/v1/runs/{id}/stats", get(runs::stats))
        .route("/v1/runs/{id}/files", get(files::files))
        .route("/v1/runs/{id}/files/{name}", get(files::download))
        .route("/metrics", get(metrics::prometheus))
        .fallback(|| async { AgentError::NotFound("no such route: see the routes in load-agent's protocol.rs".into()) })
        .method_not_allowed_fallback(|| async { AgentError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        // Outermost: a cross-site request is refused before anything else looks at it.
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::check_request))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The agent's router for `config` (opening its data directory).
pub fn router(config: ServerConfig) -> std::io::Result<Router> {
    Ok(routes(AppState::new(config)?))
}

/// Serves the API on `listener` until `shutdown` resolves (within `config.connections`' limits); then stops the
/// runs going on and waits until their files are final, so a restart finds them stopped rather than interrupted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    config.local_addr = Some(listener.local_addr()?);
    let limits = config.connections;
    let state = AppState::new(config)?;
    connections::serve_connections(listener, routes(state.clone()), limits, shutdown).await;
    state.shutdown(Duration::from_secs(15)).await;
    Ok(())
}

async fn info(State(state): State<AppState>) -> Json<AgentInfo> {
    Json(AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: PROTOCOL_VERSION,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        limits: Limits {
            max_users: state.config.max_users,
            max_concurrent_runs: state.config.max_runs,
            max_body_bytes: state.config.max_body_bytes,
        },
        active_runs: state.registry.active(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::protocol::{ApiError, RunList, RunState, RunStatus};

    pub fn test_config(data_dir: &Path) -> ServerConfig {
        ServerConfig::new(data_dir)
    }

    /// A StartRun body: one user class, one stage of `end_s` seconds and 2 users.
    pub fn start_body(target: &str, end_s: f64) -> Value {
        json!({
            "target": target,
            "seed": 1,
            "deadline_s": 30.0,
            "scenario": {
                "name": "t",
                "users": [{"name": "u", "wait": {"constant": 0.05}, "tasks": [{"name": "t", "requests": [{"method": "GET", "path": "/x"}]}]}],
                "shape": {"stages": [{"end": end_s, "users": 2, "spawn_rate": 100}]}
            }
        })
    }

    async fn call(app: &Router, method: &str, path: &str, body: Option<String>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }

    fn api_error(value: Value) -> ApiError {
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("not an ApiError ({e}): {value}"))
    }

    #[tokio::test]
    async fn malformed_requests_answer_json_errors_with_their_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.max_body_bytes = 2000;
        config.max_users = 5;
        let app = router(config).unwrap();
        let good = start_body("http://127.0.0.1:9", 1.0);
        let mut big = good.clone();
        big["scenario"]["description"] = json!("x".repeat(3000));
        let mut many = good.clone();
        many["scenario"]["shape"]["stages"][0]["users"] = json!(6);
        /// (method, path, body, status, field)
        type Case<'a> = (&'a str, &'a str, Option<String>, u16, Option<&'a str>);
        let cases: [Case; 10] = [
            ("POST", "/v1/runs", Some("{".into()), 400, None),
            ("POST", "/v1/runs", Some("[]".into()), 400, None),
            ("POST", "/v1/runs", Some(json!({"scenario": good["scenario"]}).to_string()), 400, Some("target")),
            ("POST", "/v1/runs", Some(many.to_string()), 400, Some("scenario.shape.stages[0].users")),
            ("POST", "/v1/runs", Some(big.to_string()), 413, None),
            ("GET", "/v1/runs/0123456789abcdef/windows?since=0", None, 404, None),
            ("GET", "/v1/nowhere", None, 404, None),
            ("DELETE", "/v1/runs", None, 405, None),
            ("PATCH", "/v1/runs/0123456789abcdef", Some("{\"users\": 1}".into()), 404, None),
            ("POST", "/v1/runs/not-an-id/stop", None, 404, None),
        ];
        for (method, path, body, status, field) in cases {
            let (code, answer) = call(&app, method, path, body).await;
            assert_eq!(code.as_u16(), status, "{method} {path}: {answer}");
            let error = api_error(answer);
            assert_eq!(error.field.as_deref(), field, "{method} {path}: {error:?}");
        }
    }

    async fn wait_over(app: &Router, id: &str) -> RunStatus {
        for _ in 0..400 {
            let (_, status) = call(app, "GET", &format!("/v1/runs/{id}"), None).await;
            let status: RunStatus = serde_json::from_value(status).unwrap();
            if status.state.is_over() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} did not end");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_are_limited_listed_changed_stopped_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.max_runs = 1;
        let app = router(config.clone()).unwrap();
        // Port 9 (discard) is closed on loopback: requests fail at once, which is fine here.
        let body = start_body("http://127.0.0.1:9", 20.0).to_string();
        let (code, created) = call(&app, "POST", "/v1/runs", Some(body.clone())).await;
        assert_eq!(code, StatusCode::CREATED, "{created}");
        let id = created["run_id"].as_str().unwrap().to_string();
        assert!(valid_run_id(&id), "{id}");
        let (code, busy) = call(&app, "POST", "/v1/runs", Some(body.clone())).await;
        assert_eq!(code, StatusCode::CONFLICT, "{busy}");
        assert!(api_error(busy).error.contains("--max-runs 1"));
        let (_, info) = call(&app, "GET", "/v1/info", None).await;
        assert_eq!(info["active_runs"], 1);

        let (code, bad_query) = call(&app, "GET", &format!("/v1/runs/{id}/windows?since=x"), None).await;
        assert_eq!((code, api_error(bad_query).field.as_deref()), (StatusCode::BAD_REQUEST, Some("since")));
        let (code, changed) = call(&app, "PATCH", &format!("/v1/runs/{id}"), Some("{\"users\": 1}".into())).await;
        assert_eq!(code, StatusCode::OK, "{changed}");
        let (code, wrong) = call(&app, "PATCH", &format!("/v1/runs/{id}"), Some("{\"users\": -1}".into())).await;
        assert_eq!((code, api_error(wrong).field.as_deref()), (StatusCode::BAD_REQUEST, Some("users")));
        for _ in 0..2 {
            let (code, _) = call(&app, "POST", &format!("/v1/runs/{id}/stop"), None).await;
            assert_eq!(code, StatusCode::OK, "stop is idempotent");
        }
        let status = wait_over(&app, &id).await;
        assert_eq!(status.state, RunState::Stopped);
        let (code, over) = call(&app, "PATCH", &format!("/v1/runs/{id}"), Some("{\"users\": 1}".into())).await;
        assert_eq!(code, StatusCode::CONFLICT, "{over}");
        // The slot is free again.
        let (code, second) =
            call(&app, "POST", "/v1/runs", Some(start_body("http://127.0.0.1:9", 0.5).to_string())).await;
        assert_eq!(code, StatusCode::CREATED, "{second}");
        let second = second["run_id"].as_str().unwrap().to_string();
        wait_over(&app, &second).await;
        // Let the final files land (status.json is written last).
        for _ in 0..100 {
            let on_disk: RunStatus = serde_json::from_slice(
                &std::fs::read(dir.path().join("runs").join(&second).join("status.json")).unwrap(),
            )
            .unwrap();
            if on_disk.state.is_over() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, list) = call(&app, "GET", "/v1/runs", None).await;
        let list: RunList = serde_json::from_value(list).unwrap();
        assert_eq!(list.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), [id.as_str(), second.as_str()]);

        // A second router on the same folder (a restarted agent) serves both from disk.
        let reopened = router(config).unwrap();
        let (_, list) = call(&reopened, "GET", "/v1/runs", None).await;
        let list: RunList = serde_json::from_value(list).unwrap();
        assert_eq!(list.runs.len(), 2);
        assert!(list.runs.iter().all(|r| r.state.is_over()), "{list:?}");
        let (code, windows) = call(&reopened, "GET", &format!("/v1/runs/{second}/windows?since=0"), None).await;
        assert_eq!(code, StatusCode::OK);
        let stored_windows = windows["windows"].as_array().unwrap().len() as u64;
        assert_eq!(stored_windows, list.runs[1].windows_closed);
        let (code, stats) = call(&reopened, "GET", &format!("/v1/runs/{second}/stats"), None).await;
        assert_eq!((code, stats["total"]["requests"].as_u64()), (StatusCode::OK, Some(list.runs[1].requests)));
        let (code, metrics) = call(&reopened, "GET", "/metrics", None).await;
        assert_eq!(code, StatusCode::OK);
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(metrics.contains("locust_running 0\n"), "{metrics}");
        assert!(
            metrics.contains(&format!(
                "locust_requests_num_requests{{method=\"\",name=\"Aggregated\"}} {}\n",
                list.runs[1].requests
            )),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_public_agent_without_an_allow_list_refuses_every_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.listening_on_loopback = false;
        config.token = Some("t".into());
        let app = router(config).unwrap();
        let request = Request::post("/v1/runs")
            .header("authorization", "Bearer t")
            .body(Body::from(start_body("http://127.0.0.1:9", 1.0).to_string()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let error: ApiError = serde_json::from_slice(&bytes).unwrap();
        assert!(error.error.contains("--allow-target 127.0.0.1:9"), "{error:?}");
    }
}

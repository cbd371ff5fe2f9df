//! The pod-control API, modelled on the AHPA study's cluster interface, and Prometheus `/metrics`:
//!
//! | method and path                                  | answer                                                  |
//! |--------------------------------------------------|---------------------------------------------------------|
//! | GET  /api/v1/pods[?deployment=NAME]              | `{"pods": [...]}`: name, deployment, status, ready, CPU (metrics-server sample and cumulative seconds), memory, requests and limits |
//! | GET  /api/v1/deployments                         | `{"deployments": [...]}`: replicas (spec), status and ready replicas, bounds, CPU utilization |
//! | GET  /api/v1/deployments/{name}                  | one deployment                                          |
//! | PUT  /api/v1/deployments/{name}/replicas         | body `{"replicas": N}`; answers the deployment          |
//! | POST /api/v1/deployments/{name}/scale-out        | one more replica (409 at the maximum)                   |
//! | POST /api/v1/deployments/{name}/scale-in         | one replica less (409 at the minimum)                   |
//! | GET  /metrics                                    | Prometheus text ([`super::prometheus`])                 |
//! | GET  /healthz                                    | `ok`                                                    |
//!
//! Errors answer `{"error": ..., "field": ...}`: 400 (bad body, `field` names it), 404 (unknown deployment), 409.
//! Replicas set here take effect as a policy's would: new pods start after their start-up delay.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::cluster::Cluster;
use super::prometheus;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub deployment: String,
    /// `Running` once ready, `Pending` while starting.
    pub status: String,
    pub ready: bool,
    /// metrics-server's last sample for the pod, if it has one.
    pub cpu_millicores: Option<f64>,
    pub cpu_usage_seconds: f64,
    pub cpu_request_millicores: f64,
    pub cpu_limit_millicores: f64,
    pub memory_mib: f64,
    pub memory_request_mib: f64,
    pub memory_limit_mib: f64,
    /// Emulated seconds since the cell started (negative: created before it).
    pub created_s: f64,
    pub ready_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentInfo {
    pub name: String,
    pub replicas: u32,
    pub status_replicas: u32,
    pub ready_replicas: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Mean CPU over requests as metrics-server last reported it.
    pub cpu_utilization_pct: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetReplicas {
    replicas: u32,
}

#[derive(Debug, Deserialize)]
struct PodQuery {
    deployment: Option<String>,
}

struct ApiError(StatusCode, String, Option<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": self.1});
        if let Some(field) = self.2 {
            body["field"] = field.into();
        }
        (self.0, Json(body)).into_response()
    }
}

pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/pods", get(pods))
        .route("/api/v1/deployments", get(deployments))
        .route("/api/v1/deployments/{name}", get(deployment))
        .route("/api/v1/deployments/{name}/replicas", put(set_replicas))
        .route("/api/v1/deployments/{name}/scale-out", post(|s: State<Arc<Cluster>>, n: Path<String>| step(s, n, 1)))
        .route("/api/v1/deployments/{name}/scale-in", post(|s: State<Arc<Cluster>>, n: Path<String>| step(s, n, -1)))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into(), None) })
        .with_state(cluster)
}

async fn metrics(State(cluster): State<Arc<Cluster>>) -> Response {
    let text = prometheus::render(&cluster);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Every pod, optionally of one deployment.
pub fn pod_infos(cluster: &Cluster, only: Option<usize>) -> Vec<PodInfo> {
    let control = cluster.control();
    let now_s = control.time_s as f64;
    let mut out = Vec::new();
    for (index, (d, spec)) in control.deployments.iter().zip(&cluster.app.services).enumerate() {
        if only.is_some_and(|o| o != index) {
            continue;
        }
        for pod in &d.pods {
            let ready = pod.is_ready(now_s);
            let sampled = pod.ready_s + crate::sim::METRICS_WINDOW_S as f64 <= d.reported_at_s as f64;
            out.push(PodInfo {
                name: pod.name.clone(),
                deployment: spec.name.clone(),
                status: if ready { "Running" } else { "Pending" }.to_string(),
                ready,
                cpu_millicores: d.reported_m.filter(|_| sampled),
                cpu_usage_seconds: pod.cpu_seconds,
                cpu_request_millicores: spec.request_m,
                cpu_limit_millicores: spec.limit_m,
                memory_mib: if ready { d.memory_mib } else { spec.memory_base_mib },
                memory_request_mib: spec.memory_request_mib,
                memory_limit_mib: spec.memory_limit_mib,
                created_s: pod.created_s,
                ready_s: pod.ready_s,
            });
        }
    }
    out
}

pub fn deployment_info(cluster: &Cluster, index: usize) -> DeploymentInfo {
    let control = cluster.control();
    let now_s = control.time_s as f64;
    let d = &control.deployments[index];
    let spec = &cluster.app.services[index];
    DeploymentInfo {
        name: spec.name.clone(),
        replicas: d.desired,
        status_replicas: d.pods.len() as u32,
        ready_replicas: d.pods.iter().filter(|p| p.is_ready(now_s)).count() as u32,
        min_replicas: spec.min,
        max_replicas: spec.max,
        cpu_utilization_pct: d.reported_m.map(|m| 100.0 * m / spec.request_m),
    }
}

fn find(cluster: &Cluster, name: &str) -> Result<usize, ApiError> {
    cluster.app.service_index(name).ok_or_else(|| {
        ApiError(StatusCode::NOT_FOUND, format!("no deployment {name:?} in app {:?}", cluster.app.name), None)
    })
}

async fn pods(State(cluster): State<Arc<Cluster>>, Query(query): Query<PodQuery>) -> Result<Response, ApiError> {
    let only = query.deployment.as_deref().map(|name| find(&cluster, name)).transpose()?;
    Ok(Json(serde_json::json!({"pods": pod_infos(&cluster, only)})).into_response())
}

async fn deployments(State(cluster): State<Arc<Cluster>>) -> Json<serde_json::Value> {
    let all: Vec<DeploymentInfo> = (0..cluster.app.services.len()).map(|i| deployment_info(&cluster, i)).collect();
    Json(serde_json::json!({"deployments": all}))
}

async fn deployment(State(cluster): State<Arc<Cluster>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let index = find(&cluster, &name)?;
    Ok(Json(deployment_info(&cluster, index)).into_response())
}

fn scale_within_bounds(cluster: &Cluster, index: usize, replicas: i64, field: Option<&str>) -> Result<(), ApiError> {
    let spec = &cluster.app.services[index];
    if replicas < spec.min as i64 || replicas > spec.max as i64 {
        let status = if field.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
        return Err(ApiError(
            status,
            format!("{replicas} replicas is outside {}..{} for {:?}", spec.min, spec.max, spec.name),
            field.map(str::to_string),
        ));
    }
    cluster.scale(index, replicas as u32);
    Ok(())
}

async fn set_replicas(
    State(cluster): State<Arc<Cluster>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let index = find(&cluster, &name)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let request: SetReplicas = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { "replicas".to_string() } else { field };
        ApiError(StatusCode::BAD_REQUEST, e.inner().to_string(), Some(field))
    })?;
    scale_within_bounds(&cluster, index, request.replicas as i64, Some("replicas"))?;
    Ok(Json(deployment_info(&cluster, index)).into_response())
}

async fn step(State(cluster): State<Arc<Cluster>>, Path(name): Path<String>, by: i64) -> Result<Response, ApiError> {
    let index = find(&cluster, &name)?;
    let current = cluster.control().deployments[index].desired as i64;
    scale_within_bounds(&cluster, index, current + by, None)?;
    Ok(Json(deployment_info(&cluster, index)).into_response())
}

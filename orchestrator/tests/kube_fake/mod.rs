//! A stateful fake Kubernetes API server for tests without a cluster: an axum Router (a tower Service) that a
//! test hands to `kube::Client::new` in process, or serves on 127.0.0.1:0 for the real `orch` binary.
//!
//! Its cluster is the emulated app (`orchestrator::backends::emulated::Emulator`) serving the app model over real HTTP:
//! deployments are the emulator's, with scale subresources; patching spec.replicas starts or stops emulator pods,
//! which turn ready after the model's start-up delay; Pods and PodMetrics come from the emulator's pods (CPU
//! from their cumulative CPU seconds over a metrics-server resolution of `metric_resolution_s`); an applied HPA
//! runs the project's port of the upstream controller every `hpa_sync_s` on those PodMetrics, scales the
//! emulator and gets a status. Load agents send their requests to [`FakeCluster::app_url`]. It also holds an
//! unrelated deployment (never to be touched), HPAs, VPA and ScaledObject lists (or their CRDs absent: 404),
//! Jobs and ConfigMaps, and answers 401/403/404/409 with Kubernetes' Status bodies.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use orchestrator::app::AppModel;
use orchestrator::backends::emulated::{Emulator, EmulatorSettings};
use orchestrator::hpa::{self, ControllerConfig, HpaController, MetricSample, PodPhase, PodSample};
use serde_json::{Value, json};

/// A write the fake received (anything but GET).
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub struct Options {
    pub hpa_sync_s: u64,
    pub metric_resolution_s: u64,
    /// The bearer token requests must carry (401 otherwise); None accepts any.
    pub token: Option<String>,
    /// VerticalPodAutoscalers in the namespace; None: the CRD is not installed (404).
    pub vpas: Option<Vec<Value>>,
    pub scaled_objects: Option<Vec<Value>>,
    /// HPAs present before the run (not orch's).
    pub hpas: Vec<Value>,
    /// Replicas of the app's deployments before the run (default: the model's initial).
    pub replicas: BTreeMap<String, u32>,
    /// The kubelet's volumes: PersistentVolumeClaim name -> host folder (Job pods mount it).
    pub claims: BTreeMap<String, std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hpa_sync_s: 3,
            metric_resolution_s: 2,
            token: None,
            vpas: None,
            scaled_objects: None,
            hpas: Vec::new(),
            replicas: BTreeMap::new(),
            claims: BTreeMap::new(),
        }
    }
}

struct Hpa {
    object: Value,
    controller: HpaController,
    /// None: the unrelated deployment, which the fake's controller leaves alone.
    service: Option<usize>,
}

pub struct State_ {
    pub namespace: String,
    app: AppModel,
    pub time_s: u64,
    start_unix_ms: i64,
    hpas: BTreeMap<String, Hpa>,
    pub vpas: Option<Vec<Value>>,
    pub scaled_objects: Option<Vec<Value>>,
    pub jobs: BTreeMap<String, Value>,
    pub config_maps: BTreeMap<String, Value>,
    /// Pods of Jobs, by name; their processes run on this machine.
    job_pods: BTreeMap<String, JobPod>,
    claims: BTreeMap<String, std::path::PathBuf>,
    pub writes: Vec<Write>,
    /// Requests answered 403 when their method and path start like this.
    pub forbidden: Vec<(String, String)>,
    /// Requests answered 409 (a conflicting change), same matching.
    pub conflicts: Vec<(String, String)>,
    token: Option<String>,
    /// Per pod: (time, cumulative CPU seconds), for metrics-server's rate.
    cpu_history: BTreeMap<String, VecDeque<(u64, f64)>>,
    options_hpa_sync_s: u64,
    metric_resolution_s: u64,
    resource_version: u64,
    /// The unrelated deployment's replicas.
    pub unrelated_replicas: i32,
}

type Shared = Arc<Mutex<State_>>;

pub struct FakeCluster {
    pub state: Shared,
    emulator: Arc<Emulator>,
    pub runtime: tokio::runtime::Runtime,
    served: Option<SocketAddr>,
}

pub const UNRELATED: &str = "unrelated";

impl FakeCluster {
    /// The app model's deployments in its namespace, served by an emulator.
    pub fn start(app: &AppModel, options: Options) -> FakeCluster {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let model = EmulatorSettings { time_scale: 1.0, pod_concurrency: 1, cpu: Default::default() };
        let emulator = runtime
            .block_on(Emulator::start(
                app,
                &model,
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
                1,
                Duration::from_secs(5),
            ))
            .unwrap();
        let replicas: Vec<u32> = app
            .services
            .iter()
            .map(|s| options.replicas.get(&s.name).copied().unwrap_or(s.replicas.initial()))
            .collect();
        emulator.cluster.reset(&replicas);
        let mut hpas = BTreeMap::new();
        for object in options.hpas {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            hpas.insert(name, hpa_from(object, app).expect("a valid HPA"));
        }
        let state = Arc::new(Mutex::new(State_ {
            namespace: app.namespace.clone(),
            app: app.clone(),
            time_s: 0,
            start_unix_ms: now_unix_ms(),
            hpas,
            vpas: options.vpas,
            scaled_objects: options.scaled_objects,
            jobs: BTreeMap::new(),
            config_maps: BTreeMap::new(),
            job_pods: BTreeMap::new(),
            claims: options.claims,
            writes: Vec::new(),
            forbidden: Vec::new(),
            conflicts: Vec::new(),
            token: options.token,
            cpu_history: BTreeMap::new(),
            options_hpa_sync_s: options.hpa_sync_s,
            metric_resolution_s: options.metric_resolution_s,
            resource_version: 1,
            unrelated_replicas: 3,
        }));
        let emulator = Arc::new(emulator);
        let fake = FakeCluster { state, emulator, runtime, served: None };
        fake.start_clock();
        fake
    }

    /// The emulated app's URL: the load agents' target.
    pub fn app_url(&self) -> String {
        self.emulator.target_url()
    }

    /// The emulator's /metrics (Istio, cAdvisor and kube-state-metrics names).
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.emulator.control_url())
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The API as a tower Service.
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state((Arc::clone(&self.state), Arc::clone(&self.emulator)))
    }

    /// A kube client talking to the router in process.
    pub fn client(&self) -> kube::Client {
        // The client's buffer task needs a runtime to be spawned on.
        let _inside = self.runtime.enter();
        kube::Client::new(self.router(), "default")
    }

    /// Serves the API on 127.0.0.1:0 and returns its URL.
    pub fn serve(&mut self) -> String {
        let router = self.router();
        let listener = self.runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        self.runtime.spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        self.served = Some(address);
        format!("http://{address}")
    }

    /// A kubeconfig for the served API, with `token` as the user's bearer token.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) {
        let server = format!("http://{}", self.served.expect("serve() first"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{server}\"}}\nusers:\n- \
             name: tester\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: \
             tester, namespace: default}}\ncurrent-context: fake\n"
        );
        std::fs::write(path, text).unwrap();
    }

    /// Every deployment's spec.replicas, by name (the unrelated one included).
    pub fn replicas(&self) -> BTreeMap<String, i32> {
        let state = self.state.lock().unwrap();
        let control = self.emulator.cluster.control();
        let mut out: BTreeMap<String, i32> = state
            .app
            .services
            .iter()
            .zip(&control.deployments)
            .map(|(s, d)| (s.name.clone(), d.desired as i32))
            .collect();
        out.insert(UNRELATED.into(), state.unrelated_replicas);
        out
    }

    pub fn hpa_names(&self) -> Vec<String> {
        self.state.lock().unwrap().hpas.keys().cloned().collect()
    }

    pub fn job_names(&self) -> Vec<String> {
        self.state.lock().unwrap().jobs.keys().cloned().collect()
    }

    pub fn config_map_names(&self) -> Vec<String> {
        self.state.lock().unwrap().config_maps.keys().cloned().collect()
    }

    /// Evicts the running pods of Jobs, as a node drain would: the process is killed and the pod fails with a
    /// DisruptionTarget condition. Returns how many.
    pub fn evict_job_pods(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        let mut evicted = 0;
        for pod in state.job_pods.values_mut().filter(|p| p.pid.is_some()) {
            pod.evicted = true;
            unsafe { libc::kill(pod.pid.unwrap() as i32, libc::SIGKILL) };
            evicted += 1;
        }
        evicted
    }

    /// Pods of Jobs still listed (their processes running or not yet reaped).
    pub fn job_pod_names(&self) -> Vec<String> {
        self.state.lock().unwrap().job_pods.keys().cloned().collect()
    }

    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().unwrap().writes.clone()
    }

    fn start_clock(&self) {
        let state = Arc::clone(&self.state);
        let emulator = Arc::clone(&self.emulator);
        self.runtime.spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.tick().await;
            loop {
                interval.tick().await;
                let mut state = state.lock().unwrap();
                state.time_s += 1;
                let t = state.time_s;
                emulator.cluster.tick(t);
                state.record_cpu(&emulator);
                if t.is_multiple_of(state.options_hpa_sync_s) {
                    state.sync_hpas(&emulator);
                }
            }
        });
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339(unix_ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(unix_ms).unwrap().to_string()
}

fn hpa_from(object: Value, app: &AppModel) -> Result<Hpa, String> {
    let mut manifest = object.clone();
    manifest.as_object_mut().unwrap().remove("status");
    let meta = manifest["metadata"].clone();
    manifest["metadata"] = json!({"name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"]});
    if manifest["metadata"]["labels"].is_null() {
        manifest["metadata"].as_object_mut().unwrap().remove("labels");
    }
    if manifest["metadata"]["namespace"].is_null() {
        manifest["metadata"].as_object_mut().unwrap().remove("namespace");
    }
    let parsed: hpa::HorizontalPodAutoscaler =
        serde_json::from_value(manifest).map_err(|e| format!("not an autoscaling/v2 HPA: {e}"))?;
    let target = &parsed.spec.scale_target_ref.name;
    let service = app.service_index(target);
    if service.is_none() && target != UNRELATED {
        return Err(format!("no deployment {target}"));
    }
    let config = ControllerConfig::default();
    Ok(Hpa { object, controller: HpaController::new(&parsed, config), service })
}

impl State_ {
    fn unix_ms(&self, emulated_s: f64) -> i64 {
        self.start_unix_ms + (emulated_s * 1000.0) as i64
    }

    fn record_cpu(&mut self, emulator: &Emulator) {
        let control = emulator.cluster.control();
        let keep = self.metric_resolution_s + 1;
        let mut alive = Vec::new();
        for deployment in &control.deployments {
            for pod in &deployment.pods {
                let history = self.cpu_history.entry(pod.name.clone()).or_default();
                history.push_back((self.time_s, pod.cpu_seconds));
                while history.len() as u64 > keep {
                    history.pop_front();
                }
                alive.push(pod.name.clone());
            }
        }
        self.cpu_history.retain(|name, _| alive.contains(name));
    }

    /// metrics-server: (millicores, bytes) of a pod ready for a whole resolution window.
    fn pod_usage(&self, name: &str, ready_s: f64, memory_mib: f64) -> Option<(i64, i64)> {
        let history = self.cpu_history.get(name)?;
        let (last_t, last_cpu) = *history.back()?;
        let (first_t, first_cpu) = *history.iter().find(|(t, _)| last_t - t <= self.metric_resolution_s)?;
        if last_t - first_t < self.metric_resolution_s || (first_t as f64) < ready_s {
            return None;
        }
        let milli = ((last_cpu - first_cpu) / (last_t - first_t) as f64 * 1000.0).round() as i64;
        Some((milli, (memory_mib * 1024.0 * 1024.0) as i64))
    }

    fn pod_samples(&self, emulator: &Emulator, service: usize) -> Vec<PodSample> {
        let spec = &self.app.services[service];
        let control = emulator.cluster.control();
        let deployment = &control.deployments[service];
        let now = self.time_s as f64;
        deployment
            .pods
            .iter()
            .map(|pod| {
                let ready = pod.is_ready(now);
                let usage = self.pod_usage(&pod.name, pod.ready_s, deployment.memory_mib);
                PodSample {
                    name: pod.name.clone(),
                    phase: PodPhase::Running,
                    deleting: false,
                    ready: Some(ready),
                    ready_transition_ms: ((if ready { pod.ready_s } else { pod.created_s }) * 1000.0) as i64,
                    // Pods there before the fake started are long past the HPA's CPU initialization period.
                    start_time_ms: Some(if pod.created_s < 0.0 { -600_000 } else { (pod.created_s * 1000.0) as i64 }),
                    cpu_request_milli: spec.cpu.request_m as i64,
                    memory_request_bytes: (spec.memory.request_mib * 1024.0 * 1024.0) as i64,
                    metric: usage.map(|(cpu, memory)| MetricSample {
                        cpu_milli: cpu,
                        memory_bytes: memory,
                        timestamp_ms: self.time_s as i64 * 1000,
                        window_ms: self.metric_resolution_s as i64 * 1000,
                    }),
                }
            })
            .collect()
    }

    /// The HPA controller's sync: each HPA reconciles and scales its target, and gets a status.
    fn sync_hpas(&mut self, emulator: &Emulator) {
        let names: Vec<String> = self.hpas.keys().cloned().collect();
        for name in names {
            let Some(service) = self.hpas[&name].service else { continue };
            let pods = self.pod_samples(emulator, service);
            let spec_replicas = emulator.cluster.control().deployments[service].desired as i32;
            let now_ms = self.time_s as i64 * 1000;
            let start_unix_ms = self.start_unix_ms;
            let hpa = self.hpas.get_mut(&name).unwrap();
            let result = hpa.controller.reconcile(now_ms, spec_replicas, spec_replicas, &pods);
            let with_metric: Vec<&PodSample> =
                pods.iter().filter(|p| p.metric.is_some() && p.ready == Some(true)).collect();
            let used: i64 = with_metric.iter().map(|p| p.metric.as_ref().unwrap().cpu_milli).sum();
            let requested: i64 = with_metric.iter().map(|p| p.cpu_request_milli).sum();
            let mut status = json!({
                "currentReplicas": spec_replicas,
                "desiredReplicas": if result.rescale { result.desired_replicas } else { spec_replicas },
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "lastTransitionTime": rfc3339(start_unix_ms + now_ms),
                     "reason": if result.rescale { "SucceededRescale" } else { "ReadyForNewScale" },
                     "message": result.reason.clone()},
                    {"type": "ScalingActive", "status": if requested > 0 { "True" } else { "False" },
                     "lastTransitionTime": rfc3339(start_unix_ms + now_ms),
                     "reason": if requested > 0 { "ValidMetricFound" } else { "FailedGetResourceMetric" },
                     "message": "the HPA was able to compute a replica count"}
                ]
            });
            if requested > 0 {
                status["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "current": {
                    "averageUtilization": (100 * used / requested), "averageValue": format!("{}m", used / with_metric.len() as i64)}}}]);
            }
            if result.rescale {
                status["lastScaleTime"] = rfc3339(start_unix_ms + now_ms).into();
            }
            hpa.object["status"] = status;
            if result.rescale {
                emulator.cluster.scale(service, result.desired_replicas.max(0) as u32);
            }
        }
    }

    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }
}

fn status(code: u16, reason: &str, message: &str, kind: &str, name: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
        "reason": reason, "details": {"name": name, "kind": kind}, "code": code
    });
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(404, "NotFound", &format!("{kind} \"{name}\" not found"), kind, name)
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Response {
    ok(json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items}))
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let map = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

type AppState = (Shared, Arc<Emulator>);

async fn handle(
    State((shared, emulator)): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut state = shared.lock().unwrap();
    if let Some(token) = &state.token {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if given != format!("Bearer {token}") {
            return status(401, "Unauthorized", "Unauthorized", "", "");
        }
    }
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let matches = |rules: &[(String, String)]| rules.iter().any(|(m, p)| *m == method.as_str() && path.starts_with(p));
    if matches(&state.forbidden) {
        return status(
            403,
            "Forbidden",
            &format!("{} {path} is forbidden: User \"tester\" cannot do this", method.as_str()),
            "",
            "",
        );
    }
    if method != Method::GET {
        state.writes.push(Write { method: method.to_string(), path: path.clone(), body: body.clone() });
    }
    if matches(&state.conflicts) {
        return status(
            409,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version",
            "",
            "",
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let selector = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "labelSelector").map(|(_, v)| v.to_string())
    });
    if let Some(response) =
        jobs::handle(&shared, &mut state, &method, &segments, &body, selector.as_deref(), uri.query())
    {
        return response;
    }
    let ns = state.namespace.clone();
    let in_ns = |s: &str| s == ns;
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "v1", "namespaces", n, "pods"]) if in_ns(n) => {
            let mut pods = state.pods(&emulator);
            if let Some(selector) = &selector {
                let selector = orchestrator::backends::kubernetes::observe::Selector::parse(selector).unwrap();
                pods.retain(|p| selector.matches(&labels_of(p)));
            }
            list("PodList", "v1", pods)
        }
        ("GET", ["apis", "apps", "v1", "namespaces", n, "deployments"]) if in_ns(n) => {
            let items = state.deployments(&emulator);
            list("DeploymentList", "apps/v1", items)
        }
        ("GET", ["apis", "apps", "v1", "namespaces", n, "deployments", name]) if in_ns(n) => {
            match state.deployments(&emulator).into_iter().find(|d| d["metadata"]["name"] == *name) {
                Some(d) => ok(d),
                None => not_found("deployments.apps", name),
            }
        }
        (m @ ("GET" | "PATCH"), ["apis", "apps", "v1", "namespaces", n, "deployments", name, "scale"]) if in_ns(n) => {
            let service = state.app.service_index(name);
            if service.is_none() && *name != UNRELATED {
                return not_found("deployments.apps", name);
            }
            if m == "PATCH" {
                let Some(replicas) = body.pointer("/spec/replicas").and_then(Value::as_i64) else {
                    return status(422, "Invalid", "spec.replicas: Required value", "Scale", name);
                };
                match service {
                    Some(s) => emulator.cluster.scale(s, replicas.max(0) as u32),
                    None => state.unrelated_replicas = replicas as i32,
                }
            }
            let replicas = match service {
                Some(s) => emulator.cluster.control().deployments[s].desired as i64,
                None => state.unrelated_replicas as i64,
            };
            ok(json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": state.next_version()},
                "spec": {"replicas": replicas}, "status": {"replicas": replicas, "selector": format!("app={name}")}}))
        }
        ("GET", ["apis", "metrics.k8s.io", "v1beta1", "namespaces", n, "pods"]) if in_ns(n) => {
            list("PodMetricsList", "metrics.k8s.io/v1beta1", state.pod_metrics(&emulator))
        }
        ("GET", ["apis", "autoscaling", "v2", "namespaces", n, "horizontalpodautoscalers"]) if in_ns(n) => {
            let items = state.hpas.values().map(|h| h.object.clone()).collect();
            list("HorizontalPodAutoscalerList", "autoscaling/v2", items)
        }
        ("GET", ["apis", "autoscaling", "v2", "namespaces", n, "horizontalpodautoscalers", name]) if in_ns(n) => {
            match state.hpas.get(*name) {
                Some(h) => ok(h.object.clone()),
                None => not_found("horizontalpodautoscalers.autoscaling", name),
            }
        }
        ("POST", ["apis", "autoscaling", "v2", "namespaces", n, "horizontalpodautoscalers"]) if in_ns(n) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if state.hpas.contains_key(&name) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("horizontalpodautoscalers.autoscaling \"{name}\" already exists"),
                    "horizontalpodautoscalers",
                    &name,
                );
            }
            let mut object = body.clone();
            object["metadata"]["resourceVersion"] = state.next_version().into();
            object["metadata"]["uid"] = format!("uid-{name}").into();
            object["metadata"]["creationTimestamp"] = rfc3339(now_unix_ms()).into();
            object["status"] = json!({"currentReplicas": 0, "desiredReplicas": 0});
            match hpa_from(object.clone(), &state.app) {
                Ok(hpa) => {
                    state.hpas.insert(name, hpa);
                    (StatusCode::CREATED, axum::Json(object)).into_response()
                }
                Err(message) => status(422, "Invalid", &message, "HorizontalPodAutoscaler", &name),
            }
        }
        ("DELETE", ["apis", "autoscaling", "v2", "namespaces", n, "horizontalpodautoscalers", name]) if in_ns(n) => {
            match state.hpas.remove(*name) {
                Some(h) => ok(h.object),
                None => not_found("horizontalpodautoscalers.autoscaling", name),
            }
        }
        (m, ["apis", group, version, "namespaces", n, plural, rest @ ..])
            if in_ns(n)
                && matches!(
                    (*group, *version, *plural),
                    ("autoscaling.k8s.io", "v1", "verticalpodautoscalers") | ("keda.sh", "v1alpha1", "scaledobjects")
                ) =>
        {
            let vpa = *plural == "verticalpodautoscalers";
            let kind = if vpa { "VerticalPodAutoscaler" } else { "ScaledObject" };
            let api_version = format!("{group}/{version}");
            let objects = if vpa { &mut state.vpas } else { &mut state.scaled_objects };
            let Some(objects) = objects.as_mut() else {
                return status(404, "NotFound", "the server could not find the requested resource", "", "");
            };
            match (m, rest) {
                ("GET", []) => list(&format!("{kind}List"), &api_version, objects.clone()),
                ("PATCH", [name]) => match objects.iter_mut().find(|o| o["metadata"]["name"] == *name) {
                    Some(object) => {
                        merge_patch(object, &body);
                        ok(object.clone())
                    }
                    None => not_found(plural, name),
                },
                _ => status(405, "MethodNotAllowed", "not supported by the fake", "", ""),
            }
        }
        (_, ["api", "v1", "namespaces", n, ..]) | (_, ["apis", _, _, "namespaces", n, ..]) if !in_ns(n) => {
            if method == Method::GET && (segments.len() == 5 || segments.len() == 6) {
                list("List", "v1", Vec::new())
            } else {
                not_found("object", segments.last().unwrap_or(&""))
            }
        }
        _ => status(404, "NotFound", "the server could not find the requested resource", "", ""),
    }
}

impl State_ {
    fn pods(&self, emulator: &Emulator) -> Vec<Value> {
        let control = emulator.cluster.control();
        let now = self.time_s as f64;
        let mut out = Vec::new();
        for (spec, deployment) in self.app.services.iter().zip(&control.deployments) {
            for pod in &deployment.pods {
                let ready = pod.is_ready(now);
                let created = self.unix_ms(pod.created_s.max(-600.0));
                let transition = self.unix_ms(if ready { pod.ready_s } else { pod.created_s.max(-600.0) });
                out.push(json!({
                    "metadata": {"name": pod.name, "namespace": self.namespace, "labels": {"app": spec.name},
                                 "creationTimestamp": rfc3339(created)},
                    "spec": {"containers": [{"name": "server", "image": format!("{}:fake", spec.name), "resources": {
                        "requests": {"cpu": format!("{}m", spec.cpu.request_m), "memory": format!("{}Mi", spec.memory.request_mib)},
                        "limits": {"cpu": format!("{}m", spec.cpu.limit_m), "memory": format!("{}Mi", spec.memory.limit_mib)}}}]},
                    "status": {"phase": "Running", "startTime": rfc3339(created), "conditions": [
                        {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": rfc3339(transition)}
                    ]}
                }));
            }
        }
        out
    }

    fn deployments(&self, emulator: &Emulator) -> Vec<Value> {
        let control = emulator.cluster.control();
        let now = self.time_s as f64;
        let mut out: Vec<Value> = self
            .app
            .services
            .iter()
            .zip(&control.deployments)
            .map(|(spec, d)| {
                let ready = d.pods.iter().filter(|p| p.is_ready(now)).count();
                deployment_json(&spec.name, &self.namespace, d.desired as i64, d.pods.len() as i64, ready as i64)
            })
            .collect();
        let r = self.unrelated_replicas as i64;
        out.push(deployment_json(UNRELATED, &self.namespace, r, r, r));
        out
    }

    fn pod_metrics(&self, emulator: &Emulator) -> Vec<Value> {
        let control = emulator.cluster.control();
        let mut out = Vec::new();
        for (spec, deployment) in self.app.services.iter().zip(&control.deployments) {
            for pod in &deployment.pods {
                let Some((milli, bytes)) = self.pod_usage(&pod.name, pod.ready_s, deployment.memory_mib) else {
                    continue;
                };
                out.push(json!({
                    "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {"name": pod.name, "namespace": self.namespace, "labels": {"app": spec.name}},
                    "timestamp": rfc3339(self.unix_ms(self.time_s as f64)),
                    "window": format!("{}s", self.metric_resolution_s),
                    "containers": [{"name": "server", "usage": {"cpu": format!("{milli}m"), "memory": format!("{}Ki", bytes / 1024)}}]
                }));
            }
        }
        out
    }
}

fn deployment_json(name: &str, namespace: &str, desired: i64, pods: i64, ready: i64) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}, "generation": 1},
        "spec": {"replicas": desired, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "server", "image": format!("{name}:fake")}]}}},
        "status": {"observedGeneration": 1, "replicas": pods, "readyReplicas": ready, "availableReplicas": ready,
                   "updatedReplicas": pods, "unavailableReplicas": pods - ready}
    })
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

/// A Job's pod: the object the API lists, its log, and its process while it runs.
struct JobPod {
    object: Value,
    log: Arc<Mutex<String>>,
    pid: Option<u32>,
    /// Killed by [`FakeCluster::evict_job_pods`].
    evicted: bool,
    /// Deleted through the API: it goes once its process has stopped.
    deleted: bool,
}

/// Jobs, their pods run as local processes by a minimal kubelet, and ConfigMaps, in any namespace.
mod jobs {
    use std::io::Read;
    use std::process::{Command, Stdio};

    use super::*;

    pub fn handle(
        shared: &Shared,
        state: &mut State_,
        method: &Method,
        segments: &[&str],
        body: &Value,
        selector: Option<&str>,
        query: Option<&str>,
    ) -> Option<Response> {
        let select = |items: Vec<Value>| -> Vec<Value> {
            match selector {
                Some(text) => {
                    let selector = orchestrator::backends::kubernetes::observe::Selector::parse(text).unwrap();
                    items.into_iter().filter(|o| selector.matches(&labels_of(o))).collect()
                }
                None => items,
            }
        };
        let immediate = query.is_some_and(|q| q.contains("gracePeriodSeconds=0"))
            || body.get("gracePeriodSeconds").and_then(Value::as_i64) == Some(0);
        Some(match (method.as_str(), segments) {
            ("POST", ["api", "v1", "namespaces", _, "configmaps"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                if state.config_maps.contains_key(&name) {
                    return Some(status(
                        409,
                        "AlreadyExists",
                        &format!("configmaps \"{name}\" already exists"),
                        "configmaps",
                        &name,
                    ));
                }
                state.config_maps.insert(name, body.clone());
                (StatusCode::CREATED, axum::Json(body.clone())).into_response()
            }
            ("GET", ["api", "v1", "namespaces", _, "configmaps"]) => {
                list("ConfigMapList", "v1", select(state.config_maps.values().cloned().collect()))
            }
            ("PATCH", ["api", "v1", "namespaces", _, "configmaps", name]) => match state.config_maps.get_mut(*name) {
                Some(object) => {
                    merge_patch(object, body);
                    ok(object.clone())
                }
                None => not_found("configmaps", name),
            },
            ("DELETE", ["api", "v1", "namespaces", _, "configmaps", name]) => match state.config_maps.remove(*name) {
                Some(object) => ok(object),
                None => not_found("configmaps", name),
            },
            ("POST", ["apis", "batch", "v1", "namespaces", _, "jobs"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                if state.jobs.contains_key(&name) {
                    return Some(status(
                        409,
                        "AlreadyExists",
                        &format!("jobs.batch \"{name}\" already exists"),
                        "jobs",
                        &name,
                    ));
                }
                let mut job = body.clone();
                job["status"] = json!({"active": 1});
                state.jobs.insert(name.clone(), job.clone());
                if let Err(message) = start_pod(shared, state, &job) {
                    return Some(status(422, "Invalid", &message, "jobs", &name));
                }
                (StatusCode::CREATED, axum::Json(job)).into_response()
            }
            ("GET", ["apis", "batch", "v1", "namespaces", _, "jobs"]) => {
                list("JobList", "batch/v1", select(state.jobs.values().cloned().collect()))
            }
            ("GET", ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => match state.jobs.get(*name) {
                Some(job) => ok(job.clone()),
                None => not_found("jobs.batch", name),
            },
            ("DELETE", ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => match state.jobs.remove(*name) {
                Some(job) => {
                    for pod in state.job_pods.values().filter(|p| p.object["metadata"]["labels"]["job-name"] == *name) {
                        if let Some(pid) = pod.pid {
                            stop(
                                pid,
                                immediate,
                                pod.object["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
                            );
                        }
                    }
                    // Pods whose process already ended go with their Job.
                    state
                        .job_pods
                        .retain(|_, p| p.object["metadata"]["labels"]["job-name"] != *name || p.pid.is_some());
                    ok(job)
                }
                None => not_found("jobs.batch", name),
            },
            // A Job's pods, in any namespace (the app's pods are listed by the caller).
            ("GET", ["api", "v1", "namespaces", n, "pods"])
                if *n != state.namespace || selector.is_some_and(|s| s.contains("job-name")) =>
            {
                list("PodList", "v1", select(state.job_pods.values().map(|p| p.object.clone()).collect()))
            }
            ("DELETE", ["api", "v1", "namespaces", _, "pods", name]) if state.job_pods.contains_key(*name) => {
                let pod = state.job_pods.get_mut(*name).unwrap();
                let object = pod.object.clone();
                match pod.pid {
                    Some(pid) => {
                        pod.deleted = true;
                        stop(pid, immediate, object["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
                    }
                    None => {
                        state.job_pods.remove(*name);
                    }
                }
                ok(object)
            }
            ("GET", ["api", "v1", "namespaces", _, "pods", name, "log"]) => match state.job_pods.get(*name) {
                Some(pod) => (StatusCode::OK, pod.log.lock().unwrap().clone()).into_response(),
                None => not_found("pods", name),
            },
            _ => return None,
        })
    }

    fn stop(pid: u32, immediate: bool, grace_s: u64) {
        unsafe { libc::kill(pid as i32, if immediate { libc::SIGKILL } else { libc::SIGTERM }) };
        if !immediate {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(grace_s));
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            });
        }
    }

    /// The kubelet: the init container's copy of the ConfigMap into the claim, then the `cell` container as a
    /// local process (`orch` is this build's binary, the mount path the claim's host folder).
    fn start_pod(shared: &Shared, state: &mut State_, job: &Value) -> Result<(), String> {
        let job_name = job["metadata"]["name"].as_str().unwrap().to_string();
        let spec = &job["spec"]["template"]["spec"];
        let claim = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .ok_or("the fake kubelet runs pods with a results claim only")?;
        let config_map = spec["volumes"].as_array().into_iter().flatten().find_map(|v| v["configMap"]["name"].as_str());
        let container = &spec["containers"][0];
        let mount = &container["volumeMounts"][0];
        let host = state
            .claims
            .get(claim)
            .ok_or(format!("no PersistentVolumeClaim {claim:?}"))?
            .join(mount["subPath"].as_str().unwrap_or_default());
        let mount_path = mount["mountPath"].as_str().unwrap().to_string();
        let image = container["image"].as_str().unwrap_or_default().to_string();
        if image.ends_with(":missing") {
            // The registry has no such image: the init container waits to be pulled, nothing runs.
            let pod_name = format!("{job_name}-x{}", state.resource_version);
            state.resource_version += 1;
            let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
            labels["job-name"] = job_name.clone().into();
            let waiting = |name: &str, reason: &str, message: &str| {
                json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
                       "state": {"waiting": {"reason": reason, "message": message}}})
            };
            let pull = format!("Back-off pulling image \"{image}\"");
            let object = json!({
                "metadata": {"name": pod_name, "namespace": job["metadata"]["namespace"], "labels": labels},
                "spec": {"containers": [{"name": "cell", "image": image}]},
                "status": {"phase": "Pending",
                           "initContainerStatuses": [waiting("config", "ImagePullBackOff", &pull)],
                           "containerStatuses": [waiting("cell", "PodInitializing", "")]}
            });
            let log = Arc::new(Mutex::new(String::new()));
            state.job_pods.insert(pod_name, JobPod { object, log, pid: None, evicted: false, deleted: false });
            return Ok(());
        }
        let mut command: Vec<String> =
            container["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        let cell = command.iter().position(|a| a == "--cell").map(|i| command[i + 1].clone()).ok_or("no --cell")?;
        if let Some(map) = config_map.and_then(|m| state.config_maps.get(m)) {
            let dir = host.join(&cell);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            for (file, text) in map["data"].as_object().unwrap() {
                std::fs::write(dir.join(file), text.as_str().unwrap()).map_err(|e| e.to_string())?;
            }
        }
        assert_eq!(command[0], "orch", "the image's entry point");
        command[0] = env!("CARGO_BIN_EXE_orch").to_string();
        for arg in command.iter_mut() {
            if *arg == mount_path {
                *arg = host.display().to_string();
            }
        }
        let mut process = Command::new(&command[0]);
        process.args(&command[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for var in container["env"].as_array().into_iter().flatten() {
            process.env(var["name"].as_str().unwrap(), var["value"].as_str().unwrap_or_default());
        }
        let mut child = process.spawn().map_err(|e| e.to_string())?;
        let pod_name = format!("{job_name}-x{}", state.resource_version);
        state.resource_version += 1;
        let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
        labels["job-name"] = job_name.clone().into();
        labels["batch.kubernetes.io/job-name"] = job_name.clone().into();
        let image = container["image"].clone();
        let container_status = move |state: Value| {
            json!([{"name": "cell", "image": image, "imageID": "",
            "ready": false, "restartCount": 0, "state": state}])
        };
        let object = json!({
            "metadata": {"name": pod_name, "namespace": job["metadata"]["namespace"], "labels": labels},
            "spec": {"containers": [{"name": "cell", "image": container["image"]}],
                     "terminationGracePeriodSeconds": spec["terminationGracePeriodSeconds"]},
            "status": {"phase": "Running", "containerStatuses": container_status(json!({"running": {}}))}
        });
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    log.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
        }
        state
            .job_pods
            .insert(pod_name.clone(), JobPod { object, log, pid: Some(child.id()), evicted: false, deleted: false });
        let shared = Arc::clone(shared);
        std::thread::spawn(move || {
            use std::os::unix::process::ExitStatusExt;
            let status = child.wait().unwrap();
            let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
            let mut state = shared.lock().unwrap();
            let job_exists =
                state.jobs.contains_key(&job_name) && !state.job_pods.get(&pod_name).is_some_and(|p| p.deleted);
            if let Some(pod) = state.job_pods.get_mut(&pod_name) {
                pod.pid = None;
                pod.object["status"]["phase"] = if code == 0 { "Succeeded" } else { "Failed" }.into();
                pod.object["status"]["containerStatuses"] = container_status(json!({"terminated": {
                    "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}));
                if pod.evicted {
                    pod.object["status"]["reason"] = "Evicted".into();
                    pod.object["status"]["message"] = "The node was low on resource: memory.".into();
                    pod.object["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True",
                        "reason": "TerminationByKubelet", "message": "The node was low on resource: memory."}]);
                }
            }
            if !job_exists {
                // Deleted while running: the pod goes once its process has stopped.
                state.job_pods.remove(&pod_name);
            } else if let Some(job) = state.jobs.get_mut(&job_name) {
                let condition = if code == 0 { "Complete" } else { "Failed" };
                job["status"] = json!({"conditions": [{"type": condition, "status": "True",
                    "reason": if code == 0 { "Completed" } else { "BackoffLimitExceeded" },
                    "message": if code == 0 { "" } else { "Job has reached the specified backoff limit" }}],
                    if code == 0 { "succeeded" } else { "failed" }: 1});
            }
        });
        Ok(())
    }
}

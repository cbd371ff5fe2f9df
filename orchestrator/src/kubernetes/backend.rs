//! A real cluster as a [`ClusterBackend`]: the same policies drive it through the same interface as the simulator.
//!
//! Time is wall time: one backend second is one second. At each, the deployments, pods and PodMetrics are read
//! (three API calls) and the second's replicas and CPU kept; the load columns of the row come from the load
//! agents' merged windows, which arrive about a second later (as in the emulated backend). Decisions see the
//! last read plus, when the matrix names a Prometheus, the mesh's per-service rates, latency and call graph.
//!
//! RL and static policies act through the scale subresource; an HPA baseline is created as a real
//! HorizontalPodAutoscaler at reset and the cluster's controller scales: its changes of a deployment's replicas
//! are logged as scaling actions with the HPA's conditions as the reason, and its status goes to hpa.csv.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use load_agent::stats::Entry;
use tokio::runtime::Runtime;

use super::act::{self, HpaRecorder};
use super::api::ClusterApi;
use super::observe::{Observer, ServiceState};
use super::prometheus::MeshFigures;
use crate::agents::merge::{Merger, SecondLoad};
use crate::agents::pool::{AgentPool, Plan, PoolEvent};
use crate::backend::{ClusterBackend, Observation, RunLatency, SecondMetrics, ServiceObservation, ServiceSecond};
use crate::matrix::CellConfig;
use crate::policy::hpa;

/// How the cell's policy acts on the cluster.
pub enum Acting {
    /// RL and static policies: the backend patches the scale subresource.
    Scale,
    /// An HPA baseline: these objects are created at reset and the cluster's controller acts.
    Hpa { objects: Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>, recorder: HpaRecorder },
}

struct PendingRow {
    time_s: u64,
    services: Vec<ServiceSecond>,
}

/// Reading the cluster may fail now and then (an API server restarting); this many seconds in a row fail the cell.
const MAX_FAILED_READS: u32 = 10;

pub struct KubernetesBackend {
    // Field order is drop order: agents stop before the runtime goes.
    pool: AgentPool,
    runtime: Arc<Runtime>,
    api: ClusterApi,
    observer: Observer,
    states: Vec<ServiceState>,
    /// The app model's caller → callee edges: the graph when Prometheus gives none.
    model_edges: Vec<(usize, usize)>,
    memory_request_mib: Vec<f64>,
    readiness_timeout: Duration,
    acting: Acting,
    /// HPAs created (names), for the cell's cleanup, shared with it.
    pub created_hpas: Arc<Mutex<Vec<String>>>,
    hpa_actions: u64,
    plan: Plan,
    grace_s: f64,
    origin: Option<Instant>,
    time_s: u64,
    duration_s: u64,
    pending: VecDeque<PendingRow>,
    merger: Merger,
    current: Option<SecondLoad>,
    next_window: u64,
    slo_fraction: f64,
    failed_reads: u32,
    failure: Option<anyhow::Error>,
    service_names: Vec<String>,
    deployments: Vec<String>,
    buffered: VecDeque<SecondMetrics>,
}

impl KubernetesBackend {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Arc<Runtime>,
        api: ClusterApi,
        observer: Observer,
        pool: AgentPool,
        plan: Plan,
        acting: Acting,
        readiness_timeout: Duration,
        config: &CellConfig,
    ) -> KubernetesBackend {
        let app = &config.app;
        let deployments = observer.app.deployments.clone();
        KubernetesBackend {
            pool,
            runtime,
            api,
            observer,
            states: Vec::new(),
            model_edges: app.edges().into_iter().collect(),
            memory_request_mib: app.services.iter().map(|s| s.memory.request_mib).collect(),
            readiness_timeout,
            acting,
            created_hpas: Arc::default(),
            hpa_actions: 0,
            grace_s: config.scenario.request_timeout_s + 2.0,
            origin: None,
            time_s: 0,
            duration_s: plan.scenario.duration_s().round() as u64,
            plan,
            pending: VecDeque::new(),
            merger: Merger::new(crate::emulated::backend::slo_stats_names(config), app.slo.threshold_ms),
            current: None,
            next_window: 0,
            slo_fraction: app.slo.percentile / 100.0,
            failed_reads: 0,
            failure: None,
            service_names: app.services.iter().map(|s| s.name.clone()).collect(),
            deployments,
            buffered: VecDeque::new(),
        }
    }

    pub fn pool_mut(&mut self) -> &mut AgentPool {
        &mut self.pool
    }

    /// Why the cell failed, if it did.
    pub fn take_failure(&mut self) -> Option<anyhow::Error> {
        self.failure.take()
    }

    /// Replica changes the cluster's HPA made (counted as the cell's scaling actions).
    pub fn hpa_actions(&self) -> u64 {
        self.hpa_actions
    }

    pub fn finish_records(&mut self) -> Result<()> {
        if let Acting::Hpa { recorder, .. } = &mut self.acting {
            recorder.finish()?;
        }
        Ok(())
    }

    fn fail(&mut self, error: anyhow::Error) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    fn read(&mut self) -> Result<()> {
        let states = self.runtime.block_on(self.observer.read(&self.api, &self.memory_request_mib))?;
        self.states = states;
        Ok(())
    }

    async fn reset_async(&mut self, replicas: &[u32]) -> Result<()> {
        for (deployment, &count) in self.deployments.iter().zip(replicas) {
            self.api.scale(deployment, count as i32).await?;
        }
        let wanted: Vec<(String, i32)> =
            self.deployments.iter().cloned().zip(replicas.iter().map(|&r| r as i32)).collect();
        act::await_ready(&self.api, &wanted, self.readiness_timeout).await?;
        if let Acting::Hpa { objects, .. } = &self.acting {
            for object in objects {
                self.api.create_hpa(object).await?;
                let name = object.metadata.name.clone().unwrap_or_default();
                tracing::info!(hpa = %name, "hpa created");
                self.created_hpas.lock().expect("created hpas").push(name);
            }
        }
        Ok(())
    }

    fn log_events(&self) {
        for PoolEvent { warning, message } in self.pool.take_events() {
            if warning {
                tracing::warn!(%message, "agents");
            } else {
                tracing::info!(%message, "agents");
            }
        }
    }

    /// Logs the replica changes an HPA made since the last second.
    fn record_hpas(&mut self, before: &[u32]) {
        let Acting::Hpa { recorder, .. } = &mut self.acting else { return };
        if let Err(e) = self.runtime.block_on(recorder.record(&self.api, self.time_s)) {
            tracing::warn!(error = %format!("{e:#}"), "reading the HPAs");
        }
        for (i, (_, service, _)) in recorder.hpas.iter().enumerate() {
            let (from, to) = (before[*service], self.states[*service].spec_replicas);
            if from != to {
                self.hpa_actions += 1;
                let reason = recorder.last[i].as_ref().map(|s| s.reason.clone()).unwrap_or_default();
                let service_name = &self.service_names[*service];
                tracing::info!(t = self.time_s, service = %service_name, from, to, reason = %format!("hpa: {reason}"), "scaled");
            }
        }
    }

    fn collect(&mut self, rows: &mut Vec<SecondMetrics>, last: bool) {
        while let Some(front) = self.pending.front() {
            let window = front.time_s;
            while self.next_window <= window {
                let index = self.next_window;
                if !last && !self.pool.window_complete(index) {
                    return;
                }
                let windows = self.pool.take_window(index);
                match self.merger.merge(index, &windows) {
                    Ok(merged) => self.current = Some(merged),
                    Err(e) => {
                        self.fail(anyhow::anyhow!("an agent sent a window that does not decode: {e}"));
                        return;
                    }
                }
                self.next_window += 1;
            }
            let pending = self.pending.pop_front().expect("front exists");
            rows.push(self.row(pending));
        }
        if last {
            for (index, windows) in self.pool.take_all() {
                if index >= self.next_window
                    && let Err(e) = self.merger.merge(index, &windows)
                {
                    self.fail(anyhow::anyhow!("an agent sent a window that does not decode: {e}"));
                }
            }
        }
    }

    fn row(&self, pending: PendingRow) -> SecondMetrics {
        let load = self.current.clone().unwrap_or_default();
        let slo_requests = load.slo_requests as f64;
        let bad = (load.slo_failures + load.slo_slow).min(load.slo_requests) as f64;
        SecondMetrics {
            time_s: pending.time_s,
            users: load.users as f64,
            offered_rps: load.requests as f64,
            achieved_rps: (load.requests - load.failures) as f64,
            failures: load.failures as f64,
            slo_p50_ms: load.slo_p50_ms,
            slo_p95_ms: load.slo_p95_ms,
            slo_p99_ms: load.slo_p99_ms,
            slo_violated: slo_requests > 0.0 && bad / slo_requests > 1.0 - self.slo_fraction,
            slo_requests,
            slo_bad_requests: bad,
            services: pending.services,
        }
    }

    fn mesh(&self) -> Option<MeshFigures> {
        let telemetry = self.observer.telemetry.as_ref()?;
        match self.runtime.block_on(telemetry.mesh()) {
            Ok(figures) => Some(figures),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "mesh figures from Prometheus");
                None
            }
        }
    }
}

impl ClusterBackend for KubernetesBackend {
    /// Puts every deployment at `replicas`, waits until all are ready, creates the HPAs of an HPA cell, then
    /// starts the agents at a common start.
    fn reset(&mut self, replicas: &[u32]) {
        let runtime = Arc::clone(&self.runtime);
        if let Err(e) = runtime.block_on(self.reset_async(replicas)) {
            self.fail(e.context("resetting the replicas"));
            return;
        }
        if let Err(e) = self.read() {
            self.fail(e.context("reading the cluster"));
            return;
        }
        self.time_s = 0;
        match self.pool.start(self.plan.clone(), self.grace_s) {
            Ok(origin) => {
                self.observer.origin_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond();
                tracing::info!(target_url = %self.plan.target, agents = ?self.pool.agent_names(), "load started");
                self.origin = Some(origin);
            }
            Err(message) => self.fail(anyhow::anyhow!(message)),
        }
    }

    fn observe(&self) -> Observation {
        let mesh = self.mesh();
        let services = self
            .states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let arrival = mesh.as_ref().map_or(0.0, |m| m.arrival_rps[i]);
                let errors = mesh.as_ref().map_or(0.0, |m| m.error_rps[i]);
                let outgoing_rps = match &mesh {
                    Some(m) if !m.edges.is_empty() => {
                        m.edges.iter().filter(|(from, _, _)| *from == i).map(|&(_, to, rate)| (to, rate)).collect()
                    }
                    _ => self.model_edges.iter().filter(|(from, _)| *from == i).map(|&(_, to)| (to, 0.0)).collect(),
                };
                ServiceObservation {
                    spec_replicas: state.spec_replicas,
                    status_replicas: state.status_replicas,
                    ready_replicas: state.ready_replicas,
                    pods: state.pods.clone(),
                    cpu_utilization_pct: state.cpu_utilization_pct,
                    arrival_rps: arrival,
                    failure_ratio: if arrival > 0.0 { (errors / arrival).min(1.0) } else { 0.0 },
                    memory_utilization_pct: state.memory_mib.map_or(0.0, |m| {
                        if state.memory_request_mib > 0.0 { 100.0 * m / state.memory_request_mib } else { 0.0 }
                    }),
                    sojourn_p95_ms: mesh.as_ref().and_then(|m| m.p95_ms[i]).unwrap_or(0.0),
                    outgoing_rps,
                }
            })
            .collect();
        Observation { time_s: self.time_s, services }
    }

    fn scale(&mut self, service: usize, replicas: u32) {
        let deployment = self.deployments[service].clone();
        match self.runtime.block_on(self.api.scale(&deployment, replicas as i32)) {
            Ok(()) => {
                if let Some(state) = self.states.get_mut(service) {
                    state.spec_replicas = replicas;
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn advance(&mut self) -> Option<SecondMetrics> {
        loop {
            if let Some(row) = self.buffered.pop_front() {
                return Some(row);
            }
            let mut rows = Vec::new();
            let running = self.tick(&mut rows);
            self.buffered.extend(rows);
            if !running {
                return self.buffered.pop_front();
            }
        }
    }

    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool {
        self.log_events();
        if self.failure.is_none()
            && let Some(failure) = self.pool.failure()
        {
            self.fail(anyhow::anyhow!(failure));
        }
        // Ctrl-C or a timeout reached this `orch cell`: stop the load now, so the cell can restore the cluster
        // within its cancel grace.
        if self.failure.is_none() && crate::cell_process::cancel_requested() {
            self.fail(crate::cell_process::Cancelled.into());
        }
        let Some(origin) = self.origin.filter(|_| self.failure.is_none()) else {
            self.pool.stop_all();
            self.collect(rows, true);
            self.log_events();
            return false;
        };
        if self.time_s < self.duration_s {
            let due = origin + Duration::from_secs(self.time_s + 1);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let before: Vec<u32> = self.states.iter().map(|s| s.spec_replicas).collect();
            match self.read() {
                Ok(()) => self.failed_reads = 0,
                Err(e) => {
                    self.failed_reads += 1;
                    tracing::warn!(error = %format!("{e:#}"), "reading the cluster");
                    if self.failed_reads >= MAX_FAILED_READS {
                        self.fail(e.context(format!("{MAX_FAILED_READS} reads of the cluster in a row failed")));
                    }
                }
            }
            self.record_hpas(&before);
            let services = self.states.iter().map(ServiceState::second).collect();
            self.pending.push_back(PendingRow { time_s: self.time_s, services });
            self.time_s += 1;
            self.collect(rows, false);
            return true;
        }
        self.pool.wait_done(Duration::from_secs_f64(self.grace_s + 10.0));
        self.collect(rows, true);
        self.log_events();
        false
    }

    fn run_latency(&self) -> RunLatency {
        let pick = |e: &Entry| {
            if e.requests == 0 { [f64::NAN; 3] } else { [0.50, 0.95, 0.99].map(|q| e.percentile_ms(q)) }
        };
        RunLatency { slo_route: pick(&self.merger.run_slo), overall: pick(&self.merger.run_total) }
    }
}

/// The HPA objects of a baseline's manifests for this cell.
pub fn hpa_objects(
    manifests: &[hpa::HorizontalPodAutoscaler],
    namespace: &str,
    cell: &str,
) -> Result<Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>> {
    manifests.iter().map(|m| act::hpa_object(m, namespace, cell)).collect()
}

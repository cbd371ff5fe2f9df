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
use tokio::runtime::Runtime;

use super::act::{self, HpaRecorder};
use super::api::ClusterApi;
use super::observe::{Observer, ServiceState};
use super::prometheus::MeshFigures;
use crate::agents::pool::{AgentPool, Plan};
use crate::agents::rows::{AgentRows, log_pool_events};
use crate::backend::{ClusterBackend, Observation, RunLatency, SecondMetrics, ServiceObservation};
use crate::matrix::CellConfig;
use crate::policy::hpa;

/// How the cell's policy acts on the cluster.
pub enum Acting {
    /// RL and static policies: the backend patches the scale subresource.
    Scale,
    /// An HPA baseline: these objects are created at reset and the cluster's controller acts.
    Hpa { objects: Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>, recorder: HpaRecorder },
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
    rows: AgentRows,
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
            rows: AgentRows::new(config, 1.0),
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
        log_pool_events(&self.pool);
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

    /// Hands over the rows whose agent windows are complete (all of them when `last`).
    fn collect(&mut self, rows: &mut Vec<SecondMetrics>, last: bool) {
        if let Err(e) = self.rows.collect(&self.pool, rows, last) {
            self.fail(anyhow::anyhow!(e));
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
            self.rows.push(self.time_s, services);
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
        self.rows.run_latency()
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

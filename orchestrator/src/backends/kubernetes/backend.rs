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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::runtime::Runtime;

use super::act::{self, HpaRecorder};
use super::api::ClusterApi;
use super::observe::{Observer, ServiceState};
use super::prometheus::MeshFigures;
use crate::backends::agent_driven::AgentDriven;
use crate::cell::{
    CancelToken, CellConfig, ClusterBackend, Observation, RunLatency, SecondMetrics, ServiceObservation, ServiceSecond,
};
use crate::hpa;

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
    load: AgentDriven,
    cluster: Cluster,
}

/// The cluster side of the backend: what it reads and how it acts.
struct Cluster {
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
    created_hpas: Arc<Mutex<Vec<String>>>,
    hpa_actions: u64,
    failed_reads: u32,
    service_names: Vec<String>,
    deployments: Vec<String>,
}

impl KubernetesBackend {
    pub fn new(
        runtime: Arc<Runtime>,
        api: ClusterApi,
        observer: Observer,
        load: AgentDriven,
        acting: Acting,
        readiness_timeout: Duration,
        config: &CellConfig,
    ) -> KubernetesBackend {
        let app = &config.app;
        let deployments = observer.app.deployments.clone();
        let cluster = Cluster {
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
            failed_reads: 0,
            service_names: app.services.iter().map(|s| s.name.clone()).collect(),
            deployments,
        };
        KubernetesBackend { load, cluster }
    }

    pub fn load_mut(&mut self) -> &mut AgentDriven {
        &mut self.load
    }

    /// The names of the HPAs the backend created, shared with the cell's clean-up.
    pub fn created_hpas(&self) -> Arc<Mutex<Vec<String>>> {
        Arc::clone(&self.cluster.created_hpas)
    }

    /// Replica changes the cluster's HPA made (counted as the cell's scaling actions).
    pub fn hpa_actions(&self) -> u64 {
        self.cluster.hpa_actions
    }

    pub fn finish_records(&mut self) -> Result<()> {
        if let Acting::Hpa { recorder, .. } = &mut self.cluster.acting {
            recorder.finish()?;
        }
        Ok(())
    }
}

impl Cluster {
    fn read(&mut self) -> Result<()> {
        let states = self.runtime.block_on(self.observer.read(&self.api, &self.memory_request_mib))?;
        self.states = states;
        Ok(())
    }

    async fn reset(&mut self, replicas: &[u32], cancel: &CancelToken) -> Result<()> {
        for (deployment, &count) in self.deployments.iter().zip(replicas) {
            self.api.scale(deployment, count as i32).await?;
        }
        let wanted: Vec<(String, i32)> =
            self.deployments.iter().cloned().zip(replicas.iter().map(|&r| r as i32)).collect();
        act::await_ready(&self.api, &wanted, self.readiness_timeout, cancel).await?;
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

    /// One second of the cluster: its state read (a failure fails the cell after [`MAX_FAILED_READS`] in a row),
    /// the HPA's changes logged, the second's replicas and CPU.
    fn second(&mut self, time_s: u64) -> (Vec<ServiceSecond>, Option<anyhow::Error>) {
        let before: Vec<u32> = self.states.iter().map(|s| s.spec_replicas).collect();
        let mut failure = None;
        match self.read() {
            Ok(()) => self.failed_reads = 0,
            Err(e) => {
                self.failed_reads += 1;
                tracing::warn!(error = %format!("{e:#}"), "reading the cluster");
                if self.failed_reads >= MAX_FAILED_READS {
                    failure = Some(e.context(format!("{MAX_FAILED_READS} reads of the cluster in a row failed")));
                }
            }
        }
        self.record_hpas(&before, time_s);
        (self.states.iter().map(ServiceState::second).collect(), failure)
    }

    /// Logs the replica changes an HPA made since the last second.
    fn record_hpas(&mut self, before: &[u32], time_s: u64) {
        let Acting::Hpa { recorder, .. } = &mut self.acting else { return };
        if let Err(e) = self.runtime.block_on(recorder.record(&self.api, time_s)) {
            tracing::warn!(error = %format!("{e:#}"), "reading the HPAs");
        }
        for (i, (_, service, _)) in recorder.hpas.iter().enumerate() {
            let (from, to) = (before[*service], self.states[*service].spec_replicas);
            if from != to {
                self.hpa_actions += 1;
                let reason = recorder.last[i].as_ref().map(|s| s.reason.clone()).unwrap_or_default();
                let service_name = &self.service_names[*service];
                tracing::info!(t = time_s, service = %service_name, from, to, reason = %format!("hpa: {reason}"), "scaled");
            }
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
        let runtime = Arc::clone(&self.cluster.runtime);
        let cancel = self.load.cancel().clone();
        if let Err(e) = runtime.block_on(self.cluster.reset(replicas, &cancel)) {
            self.load.fail(e.context("resetting the replicas"));
            return;
        }
        if let Err(e) = self.cluster.read() {
            self.load.fail(e.context("reading the cluster"));
            return;
        }
        if self.load.start() {
            self.cluster.observer.origin_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond();
            tracing::info!(target_url = %self.load.plan().target, agents = ?self.load.pool.agent_names(), "load started");
        }
    }

    fn observe(&self) -> Observation {
        let cluster = &self.cluster;
        let mesh = cluster.mesh();
        let services = cluster
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
                    _ => cluster.model_edges.iter().filter(|(from, _)| *from == i).map(|&(_, to)| (to, 0.0)).collect(),
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
        Observation { time_s: self.load.time_s(), services }
    }

    fn scale(&mut self, service: usize, replicas: u32) {
        let cluster = &mut self.cluster;
        let deployment = cluster.deployments[service].clone();
        match cluster.runtime.block_on(cluster.api.scale(&deployment, replicas as i32)) {
            Ok(()) => {
                if let Some(state) = cluster.states.get_mut(service) {
                    state.spec_replicas = replicas;
                }
            }
            Err(e) => self.load.fail(e),
        }
    }

    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool {
        let cluster = &mut self.cluster;
        let mut failure = None;
        let running = self.load.tick(rows, |t| {
            let (services, failed) = cluster.second(t);
            failure = failed;
            services
        });
        if let Some(error) = failure {
            self.load.fail(error);
        }
        running
    }

    fn run_latency(&self) -> RunLatency {
        self.load.run_latency()
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

//! The interface every cluster backend offers the runner: reset, observe, scale, advance one second.

use crate::policy::hpa::PodSample;

/// What a policy sees of one deployment at a decision point.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceObservation {
    /// The deployment's desired replicas (scale subresource `spec.replicas`).
    pub spec_replicas: u32,
    /// Pods that exist (`status.replicas`), ready or not.
    pub status_replicas: u32,
    pub ready_replicas: u32,
    pub pods: Vec<PodSample>,
    /// CPU utilization of requests as metrics-server last reported it, if it has.
    pub cpu_utilization_pct: Option<f64>,
    /// Calls arriving per second over the last second.
    pub arrival_rps: f64,
    /// Share of calls that failed in the last second.
    pub failure_ratio: f64,
    /// Mean resident memory per ready pod over its memory request, in percent (last second).
    pub memory_utilization_pct: f64,
    /// p95 of one call's time in the service (queueing plus service), in ms (last second).
    pub sojourn_p95_ms: f64,
    /// Calls per second this service made to each callee over the last second: (callee index, rate).
    pub outgoing_rps: Vec<(usize, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub time_s: u64,
    pub services: Vec<ServiceObservation>,
}

/// One second of a cell, as every backend reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondMetrics {
    pub time_s: u64,
    pub users: f64,
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub failures: f64,
    /// Latency percentiles of the SLO route, in ms.
    pub slo_p50_ms: f64,
    pub slo_p95_ms: f64,
    pub slo_p99_ms: f64,
    /// The SLO percentile of the SLO route exceeded its threshold in this second.
    pub slo_violated: bool,
    /// Requests to the SLO route, and those of them slower than the threshold or failed.
    pub slo_requests: f64,
    pub slo_bad_requests: f64,
    pub services: Vec<ServiceSecond>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSecond {
    pub ready: u32,
    pub desired: u32,
    /// Pods that exist, ready or starting (they hold their CPU requests).
    pub pods: u32,
    /// Utilization of requests as metrics-server reports it (stale up to one scrape window).
    pub cpu_utilization_pct: f64,
    /// Mean resident memory per ready pod.
    pub memory_mib: f64,
}

/// Run-level latency percentiles (p50, p95, p99) in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLatency {
    pub slo_route: [f64; 3],
    pub overall: [f64; 3],
}

/// A cluster the runner can drive one second at a time.
pub trait ClusterBackend {
    /// Puts every deployment at `replicas`, ready, with no load and no history.
    fn reset(&mut self, replicas: &[u32]);
    fn observe(&self) -> Observation;
    /// Sets a deployment's desired replicas; pods start or stop as the cluster would.
    fn scale(&mut self, service: usize, replicas: u32);
    /// Runs one second of load; `None` once the scenario has ended.
    fn advance(&mut self) -> Option<SecondMetrics>;
    /// Moves the backend's clock one second on and pushes the rows of seconds whose measurements are complete,
    /// oldest first; false once the scenario has ended (rows pushed then are the last). A backend whose
    /// measurements of a second arrive after it (load agents close a second's window once it is over) hands its
    /// rows over later, but in order and one per second, while decisions stay on its clock. The default suits
    /// backends whose rows are complete at once: one [`ClusterBackend::advance`] per tick.
    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool {
        match self.advance() {
            Some(row) => {
                rows.push(row);
                true
            }
            None => false,
        }
    }
    fn run_latency(&self) -> RunLatency;
}

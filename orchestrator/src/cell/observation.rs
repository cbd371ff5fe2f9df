//! What a backend reports: the observation a policy decides on, and the metrics of each second of a cell.

use crate::hpa::PodSample;

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
    /// CFS periods elapsed this second, summed over pods (`container_cpu_cfs_periods_total`); `None`: unseen.
    pub cfs_periods: Option<f64>,
    /// Of those, the periods a pod ran out of quota (`container_cpu_cfs_throttled_periods_total`); `None`: unseen.
    pub cfs_throttled_periods: Option<f64>,
    /// Mean resident memory per ready pod.
    pub memory_mib: f64,
}

/// Run-level latency percentiles (p50, p95, p99) in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLatency {
    pub slo_route: [f64; 3],
    pub overall: [f64; 3],
}

//! Rewards, computed from what happened during one decision interval.
//!
//! - `slo_cost` (default): −(pod cost + SLO penalty + failure penalty), each term a share in [0, 1] times its weight:
//!   mean ready pods over the sum of max replicas, requests to the SLO route slower than the threshold or failed,
//!   and failed requests over offered ones. Optional terms (weight 0 by default): `violation_penalty` times the
//!   share of the interval's seconds whose SLO percentile exceeded the threshold (what the benchmarks count), and
//!   `change_penalty` times the replicas added or removed at the decision over the sum of max replicas, so at
//!   weight 1 moving a pod costs as much as running one for a decision interval (against needless oscillation).
//! - `gym_hpa_cost`: gym-hpa's cost reward, +1 for every deployment whose pods match its desired replicas.
//! - `gym_hpa_latency`: gym-hpa's latency reward, −latency in ms capped at `cap_ms` (gym-hpa: 3000 for Online
//!   Boutique, 250 for Redis); the latency is the interval's mean median of the SLO route.
//! - `ahpa_log`: a log-scaled trade-off, −[ln(1 + p95 / SLO) + cost_weight · ln(1 + pods) / ln(1 + max pods)],
//!   with p95 the interval's mean p95 of the SLO route and pods the mean ready pods.

use crate::cell::SecondMetrics;
use crate::settings::rl::RewardKind;

/// Totals over the seconds of one decision interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalStats {
    pub seconds: u32,
    /// Ready pods summed over services and seconds.
    pub ready_pod_seconds: f64,
    /// Sum of every service's max replicas (the most pods the app can run).
    pub max_pods: f64,
    pub violated_seconds: u32,
    pub slo_requests: f64,
    pub slo_bad_requests: f64,
    pub offered: f64,
    pub failures: f64,
    pub slo_p50_ms_sum: f64,
    pub slo_p95_ms_sum: f64,
    /// At the end of the interval: services, and those whose existing pods equal their desired replicas.
    pub services: u32,
    pub services_at_desired: u32,
    pub slo_threshold_ms: f64,
    /// Replicas added or removed at the decision that opened the interval, summed over services.
    pub replica_changes: u32,
}

impl IntervalStats {
    pub fn new(max_pods: f64, slo_threshold_ms: f64) -> IntervalStats {
        IntervalStats { max_pods, slo_threshold_ms, ..IntervalStats::default() }
    }

    pub fn add(&mut self, second: &SecondMetrics) {
        self.seconds += 1;
        self.ready_pod_seconds += second.services.iter().map(|s| s.ready as f64).sum::<f64>();
        self.violated_seconds += second.slo_violated as u32;
        self.slo_requests += second.slo_requests;
        self.slo_bad_requests += second.slo_bad_requests;
        self.offered += second.offered_rps;
        self.failures += second.failures;
        self.slo_p50_ms_sum += second.slo_p50_ms;
        self.slo_p95_ms_sum += second.slo_p95_ms;
        self.services = second.services.len() as u32;
        self.services_at_desired = second.services.iter().filter(|s| s.pods == s.desired).count() as u32;
    }

    fn per_second(&self, total: f64) -> f64 {
        if self.seconds == 0 { 0.0 } else { total / self.seconds as f64 }
    }

    pub fn mean_ready_pods(&self) -> f64 {
        self.per_second(self.ready_pod_seconds)
    }

    pub fn mean_slo_p50_ms(&self) -> f64 {
        self.per_second(self.slo_p50_ms_sum)
    }

    pub fn mean_slo_p95_ms(&self) -> f64 {
        self.per_second(self.slo_p95_ms_sum)
    }

    /// Share of SLO-route requests slower than the threshold or failed.
    pub fn slo_bad_share(&self) -> f64 {
        if self.slo_requests > 0.0 { (self.slo_bad_requests / self.slo_requests).clamp(0.0, 1.0) } else { 0.0 }
    }

    pub fn failure_share(&self) -> f64 {
        if self.offered > 0.0 { (self.failures / self.offered).clamp(0.0, 1.0) } else { 0.0 }
    }

    /// Share of the interval's seconds whose SLO percentile exceeded the threshold.
    pub fn violated_share(&self) -> f64 {
        self.per_second(self.violated_seconds as f64)
    }
}

impl RewardKind {
    pub fn reward(&self, stats: &IntervalStats) -> f64 {
        match *self {
            RewardKind::SloCost { pod_cost, slo_penalty, failure_penalty, violation_penalty, change_penalty } => {
                let max_pods = stats.max_pods.max(1.0);
                let pods = stats.mean_ready_pods() / max_pods;
                let changes = stats.replica_changes as f64 / max_pods;
                -(pod_cost * pods
                    + slo_penalty * stats.slo_bad_share()
                    + failure_penalty * stats.failure_share()
                    + violation_penalty * stats.violated_share()
                    + change_penalty * changes)
            }
            RewardKind::GymHpaCost => stats.services_at_desired as f64,
            RewardKind::GymHpaLatency { cap_ms } => -stats.mean_slo_p50_ms().min(cap_ms),
            RewardKind::AhpaLog { cost_weight } => {
                let latency = (stats.mean_slo_p95_ms() / stats.slo_threshold_ms).max(0.0).ln_1p();
                let cost = stats.mean_ready_pods().ln_1p() / stats.max_pods.max(1.0).ln_1p();
                -(latency + cost_weight * cost)
            }
        }
    }
}

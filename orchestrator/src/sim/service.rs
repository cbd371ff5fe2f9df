//! One simulated service: its constants, pods and per-second queueing state, and the two models of how a CPU limit
//! shapes its calls' latency.
//!
//! - Smooth (the earlier model): each pod is a server limit/1000 times as fast as a core; the ready pods form an
//!   M/M/c queue on the second's expected rate.
//! - CFS: each pod runs a call at full core speed until its quota for the period is spent, then stalls. A call's
//!   latency figures and the share of throttled periods come from [`super::cfs_table`] at the pod's load; the pods
//!   share one queue (admission in front of them), so the single pod's wait is scaled by M/M/c over M/M/1 at the
//!   same utilization.
//!
//! Both carry overload past the stationary range as a fluid backlog that drops what waits past the timeout.

use super::cfs_table::{self, MAX_LOAD, P95};
use super::latency::KNOTS;
use super::queueing::{LogNormal, mmc_wait};
use crate::app::Service;

#[derive(Debug, Clone)]
pub(super) struct Pod {
    pub id: u64,
    pub created_s: f64,
    pub ready_s: f64,
    /// This pod's CPU in the last metrics window, in millicores (with `pod_spread`; else the service's mean).
    pub reported_m: Option<f64>,
}

/// Per-service constants and state.
#[derive(Debug, Clone)]
pub(super) struct ServiceState {
    pub name: String,
    pub request_m: f64,
    pub limit_m: f64,
    pub idle_m: f64,
    pub default_cpu_ms: f64,
    pub startup_s: f64,
    pub memory_base_mib: f64,
    pub memory_per_inflight_mib: f64,
    pub memory_request_bytes: i64,
    pub memory_request_mib: f64,
    pub pods: Vec<Pod>,
    pub desired: u32,
    /// Requests queued beyond what the stationary model holds, carried to the next second.
    pub backlog: f64,
    // This tick's results.
    pub ready: u32,
    /// Calls this second: expected (from route rates) and realized (after Poisson noise).
    pub expected_calls: f64,
    pub calls: f64,
    pub work_ms: f64,
    /// Smooth model: the queueing wait of a call (its service time is in the route's base latency).
    pub wait_ms: f64,
    pub wait_variance_ms2: f64,
    /// CFS model: a call's whole sojourn (wait, CPU, stalls), its variance and quantiles (p10 to p99).
    pub call_mean_ms: f64,
    pub call_variance_ms2: f64,
    pub call_quantiles_ms: [f64; KNOTS],
    /// CFS model: the second's periods with work and throttled periods, over the ready pods, whole counts (the
    /// model's fractions are carried to the next second so totals stay exact).
    pub cfs_periods: f64,
    pub cfs_throttled_periods: f64,
    cfs_carry: [f64; 2],
    pub failure_ratio: f64,
    pub memory_mib: f64,
    /// Busy CPU over the ready pods this second, in millicores per pod (idle included).
    pub per_pod_m: f64,
    // metrics-server: the running window and the last published per-pod mean.
    pub window_sum_m: f64,
    /// Calls in the running window (how evenly load balancing splits them decides the pods' spread).
    pub window_calls: f64,
    pub reported_m: Option<f64>,
    pub reported_at_s: u64,
}

impl ServiceState {
    pub fn new(s: &Service) -> ServiceState {
        ServiceState {
            name: s.name.clone(),
            request_m: s.cpu.request_m,
            limit_m: s.cpu.limit_m,
            idle_m: s.cpu.idle_m,
            default_cpu_ms: s.cpu.per_request_ms,
            startup_s: s.startup_s,
            memory_base_mib: s.memory.base_mib,
            memory_per_inflight_mib: s.memory.per_inflight_mib,
            memory_request_bytes: (s.memory.request_mib * 1024.0 * 1024.0) as i64,
            memory_request_mib: s.memory.request_mib,
            pods: Vec::new(),
            desired: 0,
            backlog: 0.0,
            ready: 0,
            expected_calls: 0.0,
            calls: 0.0,
            work_ms: 0.0,
            wait_ms: 0.0,
            wait_variance_ms2: 0.0,
            call_mean_ms: 0.0,
            call_variance_ms2: 0.0,
            call_quantiles_ms: [0.0; KNOTS],
            cfs_periods: 0.0,
            cfs_throttled_periods: 0.0,
            cfs_carry: [0.0; 2],
            failure_ratio: 0.0,
            memory_mib: s.memory.base_mib,
            per_pod_m: 0.0,
            window_sum_m: 0.0,
            window_calls: 0.0,
            reported_m: None,
            reported_at_s: 0,
        }
    }

    /// Mean CPU per call this second (the service's default when nothing called).
    pub fn cpu_ms(&self) -> f64 {
        if self.calls > 0.0 { self.work_ms / self.calls } else { self.default_cpu_ms }
    }

    /// Serves the second's calls (and the backlog) at `per_pod_rate` calls per second per ready pod; returns the
    /// calls served and the backlog's wait in s. With no ready pod every call fails at once.
    fn serve(&mut self, per_pod_rate: f64, timeout_s: f64) -> Option<(f64, f64)> {
        if self.ready == 0 {
            // No endpoints: every call fails at once and nothing queues.
            self.backlog = 0.0;
            self.failure_ratio = if self.calls > 0.0 { 1.0 } else { 0.0 };
            return None;
        }
        let capacity = self.ready as f64 * per_pod_rate;
        let waiting = self.backlog + self.calls;
        let served = waiting.min(capacity);
        self.backlog = waiting - served;
        let dropped = (self.backlog - capacity * timeout_s).max(0.0);
        self.backlog -= dropped;
        self.failure_ratio = if self.calls > 0.0 { (dropped / self.calls).min(1.0) } else { 0.0 };
        Some((served, self.backlog / capacity))
    }

    /// The smooth model's second: a limit is a slower server; M/M/c wait on the expected rate.
    pub fn step_smooth(&mut self, timeout_s: f64) {
        let cpu_ms = self.cpu_ms();
        let per_pod_rate = self.limit_m / cpu_ms;
        let mut served = 0.0;
        match self.serve(per_pod_rate, timeout_s) {
            None => {
                self.wait_ms = 0.0;
                self.wait_variance_ms2 = 0.0;
            }
            Some((done, backlog_s)) => {
                served = done;
                // The M/M/c formulas already account for Poisson arrivals, so they take the expected rate;
                // the realized count only drives the backlog, or noise would be counted twice.
                let wait = mmc_wait(self.expected_calls, per_pod_rate, self.ready);
                self.wait_ms = (wait.mean_s + backlog_s) * 1000.0;
                self.wait_variance_ms2 = wait.variance_s2 * 1e6;
            }
        }
        self.account_cpu(served, cpu_ms, self.wait_ms + cpu_ms * 1000.0 / self.limit_m);
    }

    /// The CFS model's second.
    pub fn step_cfs(&mut self, timeout_s: f64, period_ms: f64) {
        let cpu_ms = self.cpu_ms();
        // One worker runs at most one core: a pod serves at its limit or a core, whichever is less.
        let speed_m = self.limit_m.min(1000.0);
        let per_pod_rate = speed_m / cpu_ms;
        let Some((served, backlog_s)) = self.serve(per_pod_rate, timeout_s) else {
            self.call_mean_ms = 0.0;
            self.call_variance_ms2 = 0.0;
            self.call_quantiles_ms = [0.0; KNOTS];
            self.cfs_periods = 0.0;
            self.cfs_throttled_periods = 0.0;
            self.account_cpu(0.0, cpu_ms, 0.0);
            return;
        };
        let pods = self.ready as f64;
        let load = self.expected_calls / (pods * per_pod_rate);
        let figures = cfs_table::lookup(speed_m / 1000.0, period_ms, cpu_ms, load.min(MAX_LOAD));
        // The pods share one queue: a call waits only when every pod is busy.
        let wait_share = if self.ready > 1 && self.expected_calls > 0.0 {
            let service_rate = 1000.0 / figures.service.mean_ms.max(1e-9);
            let pooled = mmc_wait(self.expected_calls, service_rate, self.ready).mean_s;
            let alone = mmc_wait(self.expected_calls / pods, service_rate, 1).mean_s;
            if alone > 0.0 { (pooled / alone).min(1.0) } else { 0.0 }
        } else {
            1.0
        };
        let call = figures.service.plus_share_of_wait(&figures.sojourn, wait_share);
        let backlog_ms = backlog_s * 1000.0;
        self.call_mean_ms = call.mean_ms + backlog_ms;
        self.call_variance_ms2 = call.std_ms * call.std_ms;
        self.call_quantiles_ms = call.quantiles_ms.map(|q| q + backlog_ms);
        let periods = pods * 1000.0 / period_ms;
        let throttles = self.limit_m < 1000.0;
        let (active, throttled) = if backlog_ms > 0.0 {
            // Overloaded: work waits at every period's end.
            (periods, if throttles { periods } else { 0.0 })
        } else {
            (periods * figures.active_share, if throttles { periods * figures.throttled_share } else { 0.0 })
        };
        self.cfs_periods = self.carried(0, active);
        self.cfs_throttled_periods = self.carried(1, throttled);
        self.account_cpu(served, cpu_ms, self.call_mean_ms);
    }

    /// The whole part of `count` plus what earlier seconds left over; keeps the rest for the next.
    fn carried(&mut self, which: usize, count: f64) -> f64 {
        let total = self.cfs_carry[which] + count;
        let whole = total.floor();
        self.cfs_carry[which] = total - whole;
        whole
    }

    /// CPU and memory of the second's `served` calls, each in the pod for `sojourn_ms`.
    fn account_cpu(&mut self, served: f64, cpu_ms: f64, sojourn_ms: f64) {
        let busy_m = served * cpu_ms;
        let ready = self.ready.max(1) as f64;
        self.per_pod_m = (busy_m + self.idle_m * self.ready as f64) / ready;
        self.window_sum_m += self.per_pod_m;
        self.window_calls += served;
        let in_flight = served * sojourn_ms / 1000.0;
        self.memory_mib = self.memory_base_mib + self.memory_per_inflight_mib * in_flight / ready;
    }

    /// p95 of one call's sojourn (what a mesh's per-service latency metric shows a policy).
    pub fn sojourn_p95_ms(&self, cfs: bool, z95: f64) -> f64 {
        if cfs {
            return self.call_quantiles_ms[P95];
        }
        let service_ms = self.cpu_ms() * 1000.0 / self.limit_m;
        LogNormal::from_moments(self.wait_ms + service_ms, self.wait_variance_ms2 + service_ms * service_ms).at_z(z95)
    }
}

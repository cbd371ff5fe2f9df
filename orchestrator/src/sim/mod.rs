//! The embedded simulated cluster: deterministic, seeded, one-second ticks.
//!
//! Per tick: the scenario's users (closed model, throughput falls as latency rises) or arrival rate (open model)
//! give each route an expected request rate; Poisson noise from the seed turns it into arrivals; every service is
//! an M/M/c queue (c = ready pods, per-pod rate from its CPU limit and per-call demand) plus a fluid backlog that
//! carries overload from second to second and drops what waits past the request timeout; a route's latency is the
//! sum of its calls' sojourn times. Pods become ready after their start-up delay; CPU usage reaches policies as
//! metrics-server reports it: per-pod averages over 15 s scrape windows.
//!
//! The settings ([`SimulatorSettings`]) choose the model's parts. By default a CPU limit is what CFS makes of it
//! ([`service`], [`cfs_table`]: full speed until the period's quota is spent, then a stall), each second's
//! percentiles are those of its requests sampled from the distribution ([`latency`]), metrics-server's windows
//! close at a random phase to the HPA's sync, each pod's CPU differs as load balancing splits calls, and start-up
//! has a tail. The legacy settings give the earlier model: a limit as a slower server, M/M/c waits, a log-normal
//! fitted to the summed moments, aligned windows, one CPU figure for every pod, start-up ±10 %.

pub mod cfs;
pub mod cfs_queue;
pub mod cfs_table;
mod histogram;
pub mod latency;
pub mod queueing;
mod service;
mod workload;

use load_agent::scenario::{LoadShape, Scenario, step_users};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::app::AppModel;
use crate::cell::{ClusterBackend, Observation, RunLatency, SecondMetrics, ServiceObservation, ServiceSecond};
use crate::hpa::{MetricSample, PodPhase, PodSample};
use crate::settings::simulator::{CpuModel, MetricsTiming, Percentiles, SimulatorSettings, Startup};
use histogram::LogHistogram;
use latency::{KNOT_PROBABILITIES, LatencyCurve, RouteLatency, sampled_count, sampled_z};
use queueing::{LogNormal, normal_quantile};
use service::{Pod, ServiceState};
pub use workload::{CompiledRoute, Workload, compile_route};

/// metrics-server's default resolution: each pod's CPU is the mean over this window.
pub const METRICS_WINDOW_S: u64 = 15;

/// Start-up with a tail: the share of new pods that land on a node without their image, and the mean pull time
/// as a share of the model's start-up time. Assumed, not measured here (no cluster to pull images on).
const IMAGE_PULL_SHARE: f64 = 0.2;
const IMAGE_PULL_MEAN: f64 = 0.5;

/// Probability bins each second's latency distribution is summarised by for run-level percentiles; the tail is
/// finer because p95 and p99 are what reports quote.
const QUANTILE_BINS: [f64; 16] =
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0];

/// The simulated cluster for one cell.
pub struct Simulator {
    settings: SimulatorSettings,
    services: Vec<ServiceState>,
    workload: Workload,
    rng: ChaCha8Rng,
    time_s: u64,
    duration_s: u64,
    users: f64,
    next_pod_id: u64,
    /// Last second's mean response time per route, in seconds (closed-loop users feel it).
    route_response_s: Vec<f64>,
    route_rates: Vec<f64>,
    route_arrivals: Vec<f64>,
    slo_route: usize,
    slo_threshold_ms: f64,
    /// The SLO percentile as a fraction (0.95 for p95).
    slo_fraction: f64,
    z50: f64,
    z95: f64,
    z99: f64,
    bin_z: [f64; QUANTILE_BINS.len() - 1],
    slo_histogram: LogHistogram,
    overall_histogram: LogHistogram,
    /// Per route: (caller, callee, calls per request) of every call-graph edge it crosses.
    route_edges: Vec<Vec<(usize, usize, f64)>>,
    /// Per route: the one service it calls once, whose call quantiles are the route's (CFS model).
    single_call: Vec<Option<usize>>,
    /// Seconds after each multiple of the window at which metrics-server's windows close.
    metrics_phase_s: u64,
    /// Seconds in the running metrics window.
    window_seconds: u64,
    knot_z: [f64; latency::KNOTS],
}

impl Simulator {
    /// A simulator for `app` under `scenario` with the most faithful model; every request of the scenario must
    /// match a route of the app.
    pub fn new(app: &AppModel, scenario: &Scenario, seed: u64) -> Simulator {
        Simulator::with_settings(app, scenario, seed, &SimulatorSettings::default())
    }

    /// A simulator with the parts of the model `settings` chooses.
    pub fn with_settings(app: &AppModel, scenario: &Scenario, seed: u64, settings: &SimulatorSettings) -> Simulator {
        let workload = Workload::compile(app, scenario);
        let services = app.services.iter().map(ServiceState::new).collect();
        let route_count = workload.routes.len();
        let mut bin_z = [0.0; QUANTILE_BINS.len() - 1];
        for (i, z) in bin_z.iter_mut().enumerate() {
            *z = normal_quantile(0.5 * (QUANTILE_BINS[i] + QUANTILE_BINS[i + 1]));
        }
        let duration_s = scenario.duration_s().ceil() as u64;
        let mut sim = Simulator {
            settings: *settings,
            services,
            route_response_s: workload.routes.iter().map(|r| r.base_ms / 1000.0).collect(),
            workload,
            rng: ChaCha8Rng::seed_from_u64(seed),
            time_s: 0,
            duration_s,
            users: 0.0,
            next_pod_id: 0,
            route_rates: vec![0.0; route_count],
            route_arrivals: vec![0.0; route_count],
            slo_route: app.route_index(&app.slo.route).expect("validated SLO route"),
            slo_threshold_ms: app.slo.threshold_ms,
            slo_fraction: app.slo.percentile / 100.0,
            z50: 0.0,
            z95: normal_quantile(0.95),
            z99: normal_quantile(0.99),
            bin_z,
            slo_histogram: LogHistogram::default(),
            overall_histogram: LogHistogram::default(),
            route_edges: app.routes.iter().map(|route| route_edges(app, route)).collect(),
            single_call: Vec::new(),
            metrics_phase_s: 0,
            window_seconds: 0,
            knot_z: KNOT_PROBABILITIES.map(normal_quantile),
        };
        sim.single_call = sim
            .workload
            .routes
            .iter()
            .map(|route| match route.touches.as_slice() {
                [touch] if (touch.calls - 1.0).abs() < 1e-12 => Some(touch.service),
                _ => None,
            })
            .collect();
        if settings.metrics == MetricsTiming::Phased {
            sim.metrics_phase_s = sim.rng.gen_range(0..METRICS_WINDOW_S);
        }
        let initial: Vec<u32> = app.services.iter().map(|s| s.replicas.initial()).collect();
        sim.reset(&initial);
        sim
    }

    pub fn settings(&self) -> &SimulatorSettings {
        &self.settings
    }

    pub fn duration_s(&self) -> u64 {
        self.duration_s
    }

    /// Sets each route's expected request rate for the current second from users or arrival rate.
    fn plan_route_rates(&mut self) -> f64 {
        self.route_rates.iter_mut().for_each(|r| *r = 0.0);
        let t = self.time_s as f64;
        match &self.workload.shape {
            LoadShape::ArrivalRate(open) => {
                let rate = self.workload.shape.arrival_rate(t).unwrap_or(0.0);
                let mut busy_s = 0.0;
                for class in &self.workload.users {
                    for task in &class.tasks {
                        let share = class.share * task.probability;
                        let task_s: f64 = task.routes.iter().map(|&r| self.route_response_s[r]).sum();
                        busy_s += share * task_s;
                        for &r in &task.routes {
                            self.route_rates[r] += rate * share;
                        }
                    }
                }
                // Users busy at once (Little's law), capped where the open model starts dropping iterations.
                (rate * busy_s).max(open.preallocated_users as f64).min(open.max_users as f64)
            }
            shape => {
                let previous = self.users;
                if let Some(target) = shape.users_target(t) {
                    self.users = step_users(self.users, target, 1.0);
                }
                let spawned = (self.users - previous).max(0.0);
                for class in &self.workload.users {
                    let users = self.users * class.share;
                    // Renewal argument: each user completes one task per mean cycle (task time + wait).
                    let mut cycle_s = 0.0;
                    for task in &class.tasks {
                        let task_s: f64 = task.routes.iter().map(|&r| self.route_response_s[r]).sum();
                        let wait_s = class.wait.map_or(0.0, |w| w.mean_wait_after(task_s));
                        cycle_s += task.probability * (task_s + wait_s);
                    }
                    let tasks_per_s = users / cycle_s.max(1e-6);
                    for task in &class.tasks {
                        for &r in &task.routes {
                            self.route_rates[r] += tasks_per_s * task.probability;
                        }
                    }
                    for &r in &class.on_start {
                        self.route_rates[r] += spawned * class.share;
                    }
                }
                self.users
            }
        }
    }

    /// Poisson-distributed count with mean `lambda`: exact (Knuth) for small means, normal approximation above 30.
    fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda <= 0.0 {
            0.0
        } else if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut product: f64 = self.rng.r#gen();
            let mut count = 0.0;
            while product > limit {
                product *= self.rng.r#gen::<f64>();
                count += 1.0;
            }
            count
        } else {
            let z: f64 = self.rng.sample(StandardNormal);
            (lambda + lambda.sqrt() * z).round().max(0.0)
        }
    }

    fn step_services(&mut self) {
        let now = self.time_s as f64;
        for service in &mut self.services {
            service.expected_calls = 0.0;
            service.calls = 0.0;
            service.work_ms = 0.0;
        }
        for ((route, &arrivals), &rate) in self.workload.routes.iter().zip(&self.route_arrivals).zip(&self.route_rates)
        {
            if rate == 0.0 && arrivals == 0.0 {
                continue;
            }
            for touch in &route.touches {
                let service = &mut self.services[touch.service];
                service.expected_calls += rate * touch.calls;
                service.calls += arrivals * touch.calls;
                service.work_ms += arrivals * touch.cpu_ms;
            }
        }
        let timeout_s = self.workload.timeout_s;
        for s in &mut self.services {
            s.ready = s.pods.iter().filter(|p| p.ready_s <= now).count() as u32;
            match self.settings.cpu {
                CpuModel::Smooth => s.step_smooth(timeout_s),
                CpuModel::Cfs => s.step_cfs(timeout_s, self.settings.cfs_period_ms),
            }
        }
    }

    fn publish_metrics_window(&mut self) {
        let end = self.time_s + 1;
        self.window_seconds += 1;
        if !(end + METRICS_WINDOW_S - self.metrics_phase_s).is_multiple_of(METRICS_WINDOW_S) {
            return;
        }
        let seconds = self.window_seconds as f64;
        self.window_seconds = 0;
        let now = end as f64;
        for s in &mut self.services {
            let mean_m = s.window_sum_m / seconds;
            s.reported_m = Some(mean_m);
            s.reported_at_s = end;
            if self.settings.pod_spread {
                // Random load balancing gives each of n pods a binomial share of the window's N calls: relative
                // spread sqrt((n - 1) / N) of the busy part; idle CPU is the same on every pod.
                let ready: Vec<usize> = (0..s.pods.len()).filter(|&i| s.pods[i].ready_s <= now).collect();
                let busy_m = (mean_m - s.idle_m).max(0.0);
                let spread =
                    if s.window_calls > 0.0 { ((ready.len().max(1) - 1) as f64 / s.window_calls).sqrt() } else { 0.0 };
                for i in ready {
                    let z: f64 = self.rng.sample(StandardNormal);
                    s.pods[i].reported_m = Some(s.idle_m.min(mean_m) + busy_m * (1.0 + spread * z).max(0.0));
                }
            }
            s.window_sum_m = 0.0;
            s.window_calls = 0.0;
        }
    }

    fn pod_samples(&self, s: &ServiceState) -> Vec<PodSample> {
        let now = self.time_s as f64;
        s.pods
            .iter()
            .map(|pod| {
                let ready = pod.ready_s <= now;
                // metrics-server has a sample for a pod that was serving for a whole window before the scrape.
                let reported = if self.settings.pod_spread { pod.reported_m } else { s.reported_m };
                let metric = reported.filter(|_| pod.ready_s + METRICS_WINDOW_S as f64 <= s.reported_at_s as f64);
                PodSample {
                    name: format!("{}-{}", s.name, pod.id),
                    phase: PodPhase::Running,
                    deleting: false,
                    ready: Some(ready),
                    ready_transition_ms: seconds_to_ms(if ready { pod.ready_s } else { pod.created_s }),
                    start_time_ms: Some(seconds_to_ms(pod.created_s)),
                    cpu_request_milli: s.request_m.round() as i64,
                    memory_request_bytes: s.memory_request_bytes,
                    metric: metric.map(|m| MetricSample {
                        cpu_milli: m.round() as i64,
                        memory_bytes: (s.memory_mib * 1024.0 * 1024.0) as i64,
                        timestamp_ms: seconds_to_ms(s.reported_at_s as f64),
                        window_ms: seconds_to_ms(METRICS_WINDOW_S as f64),
                    }),
                }
            })
            .collect()
    }
}

/// The call-graph edges one request to `route` crosses (with its followed redirect), with calls per request.
fn route_edges(app: &AppModel, route: &crate::app::Route) -> Vec<(usize, usize, f64)> {
    fn walk(app: &AppModel, call: &crate::app::Call, calls: f64, out: &mut Vec<(usize, usize, f64)>) {
        let from = app.service_index(&call.service).expect("validated service");
        for child in &call.calls {
            let to = app.service_index(&child.service).expect("validated service");
            let child_calls = calls * child.count;
            match out.iter_mut().find(|e| e.0 == from && e.1 == to) {
                Some(edge) => edge.2 += child_calls,
                None => out.push((from, to, child_calls)),
            }
            walk(app, child, child_calls, out);
        }
    }
    let mut out = Vec::new();
    walk(app, &route.call, route.call.count, &mut out);
    if let Some(target) = &route.redirect {
        let target = &app.routes[app.route_index(target).expect("validated redirect")];
        walk(app, &target.call, target.call.count, &mut out);
    }
    out
}

/// P(Z <= z) for a standard normal Z.
fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

fn seconds_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

impl ClusterBackend for Simulator {
    fn reset(&mut self, replicas: &[u32]) {
        self.time_s = 0;
        self.users = 0.0;
        for (s, &count) in self.services.iter_mut().zip(replicas) {
            s.pods.clear();
            // Warm start: the deployment has been running before the cell, so its pods are ready at t = 0.
            for _ in 0..count {
                s.pods.push(Pod { id: self.next_pod_id, created_s: -s.startup_s, ready_s: 0.0, reported_m: None });
                self.next_pod_id += 1;
            }
            s.desired = count;
            s.backlog = 0.0;
            s.window_sum_m = 0.0;
            s.window_calls = 0.0;
            s.reported_m = None;
        }
        self.window_seconds = 0;
    }

    fn observe(&self) -> Observation {
        let mut outgoing: Vec<Vec<(usize, f64)>> = vec![Vec::new(); self.services.len()];
        for (edges, &arrivals) in self.route_edges.iter().zip(&self.route_arrivals) {
            for &(from, to, calls) in edges {
                match outgoing[from].iter_mut().find(|e| e.0 == to) {
                    Some(edge) => edge.1 += arrivals * calls,
                    None => outgoing[from].push((to, arrivals * calls)),
                }
            }
        }
        Observation {
            time_s: self.time_s,
            services: self
                .services
                .iter()
                .zip(outgoing)
                .map(|(s, outgoing_rps)| ServiceObservation {
                    spec_replicas: s.desired,
                    status_replicas: s.pods.len() as u32,
                    ready_replicas: s.pods.iter().filter(|p| p.ready_s <= self.time_s as f64).count() as u32,
                    pods: self.pod_samples(s),
                    cpu_utilization_pct: s.reported_m.map(|m| 100.0 * m / s.request_m),
                    arrival_rps: s.calls,
                    failure_ratio: s.failure_ratio,
                    memory_utilization_pct: 100.0 * s.memory_mib / s.memory_request_mib,
                    sojourn_p95_ms: s.sojourn_p95_ms(self.settings.cpu == CpuModel::Cfs, self.z95),
                    outgoing_rps,
                })
                .collect(),
        }
    }

    fn scale(&mut self, service: usize, replicas: u32) {
        let now = self.time_s as f64;
        let s = &mut self.services[service];
        s.desired = replicas;
        while (s.pods.len() as u32) < replicas {
            // Start-up varies ±10 % from pod to pod (image cache, node load); with a tail, some pods pull their
            // image first.
            let mut jitter = 0.9 + 0.2 * self.rng.r#gen::<f64>();
            if self.settings.startup == Startup::Tail && self.rng.r#gen::<f64>() < IMAGE_PULL_SHARE {
                jitter += -IMAGE_PULL_MEAN * (1.0 - self.rng.r#gen::<f64>()).ln();
            }
            s.pods.push(Pod {
                id: self.next_pod_id,
                created_s: now,
                ready_s: now + s.startup_s * jitter,
                reported_m: None,
            });
            self.next_pod_id += 1;
        }
        while (s.pods.len() as u32) > replicas {
            // Like a ReplicaSet: remove pods that are not ready first, then the newest.
            let victim = s
                .pods
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| {
                    let a_key = (a.ready_s > now, a.created_s);
                    let b_key = (b.ready_s > now, b.created_s);
                    a_key.partial_cmp(&b_key).expect("finite times")
                })
                .map(|(i, _)| i)
                .expect("non-empty");
            s.pods.remove(victim);
        }
    }

    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool {
        match self.advance() {
            Some(row) => {
                rows.push(row);
                true
            }
            None => false,
        }
    }

    fn run_latency(&self) -> RunLatency {
        // The legacy model read the bucket where the weight crosses the percentile (the lower quantile point).
        let interpolated = self.settings.percentiles == Percentiles::Sampled;
        let pick = |h: &LogHistogram| {
            [50.0, 95.0, 99.0]
                .map(|p| if interpolated { h.percentile_interpolated(p) } else { h.percentile(p) }.unwrap_or(f64::NAN))
        };
        RunLatency { slo_route: pick(&self.slo_histogram), overall: pick(&self.overall_histogram) }
    }
}

impl Simulator {
    /// Runs one second of load; `None` once the scenario has ended.
    pub fn advance(&mut self) -> Option<SecondMetrics> {
        if self.time_s >= self.duration_s {
            return None;
        }
        let users = self.plan_route_rates();
        for r in 0..self.route_rates.len() {
            self.route_arrivals[r] = self.poisson(self.route_rates[r]);
        }
        self.step_services();

        let timeout_ms = self.workload.timeout_s * 1000.0;
        let (mut offered, mut achieved, mut failures) = (0.0, 0.0, 0.0);
        let mut row = SecondMetrics {
            time_s: self.time_s,
            users,
            offered_rps: 0.0,
            achieved_rps: 0.0,
            failures: 0.0,
            slo_p50_ms: 0.0,
            slo_p95_ms: 0.0,
            slo_p99_ms: 0.0,
            slo_violated: false,
            slo_requests: 0.0,
            slo_bad_requests: 0.0,
            services: Vec::with_capacity(self.services.len()),
        };
        for (r, route) in self.workload.routes.iter().enumerate() {
            // A route nobody calls this second needs no latency, except the SLO route, which every row reports.
            if self.route_rates[r] == 0.0 && self.route_arrivals[r] == 0.0 && r != self.slo_route {
                continue;
            }
            let cfs = self.settings.cpu == CpuModel::Cfs;
            let mut mean_ms = if cfs { route.network_ms } else { route.base_ms };
            let mut variance = if cfs { 0.0 } else { route.base_variance_ms2 };
            let mut log_success = 0.0;
            for touch in &route.touches {
                let s = &self.services[touch.service];
                if cfs {
                    mean_ms += touch.calls * s.call_mean_ms;
                    variance += touch.calls * s.call_variance_ms2;
                } else {
                    mean_ms += touch.calls * s.wait_ms;
                    variance += touch.calls * s.wait_variance_ms2;
                }
                if s.failure_ratio > 0.0 {
                    log_success += touch.calls * (1.0 - s.failure_ratio).max(1e-12).ln();
                }
            }
            let latency = match (cfs, self.single_call[r]) {
                (false, _) => RouteLatency::LogNormal(LogNormal::from_moments(mean_ms, variance)),
                // One call: its own quantiles, whose shape a log-normal would lose.
                (true, Some(service)) => RouteLatency::Curve(LatencyCurve::through(
                    self.services[service].call_quantiles_ms.map(|q| q + route.network_ms),
                    self.knot_z,
                )),
                (true, None) => {
                    let fitted = LogNormal::from_moments(mean_ms, variance);
                    RouteLatency::Curve(LatencyCurve::through(self.knot_z.map(|z| fitted.at_z(z)), self.knot_z))
                }
            };
            let timed_out = latency.exceedance(timeout_ms);
            let failure = 1.0 - log_success.exp() * (1.0 - timed_out);
            self.route_response_s[r] = ((1.0 - failure) * mean_ms + failure * timeout_ms) / 1000.0;
            let arrivals = self.route_arrivals[r];
            let succeeded = arrivals * (1.0 - failure);
            offered += arrivals;
            achieved += succeeded;
            failures += arrivals - succeeded;
            if succeeded > 0.0 {
                let weight = succeeded;
                for (i, z) in self.bin_z.iter().enumerate() {
                    let share = QUANTILE_BINS[i + 1] - QUANTILE_BINS[i];
                    let ln_ms = latency.ln_at_z(*z);
                    self.overall_histogram.add_ln(ln_ms, weight * share);
                    if r == self.slo_route {
                        self.slo_histogram.add_ln(ln_ms, weight * share);
                    }
                }
            }
            if r == self.slo_route {
                // Failed requests count as slower than any threshold.
                let bad_share = failure + (1.0 - failure) * latency.exceedance(self.slo_threshold_ms);
                row.slo_requests = arrivals;
                if self.settings.percentiles == Percentiles::Sampled && succeeded >= 1.0 {
                    // The second's requests drawn from the distribution: the percentiles are their order
                    // statistics, the SLO percentile among all requests (failed ones slowest) decides the second.
                    let [z50, z95, z99] = [0.5, 0.95, 0.99].map(|p| sampled_z(&mut self.rng, p, succeeded));
                    row.slo_p50_ms = latency.at_z(z50);
                    row.slo_p95_ms = latency.at_z(z95);
                    row.slo_p99_ms = latency.at_z(z99);
                    let level = normal_cdf(sampled_z(&mut self.rng, self.slo_fraction, arrivals));
                    row.slo_violated = level > 1.0 - bad_share;
                    row.slo_bad_requests = sampled_count(&mut self.rng, arrivals, bad_share);
                } else {
                    row.slo_p50_ms = latency.at_z(self.z50);
                    row.slo_p95_ms = latency.at_z(self.z95);
                    row.slo_p99_ms = latency.at_z(self.z99);
                    row.slo_violated = bad_share > 1.0 - self.slo_fraction;
                    row.slo_bad_requests = arrivals * bad_share;
                }
            }
        }
        row.offered_rps = offered;
        row.achieved_rps = achieved;
        row.failures = failures;
        for s in &self.services {
            row.services.push(ServiceSecond {
                ready: s.ready,
                desired: s.desired,
                pods: s.pods.len() as u32,
                cpu_utilization_pct: s.reported_m.map_or(0.0, |m| 100.0 * m / s.request_m),
                cfs_periods: (self.settings.cpu == CpuModel::Cfs).then_some(s.cfs_periods),
                cfs_throttled_periods: (self.settings.cpu == CpuModel::Cfs).then_some(s.cfs_throttled_periods),
                memory_mib: s.memory_mib,
            });
        }
        self.publish_metrics_window();
        self.time_s += 1;
        Some(row)
    }
}

//! The emulated cluster's control plane: deployments and their pods (start-up delays, a ReplicaSet's choice of
//! pods to remove), admission capacity from ready pods, CPU accounting per pod, metrics-server's 15 s samples, and
//! the rates a policy observes.
//!
//! Time here is emulated seconds: the cluster advances one [`Cluster::tick`] per emulated second, whoever calls it
//! (the backend, once per second of the cell; a timer in `orch emulate`). Rates and CPU usage are measured over
//! wall time, because requests run in real time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::admission::Admission;
use super::burn_pods::{BurnError, BurnPods, Throttling};
pub use super::pod::Pod;
use super::served_app::CompiledApp;
use super::telemetry::{BUCKETS, Telemetry, bucket_quantile};
use crate::cell::{Observation, ServiceObservation, ServiceSecond};
use crate::hpa::{MetricSample, PodPhase, PodSample};
use crate::sim::METRICS_WINDOW_S;

/// What a service's calls update on the hot path.
#[derive(Default)]
pub struct ServiceRuntime {
    /// Slots, the queue, and the CPU time served.
    pub admission: Admission,
    /// Calls that arrived, and those refused (no endpoints or timed out).
    pub calls: AtomicU64,
    pub failures: AtomicU64,
}

impl ServiceRuntime {
    /// Calls waiting for or holding a pod.
    pub fn in_flight(&self) -> u64 {
        let (in_use, waiting) = self.admission.load();
        in_use as u64 + waiting as u64
    }
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub desired: u32,
    pub pods: Vec<Pod>,
    busy_seen_ns: u64,
    window_sum_m: f64,
    /// metrics-server's last per-pod mean (millicores) and when it was published (emulated s).
    pub reported_m: Option<f64>,
    pub reported_at_s: u64,
    /// Resident memory per ready pod at the last tick.
    pub memory_mib: f64,
    /// Burning mode: the service's CFS counters at the last tick, and what they gained over the second it ended.
    cfs_seen: Throttling,
    cfs_second: Option<Throttling>,
}

/// Counters at one tick, to measure rates over the last wall second.
struct Sample {
    at: Instant,
    calls: Vec<u64>,
    failures: Vec<u64>,
    edge_requests: Vec<u64>,
    /// Per service: latency bucket counts of the calls it served.
    buckets: Vec<[u64; BUCKETS]>,
}

pub struct Control {
    /// The emulated second of the last tick.
    pub time_s: u64,
    last_tick: Option<Instant>,
    pub deployments: Vec<Deployment>,
    next_pod_id: u64,
    rng: ChaCha8Rng,
    history: VecDeque<Sample>,
}

/// The cluster: constants, hot-path state, control state.
pub struct Cluster {
    pub app: CompiledApp,
    pub services: Vec<ServiceRuntime>,
    pub telemetry: Telemetry,
    pub time_scale: f64,
    pub pod_concurrency: u32,
    seed: u64,
    requests: AtomicU64,
    control: Mutex<Control>,
    /// The burning mode's pods (cgroups and worker threads); `None` when service times are slept.
    pub burn: Option<BurnPods>,
}

impl Cluster {
    pub fn new(app: CompiledApp, time_scale: f64, pod_concurrency: u32, seed: u64) -> Cluster {
        let cluster = Cluster::build(app, time_scale, pod_concurrency, seed, None);
        let initial: Vec<u32> = cluster.app.services.iter().map(|s| s.initial).collect();
        cluster.reset(&initial);
        cluster
    }

    /// A cluster whose pods burn CPU in `burn`'s cgroups; fails, leaving no group, if a pod cannot be made.
    pub fn burning(
        app: CompiledApp,
        time_scale: f64,
        pod_concurrency: u32,
        seed: u64,
        burn: BurnPods,
    ) -> Result<Cluster, BurnError> {
        let cluster = Cluster::build(app, time_scale, pod_concurrency, seed, Some(burn));
        let initial: Vec<u32> = cluster.app.services.iter().map(|s| s.initial).collect();
        cluster.try_reset(&initial)?;
        Ok(cluster)
    }

    fn build(app: CompiledApp, time_scale: f64, pod_concurrency: u32, seed: u64, burn: Option<BurnPods>) -> Cluster {
        let deployments = app
            .services
            .iter()
            .map(|s| Deployment {
                desired: 0,
                pods: Vec::new(),
                busy_seen_ns: 0,
                window_sum_m: 0.0,
                reported_m: None,
                reported_at_s: 0,
                memory_mib: s.memory_base_mib,
                cfs_seen: Throttling::default(),
                cfs_second: None,
            })
            .collect();
        Cluster {
            services: app.services.iter().map(|_| ServiceRuntime::default()).collect(),
            telemetry: Telemetry::new(app.edges.len(), app.routes.len()),
            time_scale,
            pod_concurrency,
            seed,
            requests: AtomicU64::new(0),
            control: Mutex::new(Control {
                time_s: 0,
                last_tick: None,
                deployments,
                next_pod_id: 0,
                rng: ChaCha8Rng::seed_from_u64(seed),
                history: VecDeque::new(),
            }),
            app,
            burn,
        }
    }

    pub fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A random stream for one request (deterministic per request number).
    pub fn request_rng(&self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(self.requests.fetch_add(1, Ordering::Relaxed));
        rng
    }

    fn capacity_of(&self, deployment: &Deployment, now_s: f64) -> u32 {
        deployment.pods.iter().filter(|p| p.is_ready(now_s)).count() as u32 * self.pod_concurrency
    }

    /// Every deployment at `replicas`, ready (warm: running before the cell), history cleared, time 0.
    pub fn reset(&self, replicas: &[u32]) {
        if let Err(e) = self.try_reset(replicas) {
            tracing::error!("{e}");
        }
    }

    /// [`Cluster::reset`], failing if a burning pod cannot be made (the others are set all the same).
    pub fn try_reset(&self, replicas: &[u32]) -> Result<(), BurnError> {
        let mut outcome = Ok(());
        let mut control = self.control();
        let control = &mut *control;
        control.time_s = 0;
        control.last_tick = None;
        control.history.clear();
        for (index, (deployment, &count)) in control.deployments.iter_mut().zip(replicas).enumerate() {
            let spec = &self.app.services[index];
            deployment.pods.clear();
            for _ in 0..count {
                deployment.pods.push(new_pod(&spec.name, control.next_pod_id, -spec.startup_s, 0.0));
                control.next_pod_id += 1;
            }
            deployment.desired = count;
            deployment.busy_seen_ns = self.services[index].admission.busy_cpu_ns();
            deployment.window_sum_m = 0.0;
            deployment.reported_m = None;
            deployment.reported_at_s = 0;
            outcome = outcome.and(self.sync_burning(index, deployment, 0.0));
            // Throttling counts from here: what pods did before the cell is not its.
            deployment.cfs_seen = self.throttling_totals(index).unwrap_or_default();
            deployment.cfs_second = None;
            self.services[index].admission.set_capacity(self.capacity_of(deployment, 0.0));
        }
        outcome
    }

    /// Starts and retires burning pods as `deployment`'s pods came and went (burning mode only).
    fn sync_burning(&self, service: usize, deployment: &Deployment, now_s: f64) -> Result<(), BurnError> {
        match &self.burn {
            Some(burn) => burn.sync(service, &deployment.pods, now_s),
            None => Ok(()),
        }
    }

    /// `service`'s CFS counters summed over its pods, those removed included (they are added as their groups go,
    /// so a pod removed in a second counts what it did until then); `None` when service times are slept.
    fn throttling_totals(&self, service: usize) -> Option<Throttling> {
        self.burn.as_ref().map(|burn| burn.throttling(service))
    }

    /// Stops the burning pods (their calls fail, their groups go); a no-op when service times are slept.
    pub fn stop_burning(&self) {
        if let Some(burn) = &self.burn {
            burn.shutdown();
        }
    }

    /// Sets a deployment's desired replicas at the current emulated time: new pods start (ready after their
    /// start-up delay, ±10 %), surplus ones go, not-ready first, then the newest (as a ReplicaSet picks them).
    pub fn scale(&self, service: usize, replicas: u32) {
        let mut control = self.control();
        let control = &mut *control;
        let now = control.time_s as f64;
        let spec = &self.app.services[service];
        let deployment = &mut control.deployments[service];
        deployment.desired = replicas;
        while (deployment.pods.len() as u32) < replicas {
            let jitter = 0.9 + 0.2 * control.rng.r#gen::<f64>();
            deployment.pods.push(new_pod(&spec.name, control.next_pod_id, now, now + spec.startup_s * jitter));
            control.next_pod_id += 1;
        }
        while (deployment.pods.len() as u32) > replicas {
            let victim = deployment
                .pods
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| {
                    let a_key = (!a.is_ready(now), a.created_s);
                    let b_key = (!b.is_ready(now), b.created_s);
                    a_key.partial_cmp(&b_key).expect("finite times")
                })
                .map(|(i, _)| i)
                .expect("non-empty");
            deployment.pods.remove(victim);
        }
        if let Err(e) = self.sync_burning(service, deployment, now) {
            tracing::error!("{e}");
        }
        self.services[service].admission.set_capacity(self.capacity_of(deployment, now));
    }

    /// Advances the control plane to emulated second `time_s`: readiness, CPU accounting over the second that
    /// ended, metrics-server's window, the rate history.
    pub fn tick(&self, time_s: u64) {
        let now = Instant::now();
        let mut control = self.control();
        let control = &mut *control;
        let dt = control.last_tick.map_or(1.0 / self.time_scale, |last| now.duration_since(last).as_secs_f64());
        let dt = dt.max(1e-6);
        control.last_tick = Some(now);
        control.time_s = time_s;
        let now_s = time_s as f64;
        for (index, deployment) in control.deployments.iter_mut().enumerate() {
            let spec = &self.app.services[index];
            let runtime = &self.services[index];
            if let Err(e) = self.sync_burning(index, deployment, now_s) {
                tracing::error!("{e}");
            }
            runtime.admission.set_capacity(self.capacity_of(deployment, now_s));
            if let Some(totals) = self.throttling_totals(index) {
                deployment.cfs_second = Some(totals.since(&deployment.cfs_seen));
                deployment.cfs_seen = totals;
            }
            let busy = runtime.admission.busy_cpu_ns();
            let busy_cpu_s = busy.saturating_sub(deployment.busy_seen_ns) as f64 / 1e9;
            deployment.busy_seen_ns = busy;
            let ready = deployment.pods.iter().filter(|p| p.is_ready(now_s)).count();
            if ready > 0 {
                let per_pod_cpu_s = busy_cpu_s / ready as f64 + spec.idle_m / 1000.0 * dt;
                for pod in deployment.pods.iter_mut().filter(|p| p.is_ready(now_s)) {
                    pod.cpu_seconds += per_pod_cpu_s;
                }
            }
            // As the simulator: the mean per ready pod, idle burn included. CPU is counted when a hold ends, so
            // a long hold lands in one tick: cap at the limit, which a pod's cgroup never exceeds.
            let busy_m = busy_cpu_s / dt * 1000.0;
            let ready_f = ready.max(1) as f64;
            deployment.window_sum_m += ((busy_m + spec.idle_m * ready as f64) / ready_f).min(spec.limit_m);
            let in_flight = runtime.in_flight() as f64;
            deployment.memory_mib = spec.memory_base_mib + spec.memory_per_inflight_mib * in_flight / ready_f;
            if time_s > 0 && time_s.is_multiple_of(METRICS_WINDOW_S) {
                deployment.reported_m = Some(deployment.window_sum_m / METRICS_WINDOW_S as f64);
                deployment.reported_at_s = time_s;
                deployment.window_sum_m = 0.0;
            }
        }
        control.history.push_back(Sample {
            at: now,
            calls: self.services.iter().map(|s| s.calls.load(Ordering::Relaxed)).collect(),
            failures: self.services.iter().map(|s| s.failures.load(Ordering::Relaxed)).collect(),
            edge_requests: (0..self.app.edges.len()).map(|e| self.telemetry.edge_requests(e)).collect(),
            buckets: (0..self.services.len()).map(|s| self.destination_buckets(s)).collect(),
        });
        // Keep a little over one wall second of history.
        while control.history.len() > 2 && now.duration_since(control.history[1].at).as_secs_f64() > 1.0 {
            control.history.pop_front();
        }
    }

    fn destination_buckets(&self, service: usize) -> [u64; BUCKETS] {
        let into = self.app.edges.iter().enumerate().filter(|(_, e)| e.destination == service).map(|(i, _)| i);
        self.telemetry.destination_buckets(into)
    }

    /// Each service's replicas, CPU as metrics-server reports it, CFS throttling over the last second (burning
    /// mode) and memory, for a metrics row.
    pub fn second(&self) -> Vec<ServiceSecond> {
        let control = self.control();
        let now_s = control.time_s as f64;
        control
            .deployments
            .iter()
            .zip(&self.app.services)
            .map(|(d, spec)| ServiceSecond {
                ready: d.pods.iter().filter(|p| p.is_ready(now_s)).count() as u32,
                desired: d.desired,
                pods: d.pods.len() as u32,
                cpu_utilization_pct: d.reported_m.map_or(0.0, |m| 100.0 * m / spec.request_m),
                // Slept service times are not throttled by anything: no counters to report.
                cfs_periods: self.burn.as_ref().map(|_| d.cfs_second.map_or(0.0, |c| c.periods as f64)),
                cfs_throttled_periods: self
                    .burn
                    .as_ref()
                    .map(|_| d.cfs_second.map_or(0.0, |c| c.throttled_periods as f64)),
                memory_mib: d.memory_mib,
            })
            .collect()
    }

    /// What a policy sees now: replicas, pods with metrics-server samples, and rates over the last wall second.
    pub fn observe(&self) -> Observation {
        let control = self.control();
        let now_s = control.time_s as f64;
        let span = match (control.history.front(), control.history.back()) {
            (Some(first), Some(last)) if last.at > first.at => Some((first, last)),
            _ => None,
        };
        let seconds = span.map_or(1.0, |(first, last)| last.at.duration_since(first.at).as_secs_f64());
        let delta = |pick: &dyn Fn(&Sample) -> u64| span.map_or(0.0, |(a, b)| pick(b).saturating_sub(pick(a)) as f64);
        let services = control
            .deployments
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let spec = &self.app.services[index];
                let calls = delta(&|s| s.calls[index]);
                let failures = delta(&|s| s.failures[index]);
                let mut outgoing_rps = Vec::new();
                for (e, edge) in self.app.edges.iter().enumerate() {
                    if edge.source == Some(index) {
                        let rate = delta(&|s| s.edge_requests[e]) / seconds;
                        match outgoing_rps.iter_mut().find(|(to, _)| *to == edge.destination) {
                            Some((_, total)) => *total += rate,
                            None => outgoing_rps.push((edge.destination, rate)),
                        }
                    }
                }
                let buckets: [u64; BUCKETS] = match span {
                    Some((a, b)) => std::array::from_fn(|i| b.buckets[index][i].saturating_sub(a.buckets[index][i])),
                    None => [0; BUCKETS],
                };
                ServiceObservation {
                    spec_replicas: d.desired,
                    status_replicas: d.pods.len() as u32,
                    ready_replicas: d.pods.iter().filter(|p| p.is_ready(now_s)).count() as u32,
                    pods: pod_samples(d, spec.request_m, spec.memory_request_mib, now_s),
                    cpu_utilization_pct: d.reported_m.map(|m| 100.0 * m / spec.request_m),
                    arrival_rps: calls / seconds,
                    failure_ratio: if calls > 0.0 { failures / calls } else { 0.0 },
                    memory_utilization_pct: 100.0 * d.memory_mib / spec.memory_request_mib,
                    sojourn_p95_ms: bucket_quantile(0.95, &buckets).unwrap_or(0.0),
                    outgoing_rps,
                }
            })
            .collect();
        Observation { time_s: control.time_s, services }
    }
}

fn new_pod(service: &str, id: u64, created_s: f64, ready_s: f64) -> Pod {
    Pod { id, name: format!("{service}-{id}"), created_s, ready_s, cpu_seconds: 0.0 }
}

fn seconds_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// Pods as the HPA controller reads them: metrics-server has a sample for a pod that served a whole window.
fn pod_samples(d: &Deployment, request_m: f64, memory_request_mib: f64, now_s: f64) -> Vec<PodSample> {
    d.pods
        .iter()
        .map(|pod| {
            let ready = pod.is_ready(now_s);
            let metric = d.reported_m.filter(|_| pod.ready_s + METRICS_WINDOW_S as f64 <= d.reported_at_s as f64);
            PodSample {
                name: pod.name.clone(),
                phase: PodPhase::Running,
                deleting: false,
                ready: Some(ready),
                ready_transition_ms: seconds_to_ms(if ready { pod.ready_s } else { pod.created_s }),
                start_time_ms: Some(seconds_to_ms(pod.created_s)),
                cpu_request_milli: request_m.round() as i64,
                memory_request_bytes: (memory_request_mib * 1024.0 * 1024.0) as i64,
                metric: metric.map(|m| MetricSample {
                    cpu_milli: m.round() as i64,
                    memory_bytes: (d.memory_mib * 1024.0 * 1024.0) as i64,
                    timestamp_ms: seconds_to_ms(d.reported_at_s as f64),
                    window_ms: seconds_to_ms(METRICS_WINDOW_S as f64),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::app::AppModel;

    fn boutique() -> Cluster {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/apps/online-boutique.yaml");
        Cluster::new(CompiledApp::compile(&AppModel::load(&file).unwrap(), 1), 10.0, 1, 7)
    }

    #[tokio::test]
    async fn pods_start_after_their_delay_and_capacity_follows() {
        let cluster = boutique();
        let frontend = cluster.app.service_index("frontend").unwrap();
        cluster.tick(1);
        cluster.scale(frontend, 3);
        assert_eq!(cluster.second()[frontend].ready, 1);
        assert_eq!(cluster.second()[frontend].pods, 3);
        // frontend starts in 15 s ± 10 %.
        cluster.tick(13);
        assert_eq!(cluster.second()[frontend].ready, 1);
        cluster.tick(18);
        assert_eq!(cluster.second()[frontend].ready, 3);
        // Scale in removes the newest first.
        cluster.scale(frontend, 2);
        let names: Vec<String> = cluster.control().deployments[frontend].pods.iter().map(|p| p.name.clone()).collect();
        let first_new = cluster.app.services.len();
        assert_eq!(names, ["frontend-0".to_string(), format!("frontend-{first_new}")]);
    }

    #[tokio::test]
    async fn metrics_server_publishes_window_means_for_pods_that_served_a_whole_window() {
        let cluster = boutique();
        let frontend = cluster.app.service_index("frontend").unwrap();
        let far = Instant::now() + std::time::Duration::from_secs(10);
        for t in 1..=15 {
            // 0.1 CPU-seconds per tick on the one pod.
            cluster.services[frontend].admission.acquire(far).await.unwrap().finish(100_000_000);
            cluster.tick(t);
        }
        let observation = cluster.observe();
        let seen = &observation.services[frontend];
        let utilization = seen.cpu_utilization_pct.unwrap();
        assert!(utilization > 50.0, "0.1 CPU-s per short tick is busy: {utilization}");
        assert!(seen.pods[0].metric.is_some(), "the warm pod served the whole window");
        cluster.scale(frontend, 2);
        assert!(cluster.observe().services[frontend].pods.iter().any(|p| p.metric.is_none()));
    }
}

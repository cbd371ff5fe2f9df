//! Runs one cell: a policy driving a backend second by second, and the summary of what happened.

use serde::{Deserialize, Serialize};

use crate::backend::{ClusterBackend, SecondMetrics};
use crate::emulated::EmulatedRun;
use crate::matrix::{Backend, CellConfig, ResolvedPolicy};
use crate::policy::{HpaPolicy, Policy, StaticPolicy};
use crate::sim::Simulator;

/// The figures of one cell over its whole run: its summary.json. orch writes every field; a summary written by hand
/// or by another tool needs only the headline figures (cost, SLO, failures, scaling), the fields without a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    #[serde(default)]
    pub cell: String,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub seed: u64,
    /// The backend the cell ran on (`sim`, `emulated`); summaries written before it existed are `sim`.
    #[serde(default = "sim")]
    pub backend: String,
    #[serde(default)]
    pub duration_s: u64,
    // Every figure below is finite: see `check_figures`, which runs before a summary is written.
    /// Area under the ready-pod curve, summed over services.
    pub pod_minutes: f64,
    /// CPU requested by every existing pod (ready or starting), over time.
    pub cpu_core_hours: f64,
    /// Seconds in which the SLO percentile of the SLO route exceeded its threshold.
    pub slo_violation_seconds_pct: f64,
    /// Requests to the SLO route slower than the threshold, or failed.
    pub slo_violation_requests_pct: f64,
    pub slo_p50_ms: f64,
    pub slo_p95_ms: f64,
    pub slo_p99_ms: f64,
    #[serde(default)]
    pub overall_p50_ms: f64,
    #[serde(default)]
    pub overall_p95_ms: f64,
    #[serde(default)]
    pub overall_p99_ms: f64,
    pub failure_pct: f64,
    #[serde(default)]
    pub offered_requests: f64,
    #[serde(default)]
    pub achieved_requests: f64,
    #[serde(default)]
    pub mean_offered_rps: f64,
    #[serde(default)]
    pub mean_achieved_rps: f64,
    /// Changes of a deployment's desired replicas.
    pub scaling_actions: u64,
}

/// A figure of a cell's summary that is not a finite number: the cell has no valid summary, and fails with this
/// reason instead of writing a summary.json whose figures read back as null.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("summary figure {figure} is {value}, not a finite number: {reason}")]
pub struct NonFiniteFigure {
    pub figure: &'static str,
    pub value: f64,
    pub reason: &'static str,
}

impl CellSummary {
    /// Every figure of the summary, by its name in summary.json.
    pub fn figures(&self) -> [(&'static str, f64); 16] {
        [
            ("pod_minutes", self.pod_minutes),
            ("cpu_core_hours", self.cpu_core_hours),
            ("slo_violation_seconds_pct", self.slo_violation_seconds_pct),
            ("slo_violation_requests_pct", self.slo_violation_requests_pct),
            ("slo_p50_ms", self.slo_p50_ms),
            ("slo_p95_ms", self.slo_p95_ms),
            ("slo_p99_ms", self.slo_p99_ms),
            ("overall_p50_ms", self.overall_p50_ms),
            ("overall_p95_ms", self.overall_p95_ms),
            ("overall_p99_ms", self.overall_p99_ms),
            ("failure_pct", self.failure_pct),
            ("offered_requests", self.offered_requests),
            ("achieved_requests", self.achieved_requests),
            ("mean_offered_rps", self.mean_offered_rps),
            ("mean_achieved_rps", self.mean_achieved_rps),
            ("scaling_actions", self.scaling_actions as f64),
        ]
    }

    /// The first figure that is NaN or infinite, with why it can be (a run whose requests all failed has no
    /// latency percentiles).
    pub fn check_figures(&self) -> Result<(), NonFiniteFigure> {
        let Some((figure, value)) = self.figures().into_iter().find(|(_, v)| !v.is_finite()) else { return Ok(()) };
        let reason = match figure {
            "slo_p50_ms" | "slo_p95_ms" | "slo_p99_ms" => {
                "no request to the SLO route completed (none was sent, or every one failed), so it has no latency \
                 percentiles"
            }
            "overall_p50_ms" | "overall_p95_ms" | "overall_p99_ms" => {
                "no request completed (none was sent, or every one failed), so there are no latency percentiles"
            }
            _ => "the backend reported a figure that is not a number",
        };
        Err(NonFiniteFigure { figure, value, reason })
    }
}

fn sim() -> String {
    Backend::Sim.name().to_string()
}

/// Running totals from which the summary is computed.
#[derive(Debug, Default)]
struct Totals {
    seconds: u64,
    ready_pod_seconds: f64,
    requested_core_seconds: f64,
    violated_seconds: u64,
    slo_requests: f64,
    slo_bad_requests: f64,
    offered: f64,
    achieved: f64,
    failures: f64,
}

/// Builds the policy a resolved config describes.
pub fn build_policy(config: &CellConfig) -> Box<dyn Policy> {
    match config.policy.as_ref() {
        ResolvedPolicy::Hpa { manifests, .. } => Box::new(HpaPolicy::new(&config.app, manifests)),
        ResolvedPolicy::Rl(rl) => Box::new(crate::rl::prepare::build_policy(rl, &config.app)),
        ResolvedPolicy::Static { replicas, .. } => Box::new(StaticPolicy::new(
            config
                .app
                .services
                .iter()
                .map(|s| replicas.get(&s.name).copied().unwrap_or(s.replicas.initial()))
                .collect(),
        )),
    }
}

/// Runs a cell on the backend its config names; an emulated cell writes its agents' files into `dir` and needs the
/// run's agent settings.
pub fn run(
    id: &str,
    config: &CellConfig,
    dir: &std::path::Path,
    emulated: Option<&EmulatedRun>,
    kubernetes: Option<&crate::kubernetes::settings::KubernetesRun>,
    on_second: impl FnMut(&SecondMetrics),
    on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> anyhow::Result<CellSummary> {
    match config.backend {
        Backend::Sim => Ok(simulate(id, config, on_second, on_scale)),
        Backend::Emulated => {
            let run =
                emulated.ok_or_else(|| anyhow::anyhow!("an emulated cell needs the matrix's emulated settings"))?;
            crate::emulated::cell::run_cell(id, config, run, dir, on_second, on_scale)
        }
        Backend::Kubernetes => {
            let run = kubernetes
                .ok_or_else(|| anyhow::anyhow!("a kubernetes cell needs the matrix's kubernetes settings"))?;
            crate::kubernetes::cell::run_cell(id, config, run, dir, on_second, on_scale)
        }
    }
}

/// Runs a cell on the simulator, handing every second to `on_second` and each scaling action to `on_scale`.
pub fn simulate(
    id: &str,
    config: &CellConfig,
    on_second: impl FnMut(&SecondMetrics),
    on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> CellSummary {
    let mut backend = Simulator::new(&config.app, &config.scenario, config.seed);
    let mut policy = build_policy(config);
    drive(id, config, &mut backend, policy.as_mut(), on_second, on_scale)
}

/// Runs a cell on `backend`: the policy decides every `interval_s` seconds of the backend's clock, rows arrive
/// as the backend completes them.
pub fn drive(
    id: &str,
    config: &CellConfig,
    backend: &mut dyn ClusterBackend,
    policy: &mut dyn Policy,
    mut on_second: impl FnMut(&SecondMetrics),
    mut on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> CellSummary {
    backend.reset(&policy.initial_replicas());
    let interval = policy.interval_s();
    let cpu_requests_m: Vec<f64> = config.app.services.iter().map(|s| s.cpu.request_m).collect();
    let mut totals = Totals::default();
    let mut scaling_actions = 0;
    let mut rows = Vec::new();
    let mut clock = 0u64;
    loop {
        let now = clock;
        if interval != u64::MAX && now.is_multiple_of(interval) {
            let observation = backend.observe();
            for decision in policy.decide(&observation) {
                let before = observation.services[decision.service].spec_replicas;
                if decision.replicas != before {
                    scaling_actions += 1;
                    on_scale(
                        now,
                        &config.app.services[decision.service].name,
                        before,
                        decision.replicas,
                        &decision.reason,
                    );
                    backend.scale(decision.service, decision.replicas);
                }
            }
        }
        let running = backend.tick(&mut rows);
        for second in rows.drain(..) {
            totals.seconds += 1;
            for (service, request_m) in second.services.iter().zip(&cpu_requests_m) {
                totals.ready_pod_seconds += service.ready as f64;
                totals.requested_core_seconds += service.pods as f64 * request_m / 1000.0;
            }
            totals.violated_seconds += second.slo_violated as u64;
            totals.slo_requests += second.slo_requests;
            totals.slo_bad_requests += second.slo_bad_requests;
            totals.offered += second.offered_rps;
            totals.achieved += second.achieved_rps;
            totals.failures += second.failures;
            on_second(&second);
        }
        if !running {
            break;
        }
        clock += 1;
    }
    let latency = backend.run_latency();
    let pct = |part: f64, whole: f64| if whole > 0.0 { 100.0 * part / whole } else { 0.0 };
    let seconds = totals.seconds.max(1) as f64;
    CellSummary {
        cell: id.to_string(),
        app: config.app.name.clone(),
        policy: config.policy.name().to_string(),
        scenario: config.scenario.name.clone(),
        seed: config.seed,
        backend: config.backend.name().to_string(),
        duration_s: totals.seconds,
        pod_minutes: totals.ready_pod_seconds / 60.0,
        cpu_core_hours: totals.requested_core_seconds / 3600.0,
        slo_violation_seconds_pct: pct(totals.violated_seconds as f64, totals.seconds as f64),
        slo_violation_requests_pct: pct(totals.slo_bad_requests, totals.slo_requests),
        slo_p50_ms: latency.slo_route[0],
        slo_p95_ms: latency.slo_route[1],
        slo_p99_ms: latency.slo_route[2],
        overall_p50_ms: latency.overall[0],
        overall_p95_ms: latency.overall[1],
        overall_p99_ms: latency.overall[2],
        failure_pct: pct(totals.failures, totals.offered),
        offered_requests: totals.offered,
        achieved_requests: totals.achieved,
        mean_offered_rps: totals.offered / seconds,
        mean_achieved_rps: totals.achieved / seconds,
        scaling_actions,
    }
}

/// Runs a cell and keeps every second in memory (tests and small tools).
pub fn simulate_collect(id: &str, config: &CellConfig) -> (Vec<SecondMetrics>, CellSummary) {
    let mut seconds = Vec::new();
    let summary = simulate(id, config, |s| seconds.push(s.clone()), |_, _, _, _, _| {});
    (seconds, summary)
}

//! Drives one cell: a policy deciding on a backend's clock, every completed second handed on, the summary at the end.

use super::cluster::ClusterBackend;
use super::config::CellConfig;
use super::observation::SecondMetrics;
use super::policy::Policy;
use super::summary::CellSummary;

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

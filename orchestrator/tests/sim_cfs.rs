//! The simulator's CFS model against hand-computed cases and against its legacy twin: throttling appears only where
//! a period's demand exceeds the quota, latency follows the period, each model part switches back, same seed same
//! bytes.

mod common;

use common::Scratch;
use orchestrator::cell::{Cell, CellSummary, SecondMetrics};
use orchestrator::matrix::Matrix;

fn simulate(cell: &Cell) -> (Vec<SecondMetrics>, CellSummary) {
    let mut policy = orchestrator::run::policies::build_policy(&cell.config);
    orchestrator::backends::sim::simulate_collect(&cell.id, &cell.config, policy.as_mut())
}

/// One service with `limit_m` and `cpu_ms` per call, one static pod, a constant Poisson rate for 120 s.
fn cell(limit_m: f64, cpu_ms: f64, rate: f64, simulator: &str) -> Cell {
    let scratch = Scratch::new();
    scratch.write(
        "experiments/apps/one.yaml",
        &format!(
            "name: one\nslo: {{route: r, percentile: 95, threshold_ms: 100}}\nservices:\n  - name: s\n    cpu: \
             {{request_m: {limit_m}, limit_m: {limit_m}, per_request_ms: {cpu_ms}, idle_m: 0}}\n    memory: \
             {{request_mib: 64, limit_mib: 64, base_mib: 10, per_inflight_mib: 0}}\n    replicas: {{min: 1, max: \
             1}}\n    startup_s: 1\nroutes:\n  - {{name: r, match: {{method: GET, path: /r}}, call: {{service: s}}}}\n"
        ),
    );
    scratch.write(
        "experiments/scenarios/one/constant.yaml",
        &format!(
            "users:\n  - name: u\n    tasks: [{{name: t, requests: [{{method: GET, path: /r}}]}}]\nshape:\n  \
             arrival_rate:\n    start_rate: {rate}\n    stages: [{{duration: 120, target: {rate}}}]\n    \
             preallocated_users: 10\n    max_users: 1000\n    arrivals: poisson\n"
        ),
    );
    scratch.write(
        "experiments/t.yaml",
        &format!(
            "name: t\nseeds: [3]\napps: [one]\nscenarios: [constant]\npolicies:\n  - {{name: one, kind: static, \
             replicas: 1}}\n{simulator}"
        ),
    );
    Matrix::load(&scratch.path("experiments/t.yaml")).expect("valid matrix").cells.remove(0)
}

fn throttled(rows: &[SecondMetrics]) -> f64 {
    rows.iter().map(|r| r.services[0].cfs_throttled_periods.expect("the CFS model counts periods")).sum()
}

#[test]
fn calls_that_fit_the_quota_are_never_throttled_and_run_at_full_speed() {
    // 500m (50 ms per 100 ms period), 1 ms calls at 20/s: a period's demand is about 2 ms, far from the quota.
    let (rows, summary) = simulate(&cell(500.0, 1.0, 20.0, ""));
    assert_eq!(throttled(&rows), 0.0);
    // Full core speed: the median call takes its 1 ms of CPU (plus a little queueing), not 1 / 0.5 = 2 ms.
    assert!(summary.slo_p50_ms < 1.3, "p50 {}", summary.slo_p50_ms);
    // The smooth model makes the same call twice as slow.
    let (_, smooth) = simulate(&cell(500.0, 1.0, 20.0, "simulator: {cpu: smooth}\n"));
    assert!(smooth.slo_p50_ms > 1.3, "smooth p50 {}", smooth.slo_p50_ms);
}

#[test]
fn demand_above_the_quota_throttles_and_stalls_for_the_rest_of_the_period() {
    // 200m (20 ms per period), 40 ms calls at 2/s (40 % of the limit): most calls outgrow one period's quota, so
    // they stall up to 80 ms; a call of mean length takes two quotas, one stall.
    let (rows, summary) = simulate(&cell(200.0, 40.0, 2.0, ""));
    let periods: f64 = rows.iter().map(|r| r.services[0].cfs_periods.unwrap()).sum();
    let throttled = throttled(&rows);
    assert!(throttled > 0.0 && throttled <= periods, "{throttled} of {periods} periods throttled");
    // About 2 calls a second, each spanning two or more periods with a stall: 1-4 throttled periods a second.
    let per_second = throttled / rows.len() as f64;
    assert!((0.8..=4.0).contains(&per_second), "{per_second} throttled periods a second");
    assert!(summary.slo_p50_ms > 40.0 && summary.slo_p95_ms > 100.0, "{summary:?}");
}

#[test]
fn the_legacy_settings_switch_every_part_back() {
    let legacy = "simulator: {cpu: smooth, percentiles: model, metrics: aligned, pod_spread: false, startup: fixed}\n";
    let (rows, _) = simulate(&cell(200.0, 10.0, 10.0, legacy));
    assert!(rows.iter().all(|r| r.services[0].cfs_throttled_periods.is_none()), "no CFS counts in the smooth model");
    // Without sampling, a steady second's p95 is the same every second (up to Poisson noise of the backlog, none
    // here at 50 % of the limit).
    let steady: Vec<f64> = rows[30..].iter().map(|r| r.slo_p95_ms).collect();
    let spread =
        steady.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - steady.iter().cloned().fold(f64::INFINITY, f64::min);
    let (sampled, _) = simulate(&cell(200.0, 10.0, 10.0, ""));
    let sampled: Vec<f64> = sampled[30..].iter().map(|r| r.slo_p95_ms).collect();
    let sampled_spread = sampled.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        - sampled.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(sampled_spread > 2.0 * spread.max(1.0), "sampled p95 spread {sampled_spread}, model {spread}");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = simulate(&cell(300.0, 15.0, 12.0, ""));
    let b = simulate(&cell(300.0, 15.0, 12.0, ""));
    assert_eq!(format!("{:?}", a.0), format!("{:?}", b.0));
    assert_eq!(format!("{:?}", a.1), format!("{:?}", b.1));
}

//! Sanity of the simulated cluster: the model behaves as a cluster under these policies would.

mod common;

use common::Scratch;
use orchestrator::cell::{Cell, CellSummary, SecondMetrics};
use orchestrator::matrix::Matrix;

/// Runs a cell on the simulator with the policy its config names, keeping every second.
fn simulate(cell: &Cell) -> (Vec<SecondMetrics>, CellSummary) {
    let mut policy = orchestrator::run::policies::build_policy(&cell.config);
    orchestrator::backends::sim::simulate_collect(&cell.id, &cell.config, policy.as_mut())
}

fn cells(apps: &str, scenarios: &str, policies: &str, seeds: &str) -> Vec<Cell> {
    let scratch = Scratch::new();
    let text = format!("name: t\nseeds: {seeds}\napps: {apps}\nscenarios: {scenarios}\npolicies:\n{policies}");
    scratch.write("experiments/t.yaml", &text);
    Matrix::load(&scratch.path("experiments/t.yaml")).expect("valid matrix").cells
}

const HPA_40_80: &str = "  - {name: hpa-cpu-40, kind: hpa, manifest: hpa-cpu-40.yaml}\n  - {name: hpa-cpu-80, kind: hpa, manifest: hpa-cpu-80.yaml}\n";

#[test]
fn hpa_at_40_percent_costs_more_pod_minutes_than_at_80_on_every_scenario() {
    let cells = cells(
        "[online-boutique, redis-cluster, image-classifier]",
        "[offpeak, peak, rushsale, fluctuating]",
        HPA_40_80,
        "[7, 8, 9]",
    );
    assert_eq!(cells.len(), 72);
    let mut checked = 0;
    for low in cells.iter().filter(|c| c.config.policy.name() == "hpa-cpu-40") {
        let high = cells
            .iter()
            .find(|c| {
                c.config.policy.name() == "hpa-cpu-80"
                    && c.config.app.name == low.config.app.name
                    && c.config.scenario.name == low.config.scenario.name
                    && c.config.seed == low.config.seed
            })
            .unwrap();
        let (_, at_40) = simulate(low);
        let (_, at_80) = simulate(high);
        assert!(
            at_40.pod_minutes > at_80.pod_minutes,
            "{} / {} / seed {}: 40 % used {:.1} pod-minutes, 80 % used {:.1}",
            low.config.app.name,
            low.config.scenario.name,
            low.config.seed,
            at_40.pod_minutes,
            at_80.pod_minutes
        );
        checked += 1;
    }
    assert_eq!(checked, 36);
}

fn mean(rows: &[SecondMetrics], from: u64, to: u64, f: impl Fn(&SecondMetrics) -> f64) -> f64 {
    let picked: Vec<f64> = rows.iter().filter(|r| r.time_s >= from && r.time_s < to).map(f).collect();
    picked.iter().sum::<f64>() / picked.len() as f64
}

#[test]
fn rushsale_raises_latency_then_replicas_follow_after_start_up_and_latency_recovers() {
    let cells = cells(
        "[online-boutique]",
        "[rushsale]",
        "  - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}\n",
        "[3]",
    );
    let cell = &cells[0];
    let (rows, _) = simulate(cell);
    let frontend = cell.config.app.service_index("frontend").unwrap();
    let startup = cell.config.app.services[frontend].startup_s;

    let before = mean(&rows, 120, 180, |r| r.slo_p95_ms);
    let surge_peak = rows.iter().filter(|r| (180..480).contains(&r.time_s)).map(|r| r.slo_p95_ms).fold(0.0, f64::max);
    assert!(surge_peak > 2.0 * before, "p95 before the surge {before:.1} ms, peak during it {surge_peak:.1} ms");

    let ready_before = rows[179].services[frontend].ready;
    let first_growth =
        rows.iter().find(|r| r.time_s >= 180 && r.services[frontend].ready > ready_before).expect("frontend grows");
    let first_decision = rows.iter().find(|r| r.time_s >= 180 && r.services[frontend].desired > ready_before).unwrap();
    assert!(
        first_growth.time_s as f64 >= first_decision.time_s as f64 + 0.9 * startup,
        "ready pods grew at {} s, {} s after the decision at {} s; start-up takes {startup} s",
        first_growth.time_s,
        first_growth.time_s - first_decision.time_s,
        first_decision.time_s
    );
    let surge_replicas =
        rows.iter().filter(|r| (180..480).contains(&r.time_s)).map(|r| r.services[frontend].ready).max().unwrap();
    assert!(
        surge_replicas >= 2 * ready_before.max(1),
        "frontend ready pods {ready_before} before, at most {surge_replicas} during the surge"
    );

    let late_surge = mean(&rows, 420, 480, |r| r.slo_p95_ms);
    assert!(
        late_surge < surge_peak / 2.0,
        "p95 late in the surge {late_surge:.1} ms did not recover from {surge_peak:.1} ms"
    );
    let threshold = cell.config.app.slo.threshold_ms;
    assert!(late_surge < threshold, "p95 late in the surge {late_surge:.1} ms is above the SLO {threshold} ms");
}

#[test]
fn static_max_replicas_never_violate_the_slo_on_offpeak() {
    let cells = cells(
        "[online-boutique, redis-cluster, image-classifier]",
        "[offpeak]",
        "  - {name: static-max, kind: static, replicas: max}\n",
        "[1, 2]",
    );
    assert_eq!(cells.len(), 6);
    for cell in &cells {
        let (rows, summary) = simulate(cell);
        let violated: Vec<u64> = rows.iter().filter(|r| r.slo_violated).map(|r| r.time_s).collect();
        assert!(violated.is_empty(), "{}: SLO violated at {violated:?}", cell.id);
        assert_eq!(summary.slo_violation_seconds_pct, 0.0);
        assert!(summary.mean_achieved_rps > 0.0);
    }
}

#[test]
fn closed_loop_users_send_less_when_latency_rises() {
    // Under rushsale, a single frontend cannot keep up: achieved load falls below what 800 users would send at
    // 1 request/s, while static max replicas serve nearly all of it.
    let text = "  - {name: one, kind: static, replicas: 1}\n  - {name: static-max, kind: static, replicas: max}\n";
    let cells = cells("[online-boutique]", "[rushsale]", text, "[1]");
    let (one, _) = simulate(&cells[0]);
    let (max, _) = simulate(&cells[1]);
    let offered_one = mean(&one, 300, 480, |r| r.offered_rps);
    let offered_max = mean(&max, 300, 480, |r| r.offered_rps);
    assert!(offered_max > 750.0, "800 users at 1 req/s sent {offered_max:.0}/s to a well-provisioned app");
    assert!(offered_one < 0.7 * offered_max, "an overloaded app still received {offered_one:.0}/s");
}

#[test]
fn open_model_arrivals_follow_the_rate_whatever_the_latency() {
    // An arrival-rate scenario keeps sending at its rate even when one frontend pod is overloaded, unlike
    // closed-loop users; the overload then shows up as failures (requests queued past the timeout).
    let scratch = Scratch::new();
    scratch.write(
        "experiments/scenarios/online-boutique/open.yaml",
        "users:\n  - name: u\n    tasks: [{name: cart, requests: [{method: GET, path: /cart}]}]\n\
         shape:\n  arrival_rate:\n    start_rate: 600\n    stages: [{duration: 120, target: 600}]\n    preallocated_users: 10\n    max_users: 5000\n",
    );
    scratch.write(
        "experiments/t.yaml",
        "name: t\nseeds: [1]\napps: [online-boutique]\nscenarios: [open]\npolicies:\n  - {name: one, kind: static, replicas: 1}\n  - {name: static-max, kind: static, replicas: max}\n",
    );
    let cells = Matrix::load(&scratch.path("experiments/t.yaml")).expect("valid matrix").cells;
    let (one, one_summary) = simulate(&cells[0]);
    let (max, max_summary) = simulate(&cells[1]);
    assert_eq!(one.len(), 120);
    for rows in [&one, &max] {
        let offered = mean(rows, 30, 120, |r| r.offered_rps);
        assert!((offered / 600.0 - 1.0).abs() < 0.05, "offered {offered:.0}/s for a rate of 600/s");
    }
    assert!(one_summary.failure_pct > 10.0, "an overloaded single pod failed only {:.1} %", one_summary.failure_pct);
    assert_eq!(max_summary.failure_pct, 0.0);
}

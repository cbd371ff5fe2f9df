//! From cells to conclusions: per app × scenario, each policy's metrics aggregated over seeds (IQM with a
//! stratified bootstrap interval) and compared with the baseline (probability of improvement and its
//! interval); per app, the same across scenarios, and performance profiles.

use std::collections::BTreeMap;

use serde::Serialize;

use super::load::{BaselineFrom, CellRecord, RunFolder};
use super::stats::{self, BootstrapConfig, Direction, Estimate, Interval, Verdict};

/// A figure of a cell's summary.json the report aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricDef {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// `None`: no better or worse (load, scaling activity).
    pub direction: Option<Direction>,
    /// Shown in the index tables (all are exported).
    pub in_table: bool,
}

const fn metric(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    direction: Option<Direction>,
    in_table: bool,
) -> MetricDef {
    MetricDef { key, label, unit, direction, in_table }
}

const LOWER: Option<Direction> = Some(Direction::LowerIsBetter);

pub const METRICS: [MetricDef; 15] = [
    metric("pod_minutes", "Cost", "pod-minutes", LOWER, true),
    metric("cpu_core_hours", "CPU requested", "core-hours", LOWER, true),
    metric("slo_violation_seconds_pct", "SLO violated", "% of seconds", LOWER, true),
    metric("slo_violation_requests_pct", "Slow or failed", "% of requests", LOWER, true),
    metric("slo_p50_ms", "p50", "ms", LOWER, true),
    metric("slo_p95_ms", "p95", "ms", LOWER, true),
    metric("slo_p99_ms", "p99", "ms", LOWER, true),
    metric("failure_pct", "Failures", "%", LOWER, true),
    metric("mean_achieved_rps", "Achieved", "req/s", None, true),
    metric("mean_offered_rps", "Offered", "req/s", None, true),
    metric("scaling_actions", "Scaling actions", "count", None, true),
    metric("reward", "Reward", "return", Some(Direction::HigherIsBetter), true),
    metric("overall_p50_ms", "p50, all routes", "ms", LOWER, false),
    metric("overall_p95_ms", "p95, all routes", "ms", LOWER, false),
    metric("overall_p99_ms", "p99, all routes", "ms", LOWER, false),
];

pub fn metric_def(key: &str) -> &'static MetricDef {
    METRICS.iter().find(|m| m.key == key).expect("known metric")
}

/// One seed's value of a metric.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub seed: Option<u64>,
    pub value: f64,
    pub cell: String,
}

/// A policy against the baseline on one metric.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Comparison {
    /// P(a run of this policy is better than a run of the baseline).
    pub improvement: Estimate,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub key: &'static str,
    pub runs: Vec<Run>,
    pub estimate: Option<Estimate>,
    pub comparison: Option<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    pub policy: String,
    pub is_baseline: bool,
    /// Cells in the statistics, and cells of this group left out (failed, incomplete).
    pub complete: usize,
    pub incomplete: usize,
    pub metrics: Vec<MetricResult>,
}

impl PolicyRow {
    pub fn metric(&self, key: &str) -> Option<&MetricResult> {
        self.metrics.iter().find(|m| m.key == key)
    }
}

/// Every policy's figures for one app under one scenario (on one backend).
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioTable {
    pub app: String,
    pub scenario: String,
    pub backend: String,
    pub rows: Vec<PolicyRow>,
    /// Policies on the cost/SLO Pareto front (by IQM).
    pub pareto: Vec<String>,
}

/// A policy across every scenario of an app: scenarios are the strata.
#[derive(Debug, Clone, Serialize)]
pub struct AggregateRow {
    pub policy: String,
    pub is_baseline: bool,
    pub runs: usize,
    pub metrics: Vec<MetricResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub metric: &'static str,
    pub label: String,
    pub taus: Vec<f64>,
    /// Per policy: the profile and its pointwise bands.
    pub curves: Vec<(String, Vec<f64>, Option<Vec<Interval>>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppAggregate {
    pub app: String,
    pub backend: String,
    pub scenarios: Vec<String>,
    pub rows: Vec<AggregateRow>,
    pub profiles: Vec<Profile>,
}

/// Cost relative to the baseline's IQM in the same scenario: makes scenarios of different sizes comparable.
pub const RELATIVE_COST: &str = "relative_cost";
pub const AGGREGATE_METRICS: [&str; 4] =
    [RELATIVE_COST, "slo_violation_seconds_pct", "slo_violation_requests_pct", "failure_pct"];

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub baseline: Option<String>,
    pub baseline_from: Option<BaselineFrom>,
    pub bootstrap: BootstrapConfig,
    pub tables: Vec<ScenarioTable>,
    pub aggregates: Vec<AppAggregate>,
    /// The metrics some complete cell reports, in METRICS order.
    pub metrics: Vec<&'static str>,
    pub backends: Vec<String>,
}

type GroupKey = (String, String, String);

pub fn analyse(run: &RunFolder, bootstrap: &BootstrapConfig) -> Analysis {
    let baseline = run.baseline();
    let baseline_name = baseline.as_ref().map(|(name, _)| name.clone());
    let policy_order = run.policy_order();
    let metrics: Vec<&'static str> = METRICS
        .iter()
        .filter(|m| run.cells.iter().any(|c| c.is_complete() && c.metric(m.key).is_some()))
        .map(|m| m.key)
        .collect();
    let mut backends: Vec<String> = run.cells.iter().map(|c| c.backend.clone()).collect();
    backends.sort();
    backends.dedup();

    // Cells by (app, scenario, backend), then policy; apps and scenarios in first-seen (plan) order.
    let mut groups: Vec<(GroupKey, BTreeMap<String, Vec<&CellRecord>>)> = Vec::new();
    for cell in &run.cells {
        let key = (cell.app.clone(), cell.scenario.clone(), cell.backend.clone());
        let index = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                groups.push((key, BTreeMap::new()));
                groups.len() - 1
            }
        };
        groups[index].1.entry(cell.policy.clone()).or_default().push(cell);
    }
    let order_of = |policy: &str| policy_order.iter().position(|p| p == policy).unwrap_or(usize::MAX);

    let tables: Vec<ScenarioTable> = super::parallel_map(&groups, |((app, scenario, backend), by_policy)| {
        let mut policies: Vec<&String> = by_policy.keys().collect();
        policies.sort_by_key(|p| (order_of(p), p.to_string()));
        let values = |policy: &str, key: &str| -> Vec<Run> {
            let mut runs: Vec<Run> = by_policy
                .get(policy)
                .into_iter()
                .flatten()
                .filter(|c| c.is_complete())
                .filter_map(|c| c.metric(key).map(|value| Run { seed: c.seed, value, cell: c.id.clone() }))
                .collect();
            runs.sort_by_key(|r| r.seed);
            runs
        };
        let rows: Vec<PolicyRow> = policies
            .iter()
            .map(|policy| {
                let cells = &by_policy[*policy];
                let is_baseline = baseline_name.as_deref() == Some(policy.as_str());
                let metrics = metrics
                    .iter()
                    .map(|&key| {
                        let runs = values(policy, key);
                        let strata = vec![runs.iter().map(|r| r.value).collect::<Vec<f64>>()];
                        let stream = format!("{app}/{scenario}/{backend}/{policy}/{key}");
                        let estimate = stats::iqm_estimate(&strata, bootstrap, &stream);
                        let comparison = match (&baseline_name, metric_def(key).direction) {
                            (Some(base), Some(direction)) if !is_baseline && by_policy.contains_key(base) => {
                                let base_strata = vec![values(base, key).iter().map(|r| r.value).collect::<Vec<f64>>()];
                                compare(&strata, &base_strata, direction, bootstrap, &format!("{stream}/vs/{base}"))
                            }
                            _ => None,
                        };
                        MetricResult { key, runs, estimate, comparison }
                    })
                    .collect();
                let complete = cells.iter().filter(|c| c.is_complete()).count();
                PolicyRow {
                    policy: policy.to_string(),
                    is_baseline,
                    complete,
                    incomplete: cells.len() - complete,
                    metrics,
                }
            })
            .collect();
        let pareto = pareto_front(&rows);
        ScenarioTable { app: app.clone(), scenario: scenario.clone(), backend: backend.clone(), rows, pareto }
    });

    let mut aggregates = Vec::new();
    let mut apps: Vec<(String, String)> = Vec::new();
    for table in &tables {
        let key = (table.app.clone(), table.backend.clone());
        if !apps.contains(&key) {
            apps.push(key);
        }
    }
    for (app, backend) in apps {
        let app_tables: Vec<&ScenarioTable> = tables.iter().filter(|t| t.app == app && t.backend == backend).collect();
        aggregates.push(aggregate_app(&app, &backend, &app_tables, baseline_name.as_deref(), &policy_order, bootstrap));
    }
    Analysis {
        baseline: baseline_name,
        baseline_from: baseline.map(|(_, from)| from),
        bootstrap: *bootstrap,
        tables,
        aggregates,
        metrics,
        backends,
    }
}

fn compare(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    direction: Direction,
    bootstrap: &BootstrapConfig,
    stream: &str,
) -> Option<Comparison> {
    let improvement = stats::improvement_estimate(x, y, direction, bootstrap, stream)?;
    Some(Comparison { improvement, verdict: stats::verdict(x, y, &improvement) })
}

/// Policies no other policy matches or beats on both cost and SLO violation (by IQM), and beats on one.
fn pareto_front(rows: &[PolicyRow]) -> Vec<String> {
    let point = |row: &PolicyRow| {
        let value = |key: &str| row.metric(key).and_then(|m| m.estimate).map(|e| e.point);
        Some((value("pod_minutes")?, value("slo_violation_seconds_pct")?))
    };
    let points: Vec<(String, (f64, f64))> = rows.iter().filter_map(|r| Some((r.policy.clone(), point(r)?))).collect();
    points
        .iter()
        .filter(|(_, (cost, slo))| !points.iter().any(|(_, (c, s))| c <= cost && s <= slo && (c < cost || s < slo)))
        .map(|(name, _)| name.clone())
        .collect()
}

fn aggregate_app(
    app: &str,
    backend: &str,
    tables: &[&ScenarioTable],
    baseline: Option<&str>,
    policy_order: &[String],
    bootstrap: &BootstrapConfig,
) -> AppAggregate {
    let scenarios: Vec<String> = tables.iter().map(|t| t.scenario.clone()).collect();
    let mut policies: Vec<String> = tables.iter().flat_map(|t| t.rows.iter().map(|r| r.policy.clone())).collect();
    policies.sort_by_key(|p| (policy_order.iter().position(|o| o == p).unwrap_or(usize::MAX), p.clone()));
    policies.dedup();
    // Strata: one per scenario, in table order; a policy missing in a scenario has an empty stratum there.
    let strata = |policy: &str, key: &str| -> Vec<Vec<f64>> {
        tables
            .iter()
            .map(|t| {
                let row = t.rows.iter().find(|r| r.policy == policy);
                let runs = row.and_then(|r| r.metric(if key == RELATIVE_COST { "pod_minutes" } else { key }));
                let values: Vec<f64> = runs.map(|m| m.runs.iter().map(|r| r.value).collect()).unwrap_or_default();
                if key != RELATIVE_COST {
                    return values;
                }
                let base = baseline
                    .and_then(|b| t.rows.iter().find(|r| r.policy == b))
                    .and_then(|r| r.metric("pod_minutes"))
                    .and_then(|m| m.estimate)
                    .map(|e| e.point)
                    .filter(|&p| p > 0.0);
                match base {
                    Some(base) => values.iter().map(|v| v / base).collect(),
                    None => Vec::new(),
                }
            })
            .collect()
    };
    let metric_keys: Vec<&'static str> = AGGREGATE_METRICS
        .iter()
        .copied()
        .filter(|&k| k != RELATIVE_COST || baseline.is_some())
        .filter(|&k| policies.iter().any(|p| strata(p, k).iter().any(|s| !s.is_empty())))
        .collect();
    let rows = policies
        .iter()
        .map(|policy| {
            let is_baseline = baseline == Some(policy.as_str());
            let metrics = metric_keys
                .iter()
                .map(|&key| {
                    let policy_strata = strata(policy, key);
                    let stream = format!("{app}/*/{backend}/{policy}/{key}");
                    let estimate = stats::iqm_estimate(&policy_strata, bootstrap, &stream);
                    let comparison = match baseline {
                        Some(base) if !is_baseline => {
                            // Relative cost orders runs exactly as raw cost within a scenario.
                            let raw = if key == RELATIVE_COST { "pod_minutes" } else { key };
                            compare(
                                &strata(policy, raw),
                                &strata(base, raw),
                                Direction::LowerIsBetter,
                                bootstrap,
                                &format!("{stream}/vs/{base}"),
                            )
                        }
                        _ => None,
                    };
                    MetricResult { key, runs: Vec::new(), estimate, comparison }
                })
                .collect();
            let runs = strata(policy, "slo_violation_seconds_pct").iter().map(Vec::len).sum();
            AggregateRow { policy: policy.clone(), is_baseline, runs, metrics }
        })
        .collect();

    let mut profiles = Vec::new();
    for (key, label) in [
        ("slo_violation_seconds_pct", "SLO violated (% of seconds) ≤ τ"),
        (RELATIVE_COST, "cost relative to the baseline's IQM ≤ τ"),
    ] {
        if !metric_keys.contains(&key) {
            continue;
        }
        let all: Vec<f64> = policies.iter().flat_map(|p| strata(p, key).concat()).collect();
        let Some((low, high)) = all.iter().fold(None, |acc: Option<(f64, f64)>, &v| match acc {
            None => Some((v, v)),
            Some((l, h)) => Some((l.min(v), h.max(v))),
        }) else {
            continue;
        };
        let low = if key == RELATIVE_COST { low * 0.95 } else { 0.0 };
        let high = if high > low { high * 1.02 } else { low + 1.0 };
        let taus: Vec<f64> = (0..=60).map(|i| low + (high - low) * i as f64 / 60.0).collect();
        let curves = policies
            .iter()
            .filter_map(|policy| {
                let policy_strata = strata(policy, key);
                if policy_strata.iter().all(Vec::is_empty) {
                    return None;
                }
                let profile = stats::performance_profile(&policy_strata, &taus, Direction::LowerIsBetter);
                let bands = stats::performance_profile_bands(
                    &policy_strata,
                    &taus,
                    Direction::LowerIsBetter,
                    bootstrap,
                    &format!("{app}/*/{backend}/{policy}/{key}/profile"),
                );
                Some((policy.clone(), profile, bands))
            })
            .collect();
        profiles.push(Profile { metric: key, label: label.to_string(), taus, curves });
    }
    AppAggregate { app: app.to_string(), backend: backend.to_string(), scenarios, rows, profiles }
}

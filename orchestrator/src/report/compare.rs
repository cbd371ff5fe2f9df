//! `orch report --compare A B ...`: several runs side by side, each later run judged against the first,
//! policy by policy (e.g. the same matrix before and after a change to a policy or the simulator).

use serde::Serialize;

use super::analysis::{Analysis, Comparison, MetricResult, metric_def};
use super::format::{fmt_duration, fmt_time};
use super::html::{Column, TableCell, columns_for, table_cell};
use super::load::RunFolder;
use super::stats::{self, BootstrapConfig};

/// The metrics a comparison shows.
pub const COMPARED: [&str; 7] = [
    "pod_minutes",
    "cpu_core_hours",
    "slo_violation_seconds_pct",
    "slo_violation_requests_pct",
    "slo_p95_ms",
    "failure_pct",
    "reward",
];

#[derive(Serialize)]
struct RunRow {
    tag: String,
    values: Vec<String>,
}

#[derive(Serialize)]
struct CompareRow {
    policy: String,
    run: String,
    n: String,
    cells: Vec<TableCell>,
}

#[derive(Serialize)]
struct Group {
    title: String,
    anchor: String,
    columns: Vec<Column>,
    rows: Vec<CompareRow>,
}

#[derive(Serialize)]
pub struct CompareView {
    title: String,
    reference: String,
    meta_headers: Vec<&'static str>,
    runs: Vec<RunRow>,
    warnings: Vec<String>,
    groups: Vec<Group>,
}

/// One tidy CSV row per group, policy, run and metric.
pub struct CompareRecord {
    pub app: String,
    pub scenario: String,
    pub backend: String,
    pub policy: String,
    pub run: String,
    pub metric: &'static str,
    pub result: MetricResult,
}

pub fn compare(runs: &[(RunFolder, Analysis)], bootstrap: &BootstrapConfig) -> (CompareView, Vec<CompareRecord>) {
    let reference = &runs[0].0.tag;
    let run_rows = runs
        .iter()
        .map(|(run, _)| {
            let m = &run.meta;
            let succeeded = run.cells.iter().filter(|c| c.is_complete()).count();
            RunRow {
                tag: run.tag.clone(),
                values: vec![
                    m.matrix_name.clone().unwrap_or_default(),
                    m.matrix_sha256.as_deref().map_or(String::new(), |h| h.chars().take(12).collect()),
                    m.git_commit.clone().unwrap_or_else(|| "unknown".into()),
                    m.started_unix_s.map_or("unknown".into(), fmt_time),
                    match (m.started_unix_s, m.finished_unix_s) {
                        (Some(a), Some(b)) => fmt_duration(b - a),
                        _ => "unknown".into(),
                    },
                    format!("{succeeded} of {}", run.cells.len()),
                ],
            }
        })
        .collect();
    let mut warnings = Vec::new();
    let hashes: Vec<Option<&String>> = runs.iter().map(|(r, _)| r.meta.matrix_sha256.as_ref()).collect();
    if hashes.windows(2).any(|w| w[0] != w[1]) {
        warnings.push("The runs' matrix files differ: compare only groups that mean the same thing.".into());
    }

    // Groups in the order the runs list them.
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for (_, analysis) in runs {
        for table in &analysis.tables {
            let key = (table.app.clone(), table.scenario.clone(), table.backend.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let present: Vec<&'static str> =
        COMPARED.iter().copied().filter(|k| runs.iter().any(|(_, a)| a.metrics.contains(k))).collect();
    let mut groups = Vec::new();
    let mut records = Vec::new();
    for (app, scenario, backend) in keys {
        let tables: Vec<_> = runs
            .iter()
            .map(|(run, a)| {
                (run, a.tables.iter().find(|t| t.app == app && t.scenario == scenario && t.backend == backend))
            })
            .collect();
        let mut policies: Vec<String> = Vec::new();
        for (_, table) in &tables {
            for row in table.iter().flat_map(|t| &t.rows) {
                if !policies.contains(&row.policy) {
                    policies.push(row.policy.clone());
                }
            }
        }
        let mut rows = Vec::new();
        for policy in &policies {
            let reference_row = tables[0].1.and_then(|t| t.rows.iter().find(|r| &r.policy == policy));
            for (k, (run, table)) in tables.iter().enumerate() {
                let Some(row) = table.and_then(|t| t.rows.iter().find(|r| &r.policy == policy)) else { continue };
                let cells = present
                    .iter()
                    .map(|&key| {
                        let Some(result) = row.metric(key) else { return TableCell::default() };
                        let mut result = result.clone();
                        result.comparison = None;
                        if k > 0
                            && let (Some(direction), Some(base)) =
                                (metric_def(key).direction, reference_row.and_then(|r| r.metric(key)))
                        {
                            let x = vec![result.runs.iter().map(|r| r.value).collect::<Vec<f64>>()];
                            let y = vec![base.runs.iter().map(|r| r.value).collect::<Vec<f64>>()];
                            let stream =
                                format!("{app}/{scenario}/{backend}/{policy}/{key}/{}/vs/{reference}", run.tag);
                            result.comparison =
                                stats::improvement_estimate(&x, &y, direction, bootstrap, &stream).map(|improvement| {
                                    Comparison { improvement, verdict: stats::verdict(&x, &y, &improvement) }
                                });
                        }
                        let cell = table_cell(&result, Some(reference), true);
                        records.push(CompareRecord {
                            app: app.clone(),
                            scenario: scenario.clone(),
                            backend: backend.clone(),
                            policy: policy.clone(),
                            run: run.tag.clone(),
                            metric: key,
                            result,
                        });
                        cell
                    })
                    .collect();
                rows.push(CompareRow {
                    policy: policy.clone(),
                    run: run.tag.clone(),
                    n: format!("{} seeds", row.complete),
                    cells,
                });
            }
        }
        groups.push(Group {
            title: format!("{app} · {scenario} ({backend})"),
            anchor: format!("g{}", groups.len()),
            columns: columns_for(&present),
            rows,
        });
    }
    let view = CompareView {
        title: format!("Runs compared: {}", runs.iter().map(|(r, _)| r.tag.as_str()).collect::<Vec<_>>().join(" vs ")),
        reference: reference.clone(),
        meta_headers: vec!["matrix", "matrix SHA-256", "git commit", "started", "duration", "complete cells"],
        runs: run_rows,
        warnings,
        groups,
    };
    (view, records)
}

/// compare.csv: the figures and verdicts of the comparison, one row per group, policy, run and metric.
pub fn compare_csv(records: &[CompareRecord]) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "app",
        "scenario",
        "backend",
        "policy",
        "run",
        "metric",
        "unit",
        "runs",
        "iqm",
        "ci_low",
        "ci_high",
        "p_improvement_over_first",
        "p_ci_low",
        "p_ci_high",
        "verdict",
    ])?;
    let number = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(String::new(), |v| format!("{v}"));
    for r in records {
        let e = r.result.estimate;
        let c = r.result.comparison;
        writer.write_record([
            r.app.clone(),
            r.scenario.clone(),
            r.backend.clone(),
            r.policy.clone(),
            r.run.clone(),
            r.metric.to_string(),
            metric_def(r.metric).unit.to_string(),
            r.result.runs.len().to_string(),
            number(e.map(|e| e.point)),
            number(e.and_then(|e| e.interval).map(|i| i.low)),
            number(e.and_then(|e| e.interval).map(|i| i.high)),
            number(c.map(|c| c.improvement.point)),
            number(c.and_then(|c| c.improvement.interval).map(|i| i.low)),
            number(c.and_then(|c| c.improvement.interval).map(|i| i.high)),
            c.map_or(String::new(), |c| c.verdict.label().replace(' ', "_")),
        ])?;
    }
    Ok(writer.into_inner()?)
}

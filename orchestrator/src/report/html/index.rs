//! The run's index page: cell counts and status grids, the result tables per app and scenario with their
//! verdicts against the baseline, the cost/SLO scatter and the performance profiles.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cell_page;
use super::table::{Column, TableCell, columns_for, improvement_text, table_cell};
use crate::report::analysis::{Analysis, AppAggregate, PolicyRow, RELATIVE_COST, ScenarioTable, metric_def};
use crate::report::charts::{self, Band, Figure, LegendEntry, LineChart, ScatterPoint, Series, Shape};
use crate::report::format::{fmt_duration, fmt_time, href};
use crate::report::load::{BaselineFrom, CellRecord, CellState, RunFolder, TimesFrom};
use crate::report::stats::Verdict;
use crate::run_folder::RUN_LOG;

fn slug(parts: &[&str]) -> String {
    let text = parts.join("-").to_lowercase();
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[derive(Serialize)]
struct CountView {
    state: &'static str,
    count: usize,
}

#[derive(Serialize)]
struct GridCell {
    href: String,
    log: Option<String>,
    state: &'static str,
    symbol: &'static str,
    title: String,
}

#[derive(Serialize)]
struct GridRow {
    policy: String,
    cells: Vec<Vec<GridCell>>,
}

#[derive(Serialize)]
struct Grid {
    title: String,
    seeds: Vec<String>,
    rows: Vec<GridRow>,
}

#[derive(Serialize)]
pub struct TableRow {
    policy: String,
    baseline: bool,
    pareto: bool,
    n: String,
    cells: Vec<TableCell>,
}

#[derive(Serialize)]
struct ScenarioView {
    title: String,
    anchor: String,
    columns: Vec<Column>,
    rows: Vec<TableRow>,
    verdicts: Vec<String>,
    scatter: Figure,
}

#[derive(Serialize)]
struct AggregateView {
    scenarios: String,
    columns: Vec<Column>,
    rows: Vec<TableRow>,
}

#[derive(Serialize)]
struct AppView {
    title: String,
    anchor: String,
    aggregate: Option<AggregateView>,
    profiles: Vec<Figure>,
    scenarios: Vec<ScenarioView>,
}

#[derive(Serialize)]
struct IncompleteView {
    id: String,
    href: String,
    state: &'static str,
    reason: String,
}

#[derive(Serialize)]
pub struct IndexView {
    title: String,
    subtitle: String,
    meta: Vec<(String, String)>,
    warnings: Vec<String>,
    counts: Vec<CountView>,
    total_cells: usize,
    grids: Vec<Grid>,
    apps: Vec<AppView>,
    incomplete: Vec<IncompleteView>,
    exports: Vec<(String, String)>,
    confidence: String,
    reps: usize,
    bootstrap_seed: u64,
}

fn state_symbol(state: CellState) -> &'static str {
    match state {
        CellState::Succeeded => "✓",
        CellState::Failed => "✗",
        CellState::Incomplete => "!",
        CellState::Running => "…",
        CellState::Planned => "·",
        CellState::Cancelled => "–",
        CellState::Skipped => "↷",
    }
}

/// The run's metadata as label/value pairs.
pub fn run_meta(run: &RunFolder, analysis: Option<&Analysis>) -> Vec<(String, String)> {
    let m = &run.meta;
    let unknown = || "unknown".to_string();
    let mut meta = vec![
        ("matrix".to_string(), m.matrix_name.clone().unwrap_or_else(unknown)),
        ("matrix file".to_string(), m.matrix_file.clone().unwrap_or_else(unknown)),
        ("matrix SHA-256".to_string(), m.matrix_sha256.clone().unwrap_or_else(unknown)),
        ("git commit".to_string(), m.git_commit.clone().unwrap_or_else(unknown)),
        ("host".to_string(), m.host.clone().unwrap_or_else(unknown)),
    ];
    if let Some(version) = &m.orch_version {
        meta.push(("orch version".into(), version.clone()));
    }
    let source = match m.times_from {
        Some(TimesFrom::CellStatus) => " (from the cells' status files)",
        Some(TimesFrom::FileTimes) => " (from file modification times)",
        _ => "",
    };
    meta.push(("started".into(), m.started_unix_s.map(fmt_time).map_or_else(unknown, |t| format!("{t}{source}"))));
    meta.push((
        "finished".into(),
        m.finished_unix_s.map(fmt_time).map_or_else(|| "not finished".into(), |t| format!("{t}{source}")),
    ));
    meta.push((
        "duration".into(),
        match (m.started_unix_s, m.finished_unix_s) {
            (Some(start), Some(end)) => fmt_duration(end - start),
            _ => unknown(),
        },
    ));
    if let Some(analysis) = analysis {
        meta.push((
            "baseline".into(),
            match (&analysis.baseline, analysis.baseline_from) {
                (Some(name), Some(from)) => format!(
                    "{name} ({})",
                    match from {
                        BaselineFrom::RunJson => "named in run.json",
                        BaselineFrom::MatrixReport => "the matrix's report.baseline",
                        BaselineFrom::FirstHpaPolicy => "the first hpa policy of the matrix",
                    }
                ),
                _ => "none: no hpa policy and none named, so no verdicts".into(),
            },
        ));
    }
    meta.push(("run folder".into(), run.dir.display().to_string()));
    meta
}

/// Colour index of each policy, stable across every figure of the report.
pub fn policy_styles(run: &RunFolder) -> BTreeMap<String, charts::Style> {
    run.policy_order().into_iter().enumerate().map(|(i, p)| (p, charts::style(i))).collect()
}

fn runs_note(row: &PolicyRow) -> String {
    let mut seeds: Vec<u64> =
        row.metrics.first().map(|m| m.runs.iter().filter_map(|r| r.seed).collect()).unwrap_or_default();
    seeds.dedup();
    let mut note = match row.complete {
        1 => format!("1 seed: {}", seeds.first().map_or("?".into(), |s| s.to_string())),
        n if n <= 5 => format!("{n} seeds: {}", seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
        n => format!("{n} seeds (range of values below)"),
    };
    if row.incomplete > 0 {
        note.push_str(&format!(", {} incomplete", row.incomplete));
    }
    note
}

fn verdict_lines(table: &ScenarioTable, baseline: Option<&str>, columns: &[&'static str]) -> Vec<String> {
    let Some(base) = baseline else { return Vec::new() };
    if !table.rows.iter().any(|r| r.policy == base) {
        return vec![format!("The baseline {base} has no cells here: no verdicts.")];
    }
    let mut lines = Vec::new();
    for row in table.rows.iter().filter(|r| !r.is_baseline) {
        let mut by_verdict: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut judged = 0;
        for result in row.metrics.iter().filter(|m| columns.contains(&m.key)) {
            let Some(c) = &result.comparison else { continue };
            judged += 1;
            // "Cost" reads "cost" mid-sentence; "SLO violated" keeps its capitals.
            let label = metric_def(result.key).label;
            let label = if label.chars().nth(1).is_some_and(|c| c.is_uppercase()) {
                label.to_string()
            } else {
                label.to_lowercase()
            };
            match c.verdict {
                Verdict::Better => {
                    by_verdict.entry("better").or_default().push(format!("{label} ({})", improvement_text(c)))
                }
                Verdict::Worse => {
                    by_verdict.entry("worse").or_default().push(format!("{label} ({})", improvement_text(c)))
                }
                Verdict::NoSignificantDifference => by_verdict.entry("same").or_default().push(label),
                Verdict::TooFewRuns => {}
            }
        }
        if judged == 0 {
            continue;
        }
        if by_verdict.is_empty() {
            lines.push(format!(
                "{} vs {base}: too few seeds for a verdict (two or more per policy are needed).",
                row.policy
            ));
            continue;
        }
        let mut parts = Vec::new();
        if let Some(list) = by_verdict.get("better") {
            parts.push(format!("better on {}", list.join(", ")));
        }
        if let Some(list) = by_verdict.get("worse") {
            parts.push(format!("worse on {}", list.join(", ")));
        }
        if let Some(list) = by_verdict.get("same") {
            parts.push(format!("no significant difference on {}", list.join(", ")));
        }
        lines.push(format!("{} vs {base}: {}.", row.policy, parts.join("; ")));
    }
    lines
}

fn scatter_figure(table: &ScenarioTable, styles: &BTreeMap<String, charts::Style>) -> Figure {
    let mut points = Vec::new();
    for row in &table.rows {
        let (Some(cost), Some(slo)) = (row.metric("pod_minutes"), row.metric("slo_violation_seconds_pct")) else {
            continue;
        };
        let (Some(ce), Some(se)) = (cost.estimate, slo.estimate) else { continue };
        let runs = cost
            .runs
            .iter()
            .filter_map(|r| slo.runs.iter().find(|s| s.cell == r.cell).map(|s| (r.value, s.value)))
            .collect();
        points.push(ScatterPoint {
            label: row.policy.clone(),
            x: ce.point,
            y: se.point,
            x_interval: ce.interval.map(|i| (i.low, i.high)),
            y_interval: se.interval.map(|i| (i.low, i.high)),
            runs,
            style: styles.get(&row.policy).copied().unwrap_or(charts::style(0)),
            pareto: table.pareto.contains(&row.policy),
        });
    }
    let mut legend: Vec<LegendEntry> = points.iter().map(|p| LegendEntry::dot(&p.label, p.style)).collect();
    legend.push(LegendEntry::dashed("Pareto front", "#666"));
    Figure {
        title: "Cost against SLO violation".into(),
        svg: charts::scatter(&points, "cost (pod-minutes)", "SLO violated (% of seconds)"),
        legend,
        note: "Filled: IQM over seeds with 95 % intervals; rings: single seeds. Lower left is better.".into(),
        wide: false,
    }
}

fn profile_figures(aggregate: &AppAggregate, styles: &BTreeMap<String, charts::Style>) -> Vec<Figure> {
    aggregate
        .profiles
        .iter()
        .map(|profile| {
            let (x_label, title) = if profile.metric == RELATIVE_COST {
                ("τ: cost / baseline's IQM cost in the scenario (ratio)", "Performance profile: cost")
            } else {
                ("τ: SLO violated (% of seconds)", "Performance profile: SLO violation")
            };
            let mut chart = LineChart::new(x_label, "share of runs ≤ τ");
            chart.y_range = Some((0.0, 1.0));
            chart.height = 250.0;
            for (policy, curve, bands) in &profile.curves {
                let style = styles.get(policy).copied().unwrap_or(charts::style(0));
                chart.series.push(Series {
                    label: policy.clone(),
                    points: profile.taus.iter().copied().zip(curve.iter().copied()).collect(),
                    shape: Shape::Line,
                    style,
                    faint: false,
                });
                if let Some(bands) = bands {
                    chart.bands.push(Band {
                        points: profile.taus.iter().zip(bands).map(|(&t, b)| (t, b.low, b.high)).collect(),
                        color: style.color,
                    });
                }
            }
            Figure {
                title: title.into(),
                svg: chart.render(),
                legend: chart.legend(),
                note: format!("Share of runs over the scenarios (each weighing the same) at or below τ; higher and further left is better. {}.", profile.label), wide: false }
        })
        .collect()
}

pub fn index_view(run: &RunFolder, analysis: &Analysis, exports: Vec<(String, String)>) -> IndexView {
    let styles = policy_styles(run);
    let baseline = analysis.baseline.as_deref();
    let multi_backend = analysis.backends.len() > 1;
    let group_title = |app: &str, scenario: &str, backend: &str| {
        if multi_backend { format!("{app} · {scenario} · {backend}") } else { format!("{app} · {scenario}") }
    };

    let mut counts: BTreeMap<CellState, usize> = BTreeMap::new();
    for cell in &run.cells {
        *counts.entry(cell.state).or_default() += 1;
    }

    // Status grids: one per app × scenario (× backend), policies by seeds.
    let mut grids = Vec::new();
    for table in &analysis.tables {
        let cells: Vec<&CellRecord> = run
            .cells
            .iter()
            .filter(|c| c.app == table.app && c.scenario == table.scenario && c.backend == table.backend)
            .collect();
        let mut seeds: Vec<Option<u64>> = cells.iter().map(|c| c.seed).collect();
        seeds.sort();
        seeds.dedup();
        let rows = table
            .rows
            .iter()
            .map(|row| GridRow {
                policy: row.policy.clone(),
                // Normally one cell per policy and seed; a rerun with another config would add a second.
                cells: seeds
                    .iter()
                    .map(|seed| {
                        cells
                            .iter()
                            .filter(|c| c.policy == row.policy && c.seed == *seed)
                            .map(|c| GridCell {
                                href: cell_page(&c.id),
                                log: c.files.iter().any(|f| f == RUN_LOG).then(|| href(&[&c.id, RUN_LOG])),
                                state: c.state.label(),
                                symbol: state_symbol(c.state),
                                // Row, column and caption say which cell it is; the cell's page names it. A
                                // tick needs no tooltip; any other state says its reason on hover.
                                title: match &c.reason {
                                    Some(reason) => format!("{}: {reason}", c.state.label()),
                                    None if c.state == CellState::Succeeded => String::new(),
                                    None => c.state.label().to_string(),
                                },
                            })
                            .collect()
                    })
                    .collect(),
            })
            .collect();
        grids.push(Grid {
            title: group_title(&table.app, &table.scenario, &table.backend),
            seeds: seeds.iter().map(|s| s.map_or("?".into(), |s| s.to_string())).collect(),
            rows,
        });
    }

    let table_keys: Vec<&'static str> = analysis.metrics.iter().copied().filter(|k| metric_def(k).in_table).collect();
    let judged_keys: Vec<&'static str> =
        table_keys.iter().copied().filter(|k| metric_def(k).direction.is_some()).collect();
    let mut apps = Vec::new();
    for aggregate in &analysis.aggregates {
        let tables: Vec<&ScenarioTable> =
            analysis.tables.iter().filter(|t| t.app == aggregate.app && t.backend == aggregate.backend).collect();
        let scenarios = tables
            .iter()
            .map(|table| {
                let rows = table
                    .rows
                    .iter()
                    .map(|row| TableRow {
                        policy: row.policy.clone(),
                        baseline: row.is_baseline,
                        pareto: table.pareto.contains(&row.policy),
                        n: runs_note(row),
                        cells: table_keys
                            .iter()
                            .map(|k| row.metric(k).map_or_else(TableCell::default, |m| table_cell(m, baseline, true)))
                            .collect(),
                    })
                    .collect();
                ScenarioView {
                    title: group_title(&table.app, &table.scenario, &table.backend),
                    anchor: slug(&[&table.app, &table.scenario, &table.backend]),
                    columns: columns_for(&table_keys),
                    rows,
                    verdicts: verdict_lines(table, baseline, &judged_keys),
                    scatter: scatter_figure(table, &styles),
                }
            })
            .collect();
        let aggregate_view = (aggregate.scenarios.len() > 1).then(|| {
            let keys: Vec<&'static str> =
                aggregate.rows.first().map(|r| r.metrics.iter().map(|m| m.key).collect()).unwrap_or_default();
            AggregateView {
                scenarios: aggregate.scenarios.join(", "),
                columns: columns_for(&keys),
                rows: aggregate
                    .rows
                    .iter()
                    .map(|row| TableRow {
                        policy: row.policy.clone(),
                        baseline: row.is_baseline,
                        pareto: false,
                        n: format!("{} runs", row.runs),
                        cells: row.metrics.iter().map(|m| table_cell(m, baseline, false)).collect(),
                    })
                    .collect(),
            }
        });
        apps.push(AppView {
            title: if multi_backend {
                format!("{} ({})", aggregate.app, aggregate.backend)
            } else {
                aggregate.app.clone()
            },
            anchor: slug(&["app", &aggregate.app, &aggregate.backend]),
            aggregate: aggregate_view,
            profiles: profile_figures(aggregate, &styles),
            scenarios,
        });
    }

    let incomplete = run
        .cells
        .iter()
        .filter(|c| !c.is_complete())
        .map(|c| IncompleteView {
            id: c.id.clone(),
            href: cell_page(&c.id),
            state: c.state.label(),
            reason: c.reason.clone().unwrap_or_else(|| "no valid summary.json".into()),
        })
        .collect();

    let distinct = |f: fn(&CellRecord) -> String| {
        let mut v: Vec<String> = run.cells.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.len()
    };
    let subtitle = format!(
        "{} cells: {} apps × {} scenarios × {} policies × {} seeds{}",
        run.cells.len(),
        distinct(|c| c.app.clone()),
        distinct(|c| c.scenario.clone()),
        distinct(|c| c.policy.clone()),
        distinct(|c| c.seed.map_or("?".into(), |s| s.to_string())),
        if multi_backend { format!(" on {} backends", analysis.backends.len()) } else { String::new() }
    );
    IndexView {
        title: format!("Run {}", run.tag),
        subtitle,
        meta: run_meta(run, Some(analysis)),
        warnings: run.warnings.clone(),
        counts: counts.into_iter().map(|(state, count)| CountView { state: state.label(), count }).collect(),
        total_cells: run.cells.len(),
        grids,
        apps,
        incomplete,
        exports,
        confidence: format!("{:.0}", analysis.bootstrap.confidence * 100.0),
        reps: analysis.bootstrap.reps,
        bootstrap_seed: analysis.bootstrap.seed,
    }
}

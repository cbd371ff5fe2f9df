//! The pages: view models built from the run and its analysis, rendered with the tera templates under
//! orchestrator/templates/ (embedded in the binary). Templates escape every value; only SVG built by
//! [`super::charts`] and [`super::graph`], which escape their own text, is inserted unescaped.
//!
//! Links into the run folder are kept relative to it in the views; the templates prefix them with `logs`, so
//! the same view renders for the report on disk (pointing at logs/<run-tag>/) and inside the zip (logs/).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;
use tera::{Context, Tera};

use super::analysis::{Analysis, AppAggregate, Comparison, MetricResult, RELATIVE_COST, ScenarioTable, metric_def};
use super::charts::{self, Band, Figure, LegendEntry, LineChart, RefLine, Scale, ScatterPoint, Series, Shape, Shared};
use super::format::{escape, fmt_duration, fmt_num, fmt_plain, fmt_time, href, url_segment};
use super::graph;
use super::load::{BaselineFrom, CellRecord, CellState, RunFolder, TimesFrom};
use super::series::{self, CellSeries};
use super::stats::Verdict;

pub struct Renderer {
    tera: Tera,
}

impl Renderer {
    pub fn new() -> Result<Renderer> {
        let mut tera = Tera::default();
        tera.add_raw_templates(vec![
            ("style.css", include_str!("../../templates/style.css")),
            ("index.css", include_str!("../../templates/index.css")),
            ("cell.css", include_str!("../../templates/cell.css")),
            ("base.html", include_str!("../../templates/base.html")),
            ("macros.html", include_str!("../../templates/macros.html")),
            ("index.html", include_str!("../../templates/index.html")),
            ("cell.html", include_str!("../../templates/cell.html")),
            ("compare.html", include_str!("../../templates/compare.html")),
        ])
        .context("loading the report templates")?;
        // Tera's own escaping also writes `/` as `&#x2F;`; HTML needs only & < > " ' escaped.
        tera.set_escape_fn(escape);
        Ok(Renderer { tera })
    }

    /// Renders `template` with `view`; `logs` is the link prefix of the run folder as seen from the page. The
    /// page's inline stylesheet keeps only the rules its markup can match.
    pub fn render(&self, template: &str, view: &impl Serialize, logs: &str) -> Result<String> {
        let mut context = Context::from_serialize(view).context("building the template context")?;
        context.insert("logs", logs);
        context.insert("version", env!("CARGO_PKG_VERSION"));
        let page = self.tera.render(template, &context).with_context(|| format!("rendering {template}"))?;
        Ok(super::css::prune_page(&page))
    }
}

/// Where a cell's page lives, relative to the report folder.
pub fn cell_page(id: &str) -> String {
    format!("cells/{}.html", url_segment(id))
}

/// The file name of a cell's page on disk.
pub fn cell_page_file(id: &str) -> String {
    format!("{id}.html")
}

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
pub struct Column {
    label: String,
    unit: String,
}

/// One figure of a table: IQM, interval, per-seed values and the verdict against the baseline.
#[derive(Serialize, Default)]
pub struct TableCell {
    value: String,
    ci: String,
    seeds: String,
    title: String,
    class: &'static str,
    verdict: &'static str,
    vclass: &'static str,
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

fn runs_note(row: &super::analysis::PolicyRow) -> String {
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

fn improvement_text(c: &Comparison) -> String {
    let p = c.improvement.point;
    match c.improvement.interval {
        Some(i) => format!("P = {p:.2} [{:.2}, {:.2}]", i.low, i.high),
        None => format!("P = {p:.2}, no interval"),
    }
}

/// Every run's value for a tooltip. Seeds that run on from the first (1, 2, 3...) are said once, the values
/// then follow in that order, a space apart (not a comma: the figures have thousands separators); other
/// seeds name each value.
fn seed_values(result: &MetricResult) -> String {
    let seeds: Vec<Option<u64>> = result.runs.iter().map(|r| r.seed).collect();
    let consecutive = match seeds.first() {
        Some(Some(first)) => seeds.iter().enumerate().all(|(i, s)| *s == Some(first + i as u64)),
        _ => false,
    };
    let values = result.runs.iter().map(|r| fmt_num(r.value));
    match (consecutive, seeds.first(), seeds.last()) {
        (true, Some(Some(first)), Some(Some(last))) if seeds.len() > 1 => {
            format!("seeds {first} to {last}: {}", values.collect::<Vec<_>>().join(" "))
        }
        _ => result
            .runs
            .iter()
            .map(|r| format!("{}{}", r.seed.map_or(String::new(), |s| format!("s{s} ")), fmt_num(r.value)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A table figure for `result` (an IQM over seeds or scenarios).
pub fn table_cell(result: &MetricResult, baseline: Option<&str>, show_seeds: bool) -> TableCell {
    let Some(estimate) = result.estimate else {
        return TableCell { value: "—".into(), title: "no complete run".into(), ..TableCell::default() };
    };
    let runs = result.runs.len();
    let all_seeds = seed_values(result);
    // Inline, the values alone (in seed order, as the row's heading lists the seeds); the tooltip names them.
    let seeds = if !show_seeds || runs == 0 {
        String::new()
    } else if runs <= 5 {
        result.runs.iter().map(|r| fmt_num(r.value)).collect::<Vec<_>>().join(" · ")
    } else {
        let low = result.runs.iter().map(|r| r.value).fold(f64::INFINITY, f64::min);
        let high = result.runs.iter().map(|r| r.value).fold(f64::NEG_INFINITY, f64::max);
        format!("{} – {}", fmt_num(low), fmt_num(high))
    };
    // "seeds 1 to 25: ..." says how many runs the IQM is of.
    let mut title = match (show_seeds && runs > 0, all_seeds.starts_with("seeds ")) {
        (false, _) => String::new(),
        (true, true) => all_seeds,
        (true, false) => format!("IQM of {runs} runs: {all_seeds}"),
    };
    let ci = match estimate.interval {
        Some(i) => format!("[{}, {}]", fmt_num(i.low), fmt_num(i.high)),
        None if show_seeds && runs == 1 => "one seed".into(),
        None => String::new(),
    };
    let mut cell = TableCell { value: fmt_num(estimate.point), ci, seeds, ..TableCell::default() };
    if let (Some(c), Some(base)) = (&result.comparison, baseline) {
        let text = format!("P(better than {base}) {}", improvement_text(c).trim_start_matches("P "));
        title = if title.is_empty() { text } else { format!("{title}; {text}") };
        let (class, verdict, vclass) = match c.verdict {
            Verdict::Better => ("better", "better", "better"),
            Verdict::Worse => ("worse", "worse", "worse"),
            Verdict::NoSignificantDifference => ("", "n.s.", "ns"),
            Verdict::TooFewRuns => ("", "", ""),
        };
        cell.class = class;
        cell.verdict = verdict;
        cell.vclass = vclass;
    }
    cell.title = title;
    cell
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

pub fn columns_for(keys: &[&'static str]) -> Vec<Column> {
    keys.iter()
        .map(|&key| {
            if key == RELATIVE_COST {
                return Column { label: "Cost vs baseline".into(), unit: "ratio of pod-minutes".into() };
            }
            let m = metric_def(key);
            Column { label: m.label.into(), unit: m.unit.into() }
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
                                log: c.files.iter().any(|f| f == "run.log").then(|| href(&[&c.id, "run.log"])),
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

#[derive(Serialize)]
struct TwinView {
    title: String,
    id: String,
    href: String,
    this_label: String,
    other_label: String,
    rows: Vec<(String, String, String, String)>,
    figures: Vec<Figure>,
}

#[derive(Serialize)]
pub struct CellView {
    id: String,
    run_title: String,
    index_href: String,
    policy: String,
    scenario: String,
    seed: String,
    state: &'static str,
    meta: Vec<(String, String)>,
    files: Vec<(String, String)>,
    reason: Option<String>,
    log_tail: Vec<String>,
    warnings: Vec<String>,
    summary: Vec<(String, String, String)>,
    figures: Vec<Figure>,
    graph: Option<Figure>,
    training: Vec<Figure>,
    requests: Vec<series::RequestTable>,
    twin: Option<TwinView>,
}

fn points(t: &[f64], values: &[f64]) -> Vec<(f64, f64)> {
    t.iter().copied().zip(values.iter().copied()).collect()
}

fn line(label: &str, t: &[f64], values: &[f64], index: usize) -> Series {
    Series {
        label: label.into(),
        points: points(t, values),
        shape: Shape::Line,
        style: charts::style(index),
        faint: false,
    }
}

/// A figure of a cell page, drawn with the axes the page's other charts share.
fn figure(shared: &mut Shared, title: &str, chart: LineChart, note: String) -> Figure {
    let legend = if chart.series.len() > 1 { chart.legend() } else { Vec::new() };
    Figure { title: title.into(), svg: chart.render_in(shared), legend, note, wide: false }
}

/// The cell's time series: load, latency against the SLO, replicas and CPU per service.
fn time_figures(shared: &mut Shared, series: &CellSeries, cell: &CellRecord) -> Vec<Figure> {
    let t = &series.t;
    let mut figures = Vec::new();
    if let Some(users) = &series.users {
        let mut chart = LineChart::time("users");
        chart.series.push(line("users", t, users, 0));
        figures.push(figure(shared, "Users", chart, String::new()));
    }
    if series.offered_rps.is_some() || series.achieved_rps.is_some() {
        let mut chart = LineChart::time("requests/s");
        let same = match (&series.offered_rps, &series.achieved_rps) {
            (Some(o), Some(a)) => o.iter().zip(a).all(|(o, a)| (o - a).abs() < 0.5),
            _ => false,
        };
        let mut note = String::new();
        if same {
            // One line says it, in half the bytes.
            chart.series.push(line("achieved", t, series.achieved_rps.as_deref().unwrap_or_default(), 1));
            note = "Offered and achieved requests/s are equal throughout.".into();
        } else {
            if let Some(offered) = &series.offered_rps {
                chart.series.push(Series { faint: true, ..line("offered", t, offered, 0) });
            }
            if let Some(achieved) = &series.achieved_rps {
                chart.series.push(line("achieved", t, achieved, 1));
            }
        }
        if let Some(failures) = &series.failures
            && failures.iter().any(|&f| f > 0.0)
        {
            chart.series.push(line("failed", t, failures, 2));
        }
        figures.push(figure(shared, "Requests per second", chart, note));
    }
    if let Some(p95) = &series.slo_p95_ms {
        let mut chart = LineChart::time("p95 latency (ms, log scale)");
        chart.y_scale = Scale::Log;
        chart.series.push(line("p95", t, p95, 0));
        let mut note = String::new();
        if let Some(slo) = &cell.slo {
            chart.ref_lines.push(RefLine {
                y: slo.threshold_ms,
                label: format!("SLO: p{} ≤ {} ms", fmt_plain(slo.percentile), fmt_plain(slo.threshold_ms)),
            });
            let over = p95.iter().filter(|&&v| v > slo.threshold_ms).count();
            note = format!("p95 above {} ms in {over} of {} seconds.", fmt_plain(slo.threshold_ms), p95.len());
        }
        let route = cell.slo.as_ref().map_or("the SLO route".to_string(), |s| format!("route {}", s.route));
        figures.push(figure(shared, &format!("p95 latency of {route}, per second"), chart, note));
    }
    let with =
        |f: fn(&series::ServiceSeries) -> Option<&Vec<f64>>| series.services.iter().filter(|s| f(s).is_some()).count();
    if with(|s| s.ready.as_ref()) > 0 {
        let mut chart = LineChart::time("ready pods");
        for (i, service) in series.services.iter().enumerate() {
            if let Some(ready) = &service.ready {
                chart.series.push(Series { shape: Shape::Step, ..line(&service.name, t, ready, i) });
            }
        }
        figures.push(figure(shared, "Ready replicas per service", chart, String::new()));
    }
    if with(|s| s.cpu_util_pct.as_ref()) > 0 {
        let mut chart = LineChart::time("CPU utilization (% of request)");
        for (i, service) in series.services.iter().enumerate() {
            if let Some(cpu) = &service.cpu_util_pct {
                chart.series.push(line(&service.name, t, cpu, i));
            }
        }
        let mut cpu = figure(shared, "CPU utilization per service, as metrics-server reports it", chart, String::new());
        if with(|s| s.ready.as_ref()) > 0 {
            // The same services in the same colours as the replicas chart: one legend serves both.
            cpu.legend.clear();
            cpu.note = "Services coloured as in the replicas chart.".into();
        }
        figures.push(cpu);
    }
    figures
}

fn training_figures(shared: &mut Shared, path: &Path) -> (Vec<Figure>, Vec<String>) {
    let training = match series::read_training(path) {
        Ok(t) => t,
        Err(e) => return (Vec::new(), vec![format!("{e:#}")]),
    };
    let x_label = if training.x_name == "env_steps" { "environment steps" } else { "iteration" };
    let mut figures = Vec::new();
    for (column, title, y_label) in [
        ("episode_return_mean", "Mean episode return", "return"),
        ("mean_reward", "Mean reward per step", "reward"),
        ("value_loss", "Value loss", "loss"),
        ("policy_loss", "Policy loss", "loss"),
        ("entropy", "Policy entropy", "entropy (nats)"),
        ("epsilon", "Exploration rate ε", "ε"),
    ] {
        // Algorithms leave the columns they do not have empty (DQN has no policy loss).
        if let Some(values) = training.column(column).filter(|v| v.iter().any(|x| x.is_finite())) {
            let mut chart = LineChart::new(x_label, y_label);
            chart.height = 200.0;
            chart.series.push(line(column, &training.x, values, 0));
            figures.push(figure(shared, title, chart, String::new()));
        }
    }
    if let Some(speed) = training.column("env_steps_per_s").filter(|s| !s.is_empty()) {
        let mean = speed.iter().sum::<f64>() / speed.len() as f64;
        if let Some(first) = figures.first_mut() {
            first.note = format!("{} iterations; {} environment steps/s on average.", training.x.len(), fmt_num(mean));
        }
    }
    (figures, training.warnings)
}

fn total_ready(series: &CellSeries) -> Option<Vec<f64>> {
    let mut total = vec![0.0; series.t.len()];
    let mut any = false;
    for service in &series.services {
        if let Some(ready) = &service.ready {
            any = true;
            for (sum, v) in total.iter_mut().zip(ready) {
                *sum += v;
            }
        }
    }
    any.then_some(total)
}

fn twin_view(shared: &mut Shared, cell: &CellRecord, twin: &CellRecord, mine: Option<&CellSeries>) -> TwinView {
    let mut rows = Vec::new();
    for m in super::analysis::METRICS.iter() {
        let (Some(a), Some(b)) = (cell.metric(m.key), twin.metric(m.key)) else { continue };
        let diff = if a != 0.0 {
            format!("{:+.1} %", 100.0 * (b - a) / a.abs())
        } else if b >= a {
            format!("+{}", fmt_num(b - a))
        } else {
            fmt_num(b - a)
        };
        rows.push((format!("{} ({})", m.label, m.unit), fmt_num(a), fmt_num(b), diff));
    }
    let theirs = series::read_metrics(&twin.dir.join("metrics.csv")).ok();
    let mut figures = Vec::new();
    if let (Some(a), Some(b)) = (mine, theirs.as_ref()) {
        let pair = |label: &str, ya: Option<&Vec<f64>>, yb: Option<&Vec<f64>>| -> Vec<Series> {
            let mut out = Vec::new();
            if let Some(ya) = ya {
                out.push(line(&format!("{label}: {}", cell.backend), &a.t, ya, 0));
            }
            if let Some(yb) = yb {
                out.push(line(&format!("{label}: {}", twin.backend), &b.t, yb, 1));
            }
            out
        };
        let mut latency = LineChart::time("p95 latency (ms, log scale)");
        latency.y_scale = Scale::Log;
        latency.series = pair("p95", a.slo_p95_ms.as_ref(), b.slo_p95_ms.as_ref());
        if let Some(slo) = &cell.slo {
            latency
                .ref_lines
                .push(RefLine { y: slo.threshold_ms, label: format!("SLO {} ms", fmt_plain(slo.threshold_ms)) });
        }
        figures.push(figure(shared, "p95 latency of the SLO route", latency, String::new()));
        let mut pods = LineChart::time("ready pods, all services");
        let (ra, rb) = (total_ready(a), total_ready(b));
        pods.series = pair("ready pods", ra.as_ref(), rb.as_ref())
            .into_iter()
            .map(|s| Series { shape: Shape::Step, ..s })
            .collect();
        figures.push(figure(shared, "Ready pods", pods, String::new()));
        let mut rps = LineChart::time("requests/s");
        rps.series = pair("achieved", a.achieved_rps.as_ref(), b.achieved_rps.as_ref());
        figures.push(figure(shared, "Achieved requests per second", rps, String::new()));
    }
    let name = |backend: &str| match backend {
        "sim" => "Simulator".to_string(),
        "emulated" => "Emulated".to_string(),
        other => other.to_string(),
    };
    TwinView {
        title: format!("{} vs {}", name(&cell.backend), name(&twin.backend).to_lowercase()),
        id: twin.id.clone(),
        href: url_segment(&cell_page_file(&twin.id)),
        this_label: format!("this cell ({})", cell.backend),
        other_label: format!("twin ({})", twin.backend),
        rows,
        figures,
    }
}

/// The cell's figures as label, value, unit; latency percentiles grouped three to a row.
fn cell_summary_rows(cell: &CellRecord) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let percentiles = |prefix: &str| -> Option<String> {
        let values: Option<Vec<String>> =
            ["p50", "p95", "p99"].iter().map(|p| cell.metric(&format!("{prefix}_{p}_ms")).map(fmt_num)).collect();
        values.map(|v| v.join(" / "))
    };
    let (slo, overall) = (percentiles("slo"), percentiles("overall"));
    // Often the same figures (the SLO route carries the load): then one row says so.
    let same = slo.is_some() && slo == overall;
    for m in super::analysis::METRICS.iter() {
        match m.key {
            "slo_p50_ms" => {
                if let Some(text) = &slo {
                    let label =
                        if same { "p50 / p95 / p99, SLO route and all routes" } else { "p50 / p95 / p99, SLO route" };
                    rows.push((label.into(), text.clone(), "ms".into()));
                }
            }
            "overall_p50_ms" => {
                if let Some(text) = overall.as_ref().filter(|_| !same) {
                    rows.push(("p50 / p95 / p99, all routes".into(), text.clone(), "ms".into()));
                }
            }
            key if key.ends_with("_ms") && (key.starts_with("slo_p") || key.starts_with("overall_p")) => {}
            key => {
                if let Some(v) = cell.metric(key) {
                    rows.push((m.label.to_string(), fmt_num(v), m.unit.to_string()));
                }
            }
        }
    }
    if let Some(d) = cell.metric("duration_s") {
        rows.push(("Duration".into(), fmt_num(d), "s".into()));
    }
    rows
}

pub fn cell_view(run: &RunFolder, cell: &CellRecord, twin: Option<&CellRecord>) -> CellView {
    let mut warnings = cell.warnings.clone();
    let metrics = if cell.files.iter().any(|f| f == "metrics.csv") {
        match series::read_metrics(&cell.dir.join("metrics.csv")) {
            Ok(s) => {
                warnings.extend(s.warnings.iter().cloned());
                Some(s)
            }
            Err(e) => {
                warnings.push(format!("{e:#}"));
                None
            }
        }
    } else {
        None
    };
    // One registry for the page, its charts filled in page order: a shared axis is written before its uses.
    let mut shared = Shared::page();
    let figures = metrics.as_ref().map(|s| time_figures(&mut shared, s, cell)).unwrap_or_default();

    let graph = match &cell.topology {
        Some(Ok(topology)) => Some(topology),
        Some(Err(e)) => {
            warnings.push(format!("service graph: {e}"));
            None
        }
        None => None,
    }
        .map(|topology| {
            let utilization: Vec<Option<f64>> = topology
                .services
                .iter()
                .map(|name| metrics.as_ref()?.services.iter().find(|s| &s.name == name)?.mean_cpu_util_pct())
                .collect();
            let entry_rps = cell.metric("mean_achieved_rps").unwrap_or(0.0);
            Figure {
                // The section's heading, "Service graph", names it.
                title: String::new(),
                svg: graph::render(topology, &utilization, entry_rps),
                legend: Vec::new(),
                note: if topology.mix_known {
                    format!("Nodes: mean CPU utilization over the run. Edges: mean calls/s, from the app’s call trees weighted by the scenario’s request mix at {} requests/s achieved.", fmt_num(entry_rps))
                } else {
                    "Nodes: mean CPU utilization. The scenario’s request mix could not be read: edge rates count every route the same.".into()
                },
                wide: true,
            }
        });

    let (training, training_warnings) = if cell.files.iter().any(|f| f == "training.csv") {
        training_figures(&mut shared, &cell.dir.join("training.csv"))
    } else {
        (Vec::new(), Vec::new())
    };
    warnings.extend(training_warnings);

    let mut requests = Vec::new();
    for agent in &cell.agents {
        let path = cell.dir.join("agents").join(agent).join("locust_stats.csv");
        if path.is_file() {
            match series::read_locust_stats(&path, agent) {
                Ok(table) => requests.push(table),
                Err(e) => warnings.push(format!("{e:#}")),
            }
        }
    }

    // The cell's folder holds every file it wrote (config, metrics, summary, events, the agents' stats); only
    // its log gets a link of its own. A link per file costs a hundred bytes each on every page.
    let mut files = vec![("cell folder".to_string(), format!("{}/", href(&[&cell.id])))];
    if cell.files.iter().any(|f| f == "run.log") {
        files.push(("run.log".into(), href(&[&cell.id, "run.log"])));
    }

    let summary = cell_summary_rows(cell);

    let mut meta = vec![
        ("app".to_string(), cell.app.clone()),
        (
            "policy".to_string(),
            match &cell.policy_kind {
                Some(kind) => format!("{} ({kind})", cell.policy),
                None => cell.policy.clone(),
            },
        ),
        // Scenario and seed are in the page's heading.
        ("backend".to_string(), cell.backend.clone()),
    ];
    if let Some(slo) = &cell.slo {
        meta.push((
            "SLO".into(),
            format!("p{} of route {} ≤ {} ms", fmt_plain(slo.percentile), slo.route, fmt_plain(slo.threshold_ms)),
        ));
    }
    if let (Some(start), Some(end)) = (cell.started_unix_s, cell.finished_unix_s) {
        meta.push(("ran".into(), format!("{} for {}", fmt_time(start), fmt_duration(end - start))));
    }

    CellView {
        id: cell.id.clone(),
        run_title: format!("Run {}", run.tag),
        index_href: "../index.html".into(),
        policy: cell.policy.clone(),
        scenario: cell.scenario.clone(),
        seed: cell.seed.map_or("?".into(), |s| s.to_string()),
        state: cell.state.label(),
        meta,
        files,
        reason: cell.reason.clone(),
        log_tail: cell.log_tail.clone(),
        warnings,
        summary,
        figures,
        graph,
        training,
        requests,
        twin: twin.map(|t| twin_view(&mut shared, cell, t, metrics.as_ref())),
    }
}

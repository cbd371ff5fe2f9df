//! Machine-readable exports next to the HTML: summary.csv (one tidy row per policy, group and metric),
//! summary.json (everything the report concluded, per cell too) and summary.md (the tables, for a README or a
//! paper draft).

use anyhow::{Context, Result};
use serde::Serialize;

use super::analysis::{Analysis, MetricResult, RELATIVE_COST, metric_def};
use super::format::fmt_num;
use super::load::{CellRecord, RunFolder, RunMeta};
use super::stats::Verdict;

pub const CSV_COLUMNS: [&str; 17] = [
    "app",
    "scenario",
    "backend",
    "policy",
    "is_baseline",
    "metric",
    "unit",
    "runs",
    "iqm",
    "ci_low",
    "ci_high",
    "baseline",
    "p_improvement",
    "p_ci_low",
    "p_ci_high",
    "verdict",
    "values",
];

fn unit_of(key: &str) -> &'static str {
    if key == RELATIVE_COST { "ratio to the baseline" } else { metric_def(key).unit }
}

fn number(value: Option<f64>) -> String {
    value.filter(|v| v.is_finite()).map_or(String::new(), |v| format!("{v}"))
}

fn csv_row(
    group: [&str; 4],
    is_baseline: bool,
    result: &MetricResult,
    runs: usize,
    baseline: Option<&str>,
) -> Vec<String> {
    let estimate = result.estimate;
    let comparison = result.comparison;
    let values = result
        .runs
        .iter()
        .map(|r| format!("{}:{}", r.seed.map_or("?".into(), |s| s.to_string()), r.value))
        .collect::<Vec<_>>()
        .join(";");
    vec![
        group[0].to_string(),
        group[1].to_string(),
        group[2].to_string(),
        group[3].to_string(),
        is_baseline.to_string(),
        result.key.to_string(),
        unit_of(result.key).to_string(),
        runs.to_string(),
        number(estimate.map(|e| e.point)),
        number(estimate.and_then(|e| e.interval).map(|i| i.low)),
        number(estimate.and_then(|e| e.interval).map(|i| i.high)),
        if comparison.is_some() { baseline.unwrap_or("").to_string() } else { String::new() },
        number(comparison.map(|c| c.improvement.point)),
        number(comparison.and_then(|c| c.improvement.interval).map(|i| i.low)),
        number(comparison.and_then(|c| c.improvement.interval).map(|i| i.high)),
        comparison.map_or(String::new(), |c| verdict_word(c.verdict).to_string()),
        values,
    ]
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Better => "better",
        Verdict::Worse => "worse",
        Verdict::NoSignificantDifference => "no_significant_difference",
        Verdict::TooFewRuns => "too_few_runs",
    }
}

/// summary.csv: per app × scenario × backend × policy × metric; `scenario` is `*` for the aggregate over an
/// app's scenarios. `values` lists `seed:value` pairs.
pub fn summary_csv(analysis: &Analysis) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS)?;
    let baseline = analysis.baseline.as_deref();
    for table in &analysis.tables {
        for row in &table.rows {
            for result in &row.metrics {
                let group = [table.app.as_str(), table.scenario.as_str(), table.backend.as_str(), row.policy.as_str()];
                writer.write_record(csv_row(group, row.is_baseline, result, result.runs.len(), baseline))?;
            }
        }
    }
    for aggregate in &analysis.aggregates {
        if aggregate.scenarios.len() < 2 {
            continue;
        }
        for row in &aggregate.rows {
            for result in &row.metrics {
                let group = [aggregate.app.as_str(), "*", aggregate.backend.as_str(), row.policy.as_str()];
                writer.write_record(csv_row(group, row.is_baseline, result, row.runs, baseline))?;
            }
        }
    }
    writer.into_inner().context("writing summary.csv")
}

#[derive(Serialize)]
struct JsonExport<'a> {
    format: u32,
    run: &'a str,
    meta: &'a RunMeta,
    cells: &'a [CellRecord],
    analysis: &'a Analysis,
}

/// summary.json: the run's metadata, every cell with its state and figures, and the whole analysis.
pub fn summary_json(run: &RunFolder, analysis: &Analysis) -> Result<Vec<u8>> {
    let export = JsonExport { format: 1, run: &run.tag, meta: &run.meta, cells: &run.cells, analysis };
    serde_json::to_vec_pretty(&export).context("writing summary.json")
}

fn md_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|").replace('\n', " ")
}

fn md_cell(result: &MetricResult) -> String {
    let Some(estimate) = result.estimate else { return "—".into() };
    let mut text = fmt_num(estimate.point);
    if let Some(i) = estimate.interval {
        text.push_str(&format!(" [{}, {}]", fmt_num(i.low), fmt_num(i.high)));
    }
    if let Some(c) = result.comparison {
        match c.verdict {
            Verdict::Better => text.push_str(" **better**"),
            Verdict::Worse => text.push_str(" **worse**"),
            Verdict::NoSignificantDifference => text.push_str(" n.s."),
            Verdict::TooFewRuns => {}
        }
    }
    text
}

/// summary.md: each app × scenario table as Markdown: IQM [95 % interval] and the verdict against the baseline.
pub fn summary_md(run: &RunFolder, analysis: &Analysis) -> String {
    let mut out = format!("# Run {}\n\n", md_escape(&run.tag));
    out.push_str(&format!(
        "Interquartile mean over seeds [{:.0} % stratified bootstrap interval, {} resamples]; verdicts against the baseline {} from the probability of improvement.\n",
        analysis.bootstrap.confidence * 100.0,
        analysis.bootstrap.reps,
        analysis.baseline.as_deref().map_or("(none)".to_string(), |b| format!("`{}`", md_escape(b)))
    ));
    let keys: Vec<&'static str> = analysis.metrics.iter().copied().filter(|k| metric_def(k).in_table).collect();
    for table in &analysis.tables {
        out.push_str(&format!(
            "\n## {} · {} ({})\n\n",
            md_escape(&table.app),
            md_escape(&table.scenario),
            md_escape(&table.backend)
        ));
        out.push_str("| Policy | Seeds |");
        for key in &keys {
            let m = metric_def(key);
            out.push_str(&format!(" {} ({}) |", m.label, m.unit));
        }
        out.push_str("\n|---|---:|");
        out.push_str(&"---:|".repeat(keys.len()));
        out.push('\n');
        for row in &table.rows {
            let name =
                if row.is_baseline { format!("{} (baseline)", md_escape(&row.policy)) } else { md_escape(&row.policy) };
            out.push_str(&format!("| {name} | {} |", row.complete));
            for key in &keys {
                out.push_str(&format!(" {} |", row.metric(key).map_or("—".into(), md_cell)));
            }
            out.push('\n');
        }
    }
    out
}

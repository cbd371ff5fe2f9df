//! The figures of a result table (IQM, interval, per-seed values, verdict) and its columns, shared by the index
//! page and the comparison of runs.

use serde::Serialize;

use crate::report::analysis::{Comparison, MetricResult, RELATIVE_COST, metric_def};
use crate::report::format::fmt_num;
use crate::report::stats::Verdict;

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

pub(super) fn improvement_text(c: &Comparison) -> String {
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

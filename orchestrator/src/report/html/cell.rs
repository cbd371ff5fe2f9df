//! A cell's page: its figures and files, the time series of its run, its service graph, training curves and
//! request tables, and the comparison with its twin on another backend.

use std::path::Path;

use serde::Serialize;

use super::cell_page_file;
use crate::report::analysis;
use crate::report::charts::{self, Figure, LineChart, RefLine, Scale, Series, Shape, Shared};
use crate::report::format::{fmt_duration, fmt_num, fmt_plain, fmt_time, href, url_segment};
use crate::report::graph;
use crate::report::load::{CellRecord, RunFolder};
use crate::report::series::{self, CellSeries};
use crate::run_folder::{METRICS_CSV, RUN_LOG};

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

/// The cell's time series: load, latency against the SLO, replicas, CPU and its throttling per service.
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
        let sentence = match throttling_figure(shared, series) {
            Throttling::Chart(throttled) => {
                figures.push(*throttled);
                None
            }
            Throttling::NoneThrottled(periods) => {
                Some(format!("No CFS period was throttled ({} periods with work).", fmt_num(periods)))
            }
            Throttling::Unknown => {
                let backend = match cell.backend.as_str() {
                    // A burning emulator always writes the counters: an emulated cell without them slept.
                    "emulated" => "emulated (sleep mode)",
                    "sim" => "sim (smooth CPU model)",
                    other => other,
                };
                Some(format!("No throttling data: {backend} cannot see CFS throttling."))
            }
        };
        if let (Some(sentence), Some(cpu)) = (sentence, figures.last_mut()) {
            cpu.note = if cpu.note.is_empty() { sentence } else { format!("{} {sentence}", cpu.note) };
        }
    }
    figures
}

/// What a cell's CFS counters show.
enum Throttling {
    /// Per throttled service, the share of its periods throttled each second.
    Chart(Box<Figure>),
    /// Counters, but not one throttled period: a line says so instead of a flat chart (periods with work).
    NoneThrottled(f64),
    /// No service has counters.
    Unknown,
}

/// Per service that was throttled at all, the share of CFS periods in which its pods ran out of quota, drawn next
/// to their CPU.
fn throttling_figure(shared: &mut Shared, series: &CellSeries) -> Throttling {
    let t = &series.t;
    let mut chart = LineChart::time("throttled periods (%)");
    chart.y_range = Some((0.0, 100.0));
    let mut totals = Vec::new();
    let (mut any_counters, mut all_periods) = (false, 0.0);
    for (i, service) in series.services.iter().enumerate() {
        let Some((throttled, periods)) = service.throttling_totals() else { continue };
        any_counters = true;
        all_periods += periods;
        if throttled == 0.0 {
            continue;
        }
        if let Some(pct) = service.throttled_pct() {
            chart.series.push(line(&service.name, t, &pct, i));
        }
        let share = if periods > 0.0 { 100.0 * throttled / periods } else { 0.0 };
        totals.push(format!("{} {} of {} ({} %)", service.name, fmt_num(throttled), fmt_num(periods), fmt_num(share)));
    }
    if chart.series.is_empty() {
        return if any_counters { Throttling::NoneThrottled(all_periods) } else { Throttling::Unknown };
    }
    let mut throttled = figure(shared, "CPU throttled (% of CFS periods)", chart, String::new());
    // The same colours as the replicas and CPU charts: their legend serves.
    if series.services.iter().any(|s| s.ready.is_some()) {
        throttled.legend.clear();
    }
    throttled.note = format!("Throttled periods over the run (services with any): {}.", totals.join("; "));
    Throttling::Chart(Box::new(throttled))
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
    for m in analysis::METRICS.iter() {
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
    let theirs = series::read_metrics(&twin.dir.join(METRICS_CSV)).ok();
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
    for m in analysis::METRICS.iter() {
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
    let metrics = if cell.files.iter().any(|f| f == METRICS_CSV) {
        match series::read_metrics(&cell.dir.join(METRICS_CSV)) {
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
    if cell.files.iter().any(|f| f == RUN_LOG) {
        files.push((RUN_LOG.into(), href(&[&cell.id, RUN_LOG])));
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

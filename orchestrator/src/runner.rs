//! Runs a matrix: cells in parallel, each writing its folder under logs/<run-tag>/.

use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::SecondMetrics;
use crate::cell::CellSummary;
use crate::emulated::EmulatedRun;
use crate::matrix::{Cell, Matrix};

pub struct RunOptions {
    pub logs_dir: PathBuf,
    pub tag: String,
}

/// What a finished matrix run produced.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub summaries: Vec<CellSummary>,
    pub failed: Vec<(String, String)>,
}

/// Runs every cell of `matrix`; a failing cell is reported and does not stop the others.
pub fn run_matrix(matrix: &Matrix, options: &RunOptions) -> Result<RunOutcome> {
    let run_dir = options.logs_dir.join(&options.tag);
    if run_dir.exists() {
        bail!("{} already exists: choose another --tag", run_dir.display());
    }
    fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    fs::copy(&matrix.file, run_dir.join("matrix.yaml")).context("copying the matrix file into the run folder")?;

    let progress = progress_bar(matrix.cells.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<CellSummary, String>)>> = Mutex::new(Vec::new());
    let workers = matrix.max_parallel.min(matrix.cells.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cell) = matrix.cells.get(index) else { break };
                    let started = Instant::now();
                    let result =
                        run_cell(cell, &run_dir.join(&cell.id), matrix.emulated.as_ref()).map_err(|e| format!("{e:#}"));
                    let status = if result.is_ok() { "done" } else { "FAILED" };
                    let line = format!("{status} {} in {:.2}s", cell.id, started.elapsed().as_secs_f64());
                    match &progress {
                        Some(bar) => {
                            bar.set_message(cell.id.clone());
                            bar.inc(1);
                            if result.is_err() {
                                bar.println(line);
                            }
                        }
                        None => eprintln!("[{}/{}] {line}", index + 1, matrix.cells.len()),
                    }
                    results.lock().expect("results lock").push((index, result));
                }
            });
        }
    });
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(index, _)| *index);
    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for (index, result) in results {
        match result {
            Ok(summary) => summaries.push(summary),
            Err(message) => failed.push((matrix.cells[index].id.clone(), message)),
        }
    }
    write_summary_csv(&run_dir.join("summary.csv"), &summaries)?;
    Ok(RunOutcome { run_dir, summaries, failed })
}

fn progress_bar(total: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} cells {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Some(bar)
}

/// Runs one cell into `dir`: config.yaml, run.log, metrics.csv, summary.json (an emulated cell adds agents/,
/// agents.json and emulator.json; `emulated` says where its load comes from).
pub fn run_cell(cell: &Cell, dir: &Path, emulated: Option<&EmulatedRun>) -> Result<CellSummary> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_yaml = load_agent::yaml::to_string(&cell.config).context("serializing the cell config")?;
    write_atomically(&dir.join("config.yaml"), config_yaml.as_bytes())?;

    let log = File::create(dir.join("run.log")).context("creating run.log")?;
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(Mutex::new(log))
        .with_current_span(false)
        .with_span_list(false)
        .without_time()
        .finish();
    let metrics_path = dir.join("metrics.csv");
    let mut metrics = BufWriter::new(File::create(&metrics_path).context("creating metrics.csv")?);
    let service_names: Vec<&str> = cell.config.app.services.iter().map(|s| s.name.as_str()).collect();
    write_metrics_header(&mut metrics, &service_names)?;

    let mut write_error = None;
    let summary = tracing::subscriber::with_default(subscriber, || {
        tracing::info!(cell = %cell.id, app = %cell.config.app.name, policy = %cell.config.policy.name(),
            scenario = %cell.config.scenario.name, seed = cell.config.seed, backend = cell.config.backend.name(),
            "cell started");
        let summary = crate::cell::run(
            &cell.id,
            &cell.config,
            dir,
            emulated,
            |second| {
                if write_error.is_none()
                    && let Err(e) = write_metrics_row(&mut metrics, second)
                {
                    write_error = Some(e);
                }
            },
            |t, service, from, to, reason| {
                tracing::info!(t, service, from, to, reason, "scaled");
            },
        );
        let summary = match summary {
            Ok(summary) => summary,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cell failed");
                return Err(e);
            }
        };
        tracing::info!(
            pod_minutes = summary.pod_minutes,
            slo_violation_seconds_pct = summary.slo_violation_seconds_pct,
            slo_p95_ms = summary.slo_p95_ms,
            scaling_actions = summary.scaling_actions,
            "cell finished"
        );
        Ok(summary)
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing metrics.csv");
    }
    metrics.flush().context("writing metrics.csv")?;
    let json = serde_json::to_vec_pretty(&summary).context("serializing summary.json")?;
    write_atomically(&dir.join("summary.json"), &json)?;
    Ok(summary)
}

fn write_metrics_header(out: &mut impl Write, services: &[&str]) -> std::io::Result<()> {
    write!(out, "t,users,offered_rps,achieved_rps,failures,slo_p50_ms,slo_p95_ms,slo_p99_ms,slo_violated")?;
    for name in services {
        write!(out, ",{name}_ready,{name}_desired,{name}_cpu_util_pct,{name}_memory_mib")?;
    }
    writeln!(out)
}

fn write_metrics_row(out: &mut impl Write, s: &SecondMetrics) -> std::io::Result<()> {
    write!(
        out,
        "{},{:.0},{:.0},{:.1},{:.1},{:.3},{:.3},{:.3},{}",
        s.time_s,
        s.users.floor(),
        s.offered_rps,
        s.achieved_rps,
        s.failures,
        s.slo_p50_ms,
        s.slo_p95_ms,
        s.slo_p99_ms,
        s.slo_violated as u8
    )?;
    for service in &s.services {
        write!(
            out,
            ",{},{},{:.1},{:.1}",
            service.ready, service.desired, service.cpu_utilization_pct, service.memory_mib
        )?;
    }
    writeln!(out)
}

/// Writes through a temporary file and a rename, so readers never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

const SUMMARY_COLUMNS: &str = "cell,app,policy,scenario,seed,duration_s,pod_minutes,cpu_core_hours,\
slo_violation_seconds_pct,slo_violation_requests_pct,slo_p50_ms,slo_p95_ms,slo_p99_ms,overall_p50_ms,\
overall_p95_ms,overall_p99_ms,failure_pct,offered_requests,achieved_requests,mean_offered_rps,mean_achieved_rps,\
scaling_actions";

fn write_summary_csv(path: &Path, summaries: &[CellSummary]) -> Result<()> {
    let mut out = String::from(SUMMARY_COLUMNS);
    out.push('\n');
    for s in summaries {
        out.push_str(&format!(
            "{},{},{},{},{},{},{:.3},{:.4},{:.2},{:.2},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.0},{:.0},{:.2},{:.2},{}\n",
            s.cell,
            s.app,
            s.policy,
            s.scenario,
            s.seed,
            s.duration_s,
            s.pod_minutes,
            s.cpu_core_hours,
            s.slo_violation_seconds_pct,
            s.slo_violation_requests_pct,
            s.slo_p50_ms,
            s.slo_p95_ms,
            s.slo_p99_ms,
            s.overall_p50_ms,
            s.overall_p95_ms,
            s.overall_p99_ms,
            s.failure_pct,
            s.offered_requests,
            s.achieved_requests,
            s.mean_offered_rps,
            s.mean_achieved_rps,
            s.scaling_actions
        ));
    }
    write_atomically(path, out.as_bytes())
}

//! `orch status <run-tag>`: where each cell of a run stands, read from the run folder, never written.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::run_folder::{self, CellState, CellStatus, RUN_JSON, RunInfo, RunLock};

/// `orch status`: prints the table, or the error with exit code 1.
pub fn run(logs_dir: &Path, run_tag: &str) -> ExitCode {
    match status_report(logs_dir, run_tag) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Longest error shown in the status table.
const ERROR_WIDTH: usize = 70;

/// The table `orch status` prints: one row per planned cell, then counts per state.
pub fn status_report(logs_dir: &Path, tag: &str) -> Result<String> {
    let run_dir = logs_dir.join(tag);
    let info: RunInfo = run_folder::read_json(&run_dir.join(RUN_JSON))
        .with_context(|| format!("no run {tag:?} under {}", logs_dir.display()))?;
    let holder = RunLock::holder(&run_dir);
    let now = run_folder::now_unix_s();
    let mut out = String::new();
    let state_of_run = match (holder, info.finished_unix_s) {
        (Some(pid), _) => format!("in progress (orch pid {pid})"),
        (None, Some(t)) => format!("finished {}", load_agent::clock::iso8601(t as u64)),
        (None, None) => "stopped before the end: `orch run --resume` continues it".to_string(),
    };
    writeln!(
        out,
        "run {tag}: matrix {} ({}), started {}, {state_of_run}",
        info.matrix_name,
        info.matrix_file,
        load_agent::clock::iso8601(info.started_unix_s as u64)
    )?;
    writeln!(out, "{:<64} {:<10} {:>7} {:>9} {:>10}  ERROR", "CELL", "STATE", "ATTEMPT", "TIME", "HEARTBEAT")?;
    let mut counts = std::collections::BTreeMap::new();
    for id in &info.cells {
        let status = run_folder::read_status(&run_folder::cell_dir(&run_dir, id)).ok();
        let Some(status) = status else {
            writeln!(out, "{id:<64} {:<10}", "(no status)")?;
            *counts.entry("no status").or_insert(0) += 1;
            continue;
        };
        *counts.entry(status.state.name()).or_insert(0) += 1;
        writeln!(out, "{}", row(&status, now, holder.is_some()))?;
    }
    let mut summary = Vec::new();
    for state in CellState::ALL.iter().map(|s| s.name()).chain(["no status"]) {
        if let Some(n) = counts.get(state) {
            summary.push(format!("{n} {state}"));
        }
    }
    writeln!(out, "{} cells: {}", info.cells.len(), summary.join(", "))?;
    Ok(out)
}

fn row(status: &CellStatus, now: f64, run_is_live: bool) -> String {
    let time = match (status.started_unix_s, status.finished_unix_s) {
        (Some(start), Some(end)) => format!("{:.1}s", end - start),
        (Some(start), None) if status.state == CellState::Running => format!("{:.1}s", now - start),
        _ => String::new(),
    };
    let heartbeat = match (status.state, status.heartbeat_unix_s) {
        (CellState::Running, Some(beat)) if run_is_live => format!("{:.0}s ago", (now - beat).max(0.0)),
        (CellState::Running, _) => "stale".to_string(),
        _ => String::new(),
    };
    let mut error = status.error.clone().unwrap_or_default().replace('\n', " ");
    if error.chars().count() > ERROR_WIDTH {
        error = format!("{}...", error.chars().take(ERROR_WIDTH - 3).collect::<String>());
    }
    format!(
        "{:<64} {:<10} {:>7} {:>9} {:>10}  {error}",
        status.cell,
        status.state.name(),
        status.attempt,
        time,
        heartbeat
    )
}

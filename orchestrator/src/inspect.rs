//! `orch status <run-tag>` and `orch logs <cell-id>`: read a run folder, never write it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::run_folder::{self, CellState, CellStatus, RUN_JSON, RunInfo, RunLock};

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

/// The folder of `cell` (a full id, or one without its hash) under `logs_dir`, in run `run` if given.
pub fn find_cell(logs_dir: &Path, cell: &str, run: Option<&str>) -> Result<PathBuf> {
    let runs: Vec<PathBuf> = match run {
        Some(tag) => {
            let dir = logs_dir.join(tag);
            if !dir.is_dir() {
                bail!("no run {tag:?} under {}", logs_dir.display());
            }
            vec![dir]
        }
        None => {
            let mut dirs: Vec<PathBuf> = fs::read_dir(logs_dir)
                .with_context(|| format!("reading {}", logs_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            dirs
        }
    };
    let mut hits = Vec::new();
    for run_dir in runs {
        let Ok(entries) = fs::read_dir(&run_dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let without_hash = name.rsplit_once('-').map_or(name.as_str(), |(n, _)| n);
            if (name == cell || without_hash == cell) && entry.path().join("config.yaml").is_file() {
                hits.push(entry.path());
            }
        }
    }
    hits.sort();
    match hits.len() {
        0 => bail!("no cell {cell:?} under {}", logs_dir.display()),
        1 => Ok(hits.remove(0)),
        _ => bail!(
            "{cell:?} is in several runs; pass --run <tag>:\n{}",
            hits.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n")
        ),
    }
}

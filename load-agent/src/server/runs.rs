//! The agent's runs: live ones driven by the engine, and finished ones read back from the data directory.
//!
//! Each run keeps DATA_DIR/runs/<id>/: request.json, status.json (rewritten atomically every second), windows.jsonl
//! (one closed window per line), stats.json (cumulative, with histograms) and Locust's three CSV files.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::RunHandle;
use crate::protocol::{RunState, RunStatus, WindowSnapshot};
use crate::stats::{Collector, Window, write_failures_csv, write_history_csv, write_stats_csv};

/// How often the Locust CSVs and stats.json are refreshed while a run goes on.
const CSV_EVERY_S: u64 = 5;

pub struct RunEntry {
    pub id: String,
    pub dir: PathBuf,
    /// The engine's handle while this agent process drives the run.
    pub live: Option<RunHandle>,
    /// The last status on disk, for runs of an earlier agent process.
    pub stored: Option<RunStatus>,
}

/// Run ids are 16 lowercase hex digits; anything else is refused before it reaches the file system.
pub fn valid_run_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A file name that stays inside its run folder: no separators, no parent references, no hidden files.
pub fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.contains("..")
}

pub fn window_snapshot(index: u64, window: &Window) -> WindowSnapshot {
    WindowSnapshot {
        index,
        start_unix_s: window.start_unix_s,
        users: window.users,
        entries: window.entries.iter().map(|e| e.to_snapshot()).collect(),
        total: window.total.to_snapshot(),
    }
}

/// The status of a live run, from the engine and its collector.
pub fn live_status(id: &str, handle: &RunHandle) -> RunStatus {
    let engine = handle.status();
    let collector = handle.collector();
    let stats = collector.lock().expect("collector lock");
    let history = stats.history();
    RunStatus {
        run_id: id.to_string(),
        state: engine.state,
        started_at_unix_ms: engine.started_at_unix_ms,
        elapsed_s: engine.elapsed_s,
        users: engine.users,
        target_users: engine.target_users,
        requests: stats.total().requests,
        failures: stats.total().failures,
        dropped_iterations: engine.dropped_iterations,
        window: history.last().map(|w| window_snapshot(history.len() as u64 - 1, w)),
        windows_closed: history.len() as u64,
        health: engine.health,
        error: engine.error,
    }
}

/// Writes through a temporary file, fsync and rename: readers never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(tmp, path)
}

fn write_csvs(dir: &Path, stats: &Collector, duration_s: f64) -> std::io::Result<()> {
    let write = |name: &str, f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| -> std::io::Result<()> {
        let mut bytes = Vec::new();
        f(&mut bytes)?;
        write_atomically(&dir.join(name), &bytes)
    };
    write("locust_stats.csv", &|out| write_stats_csv(out, stats, duration_s))?;
    write("locust_stats_history.csv", &|out| write_history_csv(out, stats))?;
    write("locust_failures.csv", &|out| write_failures_csv(out, stats))?;
    let snapshot = serde_json::to_vec(&stats.snapshot()).expect("snapshot serializes");
    write_atomically(&dir.join("stats.json"), &snapshot)
}

/// Keeps a live run's folder current until the run is over, then writes its final files.
pub async fn persist(id: String, dir: PathBuf, handle: RunHandle) {
    let mut windows_written = 0usize;
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        let over = tokio::select! {
            _ = interval.tick() => false,
            _ = handle.wait() => true,
        };
        ticks += 1;
        let status = live_status(&id, &handle);
        let result = (|| -> std::io::Result<()> {
            let collector = handle.collector();
            let stats = collector.lock().expect("collector lock");
            let history = stats.history();
            if history.len() > windows_written {
                let mut file =
                    BufWriter::new(OpenOptions::new().create(true).append(true).open(dir.join("windows.jsonl"))?);
                for (index, window) in history.iter().enumerate().skip(windows_written) {
                    serde_json::to_writer(&mut file, &window_snapshot(index as u64, window))?;
                    file.write_all(b"\n")?;
                }
                file.flush()?;
                windows_written = history.len();
            }
            if over || ticks.is_multiple_of(CSV_EVERY_S) {
                write_csvs(&dir, &stats, status.elapsed_s)?;
            }
            // status.json last: once it says the run is over, every other file is final.
            write_atomically(&dir.join("status.json"), &serde_json::to_vec_pretty(&status).expect("status serializes"))
        })();
        if let Err(e) = result {
            eprintln!("run {id}: cannot write its files in {}: {e}", dir.display());
        }
        if over {
            return;
        }
    }
}

/// Reads the runs an earlier agent process left; a run that was going on when it died is marked failed.
pub fn load_stored(runs_dir: &Path) -> Vec<RunEntry> {
    let Ok(entries) = fs::read_dir(runs_dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().to_string();
        if !valid_run_id(&id) {
            continue;
        }
        let dir = entry.path();
        let Ok(text) = fs::read(dir.join("status.json")) else { continue };
        let Ok(mut status) = serde_json::from_slice::<RunStatus>(&text) else { continue };
        if !status.state.is_over() {
            status.state = RunState::Failed;
            status.users = 0;
            status.error = Some("agent restarted during the run".to_string());
            let _ =
                write_atomically(&dir.join("status.json"), &serde_json::to_vec_pretty(&status).expect("serializes"));
        }
        out.push(RunEntry { id, dir, live: None, stored: Some(status) });
    }
    out
}

/// Windows `since..` of a stored run, from its windows.jsonl.
pub fn stored_windows(dir: &Path, since: u64) -> Vec<WindowSnapshot> {
    let Ok(text) = fs::read_to_string(dir.join("windows.jsonl")) else { return Vec::new() };
    text.lines()
        .filter_map(|line| serde_json::from_str::<WindowSnapshot>(line).ok())
        .filter(|w| w.index >= since)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_leave_the_run_folder() {
        for bad in ["", "../status.json", "..", "a/b", "/etc/passwd", "..\\x", ".hidden", "x\0y", "a..b", "%2e%2e"] {
            assert!(!safe_file_name(bad), "{bad:?}");
        }
        for good in ["locust_stats.csv", "status.json", "windows.jsonl"] {
            assert!(safe_file_name(good), "{good}");
        }
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(valid_run_id("0123456789abcdef"));
        for bad in ["0123456789ABCDEF", "0123456789abcde", "../../etc/passwd", "0123456789abcdeg"] {
            assert!(!valid_run_id(bad), "{bad}");
        }
    }
}

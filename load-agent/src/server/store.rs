//! A run's folder, DATA_DIR/runs/<run_id>/, and how it is kept current:
//!
//! | file                       | written                                                         |
//! |----------------------------|-----------------------------------------------------------------|
//! | `request.json`             | at the start: the [`StartRun`] as accepted                       |
//! | `status.json`              | at the start, every second and at the end (last, atomically)     |
//! | `windows.jsonl`            | one [`WindowSnapshot`] per closed window, appended every second  |
//! | `stats.json`               | cumulative [`StatsSnapshot`], every 5 s and at the end           |
//! | `locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv` | Locust's CSVs, every 5 s and at the end |
//!
//! Whole files are replaced atomically (temporary file, fsync, rename, fsync of the folder), so a reader or a
//! restarted agent never sees half a file; `status.json` is written last, so once it says the run is over every
//! other file is final. The work is prepared under the collector's lock (in memory only) and written outside it on
//! a blocking thread, so disks never slow the engine down.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::engine::RunHandle;
use crate::protocol::{GeneratorHealth, RunState, RunStatus, StartRun, WindowSnapshot};
use crate::stats::{
    Collector, StatsSnapshot, Window, WindowEntry, write_failures_csv, write_history_csv, write_stats_csv,
};

pub const REQUEST_FILE: &str = "request.json";
pub const STATUS_FILE: &str = "status.json";
pub const WINDOWS_FILE: &str = "windows.jsonl";
pub const STATS_FILE: &str = "stats.json";
pub const STATS_CSV: &str = "locust_stats.csv";
pub const HISTORY_CSV: &str = "locust_stats_history.csv";
pub const FAILURES_CSV: &str = "locust_failures.csv";

/// The error of a run that was going on when its agent died.
pub const INTERRUPTED: &str = "agent restarted during the run";

/// How often (in seconds) the cumulative files are refreshed while a run goes on.
const FULL_EVERY_S: u64 = 5;

/// Writes through a temporary file, fsync and rename (then fsyncs the folder): readers never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Makes the rename itself durable; not every platform can open a folder, so failure is not an error.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("wire types serialize")
}

pub fn window_snapshot(index: u64, window: &Window) -> WindowSnapshot {
    WindowSnapshot {
        index,
        start_unix_s: window.start_unix_s,
        users: window.users,
        entries: window.entries.iter().map(WindowEntry::to_snapshot).collect(),
        total: window.total.to_snapshot(),
    }
}

/// The status of a live run, from the engine and its collector.
pub fn live_status(id: &str, handle: &RunHandle) -> RunStatus {
    let engine = handle.status();
    let collector = handle.collector();
    let stats = collector.lock().unwrap_or_else(|e| e.into_inner());
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

/// The status a run has before the engine reports anything.
pub fn initial_status(id: &str) -> RunStatus {
    RunStatus {
        run_id: id.to_string(),
        state: RunState::Scheduled,
        started_at_unix_ms: None,
        elapsed_s: 0.0,
        users: 0,
        target_users: 0,
        requests: 0,
        failures: 0,
        dropped_iterations: 0,
        window: None,
        windows_closed: 0,
        health: GeneratorHealth { cpu_pct: 0.0, timer_lag_p99_ms: 0.0, in_flight: 0, suspect: false, reason: None },
        error: None,
    }
}

/// Creates a run's folder with its request and first status.
pub fn create_run_dir(dir: &Path, request: &StartRun, status: &RunStatus) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_atomically(&dir.join(REQUEST_FILE), &to_json(request))?;
    write_atomically(&dir.join(STATUS_FILE), &to_json(status))
}

/// Locust's three CSVs and stats.json, rendered in memory.
pub fn cumulative_files(stats: &Collector, duration_s: f64) -> io::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut files = Vec::with_capacity(4);
    let mut render = |name, f: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| -> io::Result<()> {
        let mut bytes = Vec::new();
        f(&mut bytes)?;
        files.push((name, bytes));
        Ok(())
    };
    render(STATS_CSV, &|out| write_stats_csv(out, stats, duration_s))?;
    render(HISTORY_CSV, &|out| write_history_csv(out, stats))?;
    render(FAILURES_CSV, &|out| write_failures_csv(out, stats))?;
    files.push((STATS_FILE, serde_json::to_vec(&stats.snapshot()).expect("snapshot serializes")));
    Ok(files)
}

/// One round of writes, prepared in memory.
struct Flush {
    /// New lines of windows.jsonl, and the window count once they are written.
    windows: Vec<u8>,
    windows_after: usize,
    files: Vec<(&'static str, Vec<u8>)>,
    status: Vec<u8>,
}

impl Flush {
    fn prepare(id: &str, handle: &RunHandle, windows_written: usize, full: bool) -> io::Result<Flush> {
        let status = live_status(id, handle);
        let collector = handle.collector();
        let stats = collector.lock().unwrap_or_else(|e| e.into_inner());
        let history = stats.history();
        let mut windows = Vec::new();
        for (index, window) in history.iter().enumerate().skip(windows_written) {
            serde_json::to_writer(&mut windows, &window_snapshot(index as u64, window))?;
            windows.push(b'\n');
        }
        let files = if full { cumulative_files(&stats, status.elapsed_s)? } else { Vec::new() };
        Ok(Flush { windows, windows_after: history.len().max(windows_written), files, status: to_json(&status) })
    }

    fn write(&self, dir: &Path) -> io::Result<()> {
        if !self.windows.is_empty() {
            let mut file = OpenOptions::new().create(true).append(true).open(dir.join(WINDOWS_FILE))?;
            file.write_all(&self.windows)?;
            file.sync_data()?;
        }
        for (name, bytes) in &self.files {
            write_atomically(&dir.join(name), bytes)?;
        }
        // Last: once status.json says the run is over, every other file is final.
        write_atomically(&dir.join(STATUS_FILE), &self.status)
    }
}

/// Keeps a live run's folder current until the run is over, then writes its final files; true when those final
/// files were written.
pub async fn persist(id: String, dir: PathBuf, handle: RunHandle) -> bool {
    let mut windows_written = 0usize;
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let over = tokio::select! {
            _ = interval.tick() => false,
            _ = handle.wait() => true,
        };
        ticks += 1;
        let full = over || ticks.is_multiple_of(FULL_EVERY_S);
        let written = match Flush::prepare(&id, &handle, windows_written, full) {
            Ok(flush) => {
                let dir = dir.clone();
                match tokio::task::spawn_blocking(move || flush.write(&dir).map(|()| flush.windows_after)).await {
                    Ok(result) => result,
                    Err(e) => Err(io::Error::other(e.to_string())),
                }
            }
            Err(e) => Err(e),
        };
        let ok = match written {
            Ok(count) => {
                windows_written = count;
                true
            }
            Err(e) => {
                tracing::error!(run = %id, dir = %dir.display(), "cannot write the run's files: {e}");
                false
            }
        };
        if over {
            return ok;
        }
    }
}

/// A run an earlier agent process left in the data directory.
pub struct StoredRun {
    pub id: String,
    pub dir: PathBuf,
    pub status: RunStatus,
    /// When the run was created (its request.json), for ordering.
    pub created_unix_ms: u64,
}

fn modified_unix_ms(path: &Path) -> Option<u64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Reads the runs of the data directory. A run that was going on when its agent died (its status not over, or no
/// status at all) is marked failed with [`INTERRUPTED`], on disk too.
pub fn load_stored(runs_dir: &Path, valid_id: impl Fn(&str) -> bool) -> Vec<StoredRun> {
    let Ok(entries) = fs::read_dir(runs_dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else { continue };
        if !valid_id(&id) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let has_request = dir.join(REQUEST_FILE).is_file();
        let status: Option<RunStatus> =
            fs::read(dir.join(STATUS_FILE)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let mut status = match (status, has_request) {
            (Some(status), _) => status,
            (None, true) => initial_status(&id),
            // Not a run folder of ours.
            (None, false) => continue,
        };
        status.run_id = id.clone();
        if !status.state.is_over() {
            status.state = RunState::Failed;
            status.users = 0;
            status.target_users = 0;
            status.health.in_flight = 0;
            status.error = Some(INTERRUPTED.to_string());
            if let Err(e) = write_atomically(&dir.join(STATUS_FILE), &to_json(&status)) {
                tracing::warn!(run = %id, "cannot mark the interrupted run failed on disk: {e}");
            }
        }
        let created_unix_ms = modified_unix_ms(&dir.join(REQUEST_FILE))
            .or(status.started_at_unix_ms)
            .or_else(|| modified_unix_ms(&dir))
            .unwrap_or(0);
        out.push(StoredRun { id, dir, status, created_unix_ms });
    }
    out
}

/// Windows `since..` of a stored run, from its windows.jsonl (a torn last line is skipped).
pub fn stored_windows(dir: &Path, since: u64) -> io::Result<Vec<WindowSnapshot>> {
    let text = match fs::read_to_string(dir.join(WINDOWS_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<WindowSnapshot>(line).ok())
        .filter(|w| w.index >= since)
        .collect())
}

/// The cumulative stats of a stored run: stats.json, or (for a run killed before writing one) the merge of its
/// windows, which lacks only the failure details.
pub fn stored_stats(dir: &Path) -> Option<StatsSnapshot> {
    if let Some(snapshot) =
        fs::read(dir.join(STATS_FILE)).ok().and_then(|bytes| serde_json::from_slice::<StatsSnapshot>(&bytes).ok())
    {
        return Some(snapshot);
    }
    let windows = stored_windows(dir, 0).ok()?;
    if windows.is_empty() {
        return None;
    }
    let parts: Vec<StatsSnapshot> = windows
        .into_iter()
        .map(|w| StatsSnapshot { entries: w.entries, total: w.total, failures: Vec::new() })
        .collect();
    StatsSnapshot::merge(&parts).ok().map(|c| c.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with(id: &str, state: RunState, requests: u64) -> RunStatus {
        RunStatus { state, requests, users: 7, ..initial_status(id) }
    }

    fn request() -> StartRun {
        serde_json::from_value(crate::server::tests::start_body("http://127.0.0.1:9", 1.0)).unwrap()
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["status.json"]);
    }

    #[test]
    fn interrupted_runs_are_marked_failed_and_finished_ones_kept() {
        let data = tempfile::tempdir().unwrap();
        let runs = data.path();
        let ids = ["00000000000000a1", "00000000000000a2", "00000000000000a3", "00000000000000a4"];
        create_run_dir(&runs.join(ids[0]), &request(), &status_with(ids[0], RunState::Finished, 42)).unwrap();
        create_run_dir(&runs.join(ids[1]), &request(), &status_with(ids[1], RunState::Running, 5)).unwrap();
        // Killed between request.json and the first status.
        create_run_dir(&runs.join(ids[2]), &request(), &initial_status(ids[2])).unwrap();
        fs::remove_file(runs.join(ids[2]).join(STATUS_FILE)).unwrap();
        // Not run folders: a bad name, an empty folder, a file.
        fs::create_dir(runs.join("not-a-run")).unwrap();
        fs::create_dir(runs.join(ids[3])).unwrap();
        fs::write(runs.join("00000000000000a5"), "x").unwrap();

        let mut stored = load_stored(runs, crate::server::files::valid_run_id);
        stored.sort_by(|a, b| a.id.cmp(&b.id));
        let seen: Vec<(&str, RunState, Option<&str>)> =
            stored.iter().map(|r| (r.id.as_str(), r.status.state, r.status.error.as_deref())).collect();
        assert_eq!(
            seen,
            [
                (ids[0], RunState::Finished, None),
                (ids[1], RunState::Failed, Some(INTERRUPTED)),
                (ids[2], RunState::Failed, Some(INTERRUPTED)),
            ]
        );
        assert_eq!((stored[0].status.requests, stored[0].status.users), (42, 7), "finished runs are untouched");
        assert_eq!((stored[1].status.requests, stored[1].status.users), (5, 0));
        // The mark is on disk: the next restart reads a failed run as it is.
        let on_disk: RunStatus =
            serde_json::from_slice(&fs::read(runs.join(ids[1]).join(STATUS_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk.state, RunState::Failed);
    }

    #[test]
    fn stored_windows_and_stats_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(100);
        c.record("GET", "/a", 1000, 5, None);
        c.close_window(1);
        c.record("GET", "/a", 3000, 5, Some("boom"));
        c.record("GET", "/b", 2000, 5, None);
        c.close_window(2);
        let mut lines = String::new();
        for (i, w) in c.history().iter().enumerate() {
            lines += &serde_json::to_string(&window_snapshot(i as u64, w)).unwrap();
            lines += "\n";
        }
        lines += "{\"index\": 2, \"torn";
        fs::write(dir.path().join(WINDOWS_FILE), lines).unwrap();
        let windows = stored_windows(dir.path(), 1).unwrap();
        assert_eq!(windows.iter().map(|w| (w.index, w.users, w.total.requests)).collect::<Vec<_>>(), [(1, 2, 2)]);
        assert_eq!(stored_windows(dir.path(), 5).unwrap().len(), 0);

        // Without stats.json, the windows are merged.
        let merged = stored_stats(dir.path()).unwrap();
        assert_eq!((merged.total.requests, merged.total.failures, merged.entries.len()), (3, 1, 2));
        fs::write(dir.path().join(STATS_FILE), serde_json::to_vec(&c.snapshot()).unwrap()).unwrap();
        assert_eq!(stored_stats(dir.path()).unwrap(), c.snapshot());
        assert!(stored_stats(tempfile::tempdir().unwrap().path()).is_none());
    }
}

//! A run's folder, DATA_DIR/runs/<run_id>/, and how it is kept current:
//!
//! | file                       | written                                                         |
//! |----------------------------|-----------------------------------------------------------------|
//! | `request.json`             | at the start: the request body as accepted, compact              |
//! | `status.json`              | at the start, every second and at the end (last, atomically)     |
//! | `windows.jsonl`            | one [`WindowSnapshot`] per closed window, appended every second  |
//! | `stats.json`               | cumulative [`StatsSnapshot`], every 5 s and at the end           |
//! | `locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv` | Locust's CSVs, every 5 s and at the end |
//!
//! Whole files are replaced atomically and appends are all or nothing ([`safe_fs`]: no symbolic link is ever
//! followed), so a reader or a restarted agent never sees half a file; `status.json` is written last, so once it
//! says the run is over (without an error) every other file is final. The work is prepared under the collector's
//! lock (in memory only) and written outside it on a blocking thread, so disks never slow the engine down.
//!
//! A file that cannot be written (a full disk) is named in the run's `error`, in the API and in status.json when
//! that can still be written; the measurements stay in memory, served by the API, and writing is retried until it
//! works. A file that cannot be read back after a restart is logged, and status.json is moved aside, never
//! overwritten. [`retention`] says which old runs to delete.

mod retention;
mod safe_fs;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::engine::RunHandle;
use crate::protocol::{GeneratorHealth, RunState, RunStatus, WindowSnapshot};
use crate::stats::{
    Collector, StatsSnapshot, Window, WindowEntry, write_failures_csv, write_history_csv, write_stats_csv,
};
pub use retention::{PruneReason, Retention, RunAge};
pub use safe_fs::{TEMPORARY_SUFFIX, is_real_dir, open_regular, write_atomically};
use safe_fs::{
    append_all_or_nothing, describe_json_error, ensure_real_dir, is_link_error, json_error_kind, move_aside,
    read_regular,
};

pub const RUNS_DIR: &str = "runs";
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

/// After a run is over, missing files are retried after this long, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("wire types serialize")
}

/// A request body as stored in request.json: compact JSON (whitespace dropped; never longer than the body but for
/// number spellings such as `1e2`), or the body itself should it not be JSON.
pub fn compact_request(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => to_json(&value),
        Err(_) => body.to_vec(),
    }
}

/// DATA_DIR/runs, created when missing; a symbolic link there is refused rather than followed.
pub fn open_runs_dir(data_dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(data_dir)?;
    let runs_dir = data_dir.join(RUNS_DIR);
    match fs::create_dir(&runs_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    ensure_real_dir(&runs_dir)?;
    Ok(runs_dir)
}

/// Deletes a run's folder (retention). A link in its place is not followed, nor are links inside it.
pub fn remove_run_dir(dir: &Path) -> io::Result<()> {
    ensure_real_dir(dir)?;
    fs::remove_dir_all(dir)
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

/// Adds `problem` to a status' error (after the engine's own error, if any).
fn add_error(status: &mut RunStatus, problem: &str) {
    status.error = Some(match status.error.take() {
        Some(error) => format!("{error}; {problem}"),
        None => problem.to_string(),
    });
}

/// Creates a run's (new) folder with its request and first status.
pub fn create_run_dir(dir: &Path, request_json: &[u8], status: &RunStatus) -> io::Result<()> {
    // Not create_dir_all: a folder (or a link) already there is an error, never written into.
    fs::create_dir(dir)?;
    write_atomically(&dir.join(REQUEST_FILE), request_json)?;
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

/// The files of a live run that could not be written in the last round, shared by the task writing them and the
/// API showing the run: `None` once a round wrote everything.
#[derive(Clone, Default)]
pub struct WriteProblems(Arc<Mutex<Option<String>>>);

impl WriteProblems {
    pub fn current(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds the current problem, if any, to a status' error.
    pub fn apply(&self, status: &mut RunStatus) {
        if let Some(problem) = self.current() {
            add_error(status, &problem);
        }
    }

    /// Records the outcome of a round; logs when it changes (not every second while a disk stays full).
    fn record(&self, id: &str, dir: &Path, failures: &[Failure]) {
        let now = describe_failures(failures);
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *current == now {
            return;
        }
        match &now {
            Some(problem) => tracing::error!(run = %id, dir = %dir.display(), "{problem}"),
            None => tracing::info!(run = %id, dir = %dir.display(), "the run's files are all written again"),
        }
        *current = now;
    }
}

/// A file that could not be written, and why.
type Failure = (&'static str, io::Error);

fn describe_failures(failures: &[Failure]) -> Option<String> {
    if failures.is_empty() {
        return None;
    }
    let files: Vec<String> = failures.iter().map(|(name, e)| format!("{name} ({e})")).collect();
    Some(format!(
        "cannot write {}: the run's measurements are kept in memory and served by this API, and writing is retried",
        files.join(", ")
    ))
}

/// One round of writes, prepared in memory.
struct Flush {
    /// New lines of windows.jsonl, and the window count once they are written.
    windows: Vec<u8>,
    windows_after: usize,
    files: Vec<(&'static str, Vec<u8>)>,
    status: RunStatus,
}

/// What a round of writes did.
struct Written {
    failures: Vec<Failure>,
    /// The windows now in windows.jsonl; `None` when the new ones could not be appended.
    windows_after: Option<usize>,
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
        Ok(Flush { windows, windows_after: history.len().max(windows_written), files, status })
    }

    /// Writes every file it can (one failing does not stop the others); status.json last, naming the others that
    /// failed.
    fn write(self, dir: &Path) -> Written {
        let mut failures: Vec<Failure> = Vec::new();
        if let Err(e) = ensure_real_dir(dir) {
            failures.push(("the run's folder", e));
            return Written { failures, windows_after: None };
        }
        let mut windows_after = Some(self.windows_after);
        if !self.windows.is_empty()
            && let Err(e) = append_all_or_nothing(&dir.join(WINDOWS_FILE), &self.windows)
        {
            failures.push((WINDOWS_FILE, e));
            windows_after = None;
        }
        for (name, bytes) in &self.files {
            if let Err(e) = write_atomically(&dir.join(name), bytes) {
                failures.push((name, e));
            }
        }
        let mut status = self.status;
        if let Some(problem) = describe_failures(&failures) {
            add_error(&mut status, &problem);
        }
        if let Err(e) = write_atomically(&dir.join(STATUS_FILE), &to_json(&status)) {
            failures.push((STATUS_FILE, e));
        }
        Written { failures, windows_after }
    }
}

/// Writes one round; true when every file was written.
async fn write_round(
    id: &str,
    dir: &Path,
    handle: &RunHandle,
    problems: &WriteProblems,
    windows_written: &mut usize,
    full: bool,
) -> bool {
    let written = match Flush::prepare(id, handle, *windows_written, full) {
        Ok(flush) => {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || flush.write(&dir)).await.unwrap_or_else(|e| Written {
                failures: vec![("the run's files", io::Error::other(e.to_string()))],
                windows_after: None,
            })
        }
        Err(e) => Written { failures: vec![("the run's files", e)], windows_after: None },
    };
    if let Some(count) = written.windows_after {
        *windows_written = count;
    }
    problems.record(id, dir, &written.failures);
    written.failures.is_empty()
}

/// Keeps a live run's folder current until the run is over, then writes its final files; true once they are all
/// written. While a file cannot be written, every round rewrites them all; after the end, writing is retried less
/// and less often until it works, or until `closing` turns true (one last attempt then: false if it fails).
pub async fn persist(
    id: String,
    dir: PathBuf,
    handle: RunHandle,
    problems: WriteProblems,
    mut closing: watch::Receiver<bool>,
) -> bool {
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
        let full = over || ticks.is_multiple_of(FULL_EVERY_S) || problems.current().is_some();
        let ok = write_round(&id, &dir, &handle, &problems, &mut windows_written, full).await;
        if over && ok {
            return true;
        }
        if over {
            break;
        }
    }
    let mut wait = RETRY_FIRST;
    loop {
        let last = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = closing.wait_for(|closing| *closing) => true,
        };
        if write_round(&id, &dir, &handle, &problems, &mut windows_written, true).await {
            return true;
        }
        if last {
            tracing::error!(run = %id, dir = %dir.display(), "the agent stops with some of the run's files unwritten");
            return false;
        }
        wait = (wait * 2).min(RETRY_MAX);
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
    let modified = fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Reads the runs of the data directory. A run that was going on when its agent died (its status not over, or no
/// status at all) is marked failed with [`INTERRUPTED`], on disk too. Links are not followed: a run folder that is
/// a link is skipped, links inside a run folder are left alone; both are logged.
pub fn load_stored(runs_dir: &Path, valid_id: impl Fn(&str) -> bool) -> Vec<StoredRun> {
    let entries = match fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(dir = %runs_dir.display(), "cannot list the stored runs: {e}");
            return Vec::new();
        }
    };
    let now_s = unix_now().as_secs();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else { continue };
        if !valid_id(&id) {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            tracing::warn!(path = %entry.path().display(), "a run folder that is a symbolic link is not followed: skipped");
            continue;
        }
        if kind.is_dir()
            && let Some(run) = load_run(id, entry.path(), now_s)
        {
            out.push(run);
        }
    }
    out
}

/// Removes the temporary files of writes a dead agent left, and logs the links it finds (never followed).
fn tidy_run_dir(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            tracing::warn!(path = %path.display(), "a symbolic link in a run folder: not followed, nor served");
        } else if kind.is_file() && entry.file_name().to_string_lossy().ends_with(TEMPORARY_SUFFIX) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// What status.json holds.
enum StoredStatus {
    Read(Box<RunStatus>),
    Missing,
    /// Not a status: why (never quoting the content).
    Unusable(String),
}

fn read_status(path: &Path) -> StoredStatus {
    match read_regular(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(status) => StoredStatus::Read(Box::new(status)),
            Err(e) => StoredStatus::Unusable(describe_json_error(&e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => StoredStatus::Missing,
        Err(e) if is_link_error(&e) => StoredStatus::Unusable("a symbolic link (not followed)".into()),
        Err(e) => StoredStatus::Unusable(format!("unreadable ({e})")),
    }
}

fn load_run(id: String, dir: PathBuf, now_s: u64) -> Option<StoredRun> {
    tidy_run_dir(&dir);
    let has_request = fs::symlink_metadata(dir.join(REQUEST_FILE)).is_ok_and(|m| m.is_file());
    let status_path = dir.join(STATUS_FILE);
    // Why status.json was not usable, and whether a new one may be written in its place.
    let (status, unusable, may_write) = match read_status(&status_path) {
        StoredStatus::Read(status) => (Some(*status), None, true),
        StoredStatus::Missing => (None, None, true),
        StoredStatus::Unusable(why) => match move_aside(&status_path, now_s) {
            Ok(aside) => {
                tracing::error!(
                    run = %id,
                    "{} is {why}: moved aside to {} (the run is marked failed)",
                    status_path.display(),
                    aside.display()
                );
                let aside = aside.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (None, Some(format!("its status.json was {why} and was moved aside to {aside}")), true)
            }
            Err(e) => {
                tracing::error!(
                    run = %id,
                    "{} is {why} and cannot be moved aside ({e}): left as it is, the run is served as failed",
                    status_path.display()
                );
                (None, Some(format!("its status.json is {why}")), false)
            }
        },
    };
    let mut status = match status {
        Some(status) => status,
        None if has_request || unusable.is_some() => initial_status(&id),
        // Not a run folder of ours.
        None => return None,
    };
    status.run_id = id.clone();
    if !status.state.is_over() || unusable.is_some() {
        status.state = RunState::Failed;
        status.users = 0;
        status.target_users = 0;
        status.health.in_flight = 0;
        status.error = Some(match unusable {
            Some(why) => format!("{why}: how the run ended is unknown"),
            None => INTERRUPTED.to_string(),
        });
        recover_counts(&mut status, &dir);
        if may_write && let Err(e) = write_atomically(&status_path, &to_json(&status)) {
            tracing::error!(run = %id, "cannot mark the interrupted run failed in {}: {e}", status_path.display());
        }
    }
    let created_unix_ms = modified_unix_ms(&dir.join(REQUEST_FILE))
        .or(status.started_at_unix_ms)
        .or_else(|| modified_unix_ms(&dir))
        .unwrap_or(0);
    Some(StoredRun { id, dir, status, created_unix_ms })
}

/// Counts of a run whose status.json lags behind its windows (it could not be written, or was lost): taken from
/// windows.jsonl.
fn recover_counts(status: &mut RunStatus, dir: &Path) {
    let Ok(windows) = stored_windows(dir, 0) else { return };
    let Some(last) = windows.last() else { return };
    if last.index < status.windows_closed {
        return;
    }
    status.windows_closed = last.index + 1;
    status.requests = status.requests.max(windows.iter().map(|w| w.total.requests).sum());
    status.failures = status.failures.max(windows.iter().map(|w| w.total.failures).sum());
    status.window = Some(last.clone());
}

/// Windows `since..` of a stored run, from its windows.jsonl. Lines that are not windows (a torn last line, or
/// garbage) are skipped and logged; the others are served.
pub fn stored_windows(dir: &Path, since: u64) -> io::Result<Vec<WindowSnapshot>> {
    let path = dir.join(WINDOWS_FILE);
    let bytes = match read_regular(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut windows = Vec::new();
    let mut bad = 0usize;
    let mut first_bad = None;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<WindowSnapshot>(line) {
            Ok(window) if window.index >= since => windows.push(window),
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                first_bad.get_or_insert((number + 1, format!("{} at column {}", json_error_kind(&e), e.column())));
            }
        }
    }
    if let Some((line, why)) = first_bad {
        tracing::warn!(
            path = %path.display(),
            "{bad} line(s) are not windows and were skipped (the first, line {line}, is {why}); the other lines are served"
        );
    }
    Ok(windows)
}

/// The cumulative stats of a stored run: stats.json, or (for a run killed before writing one, or whose stats.json
/// is unusable) the merge of its windows, which lacks only the failure details.
pub fn stored_stats(dir: &Path) -> Option<StatsSnapshot> {
    let path = dir.join(STATS_FILE);
    match read_regular(&path) {
        Ok(bytes) => match serde_json::from_slice::<StatsSnapshot>(&bytes) {
            Ok(snapshot) => return Some(snapshot),
            Err(e) => tracing::warn!(
                path = %path.display(),
                "{}: the stats are rebuilt from windows.jsonl",
                describe_json_error(&e)
            ),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), "cannot read ({e}): the stats are rebuilt from windows.jsonl"),
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

    fn request() -> Vec<u8> {
        compact_request(crate::server::tests::start_body("http://127.0.0.1:9", 1.0).to_string().as_bytes())
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

//! The files of a run folder: the name of each, and the typed form of those that say what the run is and where
//! each cell stands (run.json, and per cell status.json and events.jsonl), which the runner writes and every
//! reader (`orch status`, the report) reads. Every whole-file write goes through a temporary file, fsync and
//! rename, so a reader (or a resumed run after kill -9) never sees half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cell::Cell;

mod tables;

pub use tables::{METRICS_COLUMNS, METRICS_SERVICE_COLUMNS, MetricsTable, write_summary_csv};

/// Version of run.json and status.json.
pub const FORMAT: u32 = 1;

// The run's files, in logs/<run-tag>/.
pub const RUN_JSON: &str = "run.json";
/// The copy of the matrix the run was started with.
pub const MATRIX_YAML: &str = "matrix.yaml";
/// One row per succeeded cell, in plan order.
pub const SUMMARY_CSV: &str = "summary.csv";

// A cell's files, in logs/<run-tag>/<cell-id>/.
pub const STATUS_JSON: &str = "status.json";
pub const EVENTS_JSONL: &str = "events.jsonl";
/// The cell's resolved configuration.
pub const CONFIG_YAML: &str = "config.yaml";
pub const RUN_LOG: &str = "run.log";
/// What the cell's process wrote to stderr.
pub const STDERR_LOG: &str = "stderr.log";
/// One row per simulated second.
pub const METRICS_CSV: &str = "metrics.csv";
/// The cell's [`crate::cell::CellSummary`].
pub const SUMMARY_JSON: &str = "summary.json";
/// The load agents of an emulated or kubernetes cell.
pub const AGENTS_JSON: &str = "agents.json";
/// What an emulated cell's app served.
pub const EMULATOR_JSON: &str = "emulator.json";
/// A kubernetes HPA cell's HorizontalPodAutoscaler status, second by second.
pub const HPA_CSV: &str = "hpa.csv";
/// The training curve of an RL policy's model, copied next to the cell that uses it.
pub const TRAINING_CSV: &str = "training.csv";
const LOCK_FILE: &str = ".lock";
/// Lines of run.log (and of the process's stderr) kept in a failed cell's status.
pub const LOG_TAIL_LINES: usize = 20;

/// logs/<run-tag>/run.json. orch writes every field; one written by hand may leave out those with a default,
/// whose empty value (an empty string, time 0) stands for "not said".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    #[serde(default)]
    pub format: u32,
    #[serde(default)]
    pub matrix_name: String,
    #[serde(default)]
    pub matrix_file: String,
    #[serde(default)]
    pub matrix_sha256: String,
    pub git_commit: Option<String>,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub orch_version: String,
    #[serde(default)]
    pub started_unix_s: f64,
    pub finished_unix_s: Option<f64>,
    pub baseline: Option<String>,
    /// Cell ids in plan order.
    #[serde(default)]
    pub cells: Vec<String>,
}

/// A cell's lifecycle state. Declared in the order reports list states (their counts are sorted by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    Succeeded,
    Failed,
    Running,
    Planned,
    Cancelled,
    Skipped,
    /// Not a state a run records, never read from status.json: a reader's verdict on a cell whose files are
    /// missing or corrupt with no status saying why.
    #[serde(skip_deserializing)]
    Incomplete,
}

impl CellState {
    /// The states a run records, in the order `orch status` lists them.
    pub const ALL: [CellState; 6] = [
        CellState::Planned,
        CellState::Running,
        CellState::Succeeded,
        CellState::Failed,
        CellState::Cancelled,
        CellState::Skipped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CellState::Planned => "planned",
            CellState::Running => "running",
            CellState::Succeeded => "succeeded",
            CellState::Failed => "failed",
            CellState::Cancelled => "cancelled",
            CellState::Skipped => "skipped",
            CellState::Incomplete => "incomplete",
        }
    }

    /// The state's word, as the report shows it: its [`CellState::name`].
    pub fn label(self) -> &'static str {
        self.name()
    }
}

/// logs/<run-tag>/<cell-id>/status.json. orch writes every field; one written by hand may leave out those with a
/// default (the folder, its config.yaml and the cell's id say who the cell is), but not its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellStatus {
    #[serde(default)]
    pub format: u32,
    #[serde(default)]
    pub cell: String,
    pub state: CellState,
    #[serde(default)]
    pub attempt: u32,
    pub started_unix_s: Option<f64>,
    pub finished_unix_s: Option<f64>,
    pub heartbeat_unix_s: Option<f64>,
    pub error: Option<String>,
    #[serde(default)]
    pub log_tail: Vec<String>,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub backend: String,
}

impl CellStatus {
    pub fn planned(cell: &Cell) -> CellStatus {
        let c = &cell.config;
        CellStatus {
            format: FORMAT,
            cell: cell.id.clone(),
            state: CellState::Planned,
            attempt: 0,
            started_unix_s: None,
            finished_unix_s: None,
            heartbeat_unix_s: None,
            error: None,
            log_tail: Vec::new(),
            app: c.app.name.clone(),
            policy: c.policy.name().to_string(),
            scenario: c.scenario.name.clone(),
            seed: c.seed,
            backend: c.backend.name().to_string(),
        }
    }

    /// Moves to `state` at `now`, as the end of an attempt.
    pub fn finish(&mut self, state: CellState, error: Option<String>, log_tail: Vec<String>, now: f64) {
        self.state = state;
        self.finished_unix_s = Some(now);
        self.error = error;
        self.log_tail = log_tail;
    }
}

pub fn now_unix_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes through a temporary file in the same folder, fsync and rename. The temporary name is unique per
/// process and call, so two writers of one file never share it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).context("serializing JSON")?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn write_status(cell_dir: &Path, status: &CellStatus) -> Result<()> {
    write_json(&cell_dir.join(STATUS_JSON), status)
}

pub fn read_status(cell_dir: &Path) -> Result<CellStatus> {
    read_json(&cell_dir.join(STATUS_JSON))
}

/// Appends one line `{"t_unix_s": .., "event": .., ..fields}` to the cell's events.jsonl, in a single write.
pub fn append_event(cell_dir: &Path, event: &str, fields: serde_json::Value) -> Result<()> {
    let mut line = serde_json::Map::new();
    line.insert("t_unix_s".into(), now_unix_s().into());
    line.insert("event".into(), event.into());
    if let serde_json::Value::Object(extra) = fields {
        line.extend(extra);
    }
    let mut bytes = serde_json::to_vec(&line).context("serializing an event")?;
    bytes.push(b'\n');
    let path = cell_dir.join(EVENTS_JSONL);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&bytes).with_context(|| format!("appending to {}", path.display()))
}

/// The last `lines` lines of a text file (empty if it does not exist); reads at most its last 64 KiB.
pub fn tail(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let skip = len.saturating_sub(64 * 1024);
    if skip > 0 {
        use std::io::{Seek, SeekFrom};
        if file.seek(SeekFrom::Start(skip)).is_err() {
            return Vec::new();
        }
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if skip > 0 && !all.is_empty() {
        all.remove(0); // a partial first line
    }
    all[all.len().saturating_sub(lines)..].iter().map(|s| s.to_string()).collect()
}

/// Exclusive ownership of a run folder while an `orch run` works in it. The kernel drops the lock when the process
/// dies, however it dies, so a resume after kill -9 is never refused by a stale lock.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!("{} is in use by another orch (pid {})", run_dir.display(), holder.trim());
        }
        file.set_len(0).context("truncating the lock file")?;
        write!(file, "{}", std::process::id()).context("writing the lock file")?;
        Ok(RunLock { _file: file })
    }

    /// The pid of the orch holding the run folder, if one does.
    pub fn holder(run_dir: &Path) -> Option<u32> {
        let mut file = File::open(run_dir.join(LOCK_FILE)).ok()?;
        // SAFETY: as above; a shared lock is only taken to probe and dropped with the file.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            return None;
        }
        let mut pid = String::new();
        file.read_to_string(&mut pid).ok()?;
        pid.trim().parse().ok()
    }
}

/// Takes over a run folder whose orch was stopped before it wrote run.json (kill -9 in its first milliseconds):
/// locks it, checks it holds only what such an orch writes first (the lock, matrix.yaml, temporary files of an
/// atomic write), and removes those but the lock. Refused when another orch holds the folder, or when it holds
/// anything else: that is not ours to remove.
pub fn take_over_unstarted(run_dir: &Path) -> Result<RunLock> {
    let lock = RunLock::acquire(run_dir)?;
    // Only a lock holder writes run.json: checked under the lock, the answer stays true.
    if run_dir.join(RUN_JSON).exists() {
        bail!("{} got a run.json meanwhile: another orch started it", run_dir.display());
    }
    let mut stale = Vec::new();
    let mut other = Vec::new();
    for entry in fs::read_dir(run_dir).with_context(|| format!("listing {}", run_dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type()?.is_file();
        if name == LOCK_FILE {
            continue;
        } else if is_file && (name == MATRIX_YAML || (name.starts_with('.') && name.ends_with(".tmp"))) {
            stale.push(entry.path());
        } else {
            other.push(name);
        }
    }
    if !other.is_empty() {
        other.sort();
        bail!(
            "{} has no run.json but holds {}: not the leftovers of a run stopped before it started, so nothing              was touched",
            run_dir.display(),
            other.join(", ")
        );
    }
    for path in stale {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(lock)
}

/// The commit of the repository holding `dir`, if it is one and git is installed.
pub fn git_commit(dir: &Path) -> Option<String> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir).output().ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    "unknown".into()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The cell folders' files that one attempt produces; removed before a cell is run again.
pub const ATTEMPT_OUTPUTS: [&str; 4] = [RUN_LOG, METRICS_CSV, SUMMARY_JSON, STDERR_LOG];

/// Empties a cell folder for a fresh attempt: the outputs of earlier attempts and stray temporary files go,
/// config.yaml, status.json, events.jsonl and anything another step placed there (e.g. training files) stay.
pub fn clear_attempt_outputs(cell_dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(cell_dir) else { return Ok(()) };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stray_temp = name.starts_with('.') && name.ends_with(".tmp");
        if ATTEMPT_OUTPUTS.contains(&name.as_str()) || stray_temp {
            fs::remove_file(entry.path()).with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

pub fn cell_dir(run_dir: &Path, id: &str) -> PathBuf {
    run_dir.join(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATUS_JSON);
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn states_read_back_as_written_and_incomplete_is_never_read() {
        for state in CellState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.name()));
            assert_eq!(serde_json::from_str::<CellState>(&json).unwrap(), state);
        }
        assert!(serde_json::from_str::<CellState>("\"incomplete\"").is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_LOG);
        fs::write(&path, (0..100).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
        assert_eq!(tail(&path, 3), ["line 97", "line 98", "line 99"]);
        assert!(tail(&dir.path().join("missing"), 3).is_empty());
    }

    #[test]
    fn a_held_lock_is_refused_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunLock::holder(dir.path()), None);
        let lock = RunLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts too.
        assert!(RunLock::acquire(dir.path()).is_err());
        assert_eq!(RunLock::holder(dir.path()), Some(std::process::id()));
        drop(lock);
        assert_eq!(RunLock::holder(dir.path()), None);
        assert!(RunLock::acquire(dir.path()).is_ok());
    }

    #[test]
    fn an_unstarted_folder_is_taken_over_only_when_free_and_holding_only_its_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::acquire(dir.path()).unwrap();
        assert!(take_over_unstarted(dir.path()).is_err(), "a live orch holds it");
        drop(held);
        fs::write(dir.path().join(MATRIX_YAML), "name: x").unwrap();
        fs::write(dir.path().join(".run.json.1.0.tmp"), "{").unwrap();
        let lock = take_over_unstarted(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(LOCK_FILE)]);
        drop(lock);
        fs::create_dir(dir.path().join("results")).unwrap();
        let err = take_over_unstarted(dir.path()).err().expect("a folder it did not write");
        assert!(err.to_string().contains("results"), "{err}");
        assert!(dir.path().join("results").is_dir());
    }
}

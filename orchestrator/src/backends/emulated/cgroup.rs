//! A CPU-bandwidth cgroup sandbox: one group per emulated pod, its CFS quota equal to the pod's CPU limit, so the
//! kernel's throttling (not a model of it) decides how long a burst of work takes.
//!
//! Groups live at `<root>/orch/orch-<pid>-<name>`, `<pid>` being the process that made them: after a crash or a
//! `kill -9`, [`sweep_stale`] finds the groups whose maker is gone and removes them. Dropping a [`CpuCgroup`] kills
//! what is still inside and removes the directory. Works on cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us`).
//!
//! Single threads (a pod's workers inside this process) can join a group on v1 ([`CpuCgroup::add_thread`]); v2
//! would need a threaded subtree, not supported yet. Removal never kills this process: its own threads still in a
//! group are moved back to the root first.
//!
//! CPU used is reported on v2 only (`usage_usec` in `cpu.stat`): on v1 it lives in the separate cpuacct controller.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long removal waits for killed processes to leave their group.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(2);
/// The folder under the controller's root that holds every group this program makes.
const PARENT: &str = "orch";
const ADVICE: &str = "run as root or give a writable cgroup root";
/// Names the cpu controller's root to use instead of the host's mount (a delegated subtree, or a test's folder).
pub const ROOT_ENV: &str = "ORCH_CGROUP_ROOT";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup cpu controller found in /proc/mounts (neither a cgroup2 mount whose cgroup.controllers lists \
         cpu nor a v1 cgroup mount with the cpu option); mount one or give a cgroup root"
    )]
    NoController,
    #[error(
        "{ROOT_ENV}={} is not the root of a cgroup cpu controller: it holds neither cgroup.controllers (v2) nor \
         cpu.cfs_quota_us (v1)",
        path.display()
    )]
    NotARoot { path: PathBuf },
    #[error("invalid cgroup name {0:?}: it must be non-empty and hold no '/'")]
    InvalidName(String),
    #[error("invalid CPU limit {limit_millicores}m at a {period:?} period: the quota must be at least 1 ms")]
    InvalidLimit { limit_millicores: u32, period: Duration },
    #[error("cannot create cgroup {}: {cause}; {ADVICE}", path.display())]
    Create { path: PathBuf, cause: io::Error },
    #[error("cannot set the CPU quota of cgroup {}: {cause}; {ADVICE}", path.display())]
    Configure { path: PathBuf, cause: io::Error },
    #[error("cannot {action} {}: {cause}", path.display())]
    Io { action: &'static str, path: PathBuf, cause: io::Error },
    #[error("cgroup {} still holds processes {pids:?} {EMPTY_TIMEOUT:?} after SIGKILL", path.display())]
    NotEmpty { path: PathBuf, pids: Vec<i32> },
    #[error(
        "cannot add a thread to cgroup {}: moving single threads needs cgroup v1 (v2 threaded subtrees are not \
         supported yet)",
        path.display()
    )]
    ThreadsNeedV1 { path: PathBuf },
    #[error("unreadable line {line:?} in {}", path.display())]
    Parse { path: PathBuf, line: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |cause| CgroupError::Io { action, path: path.to_path_buf(), cause }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where the cpu controller is mounted, and which interface it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    path: PathBuf,
    version: CgroupVersion,
}

impl CgroupRoot {
    /// A root given by hand (tests, or a delegated writable subtree).
    pub fn at(path: impl Into<PathBuf>, version: CgroupVersion) -> Self {
        Self { path: path.into(), version }
    }

    /// The root [`ROOT_ENV`] names if set; else the host's cpu controller: a cgroup2 mount offering `cpu` first,
    /// else a v1 mount with the `cpu` option.
    pub fn detect() -> Result<Self, CgroupError> {
        if let Some(path) = std::env::var_os(ROOT_ENV).filter(|p| !p.is_empty()) {
            return Self::given(PathBuf::from(path));
        }
        let mounts = fs::read_to_string("/proc/mounts").map_err(io_err("read", Path::new("/proc/mounts")))?;
        let mut v1 = None;
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, mount_point, fs_type, options, ..] = fields[..] else { continue };
            let path = PathBuf::from(mount_point);
            if fs_type == "cgroup2" {
                let controllers = fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "cpu") {
                    return Ok(Self::at(path, CgroupVersion::V2));
                }
            } else if fs_type == "cgroup" && v1.is_none() && options.split(',').any(|o| o == "cpu") {
                v1 = Some(Self::at(path, CgroupVersion::V1));
            }
        }
        v1.ok_or(CgroupError::NoController)
    }

    /// A root named by hand, its version read from the files it holds; a folder that is neither is refused before
    /// anything is made in it.
    pub fn given(path: PathBuf) -> Result<Self, CgroupError> {
        if path.join("cgroup.controllers").is_file() {
            Ok(Self::at(path, CgroupVersion::V2))
        } else if path.join("cpu.cfs_quota_us").is_file() {
            Ok(Self::at(path, CgroupVersion::V1))
        } else {
            Err(CgroupError::NotARoot { path })
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    fn parent(&self) -> PathBuf {
        self.path.join(PARENT)
    }
}

/// Throttling counters of one group since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleStats {
    /// Enforcement periods in which the group was runnable.
    pub periods: u64,
    /// Periods in which it ran out of quota.
    pub throttled_periods: u64,
    /// Total time its threads stood throttled.
    pub throttled: Duration,
    /// CPU time used; `None` on cgroup v1, where it belongs to the cpuacct controller.
    pub cpu_used: Option<Duration>,
}

/// One CPU-limited group; removed (its processes killed) on drop.
#[derive(Debug)]
pub struct CpuCgroup {
    path: PathBuf,
    version: CgroupVersion,
    removed: bool,
}

impl CpuCgroup {
    /// Makes `<root>/orch/orch-<own pid>-<name>` with a quota of `limit_millicores` per `period`.
    /// On any failure nothing is left behind.
    pub fn create(
        root: &CgroupRoot,
        name: &str,
        limit_millicores: u32,
        period: Duration,
    ) -> Result<CpuCgroup, CgroupError> {
        if name.is_empty() || name.contains('/') {
            return Err(CgroupError::InvalidName(name.to_string()));
        }
        let period_us = period.as_micros() as u64;
        let quota_us = u64::from(limit_millicores) * period_us / 1000;
        // The kernel refuses quotas and periods under 1 ms.
        if quota_us < 1000 || period_us < 1000 {
            return Err(CgroupError::InvalidLimit { limit_millicores, period });
        }
        let parent = root.parent();
        let path = parent.join(format!("orch-{}-{name}", std::process::id()));
        let made_parent = match fs::create_dir(&parent) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(cause) => return Err(CgroupError::Create { path, cause }),
        };
        let undo_parent = || {
            if made_parent {
                let _ = fs::remove_dir(&parent);
            }
        };
        if root.version == CgroupVersion::V2 {
            // v2 hands the cpu controller down one level at a time; if this fails, cpu.max is missing below
            // and the write of the quota reports it.
            let _ = write_existing(&root.path.join("cgroup.subtree_control"), "+cpu");
            let _ = write_existing(&parent.join("cgroup.subtree_control"), "+cpu");
        }
        if let Err(cause) = fs::create_dir(&path) {
            undo_parent();
            return Err(CgroupError::Create { path, cause });
        }
        let configured = match root.version {
            CgroupVersion::V2 => write_existing(&path.join("cpu.max"), &format!("{quota_us} {period_us}")),
            CgroupVersion::V1 => write_existing(&path.join("cpu.cfs_period_us"), &period_us.to_string())
                .and_then(|()| write_existing(&path.join("cpu.cfs_quota_us"), &quota_us.to_string())),
        };
        if let Err(cause) = configured {
            let _ = fs::remove_dir(&path);
            undo_parent();
            return Err(CgroupError::Configure { path, cause });
        }
        Ok(CpuCgroup { path, version: root.version, removed: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        let procs = self.path.join("cgroup.procs");
        write_existing(&procs, &pid.to_string()).map_err(io_err("add a process to", &procs))
    }

    /// Moves one thread `tid` of this process (only that thread) into the group: cgroup v1's `tasks` file.
    pub fn add_thread(&self, tid: u32) -> Result<(), CgroupError> {
        if self.version != CgroupVersion::V1 {
            return Err(CgroupError::ThreadsNeedV1 { path: self.path.clone() });
        }
        let tasks = self.path.join("tasks");
        write_existing(&tasks, &tid.to_string()).map_err(io_err("add a thread to", &tasks))
    }

    /// The threads now in the group (v1 `tasks`, v2 `cgroup.threads`).
    pub fn tids(&self) -> Result<Vec<i32>, CgroupError> {
        let file = match self.version {
            CgroupVersion::V1 => self.path.join("tasks"),
            CgroupVersion::V2 => self.path.join("cgroup.threads"),
        };
        read_ids(&file)
    }

    /// The processes now in the group.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        read_pids(&self.path)
    }

    pub fn stats(&self) -> Result<ThrottleStats, CgroupError> {
        let file = self.path.join("cpu.stat");
        let text = fs::read_to_string(&file).map_err(io_err("read", &file))?;
        let mut values = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let parsed = line.split_once(' ').and_then(|(k, v)| Some((k, v.trim().parse::<u64>().ok()?)));
            let (key, value) = parsed.ok_or_else(|| CgroupError::Parse { path: file.clone(), line: line.into() })?;
            values.insert(key, value);
        }
        let get = |key: &str| values.get(key).copied().unwrap_or(0);
        Ok(match self.version {
            CgroupVersion::V1 => ThrottleStats {
                periods: get("nr_periods"),
                throttled_periods: get("nr_throttled"),
                throttled: Duration::from_nanos(get("throttled_time")),
                cpu_used: None,
            },
            CgroupVersion::V2 => ThrottleStats {
                periods: get("nr_periods"),
                throttled_periods: get("nr_throttled"),
                throttled: Duration::from_micros(get("throttled_usec")),
                cpu_used: values.get("usage_usec").map(|&us| Duration::from_micros(us)),
            },
        })
    }

    /// Kills what is still inside, waits for it to leave, removes the directory.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        remove_group(&self.path)
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(e) = remove_group(&self.path) {
            tracing::warn!("{e}");
        }
    }
}

/// Removes the group at `path` as dropping its [`CpuCgroup`] would: for exit paths that run no destructors.
pub fn remove_group_at(path: &Path) -> Result<(), CgroupError> {
    remove_group(path)
}

/// Removes the groups under `<root>/orch` whose making process no longer runs, killing anything left in them.
/// Returns the paths removed.
pub fn sweep_stale(root: &CgroupRoot) -> Result<Vec<PathBuf>, CgroupError> {
    let parent = root.parent();
    let entries = match fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => return Err(CgroupError::Io { action: "list", path: parent, cause }),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", &parent))?;
        let name = entry.file_name();
        let Some(maker) = name.to_str().and_then(maker_pid) else { continue };
        if entry.path().is_dir() && !process_runs(maker) {
            remove_group(&entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Spins until the calling thread has used `cpu` of CPU time; under a quota its wall time stretches.
pub fn burn(cpu: Duration) {
    let start = thread_cpu_time();
    while thread_cpu_time().saturating_sub(start) < cpu {
        for _ in 0..1000 {
            std::hint::spin_loop();
        }
    }
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is unavailable");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The pid in a group name `orch-<pid>-<name>`.
fn maker_pid(name: &str) -> Option<i32> {
    let (pid, rest) = name.strip_prefix("orch-")?.split_once('-')?;
    (!rest.is_empty()).then_some(())?;
    pid.parse().ok()
}

fn process_runs(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The calling thread's id, as cgroup `tasks` files list it.
pub fn current_tid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    (unsafe { libc::syscall(libc::SYS_gettid) }) as u32
}

fn read_pids(group: &Path) -> Result<Vec<i32>, CgroupError> {
    read_ids(&group.join("cgroup.procs"))
}

fn read_ids(file: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = fs::read_to_string(file).map_err(io_err("read", file))?;
    text.lines()
        .map(|l| l.trim().parse().map_err(|_| CgroupError::Parse { path: file.to_path_buf(), line: l.into() }))
        .collect()
}

/// Moves this process's threads out of `group` to the controller's root (`<root>/orch/<group>`), so that
/// removing the group kills nothing of ours. v1 moves thread by thread (others of our threads may sit in other
/// groups on purpose); v2 moves the process.
fn evacuate_own_threads(group: &Path) -> Result<(), CgroupError> {
    let Some(root) = group.parent().and_then(Path::parent) else { return Ok(()) };
    let tasks = group.join("tasks");
    if tasks.exists() {
        let own: Vec<i32> = fs::read_dir("/proc/self/task")
            .map_err(io_err("list", Path::new("/proc/self/task")))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let root_tasks = root.join("tasks");
        for tid in read_ids(&tasks)?.into_iter().filter(|t| own.contains(t)) {
            // A thread that exited meanwhile cannot be moved: nothing to do.
            let _ = write_existing(&root_tasks, &tid.to_string());
        }
        Ok(())
    } else {
        let root_procs = root.join("cgroup.procs");
        write_existing(&root_procs, &std::process::id().to_string())
            .map_err(io_err("move this process to", &root_procs))
    }
}

fn remove_group(group: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + EMPTY_TIMEOUT;
    loop {
        let pids = read_pids(group)?;
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty { path: group.to_path_buf(), pids });
        }
        let own = std::process::id() as i32;
        if pids.contains(&own) {
            evacuate_own_threads(group)?;
        }
        for pid in pids.into_iter().filter(|&pid| pid != own) {
            // SAFETY: sending a signal has no memory effects; a pid that already exited just fails.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fs::remove_dir(group).map_err(io_err("remove cgroup", group))
}

/// Writes to a control file that must already exist: cgroup files are never created by writing, so a missing one
/// means the directory is not a cgroup (or lacks the controller).
fn write_existing(file: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(file)?.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maker_pid_is_read_from_the_group_name() {
        assert_eq!(maker_pid("orch-4242-cart-0"), Some(4242));
        assert_eq!(maker_pid("orch-4242-"), None);
        assert_eq!(maker_pid("orch-x-cart"), None);
        assert_eq!(maker_pid("other-4242-cart"), None);
    }

    #[test]
    fn bad_names_and_sub_millisecond_quotas_are_refused_before_touching_the_root() {
        let root = CgroupRoot::at("/nonexistent-cgroup-root", CgroupVersion::V1);
        let period = Duration::from_millis(100);
        assert!(matches!(CpuCgroup::create(&root, "a/b", 200, period), Err(CgroupError::InvalidName(_))));
        assert!(matches!(CpuCgroup::create(&root, "a", 5, period), Err(CgroupError::InvalidLimit { .. })));
    }

    #[test]
    fn a_root_given_by_hand_is_read_by_its_files_and_a_plain_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = CgroupRoot::given(dir.path().to_path_buf()).unwrap_err();
        assert!(matches!(error, CgroupError::NotARoot { .. }), "{error}");
        assert!(error.to_string().contains(&dir.path().display().to_string()), "{error}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing made in a refused root");
        fs::write(dir.path().join("cpu.cfs_quota_us"), "-1").unwrap();
        assert_eq!(CgroupRoot::given(dir.path().to_path_buf()).unwrap().version(), CgroupVersion::V1);
        fs::write(dir.path().join("cgroup.controllers"), "cpu").unwrap();
        assert_eq!(CgroupRoot::given(dir.path().to_path_buf()).unwrap().version(), CgroupVersion::V2);
    }

    #[test]
    fn burn_uses_the_cpu_time_asked_for() {
        let before = thread_cpu_time();
        burn(Duration::from_millis(20));
        assert!(thread_cpu_time() - before >= Duration::from_millis(20));
    }
}

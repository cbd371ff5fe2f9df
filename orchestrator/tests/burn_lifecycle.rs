//! The burning emulation's pod groups through the real binaries, from start to end: `orch emulate --cpu burn`
//! makes a CPU group per pod with the service's quota, serves through it and removes every group on Ctrl-C; after
//! a `kill -9` its groups stay until the next burning start sweeps them; an `orch run` cell removes its groups when
//! it ends and when Ctrl-C cancels it, and writes its throttling to emulator.json; without permission to make
//! groups (or with a root that is no cgroup) the command fails in one line and makes nothing.
//!
//! Needs root and a cgroup v1 cpu controller: elsewhere these tests print why and pass. Each burns little CPU
//! (a few requests per second) and they run one at a time.

mod common;
mod emulated_support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use emulated_support::{ORCH, cell_dir, json, load_agent_bin, request, wait_child};
use orchestrator::backends::emulated::cgroup::{CgroupRoot, CgroupVersion, sweep_stale};

/// The one service's CPU limit: 30 ms of CPU per 100 ms period.
const QUOTA_US: u64 = 30_000;
const PERIOD_US: u64 = 100_000;

/// One CPU-bound service whose calls (50 ms of CPU on average) often outrun a period's quota.
const APP: &str = "\
name: burner
description: one CPU-bound service for the burning mode's tests
namespace: burner
slo: {route: work, percentile: 95, threshold_ms: 500}
services:
  - name: worker
    cpu: {request_m: 300, limit_m: 300, per_request_ms: 50, idle_m: 1}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 32, per_inflight_mib: 1}
    replicas: {min: 1, max: 3}
    startup_s: 1
    latency_ms: 1
routes:
  - name: work
    match: {method: POST, path: /work}
    call: {service: worker}
";

/// 3 users sending a request per second each for 20 s: about 0.15 of a core.
const SCENARIO: &str = "\
name: short
users:
  - name: client
    wait: {constant_throughput: 1}
    tasks:
      - {name: work, requests: [{method: POST, path: /work}]}
shape:
  stages:
    - {end: 20, users: 3, spawn_rate: 10}
";

const MATRIX: &str = "\
name: burn
seeds: [1]
apps: [burner]
scenarios: [short]
policies:
  - {name: static-2, kind: static, replicas: 2}
backend: emulated
emulated: {time_scale: 1, cpu: burn, agents: {local: 1}}
";

/// The tests count groups and burn CPU: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The folder of every group the burning mode makes, or `None` (said why) when this host cannot burn.
fn groups_folder() -> Option<PathBuf> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the burning mode needs root to make cgroups");
        return None;
    }
    if !Path::new("/sys/fs/cgroup/cpu").is_dir() {
        println!("skipped: no cgroup v1 cpu controller at /sys/fs/cgroup/cpu");
        return None;
    }
    match CgroupRoot::detect() {
        Ok(root) if root.version() == CgroupVersion::V1 => Some(root.path().join("orch")),
        other => {
            println!("skipped: the host's cpu controller is not cgroup v1: {other:?}");
            None
        }
    }
}

/// The process that made a group `orch-<pid>-<name>`.
fn maker(group: &Path) -> Option<u32> {
    let name = group.file_name()?.to_str()?;
    name.strip_prefix("orch-")?.split_once('-')?.0.parse().ok()
}

/// The groups under `folder` whose maker passes `chosen`.
fn groups_where(folder: &Path, chosen: impl Fn(u32) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut groups: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| p.is_dir() && maker(p).is_some_and(&chosen)).collect();
    groups.sort();
    groups
}

fn groups_of(folder: &Path, pid: u32) -> Vec<PathBuf> {
    groups_where(folder, |maker| maker == pid)
}

fn number(group: &Path, file: &str) -> u64 {
    let text = std::fs::read_to_string(group.join(file)).unwrap();
    text.trim().parse().unwrap_or_else(|_| panic!("{}/{file}: {text:?}", group.display()))
}

fn lines(group: &Path, file: &str) -> usize {
    std::fs::read_to_string(group.join(file)).unwrap().lines().count()
}

fn still_there(groups: &[PathBuf]) -> Vec<&PathBuf> {
    groups.iter().filter(|g| g.exists()).collect()
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: signalling a process (or group) this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to {pid}");
}

fn wait_until<T>(what: &str, limit: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A temporary folder holding the app model, readable by any user.
fn app_file() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("burner.yaml");
    std::fs::write(&file, APP).unwrap();
    (dir, file)
}

/// A running `orch emulate APP --cpu burn`, killed if a test fails first.
struct Emulate {
    child: Child,
    app: String,
}

impl Emulate {
    fn start(app: &Path, replicas: &str) -> Emulate {
        let mut child = Command::new(ORCH)
            .arg("emulate")
            .arg(app)
            .args(["--cpu", "burn", "--replicas", replicas])
            .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .env_remove("ORCH_CGROUP_ROOT")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        // Both lines read: a line printed to a closed pipe would fail it.
        let second = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(app) = first.strip_prefix("app listening on http://").map(str::to_string) else {
            let _ = child.kill();
            panic!("orch emulate did not start: {first:?} {second:?} ({:?})", child.wait());
        };
        Emulate { child, app }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ctrl-C, then its exit.
    fn interrupt(&mut self) -> ExitStatus {
        signal(self.pid() as i32, libc::SIGINT);
        wait_child(&mut self.child, Duration::from_secs(20)).expect("orch emulate exits after Ctrl-C")
    }
}

impl Drop for Emulate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_quota(groups: &[PathBuf]) {
    for group in groups {
        assert_eq!(number(group, "cpu.cfs_quota_us"), QUOTA_US, "{}", group.display());
        assert_eq!(number(group, "cpu.cfs_period_us"), PERIOD_US, "{}", group.display());
        assert_eq!(lines(group, "tasks"), 1, "one worker thread (pod concurrency 1) in {}", group.display());
    }
}

#[test]
fn orch_emulate_burns_in_a_group_per_pod_and_removes_them_on_ctrl_c() {
    let _serial = serial();
    let Some(folder) = groups_folder() else { return };
    let (_dir, app) = app_file();
    let mut emulate = Emulate::start(&app, "2");
    // The groups are made before the addresses are printed.
    let groups = groups_of(&folder, emulate.pid());
    assert_eq!(groups.len(), 2, "two replicas, two groups: {groups:?}");
    assert_quota(&groups);

    let answer = request(&emulate.app, "POST", "/work", &[], "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let served: u64 = groups.iter().map(|g| number_in_stat(g, "nr_periods")).sum();
    assert!(served > 0, "no group ran the call: {groups:?}");

    let status = emulate.interrupt();
    // Ctrl-C is how `orch emulate` ends: a success.
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(still_there(&groups), Vec::<&PathBuf>::new(), "groups outlived orch emulate");
    assert_eq!(groups_of(&folder, emulate.pid()), Vec::<PathBuf>::new());
}

fn number_in_stat(group: &Path, key: &str) -> u64 {
    let stat = std::fs::read_to_string(group.join("cpu.stat")).unwrap();
    let line = stat.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')).unwrap_or_else(|| panic!("{stat}"));
    line.trim().parse().unwrap()
}

#[test]
fn the_groups_of_a_killed_emulator_are_swept_by_the_next_burning_start() {
    let _serial = serial();
    let Some(folder) = groups_folder() else { return };
    let (_dir, app) = app_file();
    let mut killed = Emulate::start(&app, "2");
    let left = groups_of(&folder, killed.pid());
    assert_eq!(left.len(), 2, "{left:?}");
    signal(killed.pid() as i32, libc::SIGKILL);
    let status = wait_child(&mut killed.child, Duration::from_secs(10)).expect("killed");
    assert_eq!(status.code(), None, "died of the signal: {status:?}");
    // kill -9 runs no clean-up.
    assert_eq!(still_there(&left).len(), 2, "{left:?}");

    let mut next = Emulate::start(&app, "initial");
    assert_eq!(still_there(&left), Vec::<&PathBuf>::new(), "the next start did not sweep the killed one's groups");
    let own = groups_of(&folder, next.pid());
    assert_eq!(own.len(), 1, "one initial replica: {own:?}");
    assert_quota(&own);
    assert_eq!(next.interrupt().code(), Some(0));
    assert_eq!(still_there(&own), Vec::<&PathBuf>::new());
}

/// `orch run` of the one-cell burning matrix in a scratch folder, leading a process group as a shell's job does.
fn spawn_run(scratch: &common::Scratch) -> Child {
    scratch.write("experiments/apps/burner.yaml", APP);
    scratch.write("experiments/scenarios/burner/short.yaml", SCENARIO);
    scratch.write("experiments/burn.yaml", MATRIX);
    let stderr = std::fs::File::create(scratch.path("orch.stderr")).unwrap();
    Command::new(ORCH)
        .args(["run", "experiments/burn.yaml", "--tag", "t", "--logs-dir", "logs"])
        .current_dir(scratch.dir.path())
        .env_remove("ORCH_AGENTS")
        .env_remove("ORCH_CGROUP_ROOT")
        .env("ORCH_LOAD_AGENT_BIN", load_agent_bin())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap()
}

/// The parent of process `pid`, while it runs.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:"))?.trim().parse().ok()
}

/// Waits for the cell's pod groups: made by a child of `orch run` (the `orch cell` process).
fn cell_groups(folder: &Path, run: &Child, expected: usize) -> Vec<PathBuf> {
    let run_pid = run.id();
    wait_until("the cell's pod groups appear", Duration::from_secs(60), || {
        let groups = groups_where(folder, |maker| parent_of(maker) == Some(run_pid));
        (groups.len() == expected).then_some(groups)
    })
}

/// Waits until the cell's load has started (its pods are set by then); returns the cell's folder.
fn load_started(scratch: &common::Scratch) -> PathBuf {
    let cell = wait_until("the cell's folder", Duration::from_secs(30), || {
        let entries = std::fs::read_dir(scratch.path("logs/t")).ok()?;
        entries.flatten().map(|e| e.path()).find(|p| p.join("config.yaml").is_file())
    });
    wait_until("the load starts", Duration::from_secs(60), || {
        std::fs::read_to_string(cell.join("run.log")).ok().filter(|log| log.contains("load started"))
    });
    cell
}

fn stderr_of(scratch: &common::Scratch) -> String {
    std::fs::read_to_string(scratch.path("orch.stderr")).unwrap_or_default()
}

#[test]
fn a_burning_cell_removes_its_groups_when_it_ends_and_when_ctrl_c_cancels_it() {
    let _serial = serial();
    let Some(folder) = groups_folder() else { return };

    // Ctrl-C mid-cell, to the run's process group as a terminal sends it.
    let scratch = common::Scratch::new();
    let mut run = spawn_run(&scratch);
    let cell = load_started(&scratch);
    let groups = cell_groups(&folder, &run, 2);
    assert_quota(&groups);
    std::thread::sleep(Duration::from_secs(3));
    signal(-(run.id() as i32), libc::SIGINT);
    let status = wait_child(&mut run, Duration::from_secs(60)).expect("orch run exits after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{}", stderr_of(&scratch));
    assert_eq!(json(&cell.join("status.json"))["state"], "cancelled");
    assert_eq!(still_there(&groups), Vec::<&PathBuf>::new(), "the cancelled cell left its groups");

    // The same cell to its end.
    let scratch = common::Scratch::new();
    let mut run = spawn_run(&scratch);
    load_started(&scratch);
    let groups = cell_groups(&folder, &run, 2);
    let status = wait_child(&mut run, Duration::from_secs(120)).expect("orch run finishes");
    assert!(status.success(), "{}", stderr_of(&scratch));
    assert_eq!(still_there(&groups), Vec::<&PathBuf>::new(), "the finished cell left its groups");
    let cell = cell_dir(&scratch.path("logs/t"), "emulated");
    let service = &json(&cell.join("emulator.json"))["services"][0];
    let (throttled, periods) = (service["throttled_periods"].as_u64(), service["periods"].as_u64());
    assert!(throttled.is_some_and(|t| t > 0), "{service}");
    assert!(periods.is_some_and(|p| p >= throttled.unwrap()), "{service}");
    assert!(service["throttled_s"].as_f64().is_some_and(|s| s > 0.0), "{service}");
}

/// `orch emulate --cpu burn` with `env`, as user `uid` if given: (exit code, stderr, pid).
fn emulate_once(app: &Path, env: &[(&str, &Path)], uid: Option<u32>) -> (Option<i32>, String, u32) {
    emulate_once_with(Path::new(ORCH), app, env, uid)
}

/// [`emulate_once`] with the orch binary at `orch`.
fn emulate_once_with(orch: &Path, app: &Path, env: &[(&str, &Path)], uid: Option<u32>) -> (Option<i32>, String, u32) {
    let mut command = Command::new(orch);
    command
        .arg("emulate")
        .arg(app)
        .args(["--cpu", "burn", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
        .env_remove("ORCH_CGROUP_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = wait_child(&mut child, Duration::from_secs(20)).expect("it fails at once");
    (status.code(), stderr, child.id())
}

fn assert_one_line(code: Option<i32>, stderr: &str, needle: &str) {
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{stderr}");
}

#[test]
fn without_a_usable_cgroup_root_burning_fails_in_one_line_and_makes_nothing() {
    let _serial = serial();
    let (dir, app) = app_file();
    // Compressed time: refused before anything, on any host.
    let output = Command::new(ORCH).arg("emulate").arg(&app).args(["--cpu", "burn", "--time-scale", "5"]).output();
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_one_line(output.status.code(), &stderr, "needs time_scale 1");

    // A folder that is no cgroup, named by ORCH_CGROUP_ROOT: refused, nothing made in it.
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let (code, stderr, _) = emulate_once(&app, &[("ORCH_CGROUP_ROOT", &plain)], None);
    assert_one_line(code, &stderr, &format!("ORCH_CGROUP_ROOT={} is not the root of a cgroup", plain.display()));
    assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0, "something was made in {}", plain.display());

    // The host's controller, as a user who may not make groups.
    let Some(folder) = groups_folder() else { return };
    let root = CgroupRoot::detect().unwrap();
    // Stale groups would fail the sweep first (another line); they are not this test's subject.
    sweep_stale(&root).unwrap();
    let nobody = 65534;
    // The user must reach the binary and the app: the checkout (and the test's temporary folder) may be private
    // to root, so both are copied into a folder anyone may read.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let open_orch = open.path().join("orch");
    std::fs::copy(ORCH, &open_orch).unwrap();
    let open_app = open.path().join("app.yaml");
    std::fs::copy(&app, &open_app).unwrap();
    std::fs::set_permissions(&open_app, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, stderr, pid) = emulate_once_with(&open_orch, &open_app, &[], Some(nobody));
    assert_one_line(code, &stderr, "Permission denied");
    assert!(stderr.contains("cannot create cgroup") && stderr.contains("run as root"), "{stderr}");
    assert_eq!(groups_of(&folder, pid), Vec::<PathBuf>::new(), "a group was made without permission");
}

//! The CPU-bandwidth cgroup sandbox on real cgroups with real processes. Needs permission to create cgroups (root):
//! without it these tests fail with the reason, they do not pass silently.
//!
//! Helper processes are this test binary run again with `HELPER_ROLE` set, running only [`helper_process`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator::backends::emulated::cgroup::{
    CgroupRoot, CgroupVersion, CpuCgroup, ThrottleStats, burn, current_tid, sweep_stale,
};

const HELPER_ROLE: &str = "ORCH_CGROUP_TEST_HELPER";
const HELPER_ARG: &str = "ORCH_CGROUP_TEST_ARG";
const MARKER: &str = "HELPER:";
const PERIOD: Duration = Duration::from_millis(100);

fn host_root() -> CgroupRoot {
    CgroupRoot::detect().unwrap_or_else(|e| panic!("these tests need a writable cgroup cpu controller: {e}"))
}

fn create(root: &CgroupRoot, name: &str, limit_millicores: u32) -> CpuCgroup {
    CpuCgroup::create(root, name, limit_millicores, PERIOD)
        .unwrap_or_else(|e| panic!("these tests need permission to create cgroups (CI runs them as root): {e}"))
}

/// Not a test of its own: the body of the helper processes, a no-op in a normal run.
#[test]
fn helper_process() {
    let Ok(role) = std::env::var(HELPER_ROLE) else { return };
    let arg = std::env::var(HELPER_ARG).unwrap_or_default();
    match role.as_str() {
        // Waits for a line on stdin (sent once it is in its group), burns `arg` ms of CPU, reports the wall time.
        "burn" => {
            std::io::stdin().read_line(&mut String::new()).unwrap();
            let start = Instant::now();
            burn(Duration::from_millis(arg.parse().unwrap()));
            eprintln!("{MARKER}{}", start.elapsed().as_secs_f64());
        }
        // Makes a group holding a long sleep, reports its path, then waits to be killed.
        "stale" => {
            let group = create(&host_root(), &arg, 200);
            let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
            group.add(sleeper.id()).unwrap();
            eprintln!("{MARKER}{}", group.path().display());
            sleeper.wait().unwrap(); // killed first
        }
        other => panic!("unknown helper role {other}"),
    }
}

fn spawn_helper(role: &str, arg: &str) -> (Child, BufReader<ChildStderr>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_process", "--nocapture", "--test-threads=1"])
        .env(HELPER_ROLE, role)
        .env(HELPER_ARG, arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (child, stderr)
}

/// The helper's report: the text after the marker on its stderr.
fn read_report(stderr: &mut BufReader<ChildStderr>) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the helper ended without reporting:\n{seen}");
        seen.push_str(&line);
        if let Some(at) = line.find(MARKER) {
            return line[at + MARKER.len()..].trim().to_string();
        }
    }
}

/// Gone, or a zombie nobody has reaped yet (it holds no CPU and no cgroup).
fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Burns 300 ms of CPU in a group limited to `limit_millicores`; returns CPU time / wall time and the counters.
fn cpu_share_under(limit_millicores: u32) -> (f64, ThrottleStats) {
    let cpu = Duration::from_millis(300);
    let group = create(&host_root(), &format!("share-{limit_millicores}"), limit_millicores);
    let (mut child, mut stderr) = spawn_helper("burn", &cpu.as_millis().to_string());
    group.add(child.id()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let wall: f64 = read_report(&mut stderr).parse().unwrap();
    assert!(child.wait().unwrap().success());
    (cpu.as_secs_f64() / wall, group.stats().unwrap())
}

#[test]
fn a_200m_quota_throttles_a_burning_process_to_a_fifth_of_a_core_and_2000m_does_not() {
    let (share_200, stats_200) = cpu_share_under(200);
    let (share_2000, stats_2000) = cpu_share_under(2000);
    println!("200m: share {share_200:.3} {stats_200:?}\n2000m: share {share_2000:.3} {stats_2000:?}");
    assert!(stats_200.throttled_periods > 0, "200m never throttled: {stats_200:?}");
    assert!(stats_200.throttled > Duration::ZERO, "{stats_200:?}");
    assert!((0.1..=0.35).contains(&share_200), "CPU share under 200m is {share_200:.3}, expected about 0.2");
    assert!(
        stats_2000.throttled_periods * 10 <= stats_2000.periods.max(10),
        "one thread under 2000m should barely be throttled: {stats_2000:?}"
    );
    assert!(share_2000 > 1.5 * share_200, "2000m share {share_2000:.3} vs 200m share {share_200:.3}");
}

#[test]
fn dropping_the_group_kills_its_process_and_removes_the_directory() {
    let group = create(&host_root(), "drop", 500);
    let path = group.path().to_path_buf();
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    group.add(sleeper.id()).unwrap();
    assert_eq!(group.pids().unwrap(), vec![sleeper.id() as i32]);
    drop(group);
    assert!(!path.exists(), "{} is still there", path.display());
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "sleep was not killed: {status}");
}

#[test]
fn the_groups_of_a_killed_process_are_swept_as_stale() {
    let (mut helper, mut stderr) = spawn_helper("stale", "crashed");
    let path = PathBuf::from(read_report(&mut stderr));
    let orphans: Vec<u32> =
        std::fs::read_to_string(path.join("cgroup.procs")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(orphans.len(), 1, "the helper's sleep should be in {}", path.display());
    helper.kill().unwrap(); // SIGKILL: no destructor runs
    helper.wait().unwrap();
    assert!(path.is_dir(), "a killed process leaves its group behind");

    let removed = sweep_stale(&host_root()).unwrap();
    assert!(removed.contains(&path), "{} not swept; swept {removed:?}", path.display());
    assert!(!path.exists());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !process_is_gone(orphans[0]) {
        assert!(Instant::now() < deadline, "the orphaned sleep {} still runs", orphans[0]);
        std::thread::sleep(Duration::from_millis(10));
    }
    // The sweeping process's own groups are live, not stale.
    let live = create(&host_root(), "live", 200);
    assert!(!sweep_stale(&host_root()).unwrap().contains(&live.path().to_path_buf()));
    assert!(live.path().is_dir());
}

/// Runs `body` on a new thread of this process that `group` holds (by thread id) while `body` runs.
fn in_group_thread<T: Send + 'static>(group: &CpuCgroup, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tid_sender, tid_receiver) = std::sync::mpsc::channel();
    let (go_sender, go_receiver) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        tid_sender.send(current_tid()).unwrap();
        go_receiver.recv().unwrap();
        body()
    });
    let tid = tid_receiver.recv().unwrap();
    group.add_thread(tid).unwrap();
    assert_eq!(group.tids().unwrap(), vec![tid as i32], "only that thread, not the process");
    go_sender.send(()).unwrap();
    thread.join().unwrap()
}

#[test]
fn a_thread_added_by_id_is_throttled_alone_and_leaves_the_group_when_it_ends() {
    let group = create(&host_root(), "thread-200", 200);
    let cpu = Duration::from_millis(300);
    let wall = in_group_thread(&group, move || {
        let start = Instant::now();
        burn(cpu);
        start.elapsed()
    });
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    let stats = group.stats().unwrap();
    println!("thread under 200m: share {share:.3} {stats:?}");
    assert!(stats.throttled_periods > 0, "{stats:?}");
    assert!((0.1..=0.35).contains(&share), "CPU share of the thread under 200m is {share:.3}, expected about 0.2");
    // The thread ended: the group is empty, and this process (never in it) is untouched by its removal.
    assert!(group.tids().unwrap().is_empty());
    let path = group.path().to_path_buf();
    group.remove().unwrap();
    assert!(!path.exists());
}

#[test]
fn removing_a_group_that_still_holds_one_of_our_threads_moves_it_out_instead_of_killing_us() {
    let group = create(&host_root(), "thread-evacuate", 500);
    let path = group.path().to_path_buf();
    let (removed_sender, removed_receiver) = std::sync::mpsc::channel::<()>();
    let (tid_sender, tid_receiver) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        tid_sender.send(current_tid()).unwrap();
        removed_receiver.recv().unwrap();
        "still alive"
    });
    group.add_thread(tid_receiver.recv().unwrap()).unwrap();
    drop(group);
    assert!(!path.exists(), "{} is still there", path.display());
    removed_sender.send(()).unwrap();
    assert_eq!(thread.join().unwrap(), "still alive");
}

fn assert_one_clear_line(message: &str, root: &Path) {
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains(&root.join("orch").display().to_string()), "no path in: {message}");
    assert!(message.contains("run as root or give a writable cgroup root"), "no advice in: {message}");
}

#[test]
fn an_unusable_root_gives_one_clear_line_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file as the root: mkdir under it fails even for root.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let error = CpuCgroup::create(&CgroupRoot::at(&file, CgroupVersion::V1), "x", 200, PERIOD).unwrap_err();
    println!("{error}");
    assert_one_clear_line(&error.to_string(), &file);
    assert!(error.to_string().starts_with("cannot create cgroup "), "{error}");
    assert!(file.is_file() && std::fs::read(&file).unwrap().is_empty());

    // A plain directory (no cpu controller files): the group is made, refused, and taken back down.
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let error = CpuCgroup::create(&CgroupRoot::at(&plain, version), "x", 200, PERIOD).unwrap_err();
        println!("{error}");
        assert_one_clear_line(&error.to_string(), &plain);
        assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0, "something left in {}", plain.display());
    }
}

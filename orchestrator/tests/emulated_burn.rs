//! The burning emulator (`emulated: {cpu: burn}`) on real cgroups, with real HTTP on loopback: a pod's CFS quota
//! stretches latency and is reported as throttled periods; pods' groups live and die with the pods and the
//! emulator; an unusable cgroup root fails in one line and makes nothing. Needs permission to create cgroups
//! (root, cgroup v1): without it these tests fail with the reason.

mod emulated_support;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use emulated_support::request;
use orchestrator::app::AppModel;
use orchestrator::backends::emulated::burn_pods::BurnError;
use orchestrator::backends::emulated::cgroup::{CgroupRoot, CgroupVersion};
use orchestrator::backends::emulated::lifecycle::emulator_report;
use orchestrator::backends::emulated::{CpuMode, Emulator, EmulatorSettings};

/// The classifier's pod limit here: 20 ms of CPU per 100 ms period.
const LIMIT_M: f64 = 200.0;
/// Mean CPU per image here: a pod serves 5 images per second at most.
const PER_REQUEST_MS: f64 = 40.0;

/// Tests that count this process's groups must not see another test's emulator.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The image classifier (one pod at first), its CPU limit and demand scaled down so a test load throttles.
fn classifier() -> AppModel {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/apps/image-classifier.yaml");
    let mut app = AppModel::load(&file).unwrap();
    let cpu = &mut app.services[0].cpu;
    (cpu.request_m, cpu.limit_m, cpu.per_request_ms) = (LIMIT_M, LIMIT_M, PER_REQUEST_MS);
    assert_eq!(app.services[0].replicas.initial(), 1);
    app
}

fn settings(cpu: CpuMode) -> EmulatorSettings {
    EmulatorSettings { time_scale: 1.0, pod_concurrency: 1, cpu }
}

/// Starts an emulator of the classifier on a runtime of its own; the runtime must outlive it.
fn start(cpu: CpuMode, cgroups: Option<CgroupRoot>) -> (tokio::runtime::Runtime, std::io::Result<Emulator>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let timeout = Duration::from_secs(30);
    let emulator = runtime.block_on(Emulator::start_in(&classifier(), &settings(cpu), any, any, 1, timeout, cgroups));
    (runtime, emulator)
}

fn start_burning() -> (tokio::runtime::Runtime, Emulator) {
    let (runtime, emulator) = start(CpuMode::Burn, None);
    let emulator = emulator.unwrap_or_else(|e| panic!("these tests need root and a cgroup v1 cpu controller: {e}"));
    (runtime, emulator)
}

/// This process's groups under the host's cpu controller.
fn own_groups() -> Vec<PathBuf> {
    let root = CgroupRoot::detect().unwrap();
    let prefix = format!("orch-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(root.path().join("orch")) else { return Vec::new() };
    let mut groups: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&prefix))
        .collect();
    groups.sort();
    groups
}

fn tasks(group: &Path) -> usize {
    std::fs::read_to_string(group.join("tasks")).unwrap().lines().count()
}

fn predict(app: &str) -> Duration {
    let started = Instant::now();
    let answer = request(app, "POST", "/predict", &[("content-type", "application/octet-stream")], "image");
    assert_eq!(answer.status, 200, "{}", answer.body);
    started.elapsed()
}

#[test]
fn a_throttled_pod_reports_its_throttled_periods_and_stretches_latency() {
    let _serial = serial();
    let (_runtime, emulator) = start_burning();
    let app = emulator.app_address.to_string();
    // 3 images per second, 60 % of what the pod's quota serves, sent on time whatever the answers take.
    let origin = Instant::now();
    let clients: Vec<_> = (0..12)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || {
                std::thread::sleep((origin + Duration::from_millis(333 * i)).saturating_duration_since(Instant::now()));
                predict(&app)
            })
        })
        .collect();
    // The cluster ticks each second as a cell's backend does, and the second's row is taken after each tick.
    let cluster = emulator.cluster.clone();
    let mut seconds = Vec::new();
    for t in 1..=5 {
        std::thread::sleep((origin + Duration::from_secs(t)).saturating_duration_since(Instant::now()));
        cluster.tick(t);
        seconds.push(cluster.second()[0].clone());
    }
    let mut latencies: Vec<Duration> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    // The bare service time: the median of the exponential CPU demand, burned at full core speed.
    let bare_p50 = Duration::from_secs_f64(PER_REQUEST_MS / 1000.0 * 2f64.ln());
    let report = emulator_report(&emulator);
    let service = &report.services[0];
    println!("latencies {latencies:?}; p50 {p50:?} vs bare {bare_p50:?}; {service:?}");
    assert_eq!(service.calls, 12);
    assert!(service.throttled_periods.unwrap() > 0, "{service:?}");
    assert!(service.periods.unwrap() >= service.throttled_periods.unwrap(), "{service:?}");
    assert!(service.throttled_s.unwrap() > 0.0, "{service:?}");
    assert!(p50 > bare_p50 * 2, "p50 {p50:?} is not clearly above the bare service time {bare_p50:?}");
    let json = serde_json::to_value(&report).unwrap();
    for field in ["throttled_periods", "periods", "throttled_s"] {
        assert!(json["services"][0].get(field).is_some(), "emulator.json lacks {field}: {json}");
    }

    // The metrics rows: each second's periods and throttled periods, throttled within what elapsed.
    let pairs: Vec<(f64, f64)> =
        seconds.iter().map(|s| (s.cfs_periods.unwrap(), s.cfs_throttled_periods.unwrap())).collect();
    println!("per second (periods, throttled): {pairs:?}");
    assert!(pairs.iter().all(|&(periods, throttled)| throttled <= periods && periods <= 11.0), "{pairs:?}");
    assert!(pairs.iter().any(|&(_, throttled)| throttled > 0.0), "no second was throttled: {pairs:?}");
    let summed: f64 = pairs.iter().map(|p| p.1).sum();
    assert!(summed <= service.throttled_periods.unwrap() as f64, "{summed} of {service:?}");

    // /metrics carries cAdvisor's CFS counters of the pod.
    let metrics = request(&emulator.control_address.to_string(), "GET", "/metrics", &[], "").body;
    let labels = "{namespace=\"classifier\",pod=\"classifier-0\",container=\"classifier\"}";
    for counter in [
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_cpu_cfs_throttled_seconds_total",
    ] {
        let line = metrics.lines().find(|l| l.starts_with(counter) && !l.starts_with('#'));
        let line = line.unwrap_or_else(|| panic!("/metrics lacks {counter}:\n{metrics}"));
        assert!(line.contains(labels), "{line}");
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 0.0, "{line}");
    }
}

#[test]
fn sleeping_emulators_write_no_throttling() {
    let (_runtime, emulator) = start(CpuMode::Sleep, Some(CgroupRoot::at("/nonexistent", CgroupVersion::V1)));
    let emulator = emulator.unwrap();
    predict(&emulator.app_address.to_string());
    let json = serde_json::to_string(&emulator_report(&emulator)).unwrap();
    assert!(!json.contains("throttled") && !json.contains("periods"), "{json}");
    emulator.cluster.tick(1);
    let second = &emulator.cluster.second()[0];
    assert_eq!((second.cfs_periods, second.cfs_throttled_periods), (None, None));
    let metrics = request(&emulator.control_address.to_string(), "GET", "/metrics", &[], "").body;
    assert!(!metrics.contains("container_cpu_cfs"), "{metrics}");
}

#[test]
fn each_pod_is_a_group_of_its_workers_made_and_removed_with_it_and_the_emulator() {
    let _serial = serial();
    let (runtime, emulator) = start_burning();
    let groups = own_groups();
    assert_eq!(groups.len(), 1, "one pod, one group: {groups:?}");
    let name = groups[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.ends_with("-classifier-0"), "{name}");
    assert_eq!(tasks(&groups[0]), 1, "pod_concurrency 1: one worker thread in the group");

    let cluster = emulator.cluster.clone();
    cluster.scale(0, 2);
    assert_eq!(own_groups().len(), 2, "a new pod's group is made when it starts");
    cluster.scale(0, 1);
    assert_eq!(own_groups(), groups, "the removed pod, idle, has gone with its group");
    predict(&emulator.app_address.to_string());

    // Two ready pods, two calls at once: the least busy pod takes the second, so both burn.
    cluster.scale(0, 2);
    cluster.tick(40);
    let app = emulator.app_address.to_string();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn({
                let app = app.clone();
                move || predict(&app)
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let both = own_groups();
    assert_eq!(both.len(), 2);
    let periods =
        |group: &Path| std::fs::read_to_string(group.join("cpu.stat")).unwrap().lines().next().unwrap().to_string();
    for group in &both {
        assert_ne!(periods(group), "nr_periods 0", "{} served nothing", group.display());
    }
    cluster.scale(0, 1);
    assert_eq!(own_groups().len(), 1);

    // The cell's drop path: the emulator goes (the cluster it shared may live on a moment).
    drop(emulator);
    assert_eq!(own_groups(), Vec::<PathBuf>::new(), "the emulator left groups behind");
    drop(cluster);
    drop(runtime);
}

const HELPER_ROLE: &str = "ORCH_BURN_TEST_HELPER";

/// Not a test of its own: in a helper process (this binary run again with [`HELPER_ROLE`] set), starts a burning
/// emulator, serves one request, prints its groups and leaves by `exit`, as a cell cancelled past its grace does.
#[test]
fn helper_process() {
    if std::env::var(HELPER_ROLE).is_err() {
        return;
    }
    let (_runtime, emulator) = start_burning();
    predict(&emulator.app_address.to_string());
    for group in own_groups() {
        println!("GROUP:{}", group.display());
    }
    std::process::exit(3);
}

#[test]
fn leaving_by_exit_without_dropping_the_emulator_removes_its_groups() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_process", "--nocapture", "--test-threads=1"])
        .env(HELPER_ROLE, "exit")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The harness prints its own words before the helper's on the same line.
    let groups: Vec<&str> = stdout.lines().filter_map(|l| Some(&l[l.find("GROUP:")? + "GROUP:".len()..])).collect();
    assert_eq!(groups.len(), 1, "{stdout}");
    assert!(!Path::new(groups[0]).exists(), "{} outlived its process", groups[0]);
}

fn assert_one_line_and_nothing_made(error: &std::io::Error, dir: &Path, before: &[PathBuf]) {
    let message = error.to_string();
    println!("{message}");
    assert!(!message.contains('\n'), "{message}");
    let mut after: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    after.sort();
    assert_eq!(after, before, "something was made in {}", dir.display());
}

#[test]
fn an_unusable_cgroup_root_fails_in_one_line_and_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file as the root: nothing can be made under it, even by root.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let (_runtime, emulator) = start(CpuMode::Burn, Some(CgroupRoot::at(&file, CgroupVersion::V1)));
    let error = emulator.err().expect("a regular file is no cgroup root");
    assert!(error.to_string().contains(&file.display().to_string()), "{error}");
    assert_one_line_and_nothing_made(&error, dir.path(), std::slice::from_ref(&file));
    assert!(std::fs::read(&file).unwrap().is_empty());

    // cgroup v2: threads would need a threaded subtree; refused before anything is made.
    let (_runtime, emulator) = start(CpuMode::Burn, Some(CgroupRoot::at(dir.path(), CgroupVersion::V2)));
    let error = emulator.err().expect("v2 is not supported yet");
    assert!(error.get_ref().is_some_and(|e| e.is::<BurnError>()), "{error:?}");
    assert!(error.to_string().contains("supports cgroup v1 only"), "{error}");
    assert_one_line_and_nothing_made(&error, dir.path(), std::slice::from_ref(&file));
}

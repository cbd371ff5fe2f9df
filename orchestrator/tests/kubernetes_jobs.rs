//! `executor: kubernetes` through the real binary against the fake API server, whose minimal kubelet runs each
//! Job's `orch cell` as a local process on the results claim (a host folder: the run's logs directory): every
//! cell's results land in logs/<run-tag>/, a transient failure and an evicted pod are retried as a new Job, Ctrl-C and a timeout delete
//! the running Job, a resume deletes the Jobs a killed `orch run` left running, and no Job or ConfigMap of the run
//! is left in the cluster. The fake cannot run containers: its kubelet executes this build's `orch cell` with the
//! Job's command, on the ConfigMap's files copied to the claim as the init container would.

mod emulated_support;
mod kube_fake;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use emulated_support::{spawn_orch, stderr_of, wait_child};
use kube_fake::{FakeCluster, Options};
use orchestrator::app::AppModel;

const APP: &str = "\
name: shop
namespace: shop
slo: {route: cart, percentile: 95, threshold_ms: 100}
services:
  - name: frontend
    cpu: {request_m: 100, limit_m: 200, per_request_ms: 2.0}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 20}
    replicas: {min: 1, max: 4}
    startup_s: 1
routes:
  - name: cart
    match: {method: GET, path: /cart}
    call: {service: frontend}
";

const SCENARIO: &str = "\
name: steady
users:
  - name: shopper
    wait: {constant_throughput: 1}
    tasks: [{name: cart, weight: 1, requests: [{method: GET, path: /cart}]}]
shape:
  stages: [{end: 120, users: 20, spawn_rate: 20}]
";

fn setup(seeds: &str, timeout: &str) -> (FakeCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = AppModel::parse(APP, Path::new("shop.yaml")).unwrap();
    let claims = BTreeMap::from([("orch-results".to_string(), dir.path().join("logs"))]);
    let mut fake = FakeCluster::start(&app, Options { token: Some("t0ken".into()), claims, ..Options::default() });
    fake.serve();
    fake.write_kubeconfig(&dir.path().join("kubeconfig.yaml"), "t0ken");
    let write = |relative: &str, text: &str| {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("experiments/apps/shop.yaml", APP);
    write("experiments/scenarios/shop/steady.yaml", SCENARIO);
    write(
        "experiments/j.yaml",
        &format!(
            "name: jobs\napps: [shop]\nscenarios: [steady]\nseeds: {seeds}\npolicies:\n  - {{name: static-2, kind: \
             static, replicas: 2}}\nexecutor:\n  kind: kubernetes\n  namespace: orch-runs\n  image: orch:test\n  \
             results: {{pvc: orch-results}}\n  kubeconfig: ../kubeconfig.yaml\n  ttl_after_finished: 1h\n\
             strategy: {{max_parallel: 2, retries: 1, retry_backoff: 0s, timeout: {timeout}}}\n"
        ),
    );
    (fake, dir)
}

#[test]
fn cells_run_as_jobs_results_are_gathered_a_transient_failure_is_retried_and_nothing_is_left() {
    let (fake, dir) = setup("[1, 2]", "5m");
    let mut child = spawn_orch(
        dir.path(),
        &["run", "experiments/j.yaml", "--tag", "t", "--logs-dir", "logs"],
        &[("ORCH_FAULT_INJECT", "*.s1-*=transient:1")],
    );
    let status = wait_child(&mut child, Duration::from_secs(120));
    let stderr = stderr_of(dir.path());
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");

    let run = dir.path().join("logs/t");
    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 3, "{summary}");
    let created: Vec<String> = fake
        .writes()
        .iter()
        .filter(|w| w.method == "POST" && w.path.ends_with("/jobs"))
        .map(|w| w.body["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(created.len(), 3, "two cells, one retried: {created:?}");
    assert_eq!(created.iter().filter(|n| n.ends_with("-2")).count(), 1, "{created:?}");
    // One ConfigMap per cell: the retry finds it (409) and updates it.
    let map_patches = fake.writes().iter().filter(|w| w.method == "PATCH" && w.path.contains("/configmaps/")).count();
    assert_eq!(map_patches, 1);
    for entry in std::fs::read_dir(&run).unwrap() {
        let cell = entry.unwrap().path();
        if !cell.join("config.yaml").is_file() {
            continue;
        }
        let metrics = std::fs::read_to_string(cell.join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 121, "{}", cell.display());
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cell.join("status.json")).unwrap()).unwrap();
        assert_eq!(status["state"], "succeeded");
        let events = std::fs::read_to_string(cell.join("events.jsonl")).unwrap();
        let name = cell.file_name().unwrap().to_string_lossy().to_string();
        if name.contains(".s1-") {
            assert_eq!(status["attempt"], 2, "{events}");
            assert!(events.contains("\"retry\""), "{events}");
        }
        let log = std::fs::read_to_string(cell.join("stderr.log")).unwrap_or_default();
        assert!(log.contains("created on http://127.0.0.1"), "{name}: {log}");
    }
    assert!(fake.job_names().is_empty(), "{:?}", fake.job_names());
    assert!(fake.config_map_names().is_empty(), "{:?}", fake.config_map_names());
}

#[test]
fn ctrl_c_deletes_the_running_jobs() {
    let (fake, dir) = setup("[1]", "5m");
    // A cell that takes long enough to be interrupted.
    let mut child =
        spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "c"], &[("ORCH_FAULT_INJECT", "*=sleep:60000")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.job_pod_names().is_empty() {
        assert!(Instant::now() < deadline, "no Job pod started: {}", stderr_of(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_child(&mut child, Duration::from_secs(40));
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{}", stderr_of(dir.path()));
    assert!(fake.job_names().is_empty(), "{:?}", fake.job_names());
    assert!(fake.config_map_names().is_empty());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fake.job_pod_names().is_empty() {
        assert!(Instant::now() < deadline, "the cell's process still runs: {:?}", fake.job_pod_names());
        std::thread::sleep(Duration::from_millis(100));
    }
    let cell = std::fs::read_dir(dir.path().join("logs/c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("config.yaml").is_file())
        .unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cell.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "cancelled", "{status}");
}

fn the_only_cell(run: &Path) -> std::path::PathBuf {
    std::fs::read_dir(run).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("config.yaml").is_file()).unwrap()
}

fn status_of(cell: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(cell.join("status.json")).unwrap()).unwrap()
}

fn wait_until_no_job_pods(fake: &FakeCluster) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fake.job_pod_names().is_empty() {
        assert!(Instant::now() < deadline, "the cell's process still runs: {:?}", fake.job_pod_names());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_timed_out_cell_has_its_job_deleted_and_is_failed() {
    let (fake, dir) = setup("[1]", "3s");
    let mut child =
        spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "o"], &[("ORCH_FAULT_INJECT", "*=sleep:60000")]);
    let status = wait_child(&mut child, Duration::from_secs(60));
    let stderr = stderr_of(dir.path());
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    let status = status_of(&the_only_cell(&dir.path().join("logs/o")));
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["error"].as_str().unwrap().contains("timed out"), "{status}");
    let deletes = fake.writes().iter().filter(|w| w.method == "DELETE" && w.path.contains("/jobs/")).count();
    assert!(deletes >= 1, "the timed-out attempt's Job was deleted");
    assert!(fake.job_names().is_empty(), "{:?}", fake.job_names());
    assert!(fake.config_map_names().is_empty());
    wait_until_no_job_pods(&fake);
}

#[test]
fn a_resume_deletes_the_jobs_a_killed_run_left_and_runs_the_cell_again() {
    let (fake, dir) = setup("[1]", "5m");
    let mut child =
        spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "r"], &[("ORCH_FAULT_INJECT", "*=sleep:60000")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.job_pod_names().is_empty() {
        assert!(Instant::now() < deadline, "no Job pod started: {}", stderr_of(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    // kill -9: `orch cell-job` dies with orch, the Job does not.
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stale = fake.job_names();
    assert_eq!(stale.len(), 1, "the Job outlives orch: {stale:?}");

    let mut child = spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--resume", "r"], &[]);
    let status = wait_child(&mut child, Duration::from_secs(90));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", stderr_of(dir.path()));
    let deleted: Vec<String> = fake
        .writes()
        .iter()
        .filter(|w| w.method == "DELETE" && w.path.contains("/jobs/"))
        .map(|w| w.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(deleted.first(), stale.first(), "the stale Job goes first: {deleted:?}");
    let cell = the_only_cell(&dir.path().join("logs/r"));
    assert_eq!(status_of(&cell)["state"], "succeeded");
    assert_eq!(std::fs::read_to_string(cell.join("metrics.csv")).unwrap().lines().count(), 121);
    assert!(fake.job_names().is_empty(), "{:?}", fake.job_names());
    assert!(fake.config_map_names().is_empty());
    wait_until_no_job_pods(&fake);
}

#[test]
fn dry_run_prints_each_cells_config_map_and_job_and_creates_nothing() {
    let (fake, dir) = setup("[1, 2]", "5m");
    let mut child = spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--dry-run"], &[]);
    let status = wait_child(&mut child, Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", stderr_of(dir.path()));
    let stdout = std::fs::read_to_string(dir.path().join("orch.stdout")).unwrap();
    let posts = |path: &str| stdout.lines().filter(|l| l.starts_with(&format!("dry-run: POST {path} {{"))).count();
    assert_eq!(posts("/api/v1/namespaces/orch-runs/configmaps"), 2, "{stdout}");
    assert_eq!(posts("/apis/batch/v1/namespaces/orch-runs/jobs"), 2, "{stdout}");
    assert!(stdout.contains(r#""command":["orch","cell","--run-dir","/run/orch","--cell""#), "{stdout}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(!dir.path().join("logs").exists(), "a dry run writes no run folder");
}

#[test]
fn an_evicted_pod_is_a_transient_failure_retried_as_a_new_job() {
    let (fake, dir) = setup("[1]", "5m");
    let mut child =
        spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "e"], &[("ORCH_FAULT_INJECT", "*=sleep:1500")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.job_pod_names().is_empty() {
        assert!(Instant::now() < deadline, "no Job pod started: {}", stderr_of(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fake.evict_job_pods(), 1);
    let status = wait_child(&mut child, Duration::from_secs(90));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", stderr_of(dir.path()));
    let cell = the_only_cell(&dir.path().join("logs/e"));
    let status = status_of(&cell);
    assert_eq!((status["state"].as_str(), status["attempt"].as_u64()), (Some("succeeded"), Some(2)), "{status}");
    let events = std::fs::read_to_string(cell.join("events.jsonl")).unwrap();
    let retry = events.lines().find(|l| l.contains("\"retry\"")).unwrap_or_else(|| panic!("{events}"));
    assert!(retry.contains("evicted"), "{retry}");
    assert!(fake.job_names().is_empty() && fake.config_map_names().is_empty());
    wait_until_no_job_pods(&fake);
}

#[test]
fn a_job_the_identity_may_not_create_fails_the_cell_naming_it_and_leaves_nothing() {
    let (fake, dir) = setup("[1]", "5m");
    fake.state.lock().unwrap().forbidden.push(("POST".into(), "/apis/batch/v1/namespaces/orch-runs/jobs".into()));
    let mut child = spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "f"], &[]);
    let status = wait_child(&mut child, Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", stderr_of(dir.path()));
    let status = status_of(&the_only_cell(&dir.path().join("logs/f")));
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("creating Job orch-runs/orch-f-") && error.contains("403 Forbidden"), "{error}");
    assert!(fake.job_names().is_empty() && fake.config_map_names().is_empty(), "{:?}", fake.config_map_names());
}

#[test]
fn an_image_that_cannot_be_pulled_fails_the_cell_naming_it_after_its_retries() {
    let (fake, dir) = setup("[1]", "5m");
    let matrix = dir.path().join("experiments/j.yaml");
    let text = std::fs::read_to_string(&matrix).unwrap().replace("image: orch:test", "image: orch:missing");
    std::fs::write(&matrix, text).unwrap();
    let mut child = spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "i"], &[]);
    let status = wait_child(&mut child, Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", stderr_of(dir.path()));
    let status = status_of(&the_only_cell(&dir.path().join("logs/i")));
    assert_eq!((status["state"].as_str(), status["attempt"].as_u64()), (Some("failed"), Some(2)), "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("ImagePullBackOff") && error.contains("orch:missing"), "{error}");
    assert!(fake.job_names().is_empty() && fake.config_map_names().is_empty());
    assert!(fake.job_pod_names().is_empty(), "{:?}", fake.job_pod_names());
}

#[test]
fn a_second_ctrl_c_kills_the_jobs_at_once_and_leaves_nothing() {
    let (fake, dir) = setup("[1, 2]", "5m");
    let mut child =
        spawn_orch(dir.path(), &["run", "experiments/j.yaml", "--tag", "h"], &[("ORCH_FAULT_INJECT", "*=hang")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.job_pod_names().len() < 2 {
        assert!(Instant::now() < deadline, "two Job pods did not start: {}", stderr_of(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let running: std::collections::BTreeSet<String> = fake.job_pod_names().into_iter().collect();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_child(&mut child, Duration::from_secs(40));
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{}", stderr_of(dir.path()));
    assert!(fake.job_names().is_empty(), "{:?}", fake.job_names());
    assert!(fake.config_map_names().is_empty());
    // `hang` ignores SIGTERM, and the kubelet would wait out the pods' grace; orch deleted them with grace 0 and
    // waited until the API no longer listed them.
    assert!(fake.job_pod_names().is_empty(), "{:?}", fake.job_pod_names());
    let deleted: std::collections::BTreeSet<String> = fake
        .writes()
        .iter()
        .filter(|w| w.method == "DELETE" && w.path.contains("/pods/"))
        .map(|w| w.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(deleted, running);
    for entry in std::fs::read_dir(dir.path().join("logs/h")).unwrap() {
        let cell = entry.unwrap().path();
        if cell.join("config.yaml").is_file() {
            assert_eq!(status_of(&cell)["state"], "cancelled", "{}", cell.display());
        }
    }
}

//! Whole `orch run`s with `backend: kubernetes` through the real binary against the fake API server, served on
//! loopback and reached through a kubeconfig the test writes (http://, a bearer token): an in-cluster HPA, a
//! static policy and a small RL policy trained in the run, each under real load from a local load agent sent to
//! the fake cluster's emulated app. Afterwards the cluster is as it was found: same replicas, no HPA, the
//! unrelated deployment never written. Also: a conflicting HPA refused by name, `take_over: true`, and
//! `--dry-run` printing the calls and changing nothing.

mod emulated_support;
mod kube_fake;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use emulated_support::{spawn_orch, stderr_of, wait_child};
use kube_fake::{FakeCluster, Options, UNRELATED};
use orchestrator::app::AppModel;
use serde_json::json;

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
  - name: cartservice
    cpu: {request_m: 100, limit_m: 200, per_request_ms: 1.0}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 20}
    replicas: {min: 1, max: 4, initial: 2}
    startup_s: 1
routes:
  - name: cart
    match: {method: GET, path: /cart}
    call: {service: frontend, calls: [{service: cartservice}]}
";

fn scenario(seconds: u32) -> String {
    format!(
        "name: steady\nusers:\n  - name: shopper\n    wait: {{constant_throughput: 2}}\n    tasks: [{{name: cart, \
         weight: 1, requests: [{{method: GET, path: /cart}}]}}]\nshape:\n  stages: [{{end: {seconds}, users: 20, \
         spawn_rate: 20}}]\n"
    )
}

const HPA: &str = "\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: frontend}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: frontend}
  minReplicas: 1
  maxReplicas: 4
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 30}}}]
";

const TINY_RL: &str = "  - name: rl-mlp
    kind: rl
    rl:
      algo: ppo
      model: mlp
      budget: 60
      training: {scale: [0.8, 1.2], noise: 0.1}
      hyperparameters: {n_steps: 30, batch_size: 30, n_epochs: 1}
      network: {hidden: 8, layers: 1}
";

/// A scratch folder with the app, scenario, baseline, kubeconfig and a matrix of `policies`.
fn workspace(fake: &FakeCluster, policies: &str, seconds: u32, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |relative: &str, text: &str| {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("experiments/apps/shop.yaml", APP);
    write("experiments/scenarios/shop/steady.yaml", &scenario(seconds));
    write("baselines/shop/hpa-cpu-30.yaml", HPA);
    fake.write_kubeconfig(&dir.path().join("kubeconfig.yaml"), "t0ken");
    write(
        "experiments/k.yaml",
        &format!(
            "name: k8s\napps: [shop]\nscenarios: [steady]\nseeds: [1]\nbackend: kubernetes\npolicies:\n{policies}\
             kubernetes:\n  kubeconfig: ../kubeconfig.yaml\n  target: {}\n  agents: {{local: 1}}\n  \
             readiness_timeout: 30s\n{extra}strategy: {{max_parallel: 2, timeout: 3m}}\n",
            fake.app_url()
        ),
    );
    dir
}

fn fake(options: Options) -> FakeCluster {
    let app = AppModel::parse(APP, Path::new("shop.yaml")).unwrap();
    let mut fake = FakeCluster::start(&app, Options { token: Some("t0ken".into()), ..options });
    fake.serve();
    fake
}

fn found_with_frontend_at_2() -> Options {
    Options { replicas: BTreeMap::from([("frontend".to_string(), 2)]), ..Options::default() }
}

fn run(dir: &Path, args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
    let mut child = spawn_orch(dir, args, &[("RUST_BACKTRACE", "0")]);
    let status = wait_child(&mut child, Duration::from_secs(240));
    (status, stderr_of(dir))
}

fn cell_dirs(run_dir: &Path) -> BTreeMap<String, std::path::PathBuf> {
    std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.yaml").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name.split('.').nth(1).unwrap().to_string(), p)
        })
        .collect()
}

#[test]
fn hpa_static_and_rl_cells_run_against_the_fake_cluster_and_leave_it_as_found() {
    let fake = fake(found_with_frontend_at_2());
    let before = fake.replicas();
    assert_eq!(before["frontend"], 2);
    let policies = format!(
        "  - {{name: hpa-cpu-30, kind: hpa, manifest: hpa-cpu-30.yaml}}\n  - {{name: static-3, kind: static, replicas: \
         3}}\n{TINY_RL}"
    );
    let dir = workspace(&fake, &policies, 14, "");
    let (status, stderr) = run(dir.path(), &["run", "experiments/k.yaml", "--tag", "t"]);
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");

    assert_eq!(fake.replicas(), before, "replicas restored");
    assert!(fake.hpa_names().is_empty(), "no HPA left: {:?}", fake.hpa_names());
    assert!(fake.job_names().is_empty() && fake.config_map_names().is_empty(), "no Job or ConfigMap left");
    let writes = fake.writes();
    assert!(writes.iter().all(|w| !w.path.contains(UNRELATED)), "the unrelated deployment was written");
    let created: Vec<_> = writes.iter().filter(|w| w.method == "POST").collect();
    assert_eq!(created.len(), 1, "one HPA created: {created:?}");
    assert_eq!(created[0].body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "orch");
    assert_eq!(writes.iter().filter(|w| w.method == "DELETE").count(), 1);

    let run_dir = dir.path().join("logs/t");
    let summary = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 4, "{summary}");
    let cells = cell_dirs(&run_dir);
    for (policy, cell) in &cells {
        let metrics = std::fs::read_to_string(cell.join("metrics.csv")).unwrap();
        let rows: Vec<&str> = metrics.lines().skip(1).collect();
        assert!((13..=15).contains(&rows.len()), "{policy}: {} rows", rows.len());
        let offered: f64 = rows[5..].iter().map(|r| r.split(',').nth(2).unwrap().parse::<f64>().unwrap()).sum();
        // 20 users at 2 requests/s each, measured by the agent against the fake cluster's app.
        let per_second = offered / (rows.len() - 5) as f64;
        assert!((25.0..=50.0).contains(&per_second), "{policy}: {per_second} requests/s");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cell.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["backend"], "kubernetes");
        assert!(summary["failure_pct"].as_f64().unwrap() < 5.0, "{policy}: {summary}");
        assert!(cell.join("agents/local-0/locust_stats.csv").is_file(), "{policy}: the agent's CSVs");
    }
    // The static cell put frontend at 3 ready pods: the columns say what the API said.
    let metrics = std::fs::read_to_string(cells["static-3"].join("metrics.csv")).unwrap();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    assert_eq!((last[9], last[10]), ("3", "3"), "frontend ready, desired: {last:?}");

    // The HPA was the cluster's: it scaled frontend up from 1 under the load, and its status was recorded.
    let hpa = &cells["hpa-cpu-30"];
    let hpa_csv = std::fs::read_to_string(hpa.join("hpa.csv")).unwrap();
    assert!(hpa_csv.lines().count() >= 10, "{hpa_csv}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hpa.join("summary.json")).unwrap()).unwrap();
    assert!(summary["scaling_actions"].as_u64().unwrap() >= 1, "{summary}\n{hpa_csv}");
    let log = std::fs::read_to_string(hpa.join("run.log")).unwrap();
    assert!(
        log.contains("\"hpa created\"") && log.contains("\"hpa deleted\"") && log.contains("SucceededRescale"),
        "{log}"
    );
    let rl_log = std::fs::read_to_string(cells["rl-mlp"].join("run.log")).unwrap();
    assert!(rl_log.contains("rl policy loaded"), "{rl_log}");
}

#[test]
fn a_conflicting_hpa_is_refused_by_name_and_taken_over_when_the_matrix_says_so() {
    let existing = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "team-hpa", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cartservice"},
                 "minReplicas": 2, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 90}}}]}});
    let fake = fake(Options { hpas: vec![existing], hpa_sync_s: 1000, ..found_with_frontend_at_2() });
    let before = fake.replicas();
    let policies = "  - {name: static-1, kind: static, replicas: 1}\n";

    let dir = workspace(&fake, policies, 4, "");
    let (status, stderr) = run(dir.path(), &["run", "experiments/k.yaml", "--tag", "refused"]);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(
        stderr.contains("HorizontalPodAutoscaler \\\"team-hpa\\\"")
            || stderr.contains("HorizontalPodAutoscaler \"team-hpa\""),
        "{stderr}"
    );
    assert!(fake.writes().is_empty(), "a refused cell writes nothing: {:?}", fake.writes());

    let dir = workspace(&fake, policies, 4, "  take_over: true\n");
    let (status, stderr) = run(dir.path(), &["run", "experiments/k.yaml", "--tag", "taken"]);
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    assert_eq!(fake.hpa_names(), ["team-hpa"], "the team's HPA is back");
    assert_eq!(fake.replicas(), before);
    let methods: Vec<String> = fake.writes().iter().map(|w| format!("{} {}", w.method, w.path)).collect();
    assert_eq!(
        methods.first().unwrap(),
        "DELETE /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/team-hpa"
    );
    assert_eq!(methods.last().unwrap(), "POST /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers");
}

#[test]
fn dry_run_prints_the_calls_and_changes_nothing() {
    let fake = fake(found_with_frontend_at_2());
    let policies = "  - {name: hpa-cpu-30, kind: hpa, manifest: hpa-cpu-30.yaml}\n  - {name: static-3, kind: static, replicas: 3}\n";
    let dir = workspace(&fake, policies, 10, "");
    let (status, stderr) = run(dir.path(), &["run", "experiments/k.yaml", "--dry-run"]);
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    let stdout = std::fs::read_to_string(dir.path().join("orch.stdout")).unwrap();
    for line in [
        r#"dry-run: PATCH /apis/apps/v1/namespaces/shop/deployments/frontend/scale {"spec":{"replicas":1}}"#,
        "dry-run: POST /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers {",
        "dry-run: DELETE /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/frontend",
        r#"dry-run: PATCH /apis/apps/v1/namespaces/shop/deployments/frontend/scale {"spec":{"replicas":2}}"#,
        r#"dry-run: PATCH /apis/apps/v1/namespaces/shop/deployments/frontend/scale {"spec":{"replicas":3}}"#,
        r#"dry-run: PATCH /apis/apps/v1/namespaces/shop/deployments/cartservice/scale {"spec":{"replicas":3}}"#,
    ] {
        assert!(stdout.contains(line), "{line}\nin\n{stdout}");
    }
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(!dir.path().join("logs").exists(), "a dry run writes no run folder");
}

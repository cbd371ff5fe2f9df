//! A compressed rushsale on the emulated Online Boutique, through the real `orch` binary with 2 local load-agent
//! processes it starts itself, under the HPA baseline at 60 % CPU: the agents' request count equals the app's,
//! replicas rise after the surge and fall once the scale-down stabilization window has passed, the run folder
//! holds the agents' Locust CSVs, and the app's Prometheus names and pod-control API answer during the run.

mod common;
mod emulated_support;

use std::time::Duration;

use emulated_support::{cell_dir, column, http, json, spawn_orch, stderr_of, wait_child, wait_for_text};

const MATRIX: &str = "\
name: rush
seeds: [1]
apps: [online-boutique]
scenarios: [rushsale]
policies:
  - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}
backend: [emulated, sim]
emulated:
  time_scale: 20
  agents: {local: 2}
";

/// `host:port` of a URL like `http://127.0.0.1:4000`.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[test]
fn compressed_rushsale_with_two_local_agents_under_hpa() {
    let scratch = common::Scratch::new();
    scratch.write("experiments/rush.yaml", MATRIX);
    let mut orch =
        spawn_orch(scratch.dir.path(), &["run", "experiments/rush.yaml", "--tag", "t", "--logs-dir", "logs"], &[]);
    let run_dir = scratch.path("logs/t");

    // While it runs: the control side answers with the names a cluster's exporters use.
    let emulated = wait_for_cell_log(&run_dir);
    let text = wait_for_text(&emulated.join("run.log"), "load started", Duration::from_secs(60));
    let control = text
        .lines()
        .find(|l| l.contains("emulator listening"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["fields"]["control_url"].as_str().map(str::to_string))
        .expect("the log names the control URL");
    // The surge runs from 9 s to 24 s of the cell.
    std::thread::sleep(Duration::from_secs(12));
    let (status, metrics) = http(authority(&control), "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    for needle in [
        "istio_requests_total{reporter=\"destination\",source_workload=\"unknown\"",
        "destination_workload=\"frontend\",destination_workload_namespace=\"online-boutique\"",
        "istio_request_duration_milliseconds_bucket{",
        "source_workload=\"frontend\",source_workload_namespace=\"online-boutique\",destination_workload=\"cartservice\"",
        "container_cpu_usage_seconds_total{namespace=\"online-boutique\",pod=\"frontend-",
        "kube_deployment_status_replicas_ready{namespace=\"online-boutique\",deployment=\"frontend\"}",
        "kube_deployment_spec_replicas{namespace=\"online-boutique\",deployment=\"redis-cart\"} 1",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}:\n{}", &metrics[..metrics.len().min(3000)]);
    }
    let (status, pods) = http(authority(&control), "GET", "/api/v1/pods?deployment=frontend", None, "");
    assert_eq!(status, 200, "{pods}");
    let pods: serde_json::Value = serde_json::from_str(&pods).unwrap();
    let pods = pods["pods"].as_array().unwrap();
    assert!(!pods.is_empty());
    assert!(pods.iter().all(|p| p["deployment"] == "frontend" && p["cpu_request_millicores"] == 100.0));
    assert!(pods.iter().any(|p| p["status"] == "Running" && p["memory_mib"].as_f64().unwrap() > 0.0));

    let status = wait_child(&mut orch, Duration::from_secs(240)).expect("orch finishes within 4 minutes");
    assert!(status.success(), "orch failed: {}", stderr_of(scratch.dir.path()));

    let cell = cell_dir(&run_dir, "emulated");
    let agents = json(&cell.join("agents.json"));
    let app = json(&cell.join("emulator.json"));
    let counted = agents["requests"].as_u64().unwrap();
    let served = app["client_requests"].as_u64().unwrap();
    // Agents let their requests in flight finish before the end, so both sides count the same requests; a few
    // cut off by a client timeout may be received but never answered.
    assert!(counted.abs_diff(served) <= 5 + counted / 1000, "agents counted {counted}, the app served {served}");
    // 100 users for 180 s, 800 for 300 s, 100 for 420 s at one request per second, 20 times faster: 15,000.
    assert!(counted > 9_000 && counted < 16_500, "{counted} requests");
    assert_eq!(agents["losses"].as_array().unwrap().len(), 0);
    for name in ["local-0", "local-1"] {
        for file in ["locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv"] {
            let path = cell.join("agents").join(name).join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(text.starts_with("Type,Name,") || text.starts_with("Timestamp,") || text.starts_with("Method,"));
        }
        let stats = std::fs::read_to_string(cell.join("agents").join(name).join("locust_stats.csv")).unwrap();
        assert!(stats.contains("GET,/cart,"), "{stats}");
    }
    let summary = json(&cell.join("summary.json"));
    assert_eq!(summary["backend"], "emulated");
    assert_eq!(summary["duration_s"], 900);

    // Users follow the shape in emulated seconds.
    let users = column(&cell, "users");
    assert_eq!(users.len(), 900);
    assert!((users[100] - 100.0).abs() <= 2.0 && (users[300] - 800.0).abs() <= 8.0, "{} {}", users[100], users[300]);
    // Replicas rise after the surge starts (at 180 s) ...
    let desired = column(&cell, "frontend_desired");
    let before = desired[175];
    let peak = desired[180..480].iter().cloned().fold(0.0, f64::max);
    assert!(peak > before, "frontend desired {before} before the surge, at most {peak} during it");
    let rise = (180..480).find(|&t| desired[t] > before).unwrap();
    // ... within a few HPA syncs, and ready pods follow after their start-up delay.
    assert!(rise <= 180 + 4 * 15, "first rise at {rise}");
    let ready = column(&cell, "frontend_ready");
    assert!(ready[180..480].iter().cloned().fold(0.0, f64::max) > before);
    // After the surge (480 s) the legacy HPA keeps the highest recommendation of the last 300 s: the replicas
    // fall once that window has passed the surge (plus a sync and a metrics window), and not before.
    let fall = (480..900).find(|&t| desired[t] < peak).expect("replicas fall after the surge");
    assert!(fall >= 480 + 240, "fell at {fall}, before the stabilization window could pass");
    assert!(fall <= 480 + 300 + 2 * 15 + 15, "fell only at {fall}");
    assert!(desired[899] < peak);

    // The simulator twin: the same cell on the other backend.
    let twin = cell_dir(&run_dir, "sim");
    assert_eq!(json(&twin.join("summary.json"))["backend"], "sim");
    let twin_desired = column(&twin, "frontend_desired");
    assert!(twin_desired[180..480].iter().cloned().fold(0.0, f64::max) > twin_desired[175]);
}

/// The emulated cell's folder once it has a run.log.
fn wait_for_cell_log(run_dir: &std::path::Path) -> std::path::PathBuf {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(entries) = std::fs::read_dir(run_dir) {
            for entry in entries.flatten() {
                let log = entry.path().join("run.log");
                if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"backend\":\"emulated\"")) {
                    return entry.path();
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no emulated cell started in {}", run_dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

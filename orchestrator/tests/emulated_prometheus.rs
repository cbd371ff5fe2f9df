//! The queries a Kubernetes backend would send Prometheus work against the emulator: `orch emulate` serves Online
//! Boutique, `load-agent run` loads it, a real Prometheus (Debian's `prometheus`) scrapes the control port every
//! second, and request rates, latency quantiles, CPU utilization and ready replicas come back from PromQL.

mod emulated_support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emulated_support::{ORCH, http, load_agent_bin, wait_child};

/// A child process killed when dropped, so a failed assertion leaves nothing running.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const SCENARIO: &str = "\
name: mixed
users:
  - name: shopper
    wait: {constant_throughput: 5}
    on_start: [{method: GET, path: /}]
    tasks:
      - {name: cart, weight: 3, requests: [{method: GET, path: /cart}]}
      - {name: product, weight: 1, requests: [{method: GET, path: /product/OLJCESPC7Z, name: '/product/[id]'}]}
shape:
  stages: [{end: 9, users: 20, spawn_rate: 20}]
";

/// One PromQL instant query: the result vector.
fn query(prometheus: &str, promql: &str) -> Vec<serde_json::Value> {
    let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
    let (status, body) = http(prometheus, "GET", &format!("/api/v1/query?query={encoded}"), None, "");
    assert_eq!(status, 200, "{promql}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "success", "{promql}: {body}");
    answer["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_queries_of_a_cluster_backend_work_against_the_emulator() {
    let scratch = tempfile::tempdir().unwrap();
    let app_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/apps/online-boutique.yaml");
    let mut emulate = Command::new(ORCH)
        .arg("emulate")
        .arg(&app_file)
        .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--time-scale", "10", "--replicas", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(emulate.stdout.take().unwrap()).lines();
    let app_url = lines.next().unwrap().unwrap().strip_prefix("app listening on ").unwrap().to_string();
    let control_url = lines.next().unwrap().unwrap().strip_prefix("control listening on ").unwrap().to_string();
    let mut emulate = Process(emulate);
    let control = control_url.trim_start_matches("http://").to_string();

    let port = free_port();
    let prometheus_address = format!("127.0.0.1:{port}");
    let config = scratch.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: emulated\n    \
             static_configs: [{{targets: ['{control}']}}]\n"
        ),
    )
    .unwrap();
    let _prometheus = Process(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={prometheus_address}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is installed (scripts/test.sh installs it)"),
    );

    let scenario = scratch.path().join("mixed.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let mut load = Command::new(load_agent_bin())
        .arg("run")
        .arg(&scenario)
        .args(["--host", &app_url, "--only-summary", "--exit-code-on-error", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_child(&mut load, Duration::from_secs(60)).expect("the load ends");
    assert!(status.success(), "load-agent run failed");

    // Prometheus has scraped during the load; ask it what a cluster backend asks.
    let rate = "sum(rate(istio_requests_total{reporter=\"destination\",destination_workload=\"frontend\",\
                response_code=\"200\"}[6s]))";
    let deadline = Instant::now() + Duration::from_secs(30);
    let frontend_rps = loop {
        let result = query(&prometheus_address, &format!("max_over_time(({rate})[12s:1s])"));
        if let Some(sample) = result.first()
            && value(sample) > 0.0
        {
            break value(sample);
        }
        assert!(Instant::now() < deadline, "no request rate from Prometheus: {result:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    // 20 users at 5 requests/s.
    assert!(frontend_rps > 30.0 && frontend_rps < 150.0, "{frontend_rps} requests/s");

    let p95 = query(
        &prometheus_address,
        "max_over_time((histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket\
         {destination_workload=\"frontend\"}[6s]))))[12s:1s])",
    );
    let p95 = value(&p95[0]);
    assert!(p95 > 1.0 && p95 < 5000.0, "p95 {p95} ms");

    let callers = query(
        &prometheus_address,
        "sum by (source_workload) (istio_requests_total{destination_workload=\"cartservice\"})",
    );
    let sources: Vec<&str> = callers.iter().map(|s| s["metric"]["source_workload"].as_str().unwrap()).collect();
    assert_eq!(sources, ["frontend"]);

    let utilization = query(
        &prometheus_address,
        "max_over_time((sum(rate(container_cpu_usage_seconds_total{namespace=\"online-boutique\",pod=~\"frontend-.*\"}[6s])) \
         / sum(kube_pod_container_resource_requests{namespace=\"online-boutique\",pod=~\"frontend-.*\",resource=\"cpu\"}))[12s:1s])",
    );
    let utilization = value(&utilization[0]);
    // About 90 frontend requests/s of ~1 ms CPU on 2 pods requesting 100m each: around 45 %.
    assert!(utilization > 0.1 && utilization < 2.0, "frontend CPU over requests {utilization}");

    let ready = query(&prometheus_address, "kube_deployment_status_replicas_ready{deployment=\"frontend\"}");
    assert_eq!(value(&ready[0]), 2.0);
    let pods = query(&prometheus_address, "count(kube_pod_status_ready{condition=\"true\"} == 1)");
    assert_eq!(value(&pods[0]), 2.0 * 10.0 + 1.0, "2 of each, redis-cart capped at 1");

    // `orch emulate` stops cleanly on SIGTERM.
    unsafe { libc::kill(emulate.0.id() as i32, libc::SIGTERM) };
    let status = wait_child(&mut emulate.0, Duration::from_secs(10)).expect("orch emulate stops");
    assert!(status.success(), "{status:?}");
}

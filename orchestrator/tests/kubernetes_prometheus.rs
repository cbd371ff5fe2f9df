//! The kubernetes backend's Prometheus queries against a real Prometheus (Debian's `prometheus`, started here on
//! a free loopback port, scraping every second) that scrapes the emulated app's /metrics while load runs: the
//! Istio-style templates of the app model give request rates, errors, latency, the service graph and cAdvisor
//! CPU, and they agree with what the emulator itself counted over the same time.

mod kube_fake;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube_fake::{FakeCluster, Options};
use orchestrator::app::AppModel;
use orchestrator::app::kubernetes::ClusterApp;
use orchestrator::backends::kubernetes::prometheus::{Prometheus, Telemetry};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const APP: &str = "\
name: shop
namespace: shop
slo: {route: cart, percentile: 95, threshold_ms: 100}
kubernetes:
  telemetry: {mesh: istio, resources: prometheus, window: 5s}
services:
  - name: frontend
    cpu: {request_m: 100, limit_m: 400, per_request_ms: 2.0}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 20}
    replicas: {min: 1, max: 4, initial: 2}
    startup_s: 1
  - name: cartservice
    cpu: {request_m: 100, limit_m: 400, per_request_ms: 1.0}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 20}
    replicas: {min: 1, max: 4, initial: 2}
    startup_s: 1
routes:
  - name: cart
    match: {method: GET, path: /cart}
    call: {service: frontend, calls: [{service: cartservice}]}
";

/// What the emulator counted: calls per service, CPU seconds served.
fn counts(fake: &FakeCluster) -> (Vec<u64>, Vec<f64>) {
    let cluster = &fake.emulator().cluster;
    let calls = cluster.services.iter().map(|s| s.calls.load(Ordering::Relaxed)).collect();
    let control = cluster.control();
    let cpu = control.deployments.iter().map(|d| d.pods.iter().map(|p| p.cpu_seconds).sum()).collect();
    (calls, cpu)
}

fn within(value: f64, expected: f64, tolerance: f64) -> bool {
    (value - expected).abs() <= tolerance * expected
}

#[test]
fn istio_templates_through_a_real_prometheus_agree_with_the_emulators_counts() {
    let app = AppModel::parse(APP, Path::new("shop.yaml")).unwrap();
    let fake = FakeCluster::start(&app, Options::default());
    let scratch = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let target = fake.metrics_url().trim_start_matches("http://").trim_end_matches("/metrics").to_string();
    let config = scratch.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: shop\n    \
             static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .unwrap();
    let _prometheus = Process(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is installed (scripts/test.sh installs it)"),
    );

    // 40 requests/s to GET /cart for at most 25 s, from a task on the fake's runtime.
    let sent = Arc::new(AtomicU64::new(0));
    let url = format!("{}/cart", fake.app_url());
    let load = {
        let sent = Arc::clone(&sent);
        fake.runtime.spawn(async move {
            let client = reqwest::Client::new();
            let mut interval = tokio::time::interval(Duration::from_millis(25));
            for _ in 0..1000 {
                interval.tick().await;
                let client = client.clone();
                let url = url.clone();
                let sent = Arc::clone(&sent);
                tokio::spawn(async move {
                    if client.get(&url).send().await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        })
    };

    let telemetry = Telemetry::new(Prometheus::new(&format!("http://{address}")).unwrap(), ClusterApp::resolve(&app));
    // Wait for Prometheus to have a full rate window of the load.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let figures = fake.runtime.block_on(telemetry.mesh());
        if let Ok(figures) = &figures
            && figures.arrival_rps[0] > 0.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no rates from Prometheus: {figures:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(6));
    // The emulator's own counts over ten seconds of steady load, and what Prometheus says at the end of them.
    let (calls_before, cpu_before) = counts(&fake);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let (calls_after, cpu_after) = counts(&fake);
    let seconds = started.elapsed().as_secs_f64();
    let figures = fake.runtime.block_on(telemetry.mesh()).unwrap();
    let (pod_cpu, pod_memory) = fake.runtime.block_on(telemetry.pod_resources()).unwrap();
    load.abort();
    assert!(sent.load(Ordering::Relaxed) > 400, "the load ran");

    for service in 0..2 {
        let counted = (calls_after[service] - calls_before[service]) as f64 / seconds;
        assert!(within(counted, 40.0, 0.25), "service {service}: the emulator counted {counted} calls/s");
        let queried = figures.arrival_rps[service];
        assert!(within(queried, counted, 0.2), "service {service}: Prometheus {queried} calls/s, emulator {counted}");
        assert_eq!(figures.error_rps[service], 0.0);
        let p95 = figures.p95_ms[service].expect("a p95");
        assert!(p95 > 0.5 && p95 < 500.0, "service {service}: p95 {p95} ms");

        let cores_counted = (cpu_after[service] - cpu_before[service]) / seconds;
        let prefix = ["frontend-", "cartservice-"][service];
        let cores_queried: f64 = pod_cpu.iter().filter(|(pod, _)| pod.starts_with(prefix)).map(|(_, c)| c).sum();
        assert!(
            within(cores_queried, cores_counted, 0.3),
            "service {service}: cAdvisor {cores_queried} cores, emulator {cores_counted}"
        );
        assert!(pod_memory.keys().filter(|pod| pod.starts_with(prefix)).count() == 2, "{pod_memory:?}");
    }
    // 2 ms and 1 ms of CPU per call at 40 calls/s.
    assert!(within(pod_cpu.iter().filter(|(p, _)| p.starts_with("frontend-")).map(|(_, c)| c).sum(), 0.08, 0.35));
    // The service graph: frontend calls cartservice at the request rate; the agents' calls from outside the app
    // are not an edge of it.
    assert_eq!(figures.edges.len(), 1, "{:?}", figures.edges);
    let (from, to, rate) = figures.edges[0];
    assert_eq!((from, to), (0, 1));
    assert!(within(rate, figures.arrival_rps[1], 0.05), "edge {rate} vs cartservice {}", figures.arrival_rps[1]);
}

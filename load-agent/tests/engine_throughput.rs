//! Throughput of the engine on one core, with no wait time: an informal measurement, ignored by default.
//!
//! ```sh
//! # a fast target, e.g. nginx serving a small file, pinned to the other core:
//! taskset -c 1 nginx -c /path/to/nginx.conf
//! LOAD_AGENT_TARGET=http://127.0.0.1:8088 taskset -c 0 \
//!   cargo test --release -p load-agent --test engine_throughput -- --ignored --nocapture
//! ```
//!
//! Without LOAD_AGENT_TARGET it measures against an in-process hyper server on the same runtime (so the one core is
//! shared with the server). It prints requests/s and the process CPU time per request.

use std::path::Path;
use std::time::{Duration, Instant};

use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::scenario::Scenario;

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let to = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    to(usage.ru_utime) + to(usage.ru_stime)
}

async fn in_process_target() -> String {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from_static(
                        b"hello world, this is a small page",
                    ))))
                });
                let _ = http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    url
}

#[test]
#[ignore = "a measurement, not a check: run it on purpose (see the file's comment)"]
fn requests_per_second_on_one_core_without_waits() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let url = match std::env::var("LOAD_AGENT_TARGET") {
            Ok(url) => url,
            Err(_) => in_process_target().await,
        };
        let users: u32 = std::env::var("LOAD_AGENT_USERS").ok().and_then(|u| u.parse().ok()).unwrap_or(128);
        let seconds = 5.0;
        let scenario = Scenario::parse(
            &format!(
                "users: [{{name: u, tasks: [{{name: a, requests: [{{method: GET, path: /}}]}}]}}]\n\
                 shape: {{stages: [{{end: {seconds}, users: {users}, spawn_rate: 100000}}]}}\n"
            ),
            Path::new("throughput.yaml"),
        )
        .unwrap();
        let (cpu, wall) = (cpu_time(), Instant::now());
        let handle = RunHandle::start(RunPlan {
            scenario,
            target: Target::parse(&url).unwrap(),
            seed: 1,
            agent_index: 0,
            agent_count: 1,
            start_at: None,
            deadline: None,
            max_users: users,
        });
        handle.wait().await;
        let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
        let collector = handle.collector();
        let stats = collector.lock().unwrap();
        let total = stats.total();
        println!(
            "{url}: {users} users, {} requests ({} failed) in {:.2} s: {:.0} requests/s, {:.1} µs CPU per request \
             ({:.0} % of one core), p50 {:.2} ms, p99 {:.2} ms; health {:?}",
            total.requests,
            total.failures,
            wall.as_secs_f64(),
            total.requests as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / total.requests.max(1) as f64,
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            total.percentile_ms(0.5),
            total.percentile_ms(0.99),
            handle.status().health,
        );
        assert_eq!(total.failures, 0);
    });
}

//! orch's cost per agent poll: taking one agent's answer (a run status holding its last closed one-second window,
//! JSON with base64 V2-deflate HDR histograms), decoding the histograms and merging them into the cell's second and
//! run totals; then the same over a catch-up poll of many windows; then real polls over HTTP of a live local agent,
//! timed by this process's CPU clock (the client, JSON, decode and merge: everything orch spends on a poll).
//!
//! Run: `taskset -c 1 cargo bench -p orchestrator --bench agent_poll` (the HTTP part needs
//! `cargo build --release -p load-agent` first, or ORCH_LOAD_AGENT_BIN).

use std::time::{Duration, Instant};

use load_agent::client::AgentClient;
use load_agent::protocol::{RunStatus, StartRun, WindowList, WindowSnapshot};
use load_agent::scenario::Scenario;
use load_agent::stats::Collector;
use orchestrator::agents::local::{LocalAgent, find_binary};
use orchestrator::agents::merge::Merger;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` repeatedly for at least `budget` of this thread's CPU time; microseconds per run.
fn per_run_us(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID);
    let mut runs = 0u64;
    while cpu_time(libc::CLOCK_THREAD_CPUTIME_ID) - start < budget {
        f();
        runs += 1;
    }
    (cpu_time(libc::CLOCK_THREAD_CPUTIME_ID) - start).as_secs_f64() * 1e6 / runs as f64
}

/// A closed window of `requests` spread over `names`, latencies log-uniform between 2 ms and 2 s, 1 % failed.
fn window(index: u64, names: &[&str], requests: u64, rng: &mut ChaCha8Rng) -> WindowSnapshot {
    let mut collector = Collector::new(1_700_000_000 + index);
    for i in 0..requests {
        let latency_us = (2_000.0 * 1000f64.powf(rng.r#gen::<f64>())) as u64;
        let error = (i % 100 == 0).then_some("HTTPError 503");
        collector.record("GET", names[i as usize % names.len()], latency_us, 1200, error);
    }
    let closed = collector.close_window(400);
    WindowSnapshot {
        index,
        start_unix_s: closed.start_unix_s,
        users: closed.users,
        entries: closed.entries.iter().map(|e| e.to_snapshot()).collect(),
        total: closed.total.to_snapshot(),
    }
}

fn status_with(window: WindowSnapshot) -> Vec<u8> {
    let status = serde_json::json!({
        "run_id": "0123456789abcdef", "state": "running", "started_at_unix_ms": 1_700_000_000_000u64,
        "elapsed_s": 12.0, "users": 400, "target_users": 400, "requests": 4800, "failures": 48,
        "dropped_iterations": 0, "window": window, "windows_closed": window.index + 1,
        "health": {"cpu_pct": 20.0, "timer_lag_p99_ms": 1.0, "in_flight": 10, "suspect": false},
    });
    serde_json::to_vec(&status).unwrap()
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let budget = Duration::from_millis(1500);
    let cart = ["/cart"];
    let mix = ["/", "/product/[id]", "/setCurrency", "/cart", "/cart/checkout", "/logout"];
    println!("{:<64} {:>12} {:>10}", "what", "bytes", "µs each");
    for (what, names, requests) in [
        ("status poll, 1 window, GET /cart only, 400 requests", &cart[..], 400),
        ("status poll, 1 window, 6 request names, 1,000 requests", &mix[..], 1000),
        ("status poll, 1 window, 6 request names, 10,000 requests", &mix[..], 10_000),
    ] {
        let body = status_with(window(11, names, requests, &mut rng));
        let slo = vec![("GET".to_string(), "/cart".to_string())];
        let mut merger = Merger::new(slo, 60.0);
        let us = per_run_us(budget, || {
            let status: RunStatus = serde_json::from_slice(&body).unwrap();
            let merged = merger.merge(11, &[status.window.unwrap()]).unwrap();
            std::hint::black_box(merged);
        });
        println!("{what:<64} {:>12} {us:>10.1}", body.len());
    }
    // After a stall: one poll brings 60 windows of the mix (the per-window cost is what matters).
    let windows: Vec<WindowSnapshot> = (0..60).map(|i| window(i, &mix, 1000, &mut rng)).collect();
    let body = serde_json::to_vec(&WindowList { windows }).unwrap();
    let mut merger = Merger::new(vec![("GET".to_string(), "/cart".to_string())], 60.0);
    let us = per_run_us(budget, || {
        let list: WindowList = serde_json::from_slice(&body).unwrap();
        for window in list.windows {
            let index = window.index;
            std::hint::black_box(merger.merge(index, &[window]).unwrap());
        }
    });
    println!(
        "{:<64} {:>12} {:>10.1}",
        "catch-up poll, 60 windows of 1,000 requests, per window",
        body.len() / 60,
        us / 60.0
    );

    http_polls();
}

/// Polls a live local agent (its run sends GET /cart to a closed port: every request fails fast, but the windows
/// are as full as a real run's) and merges each answer, timing this whole process's CPU.
fn http_polls() {
    let Ok(bin) = find_binary(None) else {
        println!("HTTP polls: skipped (no load-agent binary; cargo build --release -p load-agent)");
        return;
    };
    let log = tempfile::NamedTempFile::new().unwrap();
    let agent = LocalAgent::spawn(&bin, log.path(), "http://127.0.0.1:9").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = AgentClient::new(&agent.url, None);
    let scenario = Scenario::parse(
        "name: b\nusers: [{name: u, wait: {constant_throughput: 10}, tasks: [{name: t, requests: \
         [{method: GET, path: /cart}]}]}]\nshape: {stages: [{end: 60, users: 40, spawn_rate: 1000}]}\n",
        std::path::Path::new("b.yaml"),
    )
    .unwrap();
    let start = StartRun {
        scenario,
        target: "http://127.0.0.1:9".into(),
        seed: 1,
        agent_index: 0,
        agent_count: 1,
        start_at_unix_ms: None,
        deadline_s: Some(30.0),
    };
    let run = runtime.block_on(client.start_run(&start)).unwrap().run_id;
    std::thread::sleep(Duration::from_secs(3));
    let mut merger = Merger::new(vec![("GET".to_string(), "/cart".to_string())], 60.0);
    let polls = 300;
    let cpu_start = cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID);
    let wall_start = Instant::now();
    let mut requests = 0;
    for _ in 0..polls {
        let status = runtime.block_on(client.status(&run)).unwrap();
        let window = status.window.unwrap();
        requests = window.total.requests;
        std::hint::black_box(merger.merge(window.index, &[window]).unwrap());
    }
    let cpu_us = (cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu_start).as_secs_f64() * 1e6 / polls as f64;
    let wall_ms = wall_start.elapsed().as_secs_f64() * 1000.0 / polls as f64;
    let _ = runtime.block_on(client.stop(&run));
    println!(
        "{:<64} {:>12} {:>10.1}",
        format!("HTTP poll of a live agent ({requests} requests a window), orch CPU"),
        "-",
        cpu_us
    );
    println!(
        "{:<64} {:>12} {:>10.1}",
        "HTTP poll of a live agent, wall time (agent side included)",
        "-",
        wall_ms * 1000.0
    );
    drop(agent);
}

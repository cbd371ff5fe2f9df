//! StartRun bodies, mutated from the repository's scenarios and hand-written edge cases by the fuzzer's bytes, are
//! sent to the agent's router in this process: each must be refused with a JSON 4xx error, or accepted and then
//! run (against a local HTTP sink, or a closed port for redis, with a deadline of 0.2 s), some stopped at once, and
//! be over by its deadline plus a grace. The same mutations run on stable as tests/fuzz_start_run.rs.
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use fuzzing::{Choices, FromBytes, bound_for_running, corpus, mutate};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const DEADLINE_S: f64 = 0.2;
/// Past its deadline, a run must be over within this (the agent's own bound is about 6 s).
const GRACE: Duration = Duration::from_secs(15);

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    sink: String,
    corpus: Vec<Value>,
}

/// An HTTP target on loopback that answers every connection's first request with 200 "ok" and closes it.
async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            });
        }
    });
    address
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let data_dir = std::env::temp_dir().join(format!("load-agent-fuzz-start-run-{}", std::process::id()));
        let mut config = load_agent::server::ServerConfig::new(&data_dir);
        config.max_users = 50;
        config.max_runs = 4;
        let app = load_agent::server::router(config).unwrap();
        let sink = runtime.block_on(sink());
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Harness { runtime, app, sink, corpus: corpus(&repository) }
    })
}

async fn call(app: &Router, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    let mut choices = FromBytes(data);
    let mut body = harness.corpus[choices.below(harness.corpus.len())].clone();
    let rounds = 1 + choices.below(4);
    mutate(&mut body, &mut choices, rounds);
    bound_for_running(&mut body, DEADLINE_S, &harness.sink, "redis://127.0.0.1:9");
    let stop_at_once = choices.below(3) == 0;
    harness.runtime.block_on(async {
        let app = &harness.app;
        let sent = Instant::now();
        let (status, answer) = call(app, "POST", "/v1/runs", Some(body.to_string())).await;
        match status {
            201 => {}
            400 | 403 | 413 => {
                assert!(answer["error"].is_string(), "{status} without a JSON error: {answer}");
                return;
            }
            _ => panic!("answer {status} {answer} to {body}"),
        }
        let run = answer["run_id"].as_str().unwrap().to_string();
        if stop_at_once {
            let (status, stopped) = call(app, "POST", &format!("/v1/runs/{run}/stop"), None).await;
            assert_eq!(status, 200, "{stopped}");
        }
        loop {
            let (_, status) = call(app, "GET", &format!("/v1/runs/{run}"), None).await;
            if ["finished", "stopped", "failed"].contains(&status["state"].as_str().unwrap_or_default()) {
                return;
            }
            let limit = Duration::from_secs_f64(DEADLINE_S) + GRACE;
            assert!(sent.elapsed() < limit, "run still {} after {:?}: {body}", status["state"], sent.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
});

//! The control API of the real `load-agent --listen` process, route by route, over real HTTP on loopback:
//! token, allow-list, limits, unknown ids, downloads that try to escape, metrics.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Agent, BIN, TOKEN, counting_server, start_body};
use serde_json::{Value, json};

/// Every route of protocol.rs, with a run id (`{id}`) to fill in.
const ROUTES: [(&str, &str); 11] = [
    ("GET", "/v1/info"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{id}"),
    ("GET", "/v1/runs/{id}/windows?since=0"),
    ("GET", "/v1/runs/{id}/stats"),
    ("PATCH", "/v1/runs/{id}"),
    ("POST", "/v1/runs/{id}/stop"),
    ("GET", "/v1/runs/{id}/files"),
    ("GET", "/v1/runs/{id}/files/status.json"),
    ("GET", "/metrics"),
];

fn api_error(text: &str) -> Value {
    let error: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "not an ApiError: {text}");
    error
}

#[test]
fn the_token_is_required_on_every_route_but_health() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (status, body) = agent.call("GET", "/v1/health", None, None);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let run = "0123456789abcdef";
    for (method, route) in ROUTES {
        let path = route.replace("{id}", run);
        let body = Some(json!({}));
        for token in [None, Some("wrong"), Some("test-token-123"), Some("test-token-12345"), Some("")] {
            let (status, text) = agent.call(method, &path, token, body.as_ref());
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(api_error(&text)["error"].as_str().unwrap().contains("Bearer"));
        }
        // With the token the route answers for real (an empty body is invalid, the run unknown).
        let (status, text) = agent.call(method, &path, Some(TOKEN), body.as_ref());
        let expected = match (method, route.contains("{id}")) {
            (_, true) => 404,
            ("POST", false) => 400,
            _ => 200,
        };
        assert_eq!(status, expected, "{method} {path} with the token: {text}");
    }
    // A scheme other than Bearer does not count.
    let (status, _) = agent.call_raw("GET", "/v1/info", None, "");
    assert_eq!(status, 401);
}

#[test]
fn the_token_can_come_from_the_environment() {
    let data = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(data.path().join("agent.log")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir", data.path().to_str().unwrap()])
        .env("LOAD_AGENT_TOKEN", "from-env-token")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let agent = Agent {
        address: format!("127.0.0.1:{}", line.trim().rsplit_once(':').unwrap().1),
        child,
        data_dir: data.path().to_path_buf(),
    };
    assert_eq!(agent.call("GET", "/v1/info", None, None).0, 401);
    assert_eq!(agent.call("GET", "/v1/info", Some(TOKEN), None).0, 401);
    assert_eq!(agent.call("GET", "/v1/info", Some("from-env-token"), None).0, 200);
}

#[test]
fn unknown_runs_and_routes_are_404_and_the_agent_lives_on() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    for id in [
        "0123456789abcdef",
        "ffffffffffffffff",
        "nope",
        "..%2F..%2Fetc",
        "0123456789ABCDEF",
        "%00",
        "a".repeat(300).as_str(),
    ] {
        for (method, route) in ROUTES.iter().filter(|(_, r)| r.contains("{id}")) {
            let (status, text) =
                agent.call(method, &route.replace("{id}", id), Some(TOKEN), Some(&json!({"users": 1})));
            assert_eq!(status, 404, "{method} {route} for {id:?}: {text}");
            api_error(&text);
        }
    }
    let (status, text) = agent.call("GET", "/v1/nothing/here", Some(TOKEN), None);
    assert_eq!(status, 404);
    api_error(&text);
    let (status, text) = agent.call("DELETE", "/v1/runs", Some(TOKEN), None);
    assert_eq!(status, 405);
    api_error(&text);
    assert_eq!(agent.call("GET", "/v1/health", None, None).0, 200, "the agent survived");
}

#[test]
fn targets_outside_the_allow_list_are_refused_with_403() {
    let (target, served) = counting_server();
    let authority = target.trim_start_matches("http://").to_string();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--allow-target", "127.0.0.1:1", "--allow-target", "10.1.2.3:80"]);
    let (status, text) = agent.call("POST", "/v1/runs", None, Some(&start_body(&target, 30.0, 1)));
    assert_eq!(status, 403, "{text}");
    let message = api_error(&text)["error"].as_str().unwrap().to_string();
    assert!(message.contains(&authority), "the error names the target: {message}");
    assert!(message.contains("--allow-target"), "{message}");
    // The same host on another port, or by another name, is another target.
    let other_name = target.replace("127.0.0.1", "localhost");
    assert_eq!(agent.call("POST", "/v1/runs", None, Some(&start_body(&other_name, 1.0, 1))).0, 403);
    // Listed targets pass.
    let (status, text) = agent.call("POST", "/v1/runs", None, Some(&start_body("http://127.0.0.1:1/shop", 0.1, 1)));
    assert_eq!(status, 201, "{text}");

    // With the target listed, it runs.
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--allow-target", &authority]);
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 0.5, 1)));
    assert_eq!(status, 201, "{created}");
    assert_eq!(agent.wait_over(created["run_id"].as_str().unwrap())["state"], "finished");
    assert!(served.load(Ordering::Relaxed) > 0);
}

#[test]
fn an_agent_beyond_loopback_without_an_allow_list_refuses_every_target() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start_on("0.0.0.0:0", data.path(), &["--token", TOKEN]);
    let (status, text) = agent.call("POST", "/v1/runs", Some(TOKEN), Some(&start_body(&target, 1.0, 1)));
    assert_eq!(status, 403, "{text}");
    let message = api_error(&text)["error"].as_str().unwrap().to_string();
    let authority = target.trim_start_matches("http://");
    assert!(message.contains(&format!("--allow-target {authority}")), "{message}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(served.load(Ordering::Relaxed), 0);
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--token", ""][..]] {
        let output = common::run_bin(
            &[&["--listen", "0.0.0.0:0", "--data-dir", data.path().to_str().unwrap()][..], extra].concat(),
            Duration::from_secs(10),
        );
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--token") && stderr.contains("0.0.0.0"), "{stderr}");
        assert!(output.stdout.is_empty(), "it must not listen");
    }
    let output =
        common::run_bin(&["--listen", "127.0.0.1:0", "--allow-target", "http://x:80"], Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(2), "a malformed --allow-target");
    let output = common::run_bin(&[], Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(2), "neither --listen nor run");
}

#[test]
fn limits_give_413_409_and_400() {
    let (target, _served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--max-runs", "1", "--max-users", "10", "--max-body-bytes", "3000"]);
    let (_, info) = agent.json("GET", "/v1/info", None);
    assert_eq!(info["limits"], json!({"max_users": 10, "max_concurrent_runs": 1, "max_body_bytes": 3000}));

    let mut huge = start_body(&target, 1.0, 1);
    huge["scenario"]["description"] = json!("x".repeat(4000));
    let (status, text) = agent.call("POST", "/v1/runs", None, Some(&huge));
    assert_eq!(status, 413, "{text}");
    assert!(api_error(&text)["error"].as_str().unwrap().contains("3000"));

    let (status, text) = agent.call("POST", "/v1/runs", None, Some(&start_body(&target, 30.0, 11)));
    assert_eq!(status, 400);
    assert_eq!(api_error(&text)["field"], "scenario.shape.stages[0].users");
    // 11 users over 2 agents: this one's share is 6.
    let mut shared = start_body(&target, 30.0, 11);
    shared["agent_count"] = json!(2);
    let (status, created) = agent.json("POST", "/v1/runs", Some(&shared));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap();
    let (status, text) = agent.call("POST", "/v1/runs", None, Some(&start_body(&target, 30.0, 1)));
    assert_eq!(status, 409, "{text}");
    assert!(api_error(&text)["error"].as_str().unwrap().contains("--max-runs 1"));
    let (_, info) = agent.json("GET", "/v1/info", None);
    assert_eq!(info["active_runs"], 1);

    // Changes obey the same cap; a good one applies.
    let (status, text) = agent.call("PATCH", &format!("/v1/runs/{run}"), None, Some(&json!({"users": 21})));
    assert_eq!((status, api_error(&text)["field"].clone()), (400, json!("users")));
    let (status, changed) =
        agent.json("PATCH", &format!("/v1/runs/{run}"), Some(&json!({"users": 4, "spawn_rate": 50})));
    assert_eq!(status, 200, "{changed}");
    assert!(common::wait_until(Duration::from_secs(10), || {
        agent.json("GET", &format!("/v1/runs/{run}"), None).1["users"] == 2
    }));
    let (status, _) = agent.json("POST", &format!("/v1/runs/{run}/stop"), None);
    assert_eq!(status, 200);
    let (status, again) = agent.json("POST", &format!("/v1/runs/{run}/stop"), None);
    assert_eq!(status, 200, "stop is idempotent: {again}");
    assert_eq!(agent.wait_over(run)["state"], "stopped");
    let (status, _) = agent.json("PATCH", &format!("/v1/runs/{run}"), Some(&json!({"users": 1})));
    assert_eq!(status, 409, "a run over cannot change");
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 0.3, 1)));
    assert_eq!(status, 201, "the slot is free again: {created}");
}

#[test]
fn downloads_cannot_leave_the_run_folder() {
    let (target, _served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("secret.txt"), "top secret").unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (_, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 0.3, 1)));
    let run = created["run_id"].as_str().unwrap().to_string();
    agent.wait_over(&run);
    let (status, request) = agent.call("GET", &format!("/v1/runs/{run}/files/request.json"), Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(request.contains(&target));
    let attempts = [
        "../../secret.txt",
        "..%2F..%2Fsecret.txt",
        "%2e%2e%2f%2e%2e%2fsecret.txt",
        "..%5C..%5Csecret.txt",
        "%2Fetc%2Fpasswd",
        "..",
        "%2e%2e",
        ".",
        "status.json%00",
        "status.json%00.csv",
        ".hidden",
        "..%2Frequest.json",
        "runs%2F..%2F..%2Fsecret.txt",
        "missing.csv",
    ];
    for attempt in attempts {
        let (status, text) = agent.call("GET", &format!("/v1/runs/{run}/files/{attempt}"), Some(TOKEN), None);
        assert!(!text.contains("top secret"), "{attempt} leaked the file");
        // A literal `../..` is resolved by the router before it reaches the run (another route): never 200.
        assert!(status == 404 || (attempt.starts_with("../") && status == 405), "{attempt}: {status} {text}");
    }
    for path in ["/v1/runs/../../secret.txt", "/v1/runs/..%2F..%2Fsecret.txt/files", "/secret.txt"] {
        let (status, text) = agent.call("GET", path, Some(TOKEN), None);
        assert!(!text.contains("top secret"), "{path} leaked the file");
        assert_eq!(status, 404, "{path}: {text}");
    }
}

#[test]
fn metrics_use_locust_exporter_names() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (status, idle) = agent.call("GET", "/metrics", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(idle.contains("locust_running 0\n") && idle.contains("locust_users 0\n"), "{idle}");
    let mut body = start_body(&target, 1.5, 2);
    body["scenario"]["users"][0]["tasks"] = json!([
        {"name": "ok", "weight": 3, "requests": [{"method": "GET", "path": "/x", "name": "/x \"quoted\""}]},
        {"name": "bad", "requests": [{"method": "GET", "path": "/fail"}]}
    ]);
    let (status, created) = agent.json("POST", "/v1/runs", Some(&body));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || {
        agent.call("GET", "/metrics", Some(TOKEN), None).1.contains("locust_running 1\n")
    }));
    let status = agent.wait_over(run);
    let (requests, failures) = (status["requests"].as_u64().unwrap(), status["failures"].as_u64().unwrap());
    assert_eq!(requests, served.load(Ordering::Relaxed));
    assert!(failures > 0 && failures < requests, "{status}");
    let (_, text) = agent.call("GET", "/metrics", Some(TOKEN), None);
    for line in [
        "locust_running 0".to_string(),
        "locust_users 0".to_string(),
        format!("locust_requests_num_requests{{method=\"\",name=\"Aggregated\"}} {requests}"),
        format!("locust_requests_num_failures{{method=\"\",name=\"Aggregated\"}} {failures}"),
        format!(
            "locust_errors{{method=\"GET\",name=\"/fail\",error=\"HTTPError 500 Internal Server Error\"}} {failures}"
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    for name in [
        "locust_requests_current_rps",
        "locust_requests_current_fail_per_sec",
        "locust_requests_avg_response_time",
        "locust_requests_min_response_time",
        "locust_requests_max_response_time",
        "locust_requests_median_response_time",
        "locust_requests_current_response_time_percentile_50",
        "locust_requests_current_response_time_percentile_95",
        "locust_requests_avg_content_length",
    ] {
        for labels in [
            "method=\"GET\",name=\"/x \\\"quoted\\\"\"",
            "method=\"GET\",name=\"/fail\"",
            "method=\"\",name=\"Aggregated\"",
        ] {
            assert!(text.contains(&format!("\n{name}{{{labels}}} ")), "{name}{{{labels}}} missing:\n{text}");
        }
    }
    assert!(text.contains("locust_requests_avg_content_length{method=\"GET\",name=\"/fail\"} 4\n"), "{text}");
    assert_eq!(agent.call("GET", "/metrics", None, None).0, 401);
}

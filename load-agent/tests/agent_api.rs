//! The control API of the real `load-agent --listen` process, driven over real HTTP on loopback.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Agent, BIN, TOKEN, counting_server};
use serde_json::{Value, json};
use std::process::Command;

fn start_body(target: &str, end_s: f64, users: u32) -> Value {
    json!({
        "target": target,
        "seed": 3,
        "scenario": {
            "users": [{"name": "u", "wait": {"constant": 0.05}, "tasks": [{"name": "t", "requests": [{"method": "GET", "path": "/x"}]}]}],
            "shape": {"stages": [{"end": end_s, "users": users, "spawn_rate": 100}]}
        }
    })
}

#[test]
fn a_run_started_over_http_completes_alone_and_its_files_survive_a_restart() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);

    // Token: health is open, the rest needs the exact token.
    assert_eq!(agent.call("GET", "/v1/health", None, None).0, 200);
    assert_eq!(agent.call("GET", "/v1/info", None, None).0, 401);
    assert_eq!(agent.call("GET", "/v1/info", Some("test-token-123"), None).0, 401);
    let (status, info) = agent.json("GET", "/v1/info", None);
    assert_eq!((status, info["protocol_version"].as_u64()), (200, Some(1)));

    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 1.5, 4)));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    // The controller goes away: no call until well after the run's end.
    std::thread::sleep(Duration::from_millis(2500));
    let status = agent.wait_over(&run);
    assert_eq!(status["state"], "finished");
    let requests = status["requests"].as_u64().unwrap();
    assert!(requests > 20);
    assert_eq!(requests, served.load(Ordering::Relaxed), "agent and target disagree");

    let (status_code, metrics) = agent.call("GET", "/metrics", Some(TOKEN), None);
    assert_eq!(status_code, 200);
    assert!(
        metrics.contains(&format!("locust_requests_num_requests{{method=\"\",name=\"Aggregated\"}} {requests}\n")),
        "{metrics}"
    );
    assert_eq!(agent.call("GET", "/metrics", None, None).0, 401);

    let (_, windows) = agent.json("GET", &format!("/v1/runs/{run}/windows?since=0"), None);
    let windows = windows["windows"].as_array().unwrap();
    assert_eq!(windows.len() as u64, status["windows_closed"].as_u64().unwrap());
    let summed: u64 = windows.iter().map(|w| w["total"]["requests"].as_u64().unwrap()).sum();
    assert_eq!(summed, requests, "per-second windows do not add up to the total");

    let (_, files) = agent.json("GET", &format!("/v1/runs/{run}/files"), None);
    let names: Vec<&str> = files["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for expected in [
        "locust_failures.csv",
        "locust_stats.csv",
        "locust_stats_history.csv",
        "request.json",
        "stats.json",
        "status.json",
        "windows.jsonl",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let (status, csv) = agent.call("GET", &format!("/v1/runs/{run}/files/locust_stats.csv"), Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(csv.starts_with("Type,Name,Request Count,Failure Count,Median Response Time,"));
    for escape in [
        "..%2Fstatus.json",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..",
        ".hidden",
        "%2Fetc%2Fpasswd",
        "a%5Cb",
        "status.json%00",
    ] {
        let (code, _) = agent.call("GET", &format!("/v1/runs/{run}/files/{escape}"), Some(TOKEN), None);
        assert_eq!(code, 404, "download of {escape:?} answered {code}");
    }
    assert_eq!(agent.json("GET", "/v1/runs/0123456789abcdef", None).0, 404);
    assert_eq!(agent.json("GET", "/v1/runs/..%2F..", None).0, 404);

    // A run still going when the agent dies is reported failed after a restart; finished ones keep their files.
    let (_, long) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 60.0, 2)));
    let long = long["run_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    agent.kill();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (_, list) = agent.json("GET", "/v1/runs", None);
    assert_eq!(list["runs"].as_array().unwrap().len(), 2);
    let (_, old) = agent.json("GET", &format!("/v1/runs/{run}"), None);
    assert_eq!((old["state"].as_str(), old["requests"].as_u64()), (Some("finished"), Some(requests)));
    let (_, interrupted) = agent.json("GET", &format!("/v1/runs/{long}"), None);
    assert_eq!(interrupted["state"], "failed");
    assert_eq!(interrupted["error"], "agent restarted during the run");
    let (status, history) =
        agent.call("GET", &format!("/v1/runs/{run}/files/locust_stats_history.csv"), Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(history.starts_with("Timestamp,User Count,Type,Name,"));
    let (status, stats) = agent.json("GET", &format!("/v1/runs/{run}/stats"), None);
    assert_eq!((status, stats["total"]["requests"].as_u64()), (200, Some(requests)));
}

#[test]
fn invalid_requests_get_400_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--max-users", "100", "--max-body-bytes", "4000"]);
    let good = start_body("http://127.0.0.1:9", 1.0, 1);
    // Sets (or adds) the field at a JSON pointer.
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.to_string(), value);
        body
    };
    let cases = [
        (with("/seed", json!("one")), "seed"),
        (with("/scenario/users/0/tasks/0/weight", json!(0)), "scenario.users[0].tasks[0].weight"),
        (with("/scenario/users/0/wait", json!({"poisson": 1})), "scenario.users[0].wait"),
        (with("/scenario/users/0/wait", json!({"constant": -1})), "scenario.users[0].wait.constant"),
        (with("/scenario/shape/stages/0/end", json!(0)), "scenario.shape.stages[0].end"),
        (with("/scenario/shape/stages/0/users", json!(101)), "scenario.shape"),
        (
            with("/scenario/users/0/tasks/0/requests/0/path", json!("/p/{{id}}")),
            "scenario.users[0].tasks[0].requests[0].path",
        ),
        (with("/target", json!("ftp://x")), "target"),
        (with("/agent_index", json!(2)), "agent_index"),
        (with("/deadline_s", json!(-1)), "deadline_s"),
    ];
    for (body, field) in cases {
        let (status, error) = agent.json("POST", "/v1/runs", Some(&body));
        assert_eq!((status, error["field"].as_str()), (400, Some(field)), "{error}");
    }
    let mut huge = good.clone();
    huge["scenario"]["description"] = json!("x".repeat(5000));
    assert_eq!(agent.json("POST", "/v1/runs", Some(&huge)).0, 413);
    let mut unknown = good.clone();
    unknown["bogus"] = json!(1);
    let (status, error) = agent.json("POST", "/v1/runs", Some(&unknown));
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("bogus"), "{error}");
}

#[test]
fn allow_list_and_run_limit_are_enforced() {
    let (target, _served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--allow-target", "127.0.0.1:1", "--max-runs", "1"]);
    let (status, error) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 30.0, 1)));
    assert_eq!(status, 403, "{error}");

    let data = tempfile::tempdir().unwrap();
    let authority = target.trim_start_matches("http://").to_string();
    let agent = Agent::start(data.path(), &["--allow-target", &authority, "--max-runs", "1"]);
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 30.0, 1)));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap();
    assert_eq!(agent.json("POST", "/v1/runs", Some(&start_body(&target, 30.0, 1))).0, 409);
    let (status, _) = agent.json("PATCH", &format!("/v1/runs/{run}"), Some(&json!({"users": 3})));
    assert_eq!(status, 200);
    assert_eq!(agent.json("POST", &format!("/v1/runs/{run}/stop"), None).0, 200);
    assert_eq!(agent.json("POST", &format!("/v1/runs/{run}/stop"), None).0, 200, "stop is idempotent");
    assert_eq!(agent.wait_over(run)["state"], "stopped");
    assert_eq!(agent.json("POST", "/v1/runs", Some(&start_body(&target, 0.5, 1))).0, 201, "the slot is free again");
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let output = Command::new(BIN).args(["--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--token"));
}

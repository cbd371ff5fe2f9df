//! Malformed scenarios and requests, table-driven: each one through the control API (400 naming the JSON path of
//! the field) and, for scenarios, the same YAML through `load-agent run` (exit 2 naming file and field).

mod common;

use std::time::Duration;

use common::{Agent, counting_server, run_bin};
use serde_json::{Value, json};

const USERS: &str = "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]";
const SHAPE: &str = "shape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}";

/// The cap both sides are started with (`--max-users`).
const MAX_USERS: &str = "100";

/// (case, scenario YAML, the field its error must name). `{USERS}` and `{SHAPE}` stand for valid parts.
const BAD_SCENARIOS: &[(&str, &str, &str)] = &[
    ("users not a list", "users: 3\n{SHAPE}", "users"),
    ("no user classes", "users: []\n{SHAPE}", "users"),
    ("unknown top-level field", "{USERS}\n{SHAPE}\nramp_up: 10", "ramp_up"),
    ("missing shape", "{USERS}", ""),
    (
        "user weight zero",
        "users: [{name: u, weight: 0, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].weight",
    ),
    (
        "negative user weight",
        "users: [{name: u, weight: -1, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].weight",
    ),
    (
        "task weight zero",
        "users: [{name: u, tasks: [{name: t, weight: 0, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].tasks[0].weight",
    ),
    (
        "task weight as text",
        "users: [{name: u, tasks: [{name: t, weight: heavy, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].tasks[0].weight",
    ),
    ("no tasks", "users: [{name: u, tasks: []}]\n{SHAPE}", "users[0].tasks"),
    ("no requests", "users: [{name: u, tasks: [{name: t, requests: []}]}]\n{SHAPE}", "users[0].tasks[0].requests"),
    (
        "unknown wait kind",
        "users: [{name: u, wait: {poisson: 1}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait",
    ),
    (
        "negative constant wait",
        "users: [{name: u, wait: {constant: -1}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait.constant",
    ),
    (
        "wait of the wrong type",
        "users: [{name: u, wait: {constant: soon}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait.constant",
    ),
    (
        "between reversed",
        "users: [{name: u, wait: {between: [5, 1]}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait.between",
    ),
    (
        "between below zero",
        "users: [{name: u, wait: {between: [-1, 2]}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait.between[0]",
    ),
    (
        "zero pacing",
        "users: [{name: u, wait: {constant_pacing: 0}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait.constant_pacing",
    ),
    (
        "zero throughput",
        "users: [{name: u, wait: {constant_throughput: 0}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].wait.constant_throughput",
    ),
    (
        "unknown template variable",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: \"/p/{{id}}\"}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "unknown variable in a form field",
        "variables: {id: {values: [a]}}\nusers: [{name: u, tasks: [{name: t, requests: [{method: POST, path: /c, form: {q: \"{{nope}}\"}}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].form.q",
    ),
    (
        "unknown variable in on_start",
        "users: [{name: u, on_start: [{method: GET, path: \"/{{who}}\"}], tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n{SHAPE}",
        "users[0].on_start[0].path",
    ),
    (
        "unterminated template",
        "variables: {id: {values: [a]}}\nusers: [{name: u, tasks: [{name: t, requests: [{method: GET, path: \"/p/{{id\"}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "unknown HTTP method",
        "users: [{name: u, tasks: [{name: t, requests: [{method: FETCH, path: /}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].method",
    ),
    (
        "path without a slash",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: cart}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "method without a path",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "unknown request field",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /, bodyy: x}]}]}]\n{SHAPE}",
        "users[0].tasks[0].requests[0].bodyy",
    ),
    ("empty variable values", "variables: {id: {values: []}}\n{USERS}\n{SHAPE}", "variables.id"),
    ("reversed variable range", "variables: {n: {range: [10, 1]}}\n{USERS}\n{SHAPE}", "variables.n"),
    ("zero stage end", "{USERS}\nshape: {stages: [{end: 0, users: 1, spawn_rate: 1}]}", "shape.stages[0].end"),
    ("negative stage end", "{USERS}\nshape: {stages: [{end: -5, users: 1, spawn_rate: 1}]}", "shape.stages[0].end"),
    (
        "stage ends out of order",
        "{USERS}\nshape: {stages: [{end: 5, users: 1, spawn_rate: 1}, {end: 3, users: 2, spawn_rate: 1}]}",
        "shape.stages[1].end",
    ),
    ("zero spawn rate", "{USERS}\nshape: {stages: [{end: 5, users: 1, spawn_rate: 0}]}", "shape.stages[0].spawn_rate"),
    ("negative users", "{USERS}\nshape: {stages: [{end: 5, users: -5, spawn_rate: 1}]}", "shape.stages[0].users"),
    ("users over the cap", "{USERS}\nshape: {stages: [{end: 5, users: 101, spawn_rate: 1}]}", "shape.stages[0].users"),
    ("no stages", "{USERS}\nshape: {stages: []}", "shape.stages"),
    ("unknown shape", "{USERS}\nshape: {waves: []}", "shape"),
    ("negative ramp duration", "{USERS}\nshape: {ramps: [{users: 3, over: -1}]}", "shape.ramps[0].over"),
    (
        "zero arrival-rate stage",
        "{USERS}\nshape: {arrival_rate: {stages: [{duration: 0, target: 5}], preallocated_users: 1, max_users: 2}}",
        "shape.arrival_rate.stages[0].duration",
    ),
    (
        "max users below preallocated",
        "{USERS}\nshape: {arrival_rate: {stages: [{duration: 5, target: 5}], preallocated_users: 3, max_users: 2}}",
        "shape.arrival_rate.max_users",
    ),
    ("zero request timeout", "request_timeout_s: 0\n{USERS}\n{SHAPE}", "request_timeout_s"),
    ("negative request timeout", "request_timeout_s: -2\n{USERS}\n{SHAPE}", "request_timeout_s"),
];

fn scenario_text(template: &str) -> String {
    template.replace("{USERS}", USERS).replace("{SHAPE}", SHAPE)
}

fn start_body(scenario: Value) -> Value {
    json!({"target": "http://127.0.0.1:9", "seed": 1, "scenario": scenario})
}

/// Starts the table's agent and checks that a valid scenario of the same form is accepted (so the cases fail for
/// their own reason).
fn agent(data: &std::path::Path) -> Agent {
    let agent = Agent::start(data, &["--max-users", MAX_USERS]);
    let valid: Value = serde_yaml::from_str(&format!("{USERS}\n{SHAPE}")).unwrap();
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(valid)));
    assert_eq!(status, 201, "the valid scenario was refused: {created}");
    agent
}

#[test]
fn malformed_scenarios_are_400_naming_the_field_through_the_api() {
    assert!(BAD_SCENARIOS.len() >= 20);
    let data = tempfile::tempdir().unwrap();
    let agent = agent(data.path());
    let mut wrong = Vec::new();
    for (case, template, field) in BAD_SCENARIOS {
        let scenario: Value = serde_yaml::from_str(&scenario_text(template)).unwrap();
        let (status, error) = agent.json("POST", "/v1/runs", Some(&start_body(scenario)));
        let expected = if field.is_empty() { "scenario.shape".to_string() } else { format!("scenario.{field}") };
        if status != 400
            || error["field"].as_str() != Some(&expected)
            || error["error"].as_str().is_none_or(str::is_empty)
        {
            wrong.push(format!("{case}: expected 400 naming {expected}, got {status} {error}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (_, list) = agent.json("GET", "/v1/runs", None);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "only the valid run started");
}

#[test]
fn the_same_scenarios_exit_2_naming_file_and_field_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.yaml");
    std::fs::write(&valid, format!("{USERS}\nshape: {{stages: [{{end: 0.2, users: 1, spawn_rate: 1}}]}}")).unwrap();
    let (target, _served) = counting_server();
    let output = run_bin(
        &["run", valid.to_str().unwrap(), "--host", &target, "--max-users", MAX_USERS],
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));

    let mut wrong = Vec::new();
    for (i, (case, template, field)) in BAD_SCENARIOS.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&path, scenario_text(template)).unwrap();
        // The target is never contacted: validation comes first.
        let output = run_bin(
            &["run", path.to_str().unwrap(), "--host", "http://127.0.0.1:9", "--max-users", MAX_USERS],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = if field.is_empty() {
            format!("error: {}: ", path.display())
        } else {
            format!("error: {}: {field}: ", path.display())
        };
        if output.status.code() != Some(2) || !stderr.starts_with(&expected) || !output.stdout.is_empty() {
            wrong.push(format!("{case}: expected exit 2 and {expected:?}, got {:?}: {stderr}", output.status.code()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn malformed_requests_are_400_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let agent = agent(data.path());
    let valid: Value = serde_yaml::from_str(&format!("{USERS}\n{SHAPE}")).unwrap();
    let good = start_body(valid);
    // Sets (or with Null, removes) a top-level field.
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        let object = body.as_object_mut().unwrap();
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.to_string(), value);
        }
        body.to_string()
    };
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("not JSON", "{\"target\": ".into(), None),
        ("not an object", "[1, 2]".into(), None),
        ("no scenario", with("scenario", Value::Null), Some("scenario")),
        ("no target", with("target", Value::Null), Some("target")),
        ("target of the wrong type", with("target", json!(42)), Some("target")),
        ("target without a scheme", with("target", json!("127.0.0.1:8080")), Some("target")),
        ("target with another scheme", with("target", json!("ftp://127.0.0.1:21")), Some("target")),
        ("target with a bad port", with("target", json!("http://127.0.0.1:99999")), Some("target")),
        ("target without a host", with("target", json!("http://:80")), Some("target")),
        ("seed as text", with("seed", json!("one")), Some("seed")),
        ("negative seed", with("seed", json!(-1)), Some("seed")),
        ("agent_count zero", with("agent_count", json!(0)), Some("agent_count")),
        ("agent_index past the count", with("agent_index", json!(2)), Some("agent_index")),
        ("negative deadline", with("deadline_s", json!(-1)), Some("deadline_s")),
        ("zero deadline", with("deadline_s", json!(0)), Some("deadline_s")),
        ("start time as text", with("start_at_unix_ms", json!("now")), Some("start_at_unix_ms")),
        ("start time a year ahead", with("start_at_unix_ms", json!(u64::MAX / 4)), Some("start_at_unix_ms")),
        ("unknown field", with("bogus", json!(1)), Some("bogus")),
        ("scenario of the wrong type", with("scenario", json!("browse.yaml")), Some("scenario")),
        (
            "a trace needs its file",
            with(
                "scenario",
                json!({"users": good["scenario"]["users"], "shape": {"trace": {"file": "/etc/passwd", "column": "x"}}}),
            ),
            Some("scenario.shape.trace"),
        ),
    ];
    let mut wrong = Vec::new();
    for (case, body, field) in cases {
        let (status, text) = agent.call_raw("POST", "/v1/runs", None, &body);
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 400 || error["field"].as_str() != field || error["error"].as_str().is_none_or(str::is_empty) {
            wrong.push(format!("{case}: expected 400 naming {field:?}, got {status} {text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (_, list) = agent.json("GET", "/v1/runs", None);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "only the valid run started");
}

#[test]
fn malformed_command_lines_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, format!("{USERS}\n{SHAPE}")).unwrap();
    let path = path.to_str().unwrap();
    let missing = dir.path().join("missing.yaml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", path, "--host", "ftp://127.0.0.1:9"], "--host"),
        (vec!["run", path, "--host", "127.0.0.1:9"], "--host"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--run-time", "soon"], "--run-time"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--run-time", "0"], "--run-time"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--run-time=-1"], "--run-time"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--users", "3", "--spawn-rate", "0"], "--spawn-rate"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--users", "101", "--max-users", "100"], "--max-users"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--users=-3"], "--users"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--seed", "one"], "--seed"),
        (vec!["run", path, "--host", "http://127.0.0.1:9", "--csv", "/nonexistent-dir/x"], "--csv"),
        (vec!["run", missing.to_str().unwrap(), "--host", "http://127.0.0.1:9"], "missing.yaml"),
        (vec!["run", path], "--host"),
        (vec!["--listen", "not-an-address"], "--listen"),
        (vec!["--listen", "127.0.0.1:0", "--max-runs", "0"], "--max-runs"),
    ];
    let mut wrong = Vec::new();
    for (args, mention) in cases {
        let output = run_bin(&args, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(2) || !stderr.contains(mention) {
            wrong.push(format!(
                "{args:?}: expected exit 2 mentioning {mention}, got {:?}: {stderr}",
                output.status.code()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

//! `load-agent run` as a user runs it: the real binary against a real HTTP server on loopback.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;

use common::{BIN, counting_server};

#[test]
fn headless_run_prints_locust_tables_and_writes_locust_csvs() {
    let (url, served) = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.yaml");
    std::fs::write(
        &scenario,
        "users:\n  - name: u\n    wait: {constant: 0.02}\n    tasks:\n      - {name: a, requests: [{method: GET, path: /a}]}\n      - {name: b, requests: [{method: GET, path: \"/b?x=1\", name: /b}]}\n\
         shape: {stages: [{end: 2, users: 4, spawn_rate: 100}]}\n",
    )
    .unwrap();
    let prefix = dir.path().join("out");
    let output = Command::new(BIN)
        .args(["run", scenario.to_str().unwrap(), "--host", &url, "--csv", prefix.to_str().unwrap(), "--threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    for expected in ["# reqs", "Aggregated", "Response time percentiles", "99.99%"] {
        assert!(stdout.contains(expected), "the report lacks {expected:?}:\n{stdout}");
    }
    let read = |suffix: &str| std::fs::read_to_string(format!("{}_{suffix}.csv", prefix.display())).unwrap();
    let stats = read("stats");
    let history = read("stats_history");
    let failures = read("failures");
    // Locust 2.x's headers, written out here independently of the library's constants.
    assert_eq!(
        stats.lines().next().unwrap(),
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    );
    assert_eq!(
        history.lines().next().unwrap(),
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size"
    );
    assert_eq!(failures.lines().next().unwrap(), "Method,Name,Error,Occurrences,First Seen,Last Seen");
    assert_eq!(failures.lines().count(), 1, "no failures expected:\n{failures}");
    // One row per name plus Aggregated, and the aggregated count equals what the server served.
    let rows: Vec<&str> = stats.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{stats}");
    assert!(rows[1].starts_with("GET,/b,"), "{stats}");
    let aggregated: u64 = rows[2].split(',').nth(2).unwrap().parse().unwrap();
    assert!(aggregated > 50);
    assert_eq!(aggregated, served.load(Ordering::Relaxed), "agent and server disagree");
    // Per-second history: the windows' request counts add up to the total.
    let per_second: f64 = history
        .lines()
        .skip(1)
        .filter(|l| l.contains(",Aggregated,"))
        .map(|l| l.split(',').nth(4).unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(per_second as u64, aggregated);
}

/// (case, scenario text, field the error must name)
const BAD_SCENARIOS: &[(&str, &str, &str)] = &[
    ("no users", "users: []\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}", "users"),
    ("users not a list", "users: 3\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}", "users"),
    ("unknown top-level field", "userz: []\nusers: []\nshape: {stages: []}", "userz"),
    (
        "user weight zero",
        "users: [{name: u, weight: 0, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].weight",
    ),
    (
        "task weight zero",
        "users: [{name: u, tasks: [{name: t, weight: 0, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].weight",
    ),
    (
        "negative weight",
        "users: [{name: u, weight: -1, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].weight",
    ),
    (
        "no tasks",
        "users: [{name: u, tasks: []}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks",
    ),
    (
        "no requests",
        "users: [{name: u, tasks: [{name: t, requests: []}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].requests",
    ),
    (
        "unknown wait kind",
        "users: [{name: u, wait: {poisson: 1}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].wait",
    ),
    (
        "between reversed",
        "users: [{name: u, wait: {between: [5, 1]}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].wait.between",
    ),
    (
        "negative constant wait",
        "users: [{name: u, wait: {constant: -1}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].wait.constant",
    ),
    (
        "zero pacing",
        "users: [{name: u, wait: {constant_pacing: 0}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].wait.constant_pacing",
    ),
    (
        "wait of wrong type",
        "users: [{name: u, wait: {constant: soon}, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].wait.constant",
    ),
    (
        "unknown template variable",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: \"/p/{{id}}\"}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "unterminated template",
        "variables: {id: {values: [a]}}\nusers: [{name: u, tasks: [{name: t, requests: [{method: GET, path: \"/p/{{id\"}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "unknown method",
        "users: [{name: u, tasks: [{name: t, requests: [{method: FETCH, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].requests[0].method",
    ),
    (
        "path without slash",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: cart}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].requests[0].path",
    ),
    (
        "unknown request field",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /, bodyy: x}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "users[0].tasks[0].requests[0].bodyy",
    ),
    (
        "empty values",
        "variables: {id: {values: []}}\nusers: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "variables.id",
    ),
    (
        "zero stage end",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 0, users: 1, spawn_rate: 1}]}",
        "shape.stages[0].end",
    ),
    (
        "stage ends out of order",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 5, users: 1, spawn_rate: 1}, {end: 3, users: 2, spawn_rate: 1}]}",
        "shape.stages[1].end",
    ),
    (
        "negative spawn rate",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 5, users: 1, spawn_rate: -2}]}",
        "shape.stages[0].spawn_rate",
    ),
    (
        "unknown shape",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {waves: []}",
        "shape",
    ),
    (
        "negative ramp duration",
        "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {ramps: [{users: 3, over: -1}]}",
        "shape.ramps[0].over",
    ),
    (
        "zero timeout",
        "request_timeout_s: 0\nusers: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}",
        "request_timeout_s",
    ),
];

#[test]
fn malformed_scenarios_exit_2_naming_the_field() {
    assert!(BAD_SCENARIOS.len() >= 20);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (case, text, field) in BAD_SCENARIOS {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, text).unwrap();
        // The target is never contacted: validation comes first.
        let output =
            Command::new(BIN).args(["run", path.to_str().unwrap(), "--host", "http://127.0.0.1:9"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(2) || !stderr.contains("bad.yaml") || !stderr.contains(&format!(": {field}: "))
        {
            failures.push(format!("{case}: exit {:?}, stderr {stderr}", output.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_command_lines_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}").unwrap();
    for args in [
        vec!["--host", "ftp://127.0.0.1:9"],
        vec!["--host", "http://127.0.0.1:9", "--run-time", "soon"],
        vec!["--host", "http://127.0.0.1:9", "--users", "3", "--spawn-rate", "0"],
    ] {
        let output = Command::new(BIN).arg("run").arg(&path).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

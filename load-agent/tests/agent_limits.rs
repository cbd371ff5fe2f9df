//! Hostile and careless input against the real agent process: numbers out of range and bodies that would expand
//! to gigabytes are refused with a 400 naming the field, heavy runs end by their deadline or at a stop, a stop
//! answers once the run is over, and SIGTERM always ends the agent.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, TOKEN, wait_child};
use serde_json::{Value, json};

/// A port on loopback that nothing listens on: every request fails at once, as fast as the agent can send.
const CLOSED: &str = "http://127.0.0.1:9";

fn one_request_user() -> Value {
    json!([{"name": "u", "tasks": [{"name": "t", "requests": [{"method": "GET", "path": "/"}]}]}])
}

/// An open-model run at `rate` task starts per second (the most the limits allow is 10 million) against `target`.
fn heavy_body_to(target: &str, rate: f64, deadline_s: f64) -> Value {
    json!({
        "target": target,
        "deadline_s": deadline_s,
        "scenario": {
            "request_timeout_s": 60,
            "users": one_request_user(),
            "shape": {"arrival_rate": {"start_rate": rate, "stages": [{"duration": 600, "target": rate}],
                                        "preallocated_users": 100, "max_users": 200}}
        }
    })
}

fn heavy_body(rate: f64, deadline_s: f64) -> Value {
    heavy_body_to(CLOSED, rate, deadline_s)
}

/// A target on loopback that accepts connections and never answers (for 120 s at most): every user of a run
/// against it stays busy with a request in flight, and every further iteration finds no free user.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(120);
        let mut held = Vec::new();
        while Instant::now() < until && held.len() < 5_000 {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    address
}

fn start(agent: &Agent, body: &Value) -> String {
    let (status, created) = agent.json("POST", "/v1/runs", Some(body));
    assert_eq!(status, 201, "{created}");
    created["run_id"].as_str().unwrap().to_string()
}

fn state_of(agent: &Agent, run: &str) -> String {
    let (_, status) = agent.json("GET", &format!("/v1/runs/{run}"), None);
    status["state"].as_str().unwrap_or_default().to_string()
}

/// Polls until the run is over: its final state and how long that took.
fn wait_final(agent: &Agent, run: &str, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    loop {
        let state = state_of(agent, run);
        if ["finished", "stopped", "failed"].contains(&state.as_str()) {
            return (state, started.elapsed());
        }
        assert!(started.elapsed() < limit, "run {run} still {state} after {limit:?}:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_refused(agent: &Agent, body: &Value, field: &str) {
    let (status, error) = agent.json("POST", "/v1/runs", Some(body));
    assert_eq!(status, 400, "{field}: {error}");
    assert_eq!(error["field"], field, "{error}");
}

#[test]
fn numbers_out_of_range_are_refused_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let with = |pointer: &str, value: Value| {
        let mut body = heavy_body(100.0, 2.0);
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.to_string(), value);
        body
    };
    let cases = [
        ("/scenario/shape/arrival_rate/start_rate", json!(1e308), "scenario.shape.arrival_rate.start_rate"),
        ("/scenario/shape/arrival_rate/stages/0/target", json!(1e308), "scenario.shape.arrival_rate.stages[0].target"),
        ("/scenario/shape/arrival_rate/stages/0/target", json!(1e9), "scenario.shape.arrival_rate.stages[0].target"),
        (
            "/scenario/shape/arrival_rate/stages/0/duration",
            json!(1e308),
            "scenario.shape.arrival_rate.stages[0].duration",
        ),
        ("/scenario/request_timeout_s", json!(1e308), "scenario.request_timeout_s"),
        (
            "/scenario/users/0/wait",
            json!({"constant_throughput": 1e-308}),
            "scenario.users[0].wait.constant_throughput",
        ),
        ("/scenario/users/0/wait", json!({"between": [0, 1e308]}), "scenario.users[0].wait.between[1]"),
        ("/deadline_s", json!(1e308), "deadline_s"),
        ("/agent_count", json!(4_000_000_000u32), "agent_count"),
    ];
    for (pointer, value, field) in cases {
        assert_refused(&agent, &with(pointer, value), field);
    }
    let mut stages = heavy_body(1.0, 2.0);
    stages["scenario"]["shape"] = json!({"stages": [{"end": 5, "users": 1, "spawn_rate": 1e308}]});
    assert_refused(&agent, &stages, "scenario.shape.stages[0].spawn_rate");
    // Nothing was started, and the agent is well.
    let (_, runs) = agent.json("GET", "/v1/runs", None);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
}

#[test]
fn long_names_and_paths_are_refused_before_they_cost_every_window() {
    // A 1 MB stats name fits in the default body limit; written into every window it kept a 3 s run going for
    // over a minute at full CPU.
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let long = "z".repeat(1_000_000);
    let request = |extra: Value| {
        let mut body = heavy_body(10.0, 2.0);
        let target = body.pointer_mut("/scenario/users/0/tasks/0/requests/0").unwrap().as_object_mut().unwrap();
        for (key, value) in extra.as_object().unwrap() {
            target.insert(key.clone(), value.clone());
        }
        body
    };
    let named = request(json!({"name": long}));
    assert_refused(&agent, &named, "scenario.users[0].tasks[0].requests[0].name");
    let by_path = request(json!({"path": format!("/{}", "p".repeat(2_000))}));
    assert_refused(&agent, &by_path, "scenario.users[0].tasks[0].requests[0].path");
    let long_path = request(json!({"path": format!("/{}", "p".repeat(9_000)), "name": "/p"}));
    assert_refused(&agent, &long_path, "scenario.users[0].tasks[0].requests[0].path");
    let mut class = heavy_body(10.0, 2.0);
    class["scenario"]["users"][0]["name"] = json!("u".repeat(2_000));
    assert_refused(&agent, &class, "scenario.users[0].name");
    // Many distinct names, each short: together they are bounded too.
    let mut many = heavy_body(10.0, 2.0);
    let requests: Vec<Value> =
        (0..90).map(|i| json!({"method": "GET", "path": "/", "name": format!("{i:04}{}", "n".repeat(996))})).collect();
    let tasks: Vec<Value> =
        requests.chunks(30).enumerate().map(|(t, chunk)| json!({"name": format!("t{t}"), "requests": chunk})).collect();
    let users: Vec<Value> = (0..3).map(|u| json!({"name": format!("u{u}"), "tasks": tasks})).collect();
    many["scenario"]["users"] = json!(users);
    assert_eq!(agent.json("POST", "/v1/runs", Some(&many)).0, 201, "90 KB of names are within the limit");
    let many_more: Vec<Value> =
        (0..300).map(|i| json!({"method": "GET", "path": "/", "name": format!("{i:04}{}", "n".repeat(996))})).collect();
    many["scenario"]["users"] = json!([{"name": "u", "tasks": [{"name": "t", "requests": &many_more[..100]}, {"name": "t2", "requests": &many_more[100..200]}, {"name": "t3", "requests": &many_more[200..]}]}]);
    assert_refused(&agent, &many, "scenario.users");
}

#[test]
fn requests_must_suit_the_targets_protocol() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let mut redis_on_http = heavy_body(10.0, 2.0);
    redis_on_http["scenario"]["users"][0]["tasks"][0]["requests"][0] = json!({"redis": ["GET", "k"]});
    assert_refused(&agent, &redis_on_http, "scenario.users[0].tasks[0].requests[0].redis");
    let mut http_on_redis = heavy_body(10.0, 2.0);
    http_on_redis["target"] = json!("redis://127.0.0.1:9");
    assert_refused(&agent, &http_on_redis, "scenario.users[0].tasks[0].requests[0].method");
    http_on_redis["scenario"]["users"][0]["on_start"] = json!([{"redis": ["PING"]}, {"method": "GET", "path": "/"}]);
    assert_refused(&agent, &http_on_redis, "scenario.users[0].on_start[1].method");
}

/// The agent's peak resident memory (VmHWM), in bytes.
fn peak_rss(agent: &Agent) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_million_tasks_are_refused_without_taking_the_memory() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN, "--max-body-bytes", &(64 << 20).to_string()]);
    let task = r#"{"name":"t","requests":[{"method":"GET","path":"/"}]},"#;
    let mut body = String::from(r#"{"target":"http://127.0.0.1:9","scenario":{"users":[{"name":"u","tasks":["#);
    body.push_str(&task.repeat(1_000_000));
    body.pop();
    body.push_str(r#"]}],"shape":{"stages":[{"end":1,"users":1,"spawn_rate":1}]}}}"#);
    assert!(body.len() > 50 << 20, "{} bytes", body.len());
    let (status, error) = agent.call_raw("POST", "/v1/runs", Some(TOKEN), &body);
    assert_eq!(status, 400, "{error}");
    let error: Value = serde_json::from_str(&error).unwrap();
    assert_eq!(error["field"], "scenario.users[0].tasks", "{error}");
    assert!(error["error"].as_str().unwrap().contains("1000"), "{error}");

    // As many values spread over lists that are each within their limit hit the scenario's element budget.
    let variable = |i: usize| format!(r#""v{i}":{{"values":[{}"x"]}}"#, r#""x","#.repeat(9_999));
    let variables: Vec<String> = (0..100).map(variable).collect();
    let body = format!(
        r#"{{"target":"http://127.0.0.1:9","scenario":{{"variables":{{{}}},"users":{},"shape":{{"stages":[{{"end":1,"users":1,"spawn_rate":1}}]}}}}}}"#,
        variables.join(","),
        one_request_user()
    );
    let (status, error) = agent.call_raw("POST", "/v1/runs", Some(TOKEN), &body);
    assert_eq!(status, 400, "{error}");
    let error: Value = serde_json::from_str(&error).unwrap();
    assert!(error["field"].as_str().unwrap().starts_with("scenario.variables"), "{error}");
    assert!(error["error"].as_str().unwrap().contains("elements in all"), "{error}");

    // The 55 MB body itself is held once, with its parse stopped at the first task too many.
    let peak = peak_rss(&agent);
    eprintln!("agent peak RSS after the refused bodies: {} MB", peak >> 20);
    assert!(peak < 500 << 20, "the agent peaked at {} MB", peak >> 20);
    let (status, _) = agent.json("GET", "/v1/health", None);
    assert_eq!(status, 200);
}

#[test]
fn heavy_runs_end_by_their_deadline_and_the_agent_keeps_answering() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    // Two runs at the highest rate allowed: one against a closed port (as much work as the agent can be given), one
    // against a target that never answers (its pool exhausted at once, its requests in flight at the deadline).
    let runs = [start(&agent, &heavy_body(1e7, 2.0)), start(&agent, &heavy_body_to(&silent_server(), 1e7, 2.0))];
    let asked = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = agent.json("GET", "/v1/health", None);
    assert_eq!(status, 200);
    assert!(asked.elapsed() < Duration::from_secs(10), "health took {:?} under load", asked.elapsed());
    for run in &runs {
        // Deadline 2 s, request timeout 60 s: requests in flight get 6 s at most. A generous grace for a loaded machine.
        let (state, _) = wait_final(&agent, run, Duration::from_secs(20));
        assert_eq!(state, "stopped", "{run}");
    }
    for run in &runs {
        let (_, status) = agent.json("GET", &format!("/v1/runs/{run}"), None);
        assert!(status["elapsed_s"].as_f64().unwrap() < 12.0, "{status}");
        assert!(status["dropped_iterations"].as_u64().unwrap() > 0, "{status}");
    }
}

#[test]
fn a_stop_pre_empts_a_heavy_run_and_answers_once_it_is_over() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN, "--max-runs", "1"]);
    let silent = silent_server();
    for target in [CLOSED, &silent, CLOSED] {
        let run = start(&agent, &heavy_body_to(target, 1e7, 600.0));
        std::thread::sleep(Duration::from_millis(300));
        let asked = Instant::now();
        let (status, stopped) = agent.json("POST", &format!("/v1/runs/{run}/stop"), None);
        assert_eq!(status, 200, "{stopped}");
        assert_eq!(stopped["state"], "stopped", "{stopped}");
        assert!(asked.elapsed() < Duration::from_secs(10), "stop took {:?}", asked.elapsed());
        // The slot is free at once: the next start (with --max-runs 1) is not refused as busy.
    }
    let (_, info) = agent.json("GET", "/v1/info", None);
    assert_eq!(info["active_runs"], 0, "{info}");
}

#[test]
fn sigterm_ends_an_agent_running_a_heavy_run() {
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);
    let run = start(&agent, &heavy_body_to(&silent_server(), 1e7, 600.0));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state_of(&agent, &run), "running");
    let signalled = Instant::now();
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
    let status = wait_child(&mut agent.child, Duration::from_secs(40));
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("the agent did not exit within 40 s of SIGTERM:\n{}", agent.log()));
    assert!(status.success(), "exit status {status:?} after {took:?}:\n{}", agent.log());
    // The run was stopped and its files written before the exit.
    let on_disk = common::status_on_disk(data.path(), &run).unwrap();
    assert_eq!(on_disk["state"], "stopped", "{on_disk}");
}

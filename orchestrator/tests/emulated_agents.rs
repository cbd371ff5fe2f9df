//! Remote agents under `orch run --agents`: an agent killed mid-run is reported lost and handled as the matrix
//! says (its users move to the other agent, or the cell fails naming it), and agents that cannot run a cell are
//! refused before anything is written, each error naming the agent; Ctrl-C during a cell stops the agents' runs.

mod common;
mod emulated_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use emulated_support::{Agent, cell_dir, column, http, json, spawn_orch, stderr_of, wait_child};

/// 40 users sending 2 requests/s to GET /cart for 300 s; at time_scale 15 that is 20 s.
const STEADY: &str = "\
name: steady
users:
  - name: cart-viewer
    wait: {constant_throughput: 2}
    tasks:
      - {name: view-cart, requests: [{method: GET, path: /cart}]}
shape:
  stages:
    - {end: 300, users: 40, spawn_rate: 100}
";

fn matrix(on_loss: &str) -> String {
    format!(
        "name: loss\nseeds: [1]\napps: [online-boutique]\nscenarios: [steady]\n\
         policies: [{{name: static-max, kind: static, replicas: max}}]\nbackend: emulated\n\
         emulated: {{time_scale: 15, agents: {{on_loss: {on_loss}}}}}\n"
    )
}

/// Kills `agent` once its run has gone on for a few seconds.
fn kill_mid_run(agent: &mut Agent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, runs) = http(&agent.address, "GET", "/v1/runs", None, "");
        if runs.contains("\"state\":\"running\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the agent's run never started: {runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    agent.kill();
}

fn run_with_a_lost_agent(on_loss: &str) -> (common::Scratch, std::process::ExitStatus, String, String) {
    let scratch = common::Scratch::new();
    scratch.write("experiments/scenarios/online-boutique/steady.yaml", STEADY);
    scratch.write("experiments/loss.yaml", &matrix(on_loss));
    let survivor = Agent::start(&[]);
    let mut victim = Agent::start(&[]);
    let agents = format!("{},{}", survivor.url(), victim.url());
    let mut orch = spawn_orch(
        scratch.dir.path(),
        &["run", "experiments/loss.yaml", "--tag", "t", "--logs-dir", "logs", "--agents", &agents],
        &[],
    );
    kill_mid_run(&mut victim);
    let status = wait_child(&mut orch, Duration::from_secs(180)).expect("orch finishes");
    let victim_url = victim.url();
    drop(survivor);
    (scratch, status, victim_url, agents)
}

#[test]
fn a_killed_agent_is_reported_and_its_users_move_to_the_other() {
    let (scratch, status, victim_url, _) = run_with_a_lost_agent("redistribute");
    assert!(status.success(), "{}", stderr_of(scratch.dir.path()));
    let cell = cell_dir(&scratch.path("logs/t"), "emulated");
    let agents = json(&cell.join("agents.json"));
    let losses = agents["losses"].as_array().unwrap();
    assert_eq!(losses.len(), 1, "{agents:#}");
    let loss = &losses[0];
    assert_eq!(loss["agent"], "remote-1");
    assert_eq!(loss["url"], victim_url.as_str());
    assert!(!loss["reason"].as_str().unwrap().is_empty());
    // Killed about 5 s (75 emulated s) into the run: its last window and figures are recorded.
    let last_window = loss["last_window"].as_u64().expect("a last window");
    assert!((2..15).contains(&last_window), "last window {last_window}");
    assert!(loss["last"]["requests"].as_u64().unwrap() > 100, "{loss}");
    let detected = loss["detected_emulated_s"].as_f64().unwrap();
    assert!(detected > 30.0 && detected < 250.0, "{detected}");
    let handled = loss["handled"].as_str().unwrap();
    assert!(handled.contains("moved to agent remote-0"), "{handled}");
    let runs = agents["runs"].as_array().unwrap();
    let takeover = runs.iter().find(|r| r["takeover_of"] == "remote-1").expect("a takeover run");
    assert_eq!(takeover["agent"], "remote-0");
    assert_eq!(takeover["state"], "finished");
    assert_eq!(takeover["agent_index"], 1);
    assert!(cell.join("agents/remote-0/takeover-of-remote-1/locust_stats.csv").is_file());
    assert!(cell.join("agents/remote-0/locust_stats.csv").is_file());
    assert!(!cell.join("agents/remote-1").exists(), "nothing downloaded from the dead agent");

    // The load dipped while the agent was missing, then came back whole: never silently.
    let users = column(&cell, "users");
    assert_eq!(users.len(), 300);
    let from = takeover["from_second"].as_u64().unwrap() as usize * 15;
    assert!(users[10..from].iter().any(|&u| u < 30.0), "no dip before the takeover at {from}");
    assert!(users[from + 30..290].iter().all(|&u| (u - 40.0).abs() <= 1.0), "{:?}", &users[from..]);
    let log = std::fs::read_to_string(cell.join("run.log")).unwrap();
    assert!(log.contains("remote-1") && log.contains("lost"), "{log}");

    // What the agents counted is what the app served, but for the requests of the killed agent after its last poll.
    let counted = agents["requests"].as_u64().unwrap();
    let served = json(&cell.join("emulator.json"))["client_requests"].as_u64().unwrap();
    assert!(counted <= served + 5 && served - counted <= 20 * 2 * 4, "counted {counted}, served {served}");
}

#[test]
fn a_killed_agent_fails_the_cell_when_the_matrix_says_so() {
    let (scratch, status, victim_url, _) = run_with_a_lost_agent("fail");
    assert_eq!(status.code(), Some(1), "{}", stderr_of(scratch.dir.path()));
    let stderr = stderr_of(scratch.dir.path());
    assert!(stderr.contains(&format!("agent remote-1 ({victim_url}) was lost")), "{stderr}");
    assert!(stderr.contains("on_loss is fail"), "{stderr}");
    let cell = cell_dir(&scratch.path("logs/t"), "emulated");
    assert!(!cell.join("summary.json").exists(), "a failed cell has no summary");
    let agents = json(&cell.join("agents.json"));
    assert_eq!(agents["losses"][0]["agent"], "remote-1");
    assert_eq!(agents["losses"][0]["handled"], "the cell failed (on_loss: fail)");
    // The surviving agent was stopped and its files kept.
    assert!(cell.join("agents/remote-0/locust_stats.csv").is_file());
    assert_eq!(agents["runs"][0]["state"], "stopped");
}

#[test]
fn sigint_during_a_cell_cancels_it_and_stops_the_agents_run() {
    let scratch = common::Scratch::new();
    scratch.write("experiments/scenarios/online-boutique/steady.yaml", STEADY);
    scratch.write("experiments/loss.yaml", &matrix("fail"));
    let agent = Agent::start(&[]);
    let mut orch = spawn_orch(
        scratch.dir.path(),
        &["run", "experiments/loss.yaml", "--tag", "t", "--logs-dir", "logs", "--agents", &agent.url()],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http(&agent.address, "GET", "/v1/runs", None, "").1.contains("\"state\":\"running\"") {
        assert!(Instant::now() < deadline, "the agent's run never started: {}", stderr_of(scratch.dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling a child process we started and have not reaped.
    assert_eq!(unsafe { libc::kill(orch.id() as i32, libc::SIGINT) }, 0);
    let status = wait_child(&mut orch, Duration::from_secs(60)).expect("orch exits after Ctrl-C");
    let stderr = stderr_of(scratch.dir.path());
    assert_eq!(status.code(), Some(130), "{stderr}");

    let cell = cell_dir(&scratch.path("logs/t"), "emulated");
    let cell_status = json(&cell.join("status.json"));
    assert_eq!(cell_status["state"], "cancelled", "{cell_status:#}");
    // The agent's run was stopped, not left to play its 20 s plan to the end.
    let (_, runs) = http(&agent.address, "GET", "/v1/runs", None, "");
    assert!(!runs.contains("\"state\":\"running\""), "{runs}");
    assert!(runs.contains("\"state\":\"stopped\""), "{runs}");
}

/// A fake agent answering every call with a health and an info of another protocol version.
fn fake_agent_of_another_version() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let body = if request_line.contains("/v1/info") {
                r#"{"version":"9.0.0","protocol_version":999,"cores":2,"limits":{"max_users":50000,"max_concurrent_runs":2,"max_body_bytes":1048576},"active_runs":0}"#
            } else {
                r#"{"status":"ok"}"#
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

/// A port nothing listens on.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn refused(scratch: &common::Scratch, agents: &str, env: &[(&str, &str)]) -> String {
    let logs = scratch.path("logs");
    let mut orch = spawn_orch(
        scratch.dir.path(),
        &["run", "experiments/loss.yaml", "--tag", "t", "--logs-dir", "logs", "--agents", agents],
        env,
    );
    let status = wait_child(&mut orch, Duration::from_secs(60)).expect("orch answers");
    let stderr = stderr_of(scratch.dir.path());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(!logs.exists(), "nothing is written: {}", logs.display());
    stderr
}

#[test]
fn agents_that_cannot_run_the_cell_are_refused_before_anything_is_written() {
    let scratch = common::Scratch::new();
    scratch.write("experiments/scenarios/online-boutique/steady.yaml", STEADY);
    scratch.write("experiments/loss.yaml", &matrix("fail"));

    let unreachable = closed_port_url();
    let stderr = refused(&scratch, &unreachable, &[]);
    assert!(stderr.contains(&format!("agent remote-0 ({unreachable}) is unreachable")), "{stderr}");

    let guarded = Agent::start(&["--token", "right-token-1234"]);
    let stderr = refused(&scratch, &guarded.url(), &[("ORCH_AGENT_TOKEN", "wrong-token")]);
    assert!(stderr.contains(&format!("agent remote-0 ({}) refused the token (401)", guarded.url())), "{stderr}");
    assert!(stderr.contains("the token in ORCH_AGENT_TOKEN is not the agent's"), "{stderr}");
    let stderr = refused(&scratch, &guarded.url(), &[]);
    assert!(stderr.contains("ORCH_AGENT_TOKEN is not set"), "{stderr}");

    let fake = fake_agent_of_another_version();
    let stderr = refused(&scratch, &fake, &[]);
    assert!(stderr.contains(&format!("agent remote-0 ({fake})")), "{stderr}");
    assert!(stderr.contains("speaks protocol version 999"), "{stderr}");

    let busy = Agent::start(&[]);
    let start = r#"{"target": "http://127.0.0.1:9", "scenario": {"name": "idle", "users": [{"name": "u",
        "wait": {"constant": 1}, "tasks": [{"name": "t", "requests": [{"method": "GET", "path": "/"}]}]}],
        "shape": {"stages": [{"end": 120, "users": 1, "spawn_rate": 1}]}}}"#;
    let (status, body) = http(&busy.address, "POST", "/v1/runs", None, start);
    assert_eq!(status, 201, "{body}");
    // The second agent of the list is the busy one: the error names it, not the first.
    let healthy = Agent::start(&[]);
    let stderr = refused(&scratch, &format!("{},{}", healthy.url(), busy.url()), &[]);
    assert!(stderr.contains(&format!("agent remote-1 ({}) is busy: 1 run(s) going on", busy.url())), "{stderr}");

    let stderr = refused(&scratch, "ftp://somewhere:1", &[]);
    assert!(stderr.contains("--agents"), "{stderr}");
}

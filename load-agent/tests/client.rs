//! The typed client against real agent processes, including one run split over two agents and merged.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Agent, TOKEN, counting_server};
use load_agent::client::{AgentClient, ClientError};
use load_agent::protocol::{AgentInfo, Limits, RunState, StartRun};
use load_agent::scenario::Scenario;
use load_agent::stats::StatsSnapshot;

fn start(target: &str, agent_index: u32, agent_count: u32) -> StartRun {
    let scenario = Scenario::parse(
        "users:\n  - name: u\n    wait: {constant: 0.05}\n    tasks: [{name: t, requests: [{method: GET, path: /m}]}]\n\
         shape: {stages: [{end: 1.5, users: 5, spawn_rate: 100}]}\n",
        std::path::Path::new("client.yaml"),
    )
    .unwrap();
    StartRun {
        scenario,
        target: target.to_string(),
        seed: 9,
        agent_index,
        agent_count,
        start_at_unix_ms: None,
        deadline_s: None,
    }
}

async fn wait_over(client: &AgentClient, run: &str) -> RunState {
    for _ in 0..300 {
        let state = client.status(run).await.unwrap().state;
        if state.is_over() {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_split_over_two_agents_merges_exactly() {
    let (target, served) = counting_server();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agents = [Agent::start(dir_a.path(), &["--token", TOKEN]), Agent::start(dir_b.path(), &["--token", TOKEN])];
    let clients: Vec<AgentClient> =
        agents.iter().map(|a| AgentClient::new(&format!("http://{}", a.address), Some(TOKEN.into()))).collect();
    let mut runs = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let info = client.info().await.unwrap();
        client.ensure_compatible(&info).unwrap();
        runs.push(client.start_run(&start(&target, index as u32, 2)).await.unwrap().run_id);
    }
    let mut snapshots = Vec::new();
    let mut users = Vec::new();
    for (client, run) in clients.iter().zip(&runs) {
        assert_eq!(wait_over(client, run).await, RunState::Finished);
        snapshots.push(client.stats(run).await.unwrap());
        let windows = client.windows(run, 0).await.unwrap().windows;
        users.push(windows.iter().map(|w| w.users).max().unwrap());
        let csv = client.download(run, "locust_stats.csv").await.unwrap();
        assert!(csv.starts_with(b"Type,Name,Request Count,"));
    }
    assert_eq!(users, vec![3, 2], "5 users split as 3 + 2");
    let merged = StatsSnapshot::merge(&snapshots).unwrap();
    assert_eq!(merged.total().requests, served.load(Ordering::Relaxed), "merged count differs from the target's");
    assert_eq!(merged.total().histogram.len(), merged.total().requests, "merged histogram lost samples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_agent_and_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &["--token", TOKEN]);
    let url = format!("http://{}", agent.address);

    let wrong = AgentClient::new(&url, Some("nope".into()));
    let err = wrong.info().await.unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 401, .. }), "{err}");
    assert!(err.to_string().contains(&url));

    let client = AgentClient::new(&url, Some(TOKEN.into()));
    let mut bad = start("http://127.0.0.1:9", 0, 1);
    bad.agent_index = 4;
    let err = client.start_run(&bad).await.unwrap_err();
    assert!(err.to_string().contains(": 400: agent_index: "), "{err}");
    let err = client.status("0123456789abcdef").await.unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 404, .. }), "{err}");

    let future = AgentInfo {
        version: "9.9.9".into(),
        protocol_version: 99,
        cores: 1,
        limits: Limits { max_users: 1, max_concurrent_runs: 1, max_body_bytes: 1 },
        active_runs: 0,
    };
    let err = client.ensure_compatible(&future).unwrap_err();
    assert!(err.to_string().contains("protocol version 99"), "{err}");

    drop(agent);
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"));
}

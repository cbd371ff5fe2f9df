//! Redis requests against Debian's redis-server, started by the test on a free loopback port.

mod support;

use std::path::Path;

use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::protocol::RunState;
use load_agent::scenario::{LoadShape, Scenario, Stage};
use support::{RedisServer, free_port};

fn redis_plan(scenario: Scenario, url: &str) -> RunPlan {
    RunPlan {
        scenario,
        target: Target::parse(url).unwrap(),
        seed: 1,
        agent_index: 0,
        agent_count: 1,
        start_at: None,
        deadline: None,
        max_users: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cluster_scenario_replays_against_a_real_redis() {
    let redis = RedisServer::start();
    // The repository's own scenario file, unchanged but for a short shape.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/scenarios/redis-cluster/peak.yaml");
    let mut scenario = Scenario::load(&file).unwrap();
    scenario.shape = LoadShape::Stages(vec![Stage { end: 1.5, users: 20, spawn_rate: 1000.0 }]);
    let handle = RunHandle::start(redis_plan(scenario, &redis.url()));
    assert_eq!(handle.wait().await, RunState::Finished);
    let (gets, sets, failures, methods) = {
        let collector = handle.collector();
        let stats = collector.lock().unwrap();
        let count = |name: &str| stats.entries().find(|e| e.name == name).map_or(0, |e| e.requests);
        let methods: Vec<String> = stats.entries().map(|e| e.method.clone()).collect();
        (count("GET"), count("SET"), stats.total().failures, methods)
    };
    assert_eq!(failures, 0);
    assert!(methods.iter().all(|m| m == "REDIS"), "{methods:?}");
    // 20 users at 1 command/s for 1.5 s (the first at once): 40 commands, three reads per write.
    assert!((30..=50).contains(&(gets + sets)), "{gets} GETs, {sets} SETs");
    assert!(gets > sets, "{gets} GETs, {sets} SETs");
    assert_eq!(redis.calls("get").await, gets, "agent and redis disagree on GET");
    assert_eq!(redis.calls("set").await, sets, "agent and redis disagree on SET");
    let mut connection = redis.connection().await;
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await.unwrap();
    assert!(keys >= 1 && keys <= sets, "{keys} keys after {sets} SETs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_error_replies_are_failures() {
    let redis = RedisServer::start();
    let scenario = Scenario::parse(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: bad, requests: [{redis: [NOSUCHCOMMAND, x], name: bad}]}]\n\
         shape: {stages: [{end: 0.6, users: 2, spawn_rate: 100}]}\n",
        Path::new("bad.yaml"),
    )
    .unwrap();
    let handle = RunHandle::start(redis_plan(scenario, &redis.url()));
    assert_eq!(handle.wait().await, RunState::Finished);
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    assert!(stats.total().requests >= 2);
    assert_eq!(stats.total().failures, stats.total().requests);
    let failure = stats.failures().next().unwrap();
    assert_eq!((failure.key.method.as_str(), failure.key.name.as_str()), ("REDIS", "bad"));
    assert!(failure.key.error.starts_with("RedisError:"), "{}", failure.key.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_the_run_at_once() {
    let scenario = Scenario::parse(
        "users:\n  - {name: u, tasks: [{name: get, requests: [{redis: [GET, k]}]}]}\nshape: {stages: [{end: 5, users: 1, spawn_rate: 1}]}\n",
        Path::new("get.yaml"),
    )
    .unwrap();
    let port = free_port();
    let handle = RunHandle::start(redis_plan(scenario, &format!("redis://127.0.0.1:{port}")));
    assert_eq!(handle.wait().await, RunState::Failed);
    let error = handle.status().error.unwrap();
    assert!(error.starts_with(&format!("cannot reach redis://127.0.0.1:{port}")), "{error}");
    assert_eq!(handle.status().started_at_unix_ms, None);
}

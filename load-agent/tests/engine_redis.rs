//! Redis requests against Debian's redis-server, started by the test on a free loopback port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::protocol::RunState;
use load_agent::scenario::{LoadShape, Scenario, Stage};

struct RedisServer {
    child: Child,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> RedisServer {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    RedisServer { child, port }
}

/// Calls of a command as redis-server counts them (INFO commandstats).
async fn server_calls(port: u16, command: &str) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await.unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cluster_scenario_replays_against_a_real_redis() {
    let redis = start_redis();
    // The repository's own scenario file, unchanged but for a short shape.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/scenarios/redis-cluster/peak.yaml");
    let mut scenario = Scenario::load(&file).unwrap();
    scenario.shape = LoadShape::Stages(vec![Stage { end: 1.5, users: 20, spawn_rate: 1000.0 }]);
    let handle = RunHandle::start(RunPlan {
        scenario,
        target: Target::parse(&format!("redis://127.0.0.1:{}", redis.port)).unwrap(),
        seed: 1,
        agent_index: 0,
        agent_count: 1,
        start_at: None,
        deadline: None,
        max_users: 100,
    });
    assert_eq!(handle.wait().await, RunState::Finished);
    let (gets, sets, failures) = {
        let collector = handle.collector();
        let stats = collector.lock().unwrap();
        let count = |name: &str| stats.entries().find(|e| e.name == name).map_or(0, |e| e.requests);
        (count("GET"), count("SET"), stats.total().failures)
    };
    assert_eq!(failures, 0);
    // 20 users at 1 command/s for 1.5 s, three reads per write.
    assert!(gets + sets >= 20, "{gets} GETs, {sets} SETs");
    assert_eq!(server_calls(redis.port, "get").await, gets, "agent and redis disagree on GET");
    assert_eq!(server_calls(redis.port, "set").await, sets, "agent and redis disagree on SET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_error_replies_are_failures() {
    let redis = start_redis();
    let scenario = Scenario::parse(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: bad, requests: [{redis: [NOSUCHCOMMAND, x]}]}]\n\
         shape: {stages: [{end: 0.6, users: 2, spawn_rate: 100}]}\n",
        Path::new("bad.yaml"),
    )
    .unwrap();
    let handle = RunHandle::start(RunPlan {
        scenario,
        target: Target::parse(&format!("redis://127.0.0.1:{}", redis.port)).unwrap(),
        seed: 1,
        agent_index: 0,
        agent_count: 1,
        start_at: None,
        deadline: None,
        max_users: 10,
    });
    handle.wait().await;
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    assert!(stats.total().requests >= 2);
    assert_eq!(stats.total().failures, stats.total().requests);
    let error = stats.failures().next().unwrap().key.error.clone();
    assert!(error.starts_with("RedisError:"), "{error}");
}

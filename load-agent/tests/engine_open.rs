//! The open model (arrival_rate): iterations start at the shape's rate on a pool of users, whatever the response
//! times; those that find no free user are dropped and counted; latency counts from each iteration's intended start.

mod support;

use std::time::Duration;

use load_agent::engine::RunHandle;
use load_agent::protocol::RunState;
use support::{agent_counts, plan, scenario, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterations_start_at_the_rate() {
    let (url, seen) = serve().await;
    // 100/s for 2 s, then a ramp from 0 to 200/s over 1 s (100 more): 300 iterations.
    let s = scenario(
        "users:\n  - name: u\n    tasks: [{name: a, requests: [{method: GET, path: /o}]}]\n\
         shape:\n  arrival_rate: {start_rate: 100, stages: [{duration: 2, target: 100}, {duration: 0.001, target: 0}, {duration: 1, target: 200}], preallocated_users: 5, max_users: 50}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let so_far = seen.lock().unwrap().requests.get("GET /o").copied().unwrap_or(0);
    assert!((80..=120).contains(&so_far), "100/s gave {so_far} in the first second");
    assert_eq!(handle.wait().await, RunState::Finished);
    let served = seen.lock().unwrap().requests["GET /o"];
    assert!((255..=345).contains(&served), "expected about 300 iterations, got {served}");
    assert_eq!(handle.status().dropped_iterations, 0);
    assert_eq!(agent_counts(&handle)["GET /o"].0, served, "agent and server agree");
    // Iterations are handed out at their due time, not in batches: a fast endpoint shows fast responses.
    let collector = handle.collector();
    let p50 = collector.lock().unwrap().total().percentile_ms(0.5);
    assert!(p50 < 20.0, "median latency {p50} ms against a local server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterations_without_a_free_user_are_dropped_and_latency_counts_from_the_intended_start() {
    let (url, seen) = serve().await;
    // 5 users at most, 300 ms per request: about 16 iterations/s fit, 50/s are asked for.
    let s = scenario(
        "users:\n  - name: u\n    tasks: [{name: a, requests: [{method: GET, path: /sleep/300, name: slow}]}]\n\
         shape:\n  arrival_rate: {start_rate: 50, stages: [{duration: 1.5, target: 50}], preallocated_users: 2, max_users: 5}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handle.status().users, 5, "the pool grew to max_users");
    assert_eq!(handle.wait().await, RunState::Finished);
    let status = handle.status();
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    let total = stats.total();
    // 75 iterations due; 5 users finishing one every 300 ms run about 25 of them.
    assert_eq!(status.dropped_iterations + total.requests, 75, "every due iteration ran or was dropped");
    assert!(status.dropped_iterations >= 40, "only {} iterations dropped", status.dropped_iterations);
    assert!(total.requests >= 15, "{} requests", total.requests);
    assert!(total.min_us >= 300_000, "fastest {} µs: latency counts from the intended start", total.min_us);
    assert_eq!(seen.lock().unwrap().requests["GET /sleep/300"], total.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_split_the_iterations() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    tasks: [{name: a, requests: [{method: GET, path: /split}]}]\n\
         shape:\n  arrival_rate: {start_rate: 150, stages: [{duration: 1.5, target: 150}], preallocated_users: 4, max_users: 20}\n",
    );
    let mut first = plan(s, &url);
    first.agent_count = 2;
    let mut second = first.clone();
    second.agent_index = 1;
    let (a, b) = (RunHandle::start(first), RunHandle::start(second));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((a.status().users, b.status().users), (2, 2), "preallocated users split");
    a.wait().await;
    b.wait().await;
    let (from_a, from_b) = (agent_counts(&a)["GET /split"].0, agent_counts(&b)["GET /split"].0);
    assert!(from_a.abs_diff(from_b) <= 3, "iteration k runs on agent k % 2: {from_a} and {from_b}");
    assert!((190..=260).contains(&(from_a + from_b)), "expected about 225 in all, got {from_a} + {from_b}");
    assert_eq!(seen.lock().unwrap().requests["GET /split"], from_a + from_b);
}

//! The engine against a real HTTP server on loopback: Locust's request semantics, and exact request accounting.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use load_agent::engine::RunHandle;
use load_agent::protocol::RunState;
use support::{agent_counts, plan, scenario, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_follow_weights_and_every_request_is_counted_once() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    tasks:\n      - {name: a, weight: 1, requests: [{method: GET, path: /a}]}\n      - {name: b, weight: 3, requests: [{method: GET, path: /b}]}\n\
         shape: {stages: [{end: 1.5, users: 20, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let agent = agent_counts(&handle);
    let server = seen.lock().unwrap().requests.clone();
    let (a, b) = (agent["GET /a"].0, agent["GET /b"].0);
    assert!(a + b > 1000, "only {} requests in 1.5 s with no wait", a + b);
    let ratio = b as f64 / a as f64;
    assert!((ratio / 3.0 - 1.0).abs() < 0.15, "weights 1:3 gave {a}:{b}");
    // None lost, none counted twice: the server saw exactly what the agent recorded.
    assert_eq!(server.get("GET /a"), Some(&a), "agent and server disagree on /a");
    assert_eq!(server.get("GET /b"), Some(&b), "agent and server disagree on /b");
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    assert_eq!(stats.total().requests, a + b);
    assert_eq!(stats.total().failures, 0);
    // Every request is in exactly one window.
    assert_eq!(stats.history().iter().map(|w| w.total.summary.requests).sum::<u64>(), a + b);
    assert!(stats.total().content_bytes >= 2 * (a + b), "content bytes are the bodies' lengths (\"ok\")");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_own_connection_and_cookies_and_a_redirect_counts_once() {
    let (url, seen) = serve().await;
    let s = scenario(
        "variables: {q: {range: [1, 10]}}\nusers:\n  - name: shopper\n    wait: {constant: 0.05}\n    on_start: [{method: GET, path: /}]\n\
         \x20   tasks: [{name: add, requests: [{method: POST, path: /cart, form: {quantity: \"{{q}}\"}}]}]\n\
         shape: {stages: [{end: 1.5, users: 5, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let agent = agent_counts(&handle);
    let seen = seen.lock().unwrap();
    let posts = seen.requests["POST /cart"];
    assert!(posts > 20, "{posts} POSTs");
    // The agent times POST + 302 + GET as one request, under the POST's name; the server saw both legs.
    assert_eq!(agent["POST /cart"], (posts, 0));
    assert!(!agent.contains_key("GET /cart"), "{agent:?}");
    assert_eq!(seen.requests["GET /cart"], posts, "every redirect was followed");
    assert_eq!(agent["GET /"], (5, 0), "on_start ran once per user");
    assert_eq!(seen.sessions_issued, 5, "each user opened one session on its first GET /");
    assert!(seen.cart_cookies.iter().all(Option::is_some), "a redirected request lost its cookie");
    let distinct: BTreeSet<_> = seen.cart_cookies.iter().collect();
    assert_eq!(distinct.len(), 5, "users shared cookie jars: {distinct:?}");
    assert_eq!(seen.peers.len(), 5, "one keep-alive connection per user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_headers_and_variables_are_rendered_once_per_task() {
    let (url, seen) = serve().await;
    let s = scenario(
        "variables: {n: {range: [1, 3]}, word: {values: [a b, 'c&d']}}\nusers:\n  - name: u\n    wait: {constant: 0.01}\n    tasks:\n\
         \x20     - {name: form, requests: [{method: POST, path: /echo, headers: {X-Test: 'n={{n}}'}, form: {n: '{{n}}', w: '{{word}}'}}]}\n\
         \x20     - {name: json, requests: [{method: POST, path: /echo, headers: {X-Test: 'n={{n}}'}, json: {n: '{{n}}', list: ['{{word}}', 7]}}]}\n\
         shape: {stages: [{end: 1, users: 2, spawn_rate: 100}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let seen = seen.lock().unwrap();
    assert!(seen.echoed.len() > 20, "{} requests", seen.echoed.len());
    let mut values = BTreeSet::new();
    let (mut forms, mut jsons) = (0, 0);
    for (content_type, body, header) in &seen.echoed {
        let n = header.as_deref().and_then(|h| h.strip_prefix("n=")).expect("X-Test header").to_string();
        match content_type.as_deref() {
            Some("application/x-www-form-urlencoded") => {
                forms += 1;
                // The header and the body drew the same value: variables are drawn once per task.
                assert!(body == &format!("n={n}&w=a+b") || body == &format!("n={n}&w=c%26d"), "{body}");
            }
            Some("application/json") => {
                jsons += 1;
                let value: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(value["n"], serde_json::json!(n));
                assert!(
                    value["list"] == serde_json::json!(["a b", 7]) || value["list"] == serde_json::json!(["c&d", 7])
                );
            }
            other => panic!("content type {other:?}"),
        }
        values.insert(n);
    }
    assert!(forms > 5 && jsons > 5, "{forms} forms, {jsons} json bodies");
    let expected: BTreeSet<String> = ["1", "2", "3"].into_iter().map(String::from).collect();
    assert_eq!(values, expected, "a range includes both ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_with_their_errors() {
    let (url, seen) = serve().await;
    let s = scenario(
        "request_timeout_s: 0.2\nusers:\n  - name: u\n    wait: {constant: 0.05}\n    tasks:\n\
         \x20     - {name: e, requests: [{method: GET, path: /error}]}\n\
         \x20     - {name: t, requests: [{method: GET, path: /sleep/1000, name: slow}]}\n\
         shape: {stages: [{end: 1.5, users: 3, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let agent = agent_counts(&handle);
    let (errors, error_failures) = agent["GET /error"];
    let (slow, slow_failures) = agent["GET slow"];
    assert!(errors >= 3 && errors == error_failures, "{errors} requests, {error_failures} failures");
    assert!(slow >= 3 && slow == slow_failures, "{slow} requests, {slow_failures} failures");
    assert_eq!(seen.lock().unwrap().requests["GET /error"], errors);
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    let failures: Vec<(String, String, u64)> =
        stats.failures().map(|f| (f.key.name.clone(), f.key.error.clone(), f.occurrences)).collect();
    assert_eq!(
        failures,
        vec![
            ("/error".to_string(), "HTTPError 500 Internal Server Error".to_string(), errors),
            ("slow".to_string(), "Timeout: no response within 0.2 s".to_string(), slow),
        ]
    );
    // A timed-out request is measured at the timeout, not at the response that never came in time.
    let slow_entry = stats.entries().find(|e| e.name == "slow").unwrap();
    assert!(slow_entry.min_us >= 200_000 && slow_entry.max_us < 900_000, "{} µs", slow_entry.max_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_shows_as_connection_failures() {
    // Nothing listens on a port just released: every request fails fast and is counted, none is lost.
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /}]}]\n\
         shape: {stages: [{end: 0.5, users: 2, spawn_rate: 100}]}\n",
    );
    let handle = RunHandle::start(plan(s, &format!("http://127.0.0.1:{}", support::free_port())));
    assert_eq!(handle.wait().await, RunState::Finished);
    let (requests, failures) = agent_counts(&handle)["GET /"];
    assert!(requests >= 2 && requests == failures, "{requests} requests, {failures} failures");
    let collector = handle.collector();
    let error = collector.lock().unwrap().failures().next().unwrap().key.error.clone();
    assert!(error.starts_with("ConnectionError: ") && error.contains("refused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_set_the_request_rate() {
    let (url, seen) = serve().await;
    // 10 users, a task every 0.25 s each (constant_pacing), and 8 users at 2 tasks/s each (constant_throughput),
    // for 2.9 s: 12 and 6 tasks per user, 120 and 48 requests.
    let s = scenario(
        "users:\n  - {name: paced, weight: 10, wait: {constant_pacing: 0.25}, tasks: [{name: a, requests: [{method: GET, path: /sleep/20}]}]}\n\
         \x20 - {name: throughput, weight: 8, wait: {constant_throughput: 2}, tasks: [{name: a, requests: [{method: GET, path: /t}]}]}\n\
         shape: {stages: [{end: 2.9, users: 18, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let seen = seen.lock().unwrap();
    let paced = seen.requests["GET /sleep/20"];
    let throughput = seen.requests["GET /t"];
    assert!((102..=138).contains(&paced), "constant_pacing: expected about 120 requests, the server saw {paced}");
    assert!((41..=55).contains(&throughput), "constant_throughput: expected about 48, the server saw {throughput}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_choices() {
    async fn paths(seed: u64) -> Vec<String> {
        let (url, seen) = serve().await;
        let s = scenario(
            "variables: {id: {range: [1, 1000000]}}\nusers:\n  - name: u\n    tasks:\n\
             \x20     - {name: a, requests: [{method: GET, path: '/a/{{id}}'}]}\n\
             \x20     - {name: b, weight: 2, requests: [{method: GET, path: '/b/{{id}}'}]}\n\
             shape: {stages: [{end: 0.3, users: 1, spawn_rate: 100}]}\n",
        );
        let mut plan = plan(s, &url);
        plan.seed = seed;
        let handle = RunHandle::start(plan);
        handle.wait().await;
        let order = seen.lock().unwrap().order.clone();
        assert!(order.len() >= 30, "{} requests", order.len());
        order[..30].to_vec()
    }
    let first = paths(7).await;
    assert_eq!(first, paths(7).await, "one user, one seed: the same tasks and values");
    assert_ne!(first, paths(8).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_every_second_with_the_user_count() {
    let (url, _seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.02}\n    tasks: [{name: a, requests: [{method: GET, path: /w}]}]\n\
         shape: {stages: [{end: 2.5, users: 3, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let status = handle.status();
    assert_eq!(status.state, RunState::Running);
    assert_eq!(status.windows_closed, 1);
    assert_eq!((status.users, status.target_users), (3, 3));
    assert!(status.health.cpu_pct > 0.0, "{:?}", status.health);
    handle.wait().await;
    let status = handle.status();
    assert_eq!(status.windows_closed, 3, "two whole seconds and the last half");
    let started_s = status.started_at_unix_ms.unwrap() / 1000;
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    let history = stats.history();
    assert_eq!(history.len(), 3);
    for (i, window) in history.iter().enumerate() {
        assert_eq!(window.users, 3);
        assert!(
            window.start_unix_s.abs_diff(started_s + i as u64) <= 1,
            "window {i} starts at {}",
            window.start_unix_s
        );
        assert!(window.total.summary.requests > 10, "window {i}: {} requests", window.total.summary.requests);
    }
    assert_eq!(history.iter().map(|w| w.total.summary.requests).sum::<u64>(), stats.total().requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_do_not_suit_the_target_fail_the_run_with_a_reason() {
    let s = scenario(
        "users:\n  - {name: u, tasks: [{name: a, requests: [{redis: [GET, k]}]}]}\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}\n",
    );
    let (url, _seen) = serve().await;
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Failed);
    assert!(handle.status().error.unwrap().contains("redis requests need a redis:// target"));
}

#[tokio::test(flavor = "current_thread")]
async fn the_engine_runs_on_a_current_thread_runtime() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {between: [0.01, 0.03]}\n    tasks: [{name: a, requests: [{method: GET, path: /c}]}]\n\
         shape: {stages: [{end: 1, users: 4, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let served = seen.lock().unwrap().requests["GET /c"];
    // 4 users at one task per ~20 ms for 1 s.
    assert!((100..=250).contains(&served), "{served}");
    assert_eq!(agent_counts(&handle)["GET /c"].0, served);
}

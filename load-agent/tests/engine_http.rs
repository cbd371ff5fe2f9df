//! The engine against a real HTTP server on loopback: Locust semantics, and exact request accounting.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::protocol::RunState;
use load_agent::scenario::Scenario;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    /// "METHOD path" → count
    requests: BTreeMap<String, u64>,
    /// cookie values sent with GET /cart
    cart_cookies: Vec<Option<String>>,
    sessions_issued: u64,
}

type Shared = Arc<Mutex<Seen>>;

async fn handle(State(seen): State<Shared>, method: axum::http::Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut seen = seen.lock().unwrap();
    *seen.requests.entry(format!("{method} {path}")).or_default() += 1;
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).map(str::to_string);
    match (method.as_str(), path.as_str()) {
        ("GET", "/") if cookie.is_none() => {
            seen.sessions_issued += 1;
            let session = format!("session={}; Path=/", seen.sessions_issued);
            ([(header::SET_COOKIE, session)], "home").into_response()
        }
        ("POST", "/cart") => (StatusCode::FOUND, [(header::LOCATION, "/cart")]).into_response(),
        ("GET", "/cart") => {
            seen.cart_cookies.push(cookie);
            "cart".into_response()
        }
        ("GET", "/error") => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => "ok".into_response(),
    }
}

async fn serve() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = Router::new().fallback(handle).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn scenario(yaml: &str) -> Scenario {
    Scenario::parse(yaml, Path::new("test.yaml")).unwrap()
}

fn plan(scenario: Scenario, url: &str) -> RunPlan {
    RunPlan {
        scenario,
        target: Target::parse(url).unwrap(),
        seed: 42,
        agent_index: 0,
        agent_count: 1,
        start_at: None,
        deadline: None,
        max_users: 10_000,
    }
}

fn agent_counts(handle: &RunHandle) -> BTreeMap<String, (u64, u64)> {
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    stats.entries().map(|e| (format!("{} {}", e.method, e.name), (e.requests, e.failures))).collect()
}

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
    assert_eq!(server.get("GET /a"), Some(&a), "agent and server disagree on /a");
    assert_eq!(server.get("GET /b"), Some(&b), "agent and server disagree on /b");
    let collector = handle.collector();
    assert_eq!(collector.lock().unwrap().total().requests, a + b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_pacing_sets_the_request_rate() {
    let (url, seen) = serve().await;
    // 10 users, one task every 0.25 s each: 40 requests per second once all have started.
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant_pacing: 0.25}\n    tasks: [{name: a, requests: [{method: GET, path: /p}]}]\n\
         shape: {stages: [{end: 3, users: 10, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    handle.wait().await;
    let served = seen.lock().unwrap().requests["GET /p"];
    assert!((100..=140).contains(&served), "expected about 120 requests, the server saw {served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_own_cookies_and_redirects_count_once() {
    let (url, seen) = serve().await;
    let s = scenario(
        "variables: {q: {range: [1, 10]}}\nusers:\n  - name: shopper\n    wait: {constant: 0.05}\n    on_start: [{method: GET, path: /}]\n\
         \x20   tasks: [{name: add, requests: [{method: POST, path: /cart, form: {quantity: \"{{q}}\"}}]}]\n\
         shape: {stages: [{end: 1.5, users: 5, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    handle.wait().await;
    let agent = agent_counts(&handle);
    let seen = seen.lock().unwrap();
    let posts = seen.requests["POST /cart"];
    assert!(posts > 20);
    // The agent times POST + redirect + GET as one request, under the POST's name.
    assert_eq!(agent["POST /cart"], (posts, 0));
    assert!(!agent.contains_key("GET /cart"));
    assert_eq!(seen.requests["GET /cart"], posts, "every redirect was followed");
    assert_eq!(seen.sessions_issued, 5, "each user opened one session on its first GET /");
    assert!(seen.cart_cookies.iter().all(Option::is_some), "a redirected request lost its cookie");
    let distinct: std::collections::BTreeSet<_> = seen.cart_cookies.iter().collect();
    assert_eq!(distinct.len(), 5, "users shared cookie jars");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_ramp_and_a_new_stage_preempts_the_ramp() {
    let (url, _seen) = serve().await;
    // Ramp toward 40 at 20/s, but at 1 s the target drops to 4: the count turns around near 20, never reaching 40.
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /r}]}]\n\
         shape: {stages: [{end: 1, users: 40, spawn_rate: 20}, {end: 3, users: 4, spawn_rate: 100}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    let mut samples = Vec::new();
    while handle.status().state != RunState::Finished {
        samples.push(handle.status().users);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = *samples.iter().max().unwrap();
    assert!((15..=25).contains(&peak), "peak {peak} users; samples {samples:?}");
    let late = &samples[samples.len() * 3 / 4..samples.len() - 1];
    assert!(late.iter().all(|&u| u == 4), "after the second stage settles: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_split_users_exactly() {
    let (url, _seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /s}]}]\n\
         shape: {stages: [{end: 1.5, users: 7, spawn_rate: 1000}]}\n",
    );
    let mut first = plan(s.clone(), &url);
    first.agent_count = 2;
    let mut second = first.clone();
    second.agent_index = 1;
    let (a, b) = (RunHandle::start(first), RunHandle::start(second));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!((a.status().users, b.status().users), (4, 3));
    assert_eq!((a.status().target_users, b.status().target_users), (4, 3));
    a.wait().await;
    b.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_deadline_end_a_run_and_failures_are_recorded() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.05}\n    tasks: [{name: a, requests: [{method: GET, path: /error}]}]\n\
         shape: {stages: [{end: 3600, users: 3, spawn_rate: 1000}]}\n",
    );
    let mut with_deadline = plan(s.clone(), &url);
    with_deadline.deadline = Some(Duration::from_millis(800));
    let by_deadline = RunHandle::start(with_deadline);
    assert_eq!(by_deadline.wait().await, RunState::Stopped);
    let agent = agent_counts(&by_deadline);
    let (requests, failures) = agent["GET /error"];
    assert!(requests > 5 && requests == failures, "{requests} requests, {failures} failures");
    let collector = by_deadline.collector();
    let errors: Vec<String> = collector.lock().unwrap().failures().map(|f| f.key.error.clone()).collect();
    assert_eq!(errors, vec!["HTTPError 500 Internal Server Error".to_string()]);
    assert_eq!(seen.lock().unwrap().requests["GET /error"], requests);

    let stopped = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stopped.stop();
    stopped.stop();
    assert_eq!(stopped.wait().await, RunState::Stopped);
    assert_eq!(stopped.status().users, 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_shows_as_connection_failures() {
    // Port 9 (discard) is closed on loopback: every request fails fast and is counted, none is lost.
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /}]}]\n\
         shape: {stages: [{end: 0.5, users: 2, spawn_rate: 100}]}\n",
    );
    let handle = RunHandle::start(plan(s, "http://127.0.0.1:9"));
    assert_eq!(handle.wait().await, RunState::Finished);
    let (requests, failures) = agent_counts(&handle)["GET /"];
    assert!(requests >= 2 && requests == failures, "{requests} requests, {failures} failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_takes_a_new_user_target_or_shape() {
    use load_agent::protocol::ChangeRun;
    use load_agent::scenario::{LoadShape, Stage};
    let (url, _seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /c}]}]\n\
         shape: {stages: [{end: 3, users: 2, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(handle.status().users, 2);
    handle.change(&ChangeRun { users: Some(6), spawn_rate: Some(1000.0), shape: None }).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(handle.status().users, 6);
    let shape = LoadShape::Stages(vec![Stage { end: 0.6, users: 1, spawn_rate: 1000.0 }]);
    handle.change(&ChangeRun { users: None, spawn_rate: None, shape: Some(shape) }).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.status().users, 1);
    assert!(handle.change(&ChangeRun { users: None, spawn_rate: None, shape: None }).is_err());
    // The new shape ends 0.6 s after the change, well before the original 3 s.
    assert_eq!(handle.wait().await, RunState::Finished);
    // Elapsed time stops with the run.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(handle.status().elapsed_s < 2.5, "the replaced shape still ran: {} s", handle.status().elapsed_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_starts_iterations_at_the_rate() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    tasks: [{name: a, requests: [{method: GET, path: /o}]}]\n\
         shape:\n  arrival_rate: {start_rate: 100, stages: [{duration: 2, target: 100}], preallocated_users: 5, max_users: 50}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    assert_eq!(handle.wait().await, RunState::Finished);
    let served = seen.lock().unwrap().requests["GET /o"];
    assert!((170..=230).contains(&served), "100 iterations/s for 2 s gave {served}");
    assert_eq!(handle.status().dropped_iterations, 0);
    assert_eq!(agent_counts(&handle)["GET /o"].0, served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_drops_iterations_when_its_users_run_out() {
    let (url, _seen) = serve().await;
    // 5 users at most, 300 ms per request: about 16 iterations/s fit, 50/s are asked for.
    let s = scenario(
        "users:\n  - name: u\n    tasks: [{name: a, requests: [{method: GET, path: /slow}]}]\n\
         shape:\n  arrival_rate: {start_rate: 50, stages: [{duration: 1.5, target: 50}], preallocated_users: 2, max_users: 5}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    handle.wait().await;
    let status = handle.status();
    assert!(status.dropped_iterations > 20, "only {} iterations dropped", status.dropped_iterations);
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    let total = stats.total();
    assert!(
        total.requests >= 10 && total.min_us >= 300_000,
        "{} requests, fastest {} µs",
        total.requests,
        total.min_us
    );
}

//! Helpers of the engine tests: an HTTP target on loopback that counts what it sees, a real redis-server, and plans.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::scenario::Scenario;

/// What the test target saw.
#[derive(Default)]
pub struct Seen {
    /// "METHOD path" → count
    pub requests: BTreeMap<String, u64>,
    /// Paths in arrival order.
    pub order: Vec<String>,
    /// Cookie header sent with each GET /cart.
    pub cart_cookies: Vec<Option<String>>,
    pub sessions_issued: u64,
    /// Client addresses (one per connection).
    pub peers: BTreeSet<SocketAddr>,
    /// Bodies of POST /echo: (content type, body, custom header).
    pub echoed: Vec<(Option<String>, String, Option<String>)>,
}

pub type Shared = Arc<Mutex<Seen>>;

/// The test target:
/// - `GET /` without a cookie opens a session (`Set-Cookie: session=N`);
/// - `POST /cart` answers 302 to `/cart`; `GET /cart` notes the cookie it got;
/// - `/error` answers 500, `/sleep/MS` sleeps MS ms, `/echo` notes content type, body and `X-Test`;
/// - anything else answers "ok".
async fn handle(
    State(seen): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Some(ms) = path.strip_prefix("/sleep/").and_then(|ms| ms.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut seen = seen.lock().unwrap();
    *seen.requests.entry(format!("{method} {path}")).or_default() += 1;
    seen.order.push(uri.to_string());
    seen.peers.insert(peer);
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let cookie = text(header::COOKIE);
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
        (_, "/error") => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        ("POST", "/echo") => {
            let entry = (
                text(header::CONTENT_TYPE),
                String::from_utf8_lossy(&body).into_owned(),
                text("x-test".parse().unwrap()),
            );
            seen.echoed.push(entry);
            "echo".into_response()
        }
        _ => "ok".into_response(),
    }
}

/// Starts the test target on 127.0.0.1, port 0: its base URL and what it sees.
pub async fn serve() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = Router::new().fallback(handle).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    (url, seen)
}

pub fn scenario(yaml: &str) -> Scenario {
    Scenario::parse(yaml, Path::new("test.yaml")).unwrap()
}

pub fn plan(scenario: Scenario, url: &str) -> RunPlan {
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

/// "METHOD name" → (requests, failures), as the agent counted them.
pub fn agent_counts(handle: &RunHandle) -> BTreeMap<String, (u64, u64)> {
    let collector = handle.collector();
    let stats = collector.lock().unwrap();
    stats.entries().map(|e| (format!("{} {}", e.method, e.name), (e.requests, e.failures))).collect()
}

/// Samples `status().users` every `every` until the run is over.
pub async fn sample_users(handle: &RunHandle, every: Duration) -> Vec<(f64, u64)> {
    let mut samples = Vec::new();
    while !handle.status().state.is_over() {
        let status = handle.status();
        samples.push((status.elapsed_s, status.users));
        tokio::time::sleep(every).await;
    }
    samples
}

/// Debian's redis-server on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// Calls of `command` as the server counts them (INFO commandstats).
    pub async fn calls(&self, command: &str) -> u64 {
        let mut connection = self.connection().await;
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await.unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

//! Helpers shared by the integration tests: a counting HTTP target and a real agent process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, Uri};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_load-agent");
pub const TOKEN: &str = "test-token-1234";

/// A `load-agent --listen 127.0.0.1:0` process, killed when dropped. Its stderr (the log) goes to
/// `DATA_DIR/agent.log`.
pub struct Agent {
    pub child: Child,
    /// Where to connect: `127.0.0.1:PORT`.
    pub address: String,
    pub data_dir: PathBuf,
}

impl Agent {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Agent {
        Agent::start_on("127.0.0.1:0", data_dir, extra)
    }

    /// An agent listening on `listen` (e.g. `0.0.0.0:0`); tests still reach it on 127.0.0.1.
    pub fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> Agent {
        let mut command = Command::new(BIN);
        command.args(["--listen", listen, "--data-dir", data_dir.to_str().unwrap()]).args(extra);
        Agent::spawn(command, data_dir)
    }

    /// Starts `command`, an agent (or a wrapper that execs one) listening as told by its arguments, and reads the
    /// address from its first line.
    pub fn spawn(mut command: Command, data_dir: &Path) -> Agent {
        let log = std::fs::File::options().create(true).append(true).open(data_dir.join("agent.log")).unwrap();
        let mut child = command.env_remove("LOAD_AGENT_TOKEN").stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let bound =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
        let port = bound.rsplit_once(':').unwrap().1;
        let address = format!("127.0.0.1:{port}");
        Agent { child, address, data_dir: data_dir.to_path_buf() }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("agent.log")).unwrap_or_default()
    }

    /// One raw HTTP/1.1 request on a fresh connection (the path is sent exactly as given): (status, body).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.call_raw(method, path, token, &body)
    }

    pub fn call_raw(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let mut response = Vec::new();
        // The agent may close early (e.g. a body over the limit): keep what arrived.
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response).to_string();
        let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response:?}"));
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// A call with the test token, its body read as JSON.
    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = self.call(method, path, Some(TOKEN), body);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn wait_over(&self, run: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, status) = self.json("GET", &format!("/v1/runs/{run}"), None);
            if ["finished", "stopped", "failed"].contains(&status["state"].as_str().unwrap()) {
                return status;
            }
            assert!(Instant::now() < deadline, "run {run} did not end: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: the agent dies at once, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the agent to exit (SIGKILL after 20 s).
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_child(&mut self.child, Duration::from_secs(20)).and_then(|s| s.code())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for `child` up to `limit`; kills it when it takes longer (and returns `None`).
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args`, killed after `limit`: its output.
pub fn run_bin(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("LOAD_AGENT_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        out.read_to_end(&mut buffer).unwrap();
        buffer
    });
    let stderr = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        err.read_to_end(&mut buffer).unwrap();
        buffer
    });
    let status = wait_child(&mut child, limit).unwrap_or_else(|| panic!("load-agent {args:?} ran over {limit:?}"));
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Polls `check` every 50 ms until it is true; false after `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// An HTTP server on 127.0.0.1 counting requests; runs on its own thread. Paths under `/fail` answer 500 "boom",
/// everything else 200 "ok".
pub fn counting_server() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let app = Router::new().fallback(move |uri: Uri| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    if uri.path().starts_with("/fail") {
                        (StatusCode::INTERNAL_SERVER_ERROR, "boom")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), count)
}

/// Reads a run's status.json straight from the data directory (no API call).
pub fn status_on_disk(data_dir: &Path, run: &str) -> Option<Value> {
    let bytes = std::fs::read(data_dir.join("runs").join(run).join("status.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A scenario (as JSON) of one user class hitting GET `path` every `wait_s` seconds, `users` users for `end_s`.
pub fn scenario_json(path: &str, wait_s: f64, users: u32, end_s: f64) -> Value {
    serde_json::json!({
        "users": [{"name": "u", "wait": {"constant": wait_s}, "tasks": [{"name": "t", "requests": [{"method": "GET", "path": path}]}]}],
        "shape": {"stages": [{"end": end_s, "users": users, "spawn_rate": 100}]}
    })
}

/// A StartRun body.
pub fn start_body(target: &str, end_s: f64, users: u32) -> Value {
    serde_json::json!({"target": target, "seed": 3, "scenario": scenario_json("/x", 0.05, users, end_s)})
}

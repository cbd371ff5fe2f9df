//! Helpers of the emulated-backend tests: the load-agent binary, agent processes, raw HTTP, waiting for orch.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ORCH: &str = env!("CARGO_BIN_EXE_orch");

/// The load-agent binary of the same build as orch, built first if needed (orchestrator's tests alone do not
/// build another package's binaries; a nested `cargo build` is a no-op when it is current).
pub fn load_agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(ORCH).parent().expect("orch's folder").to_path_buf();
        let release = dir.file_name().is_some_and(|name| name == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "load-agent", "--bin", "load-agent"]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            build.arg("--release");
        }
        let output = build.output().expect("run cargo build");
        assert!(output.status.success(), "building load-agent: {}", String::from_utf8_lossy(&output.stderr));
        let bin = dir.join("load-agent");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// A `load-agent --listen` process, killed when dropped.
pub struct Agent {
    pub child: Child,
    pub address: String,
    pub data: tempfile::TempDir,
}

impl Agent {
    /// Starts `prefix... load-agent --listen listen extra...` (`prefix` e.g. `ip netns exec NS`).
    pub fn start_with(prefix: &[&str], listen: &str, extra: &[&str]) -> Agent {
        let data = tempfile::tempdir().expect("temp dir");
        let bin = load_agent_bin();
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let log = std::fs::File::create(data.path().join("agent.log")).expect("log");
        let mut child = command
            .args(["--listen", listen, "--data-dir"])
            .arg(data.path().join("data"))
            .args(extra)
            .env_remove("LOAD_AGENT_TOKEN")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start load-agent");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the address");
        let bound = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line {line:?}"));
        Agent { address: bound.to_string(), child, data }
    }

    pub fn start(extra: &[&str]) -> Agent {
        Agent::start_with(&[], "127.0.0.1:0", extra)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub fn http(address: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        // Host as a real client sends it: an agent without a token answers only to its own address.
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response:?}"));
    let head_end = response.find("\r\n\r\n").map_or(response.len(), |i| i + 4);
    let (head, body) = response.split_at(head_end);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Waits for `child` up to `limit`, killing it then; `None` when it had to be killed.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `orch ARGS` in `dir`, with `env`, stdout and stderr to files in `dir`.
pub fn spawn_orch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let stdout = std::fs::File::create(dir.join("orch.stdout")).unwrap();
    let stderr = std::fs::File::create(dir.join("orch.stderr")).unwrap();
    let mut command = Command::new(ORCH);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("ORCH_AGENTS")
        .env_remove("ORCH_AGENT_TOKEN")
        .env("ORCH_LOAD_AGENT_BIN", load_agent_bin())
        .stdout(stdout)
        .stderr(stderr);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("start orch")
}

pub fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("orch.stderr")).unwrap_or_default()
}

/// The only cell folder of `run_dir` whose config says `backend`.
pub fn cell_dir(run_dir: &Path, backend: &str) -> PathBuf {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(run_dir).unwrap().flatten() {
        let config = entry.path().join("config.yaml");
        if let Ok(text) = std::fs::read_to_string(&config)
            && text.lines().any(|l| l.trim() == format!("backend: {backend}"))
        {
            found.push(entry.path());
        }
    }
    assert_eq!(found.len(), 1, "cells with backend {backend} in {}: {found:?}", run_dir.display());
    found.pop().unwrap()
}

/// metrics.csv as (header, rows).
pub fn metrics(cell: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(cell.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    (header, rows)
}

/// One column of metrics.csv as numbers.
pub fn column(cell: &Path, name: &str) -> Vec<f64> {
    let (header, rows) = metrics(cell);
    let index = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[index].parse().unwrap()).collect()
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Waits until `path` contains `needle`, returning the file's text.
pub fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never contained {needle:?}:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer with its headers.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// One HTTP/1.1 request with the given headers on a fresh connection.
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.get(9..12)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Answer { status, headers, body }
}

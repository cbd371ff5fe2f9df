//! A small Chrome DevTools Protocol client for the report's browser test: starts Debian's chromium headless
//! with a fresh profile, opens a page, and records console errors, uncaught exceptions, log errors and every
//! network request, then takes a screenshot.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The chromium binary: $CHROMIUM, else the first of Debian's names on PATH. A missing browser fails the test.
pub fn chromium_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("chromium is not installed: scripts/test.sh installs it (apt-get install chromium), or set CHROMIUM");
}

/// A headless chromium and one page target it is attached to.
pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Every event received so far, in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// What a page did while loading.
#[derive(Debug, Default)]
pub struct PageReport {
    pub console_errors: Vec<String>,
    pub exceptions: Vec<String>,
    pub log_errors: Vec<String>,
    pub requests: Vec<String>,
}

impl Browser {
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium");
        // Chromium writes the port it chose and the browser target's path once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.trim().to_string(), path.trim().to_string());
                }
            }
            assert!(Instant::now() < deadline, "chromium did not write DevToolsActivePort within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connecting to chromium");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        let (socket, _) =
            tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream).expect("devtools websocket");
        let mut browser =
            Browser { child, socket, session: String::new(), next_id: 0, events: Vec::new(), _profile: profile };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        browser.session = attached["sessionId"].as_str().expect("sessionId").to_string();
        for domain in ["Runtime.enable", "Log.enable", "Network.enable", "Page.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket.send(Message::text(message.to_string())).expect("sending a devtools command");
        self.next_id
    }

    fn receive(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => Some(serde_json::from_str(text.as_str()).expect("devtools JSON")),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                None
            }
            Err(e) => panic!("devtools connection: {e}"),
        }
    }

    /// Sends a command (to the page session once attached) and waits for its result, keeping events.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} within 60 s");
            let Some(message) = self.receive() else { continue };
            if message["id"].as_u64() == Some(id) {
                assert!(message.get("error").is_none(), "{method} failed: {}", message["error"]);
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Reads events until `method` arrives or `timeout` passes.
    fn wait_for(&mut self, method: &str, timeout: Duration) -> bool {
        if self.events.iter().any(|e| e["method"] == method) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(message) = self.receive()
                && message.get("method").is_some()
            {
                let found = message["method"] == method;
                self.events.push(message);
                if found {
                    return true;
                }
            }
        }
        false
    }

    /// Reads whatever events arrive within `quiet`.
    fn drain(&mut self, quiet: Duration) {
        let socket = self.socket.get_ref();
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline {
            if let Some(message) = self.receive()
                && message.get("method").is_some()
            {
                self.events.push(message);
            }
        }
        self.socket.get_ref().set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    }

    /// Opens `file` and reports what happened until its load event and a second after.
    pub fn open(&mut self, file: &Path) -> PageReport {
        self.events.clear();
        let url = format!("file://{}", file.canonicalize().expect("page path").display());
        self.call("Page.navigate", json!({"url": url}));
        assert!(self.wait_for("Page.loadEventFired", Duration::from_secs(60)), "{url} did not finish loading");
        self.drain(Duration::from_secs(1));
        let mut report = PageReport::default();
        for event in &self.events {
            let params = &event["params"];
            match event["method"].as_str().unwrap_or_default() {
                "Runtime.consoleAPICalled" if params["type"] == "error" || params["type"] == "assert" => {
                    report.console_errors.push(params["args"].to_string())
                }
                "Runtime.exceptionThrown" => report.exceptions.push(params["exceptionDetails"].to_string()),
                "Log.entryAdded" if params["entry"]["level"] == "error" => {
                    report.log_errors.push(params["entry"].to_string())
                }
                "Network.requestWillBeSent" => {
                    report.requests.push(params["request"]["url"].as_str().unwrap_or_default().to_string())
                }
                _ => {}
            }
        }
        report
    }

    /// A PNG of the whole page at 1280 CSS pixels wide (up to 12,000 tall).
    pub fn screenshot(&mut self) -> Vec<u8> {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let height = metrics["cssContentSize"]["height"].as_f64().unwrap_or(900.0).clamp(300.0, 12_000.0);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": height.ceil() as u64, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        decode_base64(shot["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        // Only the process this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as CDP sends binary data.
pub fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&b| b != b'=').collect();
        let mut acc = 0u32;
        for &b in &data {
            acc = (acc << 6) | value(b);
        }
        acc <<= 6 * (4 - data.len() as u32);
        let take = data.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + take]);
    }
    out
}

#[test]
fn base64_decodes_padding() {
    assert_eq!(decode_base64("TWFu"), b"Man");
    assert_eq!(decode_base64("TWE="), b"Ma");
    assert_eq!(decode_base64("TQ=="), b"M");
}

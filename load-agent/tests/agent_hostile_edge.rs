//! Hostile and careless clients of `load-agent --listen`, through the real binary: cross-site requests from a
//! browser, targets off loopback, idle and trickling connections under a small file limit, and start-up values
//! that could never work.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Agent, BIN, TOKEN, counting_server, run_bin, start_body};
use serde_json::Value;

/// One request exactly as written (`request` lacks only the final blank line and body): (status, JSON body).
fn send(address: &str, head: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
}

fn port(agent: &Agent) -> &str {
    agent.address.rsplit_once(':').unwrap().1
}

/// A start that would run an hour from now: its target is checked, yet no load is sent anywhere.
fn later_start(target: &str) -> String {
    let hour_ahead = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 3_600_000;
    let mut body = start_body(target, 1.0, 1);
    body["start_at_unix_ms"] = hour_ahead.into();
    if target.starts_with("redis://") {
        // A Redis target takes Redis requests: the scenario must suit it before the target is judged.
        body["scenario"]["users"][0]["tasks"][0]["requests"] = serde_json::json!([{"redis": ["PING"]}]);
    }
    body.to_string()
}

fn runs(agent: &Agent) -> Vec<Value> {
    let (status, list) = agent.json("GET", "/v1/runs", None);
    assert_eq!(status, 200, "{list}");
    list["runs"].as_array().unwrap().clone()
}

#[test]
fn a_cross_site_start_is_refused_and_a_json_start_from_the_agent_itself_accepted() {
    let (target, _served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &[]);
    let (address, port) = (agent.address.clone(), port(&agent).to_string());
    let body = start_body(&target, 0.5, 1).to_string();

    // What a web page open in a browser on this host can send (a form, or fetch after rebinding its own name).
    let cross_site = format!(
        "POST /v1/runs HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example\r\n\
         Content-Type: text/plain\r\n"
    );
    let (status, error) = send(&address, &cross_site, &body);
    assert!([403, 415, 421].contains(&status), "{status} {error}");
    assert!(error["error"].is_string(), "{error}");
    // Each defence on its own, each naming the header at fault.
    let own_host = format!("Host: {address}\r\n");
    let cases = [
        (format!("Host: evil.example:{port}\r\nContent-Type: application/json\r\n"), 421, "Host"),
        (format!("{own_host}Origin: http://evil.example\r\nContent-Type: application/json\r\n"), 403, "Origin"),
        (format!("{own_host}Origin: null\r\nContent-Type: application/json\r\n"), 403, "Origin"),
        (format!("{own_host}Content-Type: text/plain\r\n"), 415, "Content-Type"),
        (format!("{own_host}Content-Type: application/x-www-form-urlencoded\r\n"), 415, "Content-Type"),
    ];
    for (headers, code, field) in cases {
        let (status, error) = send(&address, &format!("POST /v1/runs HTTP/1.1\r\n{headers}"), &body);
        assert_eq!(status, code, "{headers:?}: {error}");
        assert_eq!(error["field"], field, "{error}");
        assert!(error["error"].as_str().unwrap().contains(field), "{error}");
    }
    // A rebound name cannot read the runs either.
    let (status, _) = send(&address, &format!("GET /v1/runs HTTP/1.1\r\nHost: evil.example:{port}\r\n"), "");
    assert_eq!(status, 421);
    assert!(runs(&agent).is_empty(), "no run was created");

    // JSON from the agent's own origin, by its address or as localhost: accepted.
    let own =
        format!("POST /v1/runs HTTP/1.1\r\n{own_host}Origin: http://{address}\r\nContent-Type: application/json\r\n");
    let (status, created) = send(&address, &own, &body);
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    agent.wait_over(&run);
    let by_name = format!("POST /v1/runs HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n");
    let (status, created) = send(&address, &by_name, &body);
    assert_eq!(status, 201, "{created}");
    agent.wait_over(created["run_id"].as_str().unwrap());
    // Stopping takes no body, and needs no content type.
    let (status, stopped) = send(&address, &format!("POST /v1/runs/{run}/stop HTTP/1.1\r\n{own_host}"), "");
    assert_eq!(status, 200, "{stopped}");
    // The health probe answers whatever name it is sent to.
    assert_eq!(send(&address, &format!("GET /v1/health HTTP/1.1\r\nHost: probe:{port}\r\n"), "").0, 200);

    // Another name, when allowed (e.g. a tunnel, on any port).
    let data = tempfile::tempdir().unwrap();
    let named = Agent::start(data.path(), &["--allow-host", "agent.internal"]);
    let (status, list) = send(&named.address, "GET /v1/runs HTTP/1.1\r\nHost: agent.internal:9000\r\n", "");
    assert_eq!(status, 200, "{list}");

    // With a token the Host is not checked (a browser cannot add the token), the other checks stay.
    let data = tempfile::tempdir().unwrap();
    let remote = Agent::start(data.path(), &["--token", TOKEN]);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let by_service = format!("GET /v1/runs HTTP/1.1\r\nHost: load-agent.default.svc:8089\r\n{auth}");
    assert_eq!(send(&remote.address, &by_service, "").0, 200);
    let form = format!("POST /v1/runs HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: text/plain\r\n", remote.address);
    assert_eq!(send(&remote.address, &form, &body).0, 415);
}

#[test]
fn an_open_loopback_agent_drives_loopback_targets_only_unless_allowed() {
    let (target, _served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &[]);
    for (remote, authority) in [
        ("http://10.1.2.3:80", "10.1.2.3:80"),
        ("http://example.com:8080/shop", "example.com:8080"),
        ("http://localhost.example:80", "localhost.example:80"),
        ("redis://192.168.0.9:6379", "192.168.0.9:6379"),
    ] {
        let (status, text) = agent.call_raw("POST", "/v1/runs", None, &later_start(remote));
        assert_eq!(status, 403, "{remote}: {text}");
        let message = serde_json::from_str::<Value>(&text).unwrap()["error"].as_str().unwrap().to_string();
        assert!(message.contains(&format!("--allow-target {authority}")), "{message}");
    }
    assert!(runs(&agent).is_empty());
    for local in [target.clone(), target.replace("127.0.0.1", "localhost"), "http://127.0.0.2:9".into()] {
        let (status, created) = agent.call_raw("POST", "/v1/runs", None, &later_start(&local));
        assert_eq!(status, 201, "{local}: {created}");
        let run = serde_json::from_str::<Value>(&created).unwrap()["run_id"].as_str().unwrap().to_string();
        assert_eq!(agent.call("POST", &format!("/v1/runs/{run}/stop"), None, None).0, 200);
    }

    // Named on the allow-list, the remote target is accepted (the run is stopped before it would start).
    let data = tempfile::tempdir().unwrap();
    let allowed = Agent::start(data.path(), &["--allow-target", "10.1.2.3:80"]);
    let (status, created) = allowed.call_raw("POST", "/v1/runs", None, &later_start("http://10.1.2.3:80"));
    assert_eq!(status, 201, "{created}");
    let run = serde_json::from_str::<Value>(&created).unwrap()["run_id"].as_str().unwrap().to_string();
    assert_eq!(allowed.call("POST", &format!("/v1/runs/{run}/stop"), None, None).0, 200);
    assert_eq!(allowed.wait_over(&run)["requests"], 0);
}

/// An agent started under an open-file limit of `files` (soft and hard).
fn start_with_file_limit(files: u32, data: &std::path::Path, extra: &[&str]) -> Agent {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .args(extra);
    Agent::spawn(command, data)
}

/// Whether the agent has closed `stream` (a read sees the end or an error, not a timeout).
fn closed_by_agent(mut stream: &TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn health_answers_while_80_idle_connections_hold_an_agent_limited_to_64_files() {
    let data = tempfile::tempdir().unwrap();
    // Timeouts far beyond the test: only the connection cap can make room.
    let agent = start_with_file_limit(64, data.path(), &["--header-read-timeout", "10m", "--idle-timeout", "10m"]);
    let idle: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(&agent.address).unwrap()).collect();
    for round in 0..3 {
        let mut stream = TcpStream::connect(&agent.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(stream, "GET /v1/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", agent.address).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 200"), "round {round}: {response:?}\n{}", agent.log());
        assert!(response.contains(r#""status":"ok""#), "{response}");
    }
    // The API as a whole still answers, and the idle connections were closed to make room.
    assert_eq!(agent.call("GET", "/v1/info", None, None).0, 200);
    let closed = idle.iter().filter(|stream| closed_by_agent(stream)).count();
    assert!(closed >= 40, "only {closed} of 80 idle connections were closed");
    assert!(agent.child.id() > 0 && !agent.log().contains("panicked"), "{}", agent.log());
}

#[test]
fn trickling_heads_and_bodies_are_cut_off_and_idle_connections_closed_after_their_timeouts() {
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--header-read-timeout", "1", "--idle-timeout", "8"]);

    // One header line every 200 ms: the head never completes; it is cut off after about a second.
    let mut trickle = TcpStream::connect(&agent.address).unwrap();
    let started = Instant::now();
    write!(trickle, "GET /v1/health HTTP/1.1\r\nHost: {}\r\n", agent.address).unwrap();
    let mut cut_off = false;
    for line in 0..100 {
        if write!(trickle, "X-Slow-{line}: a\r\n").is_err() || closed_by_agent(&trickle) {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let took = started.elapsed();
    assert!(cut_off, "still open after {took:?} of trickling");
    assert!(took >= Duration::from_millis(900), "cut off after {took:?}, before the timeout");

    // A body trickled byte by byte fails once it takes longer than the same timeout: 400, and the connection closes.
    let mut slow_body = TcpStream::connect(&agent.address).unwrap();
    write!(
        slow_body,
        "POST /v1/runs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        agent.address
    )
    .unwrap();
    slow_body.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let (mut answer, mut ended) = (Vec::new(), false);
    for _ in 0..100 {
        let _ = slow_body.write_all(b" ");
        let mut buffer = [0u8; 4096];
        match slow_body.read(&mut buffer) {
            Ok(0) => ended = true,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => ended = true,
        }
        if ended {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(ended, "still open: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("--header-read-timeout"), "{answer:?}");
    assert!(runs(&agent).is_empty());

    // A kept-alive connection outlives the head timeout between requests, and is closed once idle too long.
    let mut kept = TcpStream::connect(&agent.address).unwrap();
    let request = format!("GET /v1/health HTTP/1.1\r\nHost: {}\r\n\r\n", agent.address);
    let mut reader = BufReader::new(kept.try_clone().unwrap());
    kept.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for _ in 0..2 {
        kept.write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
        // Headers, then the body (its length is given).
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        reader.read_exact(&mut vec![0; length]).unwrap();
        std::thread::sleep(Duration::from_millis(2500));
    }
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    let ended = reader.read_to_end(&mut rest);
    assert!(ended.is_ok() && rest.is_empty(), "{ended:?} {rest:?}");
    let idle = idle_since.elapsed();
    assert!(idle < Duration::from_secs(30), "closed only after {idle:?}");
}

#[test]
fn tokens_and_allow_lists_that_could_never_work_are_refused_at_start() {
    // Surrounding whitespace is removed, with a note: the trimmed token works.
    let data = tempfile::tempdir().unwrap();
    let padded = format!(" {TOKEN}\n");
    let agent = Agent::start(data.path(), &["--token", &padded]);
    assert_eq!(agent.json("GET", "/v1/info", None).0, 200);
    assert!(agent.log().contains("note: the token has surrounding whitespace"), "{}", agent.log());
    assert!(!agent.log().contains(TOKEN), "the log never shows the token");

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let refused: [(&[&str], &str); 8] = [
        (&["--token", " \t\n"], "only whitespace"),
        (&["--token", "p\u{e4}ssword"], "printable ASCII"),
        (&["--allow-target", " host:8080"], "\" host:8080\""),
        (&["--allow-target", "*:8080"], "\"*:8080\""),
        (&["--allow-target", ":08080"], "\":08080\""),
        (&["--allow-target", "host:08080"], "write the port 8080"),
        (&["--allow-host", "agent:8089"], "\"agent:8089\""),
        (&["--header-read-timeout", "0"], "header-read-timeout"),
    ];
    for (extra, says) in refused {
        let output =
            run_bin(&[&["--listen", "127.0.0.1:0", "--data-dir", dir][..], extra].concat(), Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{extra:?}: it must not listen");
    }
}

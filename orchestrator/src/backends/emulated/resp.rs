//! A minimal RESP (Redis protocol) front for apps whose routes match Redis commands, so the redis-cluster
//! scenarios replay unchanged: load-agent's `redis:` requests go to `redis://HOST:PORT` exactly as they would to a
//! real Redis. Each command that matches a route walks its call tree; GET and SET keep their values, other routed
//! commands answer +OK. The handshake commands a client sends (PING, CLIENT, SELECT, ...) answer at once without
//! touching the model. Commands on one connection are answered in order (pipelining works).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use super::calls::run_route;
use super::cluster::Cluster;

/// Longest argument accepted (a value of the scenarios is a few bytes; Redis allows 512 MB).
const MAX_ARGUMENT_BYTES: usize = 1 << 20;
const MAX_ARGUMENTS: usize = 1024;
/// Keys kept at most; beyond, the store starts over (the scenarios use 10,000 keys).
const MAX_KEYS: usize = 1_000_000;

pub struct RespApp {
    pub cluster: Arc<Cluster>,
    pub timeout: Duration,
    store: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

impl RespApp {
    pub fn new(cluster: Arc<Cluster>, timeout: Duration) -> RespApp {
        RespApp { cluster, timeout, store: Mutex::new(HashMap::new()) }
    }
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, app: Arc<RespApp>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, app.clone()));
    }
}

async fn connection(stream: TcpStream, app: Arc<RespApp>) {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    loop {
        let command = match read_command(&mut reader).await {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(error) => {
                let _ = writer.write_all(format!("-ERR Protocol error: {error}\r\n").as_bytes()).await;
                let _ = writer.flush().await;
                return;
            }
        };
        let quit = command.first().is_some_and(|c| c.eq_ignore_ascii_case(b"QUIT"));
        let reply = execute(&app, &command).await;
        if writer.write_all(&reply).await.is_err() {
            return;
        }
        // Flush once the client has nothing more queued: pipelined commands share a write.
        if (reader.buffer().is_empty() || quit) && writer.flush().await.is_err() {
            return;
        }
        if quit {
            return;
        }
    }
}

/// Why a command could not be read; answered as `-ERR Protocol error: ...` before the connection closes.
#[derive(Debug, thiserror::Error)]
enum ProtocolError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0} arguments is too many")]
    TooManyArguments(usize),
    #[error("expected '$'")]
    NoBulkString,
    #[error("an argument of {0} bytes is too long")]
    ArgumentTooLong(usize),
    #[error("bad length")]
    BadLength,
}

/// Reads one command: a RESP array of bulk strings, or an inline command. `None` at end of stream.
async fn read_command(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    let line = trim_crlf(&line);
    let Some(count) = line.strip_prefix(b"*") else {
        // Inline command: words separated by spaces.
        return Ok(Some(line.split(|b| *b == b' ').filter(|w| !w.is_empty()).map(<[u8]>::to_vec).collect()));
    };
    let count = parse_number(count)?;
    if count > MAX_ARGUMENTS {
        return Err(ProtocolError::TooManyArguments(count));
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let mut header = Vec::new();
        reader.read_until(b'\n', &mut header).await?;
        let Some(length) = trim_crlf(&header).strip_prefix(b"$") else {
            return Err(ProtocolError::NoBulkString);
        };
        let length = parse_number(length)?;
        if length > MAX_ARGUMENT_BYTES {
            return Err(ProtocolError::ArgumentTooLong(length));
        }
        let mut bytes = vec![0; length + 2];
        reader.read_exact(&mut bytes).await?;
        bytes.truncate(length);
        args.push(bytes);
    }
    Ok(Some(args))
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_number(text: &[u8]) -> Result<usize, ProtocolError> {
    std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or(ProtocolError::BadLength)
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

async fn execute(app: &RespApp, command: &[Vec<u8>]) -> Vec<u8> {
    let Some(name) = command.first() else { return b"-ERR empty command\r\n".to_vec() };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let cluster = &app.cluster;
    let Some(route) = cluster.app.routes.iter().position(|r| r.redis.as_deref() == Some(name.as_str())) else {
        return match name.as_str() {
            "PING" => match command.get(1) {
                Some(message) => bulk(message),
                None => b"+PONG\r\n".to_vec(),
            },
            "CLIENT" | "SELECT" | "QUIT" | "READONLY" => b"+OK\r\n".to_vec(),
            "COMMAND" => b"*0\r\n".to_vec(),
            "INFO" => bulk(b"# Server\r\nredis_version:7.0.0\r\nredis_mode:emulated\r\n"),
            _ => format!("-ERR unknown command '{name}'\r\n").into_bytes(),
        };
    };
    let arity = match name.as_str() {
        "GET" => 2,
        "SET" => 3,
        _ => 1,
    };
    if command.len() < arity {
        return format!("-ERR wrong number of arguments for '{name}' command\r\n").into_bytes();
    }
    cluster.telemetry.received(route);
    if let Err(refusal) = run_route(cluster, route, Instant::now() + app.timeout).await {
        cluster.telemetry.answered(route, refusal.status());
        return format!("-ERR {}\r\n", refusal.message()).into_bytes();
    }
    cluster.telemetry.answered(route, 200);
    let mut store = app.store.lock().unwrap_or_else(|e| e.into_inner());
    match (name.as_str(), command.get(1), command.get(2)) {
        ("GET", Some(key), _) => match store.get(key) {
            Some(value) => bulk(value),
            None => b"$-1\r\n".to_vec(),
        },
        ("SET", Some(key), Some(value)) => {
            if store.len() >= MAX_KEYS && !store.contains_key(key) {
                store.clear();
            }
            store.insert(key.clone(), value.clone());
            b"+OK\r\n".to_vec()
        }
        _ => b"+OK\r\n".to_vec(),
    }
}

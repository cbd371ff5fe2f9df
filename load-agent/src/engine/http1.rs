//! One user's HTTP/1.1 connection: one request at a time on a keep-alive TCP connection, the response head parsed
//! with httparse and the body counted, not kept.
//!
//! Why not a general client: a closed-model user spends most of its life waiting (Online Boutique's users wait 1 to
//! 10 s between tasks), so what a connection holds while it waits decides the generator's memory. Here an idle
//! connection is its socket and nothing else: the read buffer lives only during an exchange. A hyper client
//! connection keeps a dispatcher task, a request channel and 8 KiB read and write buffers for its whole life
//! (about 21 KiB per waiting user, measured; docs/BENCHMARKS.md).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines a response head may have.
const MAX_HEADERS: usize = 128;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// What the caller needs of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Every Set-Cookie value, in order.
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    /// Body bytes after removing the chunked framing.
    pub body_bytes: u64,
    /// The connection can carry another request.
    pub keep_alive: bool,
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A reused connection failed before any byte of a response arrived: the server had closed it while it was
    /// idle, so the request can go again on a new connection.
    Stale(String),
    Failed(String),
}

impl Failure {
    pub fn message(self) -> String {
        match self {
            Failure::Stale(m) | Failure::Failed(m) => m,
        }
    }
}

/// A TCP connection to the target.
pub struct Connection {
    stream: TcpStream,
    /// Carried an exchange before this one.
    reused: bool,
}

impl Connection {
    pub async fn open(host: &str, port: u16) -> Result<Connection, String> {
        let stream = TcpStream::connect((host, port)).await.map_err(|e| format!("ConnectionError: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("ConnectionError: {e}"))?;
        Ok(Connection { stream, reused: false })
    }

    /// False when the server has closed the idle connection (or sent something unasked), so it must not be used.
    pub fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `request` (head and body, already serialized) and reads the response; `head_request` says the
    /// response has no body whatever its headers say.
    pub async fn exchange(&mut self, request: &[u8], head_request: bool) -> Result<Response, Failure> {
        let reused = self.reused;
        let before_response = |message: String| if reused { Failure::Stale(message) } else { Failure::Failed(message) };
        self.stream.write_all(request).await.map_err(|e| before_response(format!("ConnectionError: {e}")))?;

        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let head = read_head(&mut self.stream, &mut buf, before_response).await?;
        let mut keep_alive = head.keep_alive;
        let body_bytes = if head_request || head.status == 204 || head.status == 304 {
            0
        } else {
            match head.framing {
                Framing::Length(length) => read_counted(&mut self.stream, &mut buf, length).await?,
                Framing::Chunked => read_chunked(&mut self.stream, &mut buf).await?,
                Framing::UntilClose => {
                    keep_alive = false;
                    read_to_end(&mut self.stream, &mut buf).await?
                }
            }
        };
        // Bytes past the response were not asked for: the connection is out of step, so it is not reused.
        if !buf.is_empty() {
            keep_alive = false;
        }
        self.reused = true;
        Ok(Response {
            status: head.status,
            set_cookies: head.set_cookies,
            location: head.location,
            body_bytes,
            keep_alive,
        })
    }
}

/// Reads what the socket has into `buf`'s spare room; 0 at the end of the stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    stream.read_buf(buf).await
}

fn closed_early(what: &str) -> Failure {
    Failure::Failed(format!("ConnectionError: the connection closed in the middle of {what}"))
}

/// Reads up to the end of the final (non-informational) response head and removes it from `buf`.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    before_response: impl Fn(String) -> Failure,
) -> Result<Head, Failure> {
    let mut received_any = false;
    loop {
        if let Some((head, length)) = parse_head(buf).map_err(Failure::Failed)? {
            buf.drain(..length);
            match head.status {
                101 => return Err(Failure::Failed("ConnectionError: protocol upgrades are not supported".into())),
                // 100 Continue and 103 Early Hints precede the real response.
                100..=199 => continue,
                _ => return Ok(head),
            }
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Failure::Failed(format!("ConnectionError: response head over {MAX_HEAD_BYTES} bytes")));
        }
        match read_more(stream, buf).await {
            Ok(0) if !received_any => {
                return Err(before_response(
                    "ConnectionError: the server closed the connection without a response".into(),
                ));
            }
            Ok(0) => return Err(closed_early("a response head")),
            Ok(_) => received_any = true,
            Err(e) if !received_any => return Err(before_response(format!("ConnectionError: {e}"))),
            Err(e) => return Err(Failure::Failed(format!("ConnectionError: {e}"))),
        }
    }
}

/// A body of `length` bytes.
async fn read_counted(stream: &mut TcpStream, buf: &mut Vec<u8>, length: u64) -> Result<u64, Failure> {
    let mut remaining = length;
    loop {
        let take = remaining.min(buf.len() as u64);
        remaining -= take;
        buf.drain(..take as usize);
        if remaining == 0 {
            return Ok(length);
        }
        match read_more(stream, buf).await {
            Ok(0) => return Err(closed_early(&format!("a body ({} of {length} bytes came)", length - remaining))),
            Ok(_) => {}
            Err(e) => return Err(Failure::Failed(format!("ConnectionError: {e}"))),
        }
    }
}

/// A chunked body; returns the payload bytes.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u64, Failure> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = 0;
    loop {
        let (consumed, payload) = decoder.feed(buf).map_err(Failure::Failed)?;
        buf.drain(..consumed);
        body += payload;
        if decoder.is_done() {
            return Ok(body);
        }
        match read_more(stream, buf).await {
            Ok(0) => return Err(closed_early("a chunked body")),
            Ok(_) => {}
            Err(e) => return Err(Failure::Failed(format!("ConnectionError: {e}"))),
        }
    }
}

/// A body that ends when the server closes the connection.
async fn read_to_end(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u64, Failure> {
    let mut body = 0;
    loop {
        body += buf.len() as u64;
        buf.clear();
        match read_more(stream, buf).await {
            Ok(0) => return Ok(body),
            Ok(_) => {}
            Err(e) => return Err(Failure::Failed(format!("ConnectionError: {e}"))),
        }
    }
}

/// A parsed response head, with how its body is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    set_cookies: Vec<String>,
    location: Option<String>,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses a response head at the start of `buf`: `Ok(None)` while it is incomplete, else the head and its length.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("ConnectionError: bad response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut head =
        Head { status, set_cookies: Vec::new(), location: None, framing: Framing::UntilClose, keep_alive: !http10 };
    let mut content_length: Option<u64> = None;
    let mut chunked = None;
    for header in response.headers.iter() {
        let value = || String::from_utf8_lossy(header.value).trim().to_string();
        let name = header.name;
        if name.eq_ignore_ascii_case("set-cookie") {
            head.set_cookies.push(value());
        } else if name.eq_ignore_ascii_case("location") {
            head.location = Some(value());
        } else if name.eq_ignore_ascii_case("content-length") {
            let parsed =
                value().parse::<u64>().map_err(|_| format!("ConnectionError: bad Content-Length {:?}", value()))?;
            if content_length.is_some_and(|known| known != parsed) {
                return Err("ConnectionError: conflicting Content-Length headers".into());
            }
            content_length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The body is chunked when chunked is the last coding applied (RFC 9112 6.3).
            chunked = Some(value().rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked")));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value().split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && http10 {
                    head.keep_alive = true;
                }
            }
        }
    }
    head.framing = match (chunked, content_length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) => Framing::UntilClose,
        (None, Some(length)) => Framing::Length(length),
        (None, None) => Framing::UntilClose,
    };
    Ok(Some((head, length)))
}

/// Where a chunked body's decoder stands (RFC 9112 7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: the hex digits so far.
    #[default]
    Size,
    /// After the size: whitespace or a chunk extension up to CRLF.
    Extension,
    SizeLf,
    /// Payload bytes still to come in this chunk.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

/// Decodes a chunked body as it arrives, counting its payload.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: Chunk,
    size: u64,
    digits: u32,
}

impl ChunkedDecoder {
    fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Takes what it can of `input`: (bytes consumed, payload bytes among them).
    fn feed(&mut self, input: &[u8]) -> Result<(usize, u64), String> {
        let bad = |what: &str| format!("ConnectionError: bad chunked body: {what}");
        let mut at = 0;
        let mut payload = 0;
        while at < input.len() && self.state != Chunk::Done {
            if let Chunk::Data(remaining) = self.state {
                let take = remaining.min((input.len() - at) as u64);
                at += take as usize;
                payload += take;
                self.state = if take == remaining { Chunk::DataCr } else { Chunk::Data(remaining - take) };
                continue;
            }
            let byte = input[at];
            at += 1;
            self.state = match (self.state, byte) {
                (Chunk::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    if self.digits == 15 {
                        return Err(bad("chunk size too large"));
                    }
                    self.size = self.size * 16 + (byte as char).to_digit(16).expect("a hex digit") as u64;
                    self.digits += 1;
                    Chunk::Size
                }
                (Chunk::Size, _) if self.digits == 0 => return Err(bad("a chunk size must start with a hex digit")),
                (Chunk::Size | Chunk::Extension, b'\r') => Chunk::SizeLf,
                (Chunk::Size, b';' | b' ' | b'\t') => Chunk::Extension,
                (Chunk::Size, _) => return Err(bad("unexpected byte in a chunk size")),
                (Chunk::Extension, b'\n') => return Err(bad("a bare LF ends a chunk-size line")),
                (Chunk::Extension, _) => Chunk::Extension,
                (Chunk::SizeLf, b'\n') => {
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 { Chunk::TrailerStart } else { Chunk::Data(size) }
                }
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::EndLf, b'\n') => Chunk::Done,
                (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
                (Chunk::TrailerStart, b'\n') => Chunk::Done,
                (Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
                (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
                (state, _) => return Err(bad(&format!("expected CRLF ({state:?})"))),
            };
        }
        Ok((at, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` split at `cut` and returns the payload count, or the error.
    fn decode_split(body: &[u8], cut: usize) -> Result<(u64, usize), String> {
        let mut decoder = ChunkedDecoder::default();
        let mut pending = body[..cut].to_vec();
        let (used, mut payload) = decoder.feed(&pending)?;
        pending.drain(..used);
        pending.extend_from_slice(&body[cut..]);
        let (used, more) = decoder.feed(&pending)?;
        payload += more;
        assert!(decoder.is_done(), "not done after {body:?} split at {cut}");
        Ok((payload, pending.len() - used))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_split() {
        let body = b"5\r\nhello\r\n1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for cut in 0..=body.len() {
            assert_eq!(decode_split(body, cut).unwrap(), (31, 4), "split at {cut}");
        }
        assert_eq!(decode_split(b"0\r\n\r\n", 2).unwrap(), (0, 0));
        assert_eq!(decode_split(b"A \r\n0123456789\r\n0\r\n\r\n", 5).unwrap(), (10, 0));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for body in [&b"x\r\n"[..], b"5\r\nhelloXX", b"5\nhello\r\n", b"ffffffffffffffff1\r\n", b"5;ext\n"] {
            let mut decoder = ChunkedDecoder::default();
            assert!(decoder.feed(body).is_err(), "{:?} accepted", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn heads_give_framing_and_keep_alive() {
        let head = |text: &str| parse_head(text.as_bytes()).unwrap().unwrap().0;
        let h = head(
            "HTTP/1.1 302 Found\r\nLocation: /cart\r\nSet-Cookie: a=1\r\nset-cookie: b=2; Path=/\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            (h.status, h.location.as_deref(), h.framing, h.keep_alive),
            (302, Some("/cart"), Framing::Length(0), true)
        );
        assert_eq!(h.set_cookies, ["a=1", "b=2; Path=/"]);
        assert_eq!(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose, "the body runs to the close");
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n").keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n").keep_alive);
        assert_eq!(head("HTTP/1.1 204 No Content\r\n\r\n").framing, Framing::UntilClose, "unless the status says none");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    /// A server on loopback that answers each request it reads (up to the blank line; bodies are not sent by
    /// these tests) with the next scripted reply, closing the connection after a reply marked `close`; it counts
    /// the connections it accepted.
    async fn scripted(replies: Vec<(&'static [u8], bool)>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut replies = replies.into_iter();
            'connections: loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut seen = Vec::new();
                loop {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 1024];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => continue 'connections,
                            Ok(n) => seen.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.drain(..end);
                    let Some((reply, close)) = replies.next() else { return };
                    // Byte by byte, so the client sees every possible split.
                    for byte in reply {
                        socket.write_all(&[*byte]).await.unwrap();
                    }
                    if close {
                        continue 'connections;
                    }
                }
            }
        });
        (port, accepted)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn one_connection_carries_every_framing_and_closes_when_told() {
        let (port, accepted) = scripted(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", true),
        ])
        .await;
        let mut connection = Connection::open("127.0.0.1", port).await.unwrap();
        let mut seen = Vec::new();
        for head_request in [false, false, false, true, false] {
            let r = connection.exchange(GET, head_request).await.unwrap();
            seen.push((r.status, r.body_bytes, r.keep_alive));
        }
        assert_eq!(seen, [(200, 5, true), (200, 3, true), (204, 0, true), (200, 0, true), (200, 13, false)]);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_noticed_idle_or_stale() {
        let (port, accepted) = scripted(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
        ])
        .await;
        let mut connection = Connection::open("127.0.0.1", port).await.unwrap();
        assert!(connection.is_open());
        assert!(connection.exchange(GET, false).await.unwrap().keep_alive, "the reply did not say close");
        // The server closed after its reply: the idle probe sees it...
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!connection.is_open());
        // ...and using it anyway fails as stale (retry elsewhere), not as a failed request.
        assert!(matches!(connection.exchange(GET, false).await, Err(Failure::Stale(_))));
        let mut fresh = Connection::open("127.0.0.1", port).await.unwrap();
        assert_eq!(fresh.exchange(GET, false).await.unwrap().status, 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn broken_responses_fail_with_the_reason() {
        let cases: [(&'static [u8], &str); 4] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "a body (5 of 10 bytes came)"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "a chunked body"),
            (b"HTTP/1.1 200 OK\r\nContent-Le", "a response head"),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "upgrades are not supported"),
        ];
        for (reply, reason) in cases {
            let (port, _) = scripted(vec![(reply, true)]).await;
            let mut connection = Connection::open("127.0.0.1", port).await.unwrap();
            match connection.exchange(GET, false).await {
                Err(Failure::Failed(message)) => assert!(message.contains(reason), "{message:?} lacks {reason:?}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(reply)),
            }
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= MAX_HEAD_BYTES {
            huge.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        let (port, _) = scripted(vec![(Box::leak(huge.into_boxed_slice()), true)]).await;
        let mut connection = Connection::open("127.0.0.1", port).await.unwrap();
        let error = connection.exchange(GET, false).await.unwrap_err().message();
        assert!(error.contains("over 65536 bytes") || error.contains("too many headers"), "{error}");
    }
}

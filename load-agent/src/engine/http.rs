//! One user's HTTP client: its own keep-alive HTTP/1.1 connection (reopened when the server closes it) and cookie
//! jar, as every Locust user has. Redirects are followed as python-requests follows them and the whole exchange is
//! one request for the statistics.

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderValue, Method, StatusCode, Uri};

use super::cookies::CookieJar;
use super::http1::{Connection, Failure};
use super::target::connect_host;

/// Redirects followed before a request fails (python-requests allows 30; browsers about 20).
pub const MAX_REDIRECTS: usize = 10;

/// What a request (with its redirects) came back with: the final status and body size.
pub struct Outcome {
    pub status: StatusCode,
    pub body_bytes: u64,
}

/// A request to send: everything but Host and Cookie, which the client adds.
pub struct Outgoing {
    pub method: Method,
    pub uri: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Content type and bytes.
    pub body: Option<(&'static str, Bytes)>,
}

pub struct HttpUser {
    host: String,
    port: u16,
    host_header: HeaderValue,
    /// The idle keep-alive connection; taken out while an exchange runs, so an exchange cut off by a timeout
    /// leaves none behind whose response could still arrive.
    connection: Option<Connection>,
    jar: CookieJar,
}

impl HttpUser {
    pub fn new(host: &str, port: u16) -> HttpUser {
        let host_header = if port == 80 { host.to_string() } else { format!("{host}:{port}") };
        HttpUser {
            host: host.to_string(),
            port,
            host_header: HeaderValue::from_str(&host_header).unwrap_or(HeaderValue::from_static("localhost")),
            connection: None,
            jar: CookieJar::default(),
        }
    }

    /// Drops the connection, e.g. after a timeout left a response unread.
    pub fn reset_connection(&mut self) {
        self.connection = None;
    }

    /// Sends `request` on the user's connection. A kept-alive connection the server closed while it was idle is
    /// replaced before sending; one that fails before any byte of the response arrived (the server closed it just
    /// then) sends once more on a new connection, so idle keep-alive closes are no failures.
    async fn exchange(&mut self, request: &[u8], head_request: bool) -> Result<super::http1::Response, String> {
        loop {
            let mut connection = match self.connection.take() {
                Some(connection) if connection.is_open() => connection,
                _ => Connection::open(connect_host(&self.host), self.port).await?,
            };
            match connection.exchange(request, head_request).await {
                Ok(response) => {
                    if response.keep_alive {
                        self.connection = Some(connection);
                    }
                    return Ok(response);
                }
                // A new connection never fails as stale, so this retries at most once.
                Err(Failure::Stale(_)) => continue,
                Err(failure) => return Err(failure.message()),
            }
        }
    }

    /// Sends a request and follows redirects; the whole exchange is one request for the statistics.
    pub async fn send(&mut self, outgoing: Outgoing) -> Result<Outcome, String> {
        let Outgoing { mut method, mut uri, headers, mut body } = outgoing;
        for _ in 0..=MAX_REDIRECTS {
            let cookie = self.jar.header(uri.path());
            let request = serialize(&method, &uri, &self.host_header, cookie.as_ref(), &headers, body.as_ref());
            let response = self.exchange(&request, method == Method::HEAD).await?;
            let status = StatusCode::from_u16(response.status)
                .map_err(|_| format!("ConnectionError: bad status code {}", response.status))?;
            for value in &response.set_cookies {
                self.jar.store(value, uri.path());
            }
            let location = match status.as_u16() {
                301 | 302 | 303 | 307 | 308 => response.location,
                _ => None,
            };
            let Some(location) = location else { return Ok(Outcome { status, body_bytes: response.body_bytes }) };
            uri = self.redirect_target(&uri, &location)?;
            // python-requests: 302 and 303 turn into GET (HEAD stays HEAD), 301 turns a POST into GET; only 307 and
            // 308 keep the body.
            let code = status.as_u16();
            if (matches!(code, 302 | 303) && method != Method::HEAD) || (code == 301 && method == Method::POST) {
                method = Method::GET;
            }
            if code <= 303 {
                body = None;
            }
        }
        Err(format!("TooManyRedirects: Exceeded {MAX_REDIRECTS} redirects."))
    }

    /// Where a Location header points, on this same target.
    fn redirect_target(&self, current: &Uri, location: &str) -> Result<Uri, String> {
        let path = if let Some(rest) = location.strip_prefix("http://").or_else(|| location.strip_prefix("//")) {
            let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
            let same = authority.eq_ignore_ascii_case(self.host_header.to_str().unwrap_or(""))
                || authority.eq_ignore_ascii_case(&format!("{}:{}", self.host, self.port));
            if !same {
                return Err(format!("InvalidRedirect: redirect to another host: {location:?}"));
            }
            if path.starts_with('?') { format!("/{path}") } else { path.to_string() }
        } else if location.contains("://") {
            return Err(format!("InvalidRedirect: unsupported redirect to {location:?}"));
        } else if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') {
            format!("{}{location}", current.path())
        } else {
            // Relative to the current path's directory.
            let base = current.path();
            format!("{}{location}", &base[..base.rfind('/').map_or(0, |i| i + 1)])
        };
        let path = if path.is_empty() { "/".to_string() } else { path };
        let path = path.split('#').next().unwrap_or("/");
        Uri::try_from(path).map_err(|e| format!("InvalidRedirect: {location:?}: {e}"))
    }
}

/// The request as it goes on the wire: request line, Host, Cookie, the body's Content-Type and Content-Length,
/// the scenario's headers (which replace Host or Content-Type when they name them), then the body. Content-Length
/// is sent whenever there is a body and for POST, PUT and PATCH without one, as python-requests does.
fn serialize(
    method: &Method,
    uri: &Uri,
    host: &HeaderValue,
    cookie: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<&(&'static str, Bytes)>,
) -> Vec<u8> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let body_len = body.map_or(0, |(_, bytes)| bytes.len());
    let mut out = Vec::with_capacity(96 + target.len() + body_len + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    let overridden = |name: &HeaderName| headers.iter().any(|(n, _)| n == name);
    if !overridden(&header::HOST) {
        line(b"Host", host.as_bytes());
    }
    if let Some(cookie) = cookie {
        line(b"Cookie", cookie.as_bytes());
    }
    if let Some((content_type, _)) = body
        && !overridden(&header::CONTENT_TYPE)
    {
        line(b"Content-Type", content_type.as_bytes());
    }
    if body.is_some() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        line(b"Content-Length", body_len.to_string().as_bytes());
    }
    for (name, value) in headers {
        if name != header::CONTENT_LENGTH {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    if let Some((_, bytes)) = body {
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_the_target() {
        let user = HttpUser::new("localhost", 8080);
        let at: Uri = "/shop/cart/view?x=1".parse().unwrap();
        let target = |location: &str| user.redirect_target(&at, location).map(|u| u.to_string());
        assert_eq!(target("/cart").unwrap(), "/cart");
        assert_eq!(target("http://localhost:8080/x?y=1#frag").unwrap(), "/x?y=1");
        assert_eq!(target("http://LOCALHOST:8080").unwrap(), "/");
        assert_eq!(target("done").unwrap(), "/shop/cart/done");
        assert_eq!(target("?page=2").unwrap(), "/shop/cart/view?page=2");
        assert!(target("http://evil:80/").is_err());
        assert!(target("https://localhost:8080/").is_err());
    }
}

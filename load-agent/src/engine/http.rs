//! One user's HTTP client: its own keep-alive HTTP/1.1 connection (hyper, reconnecting when the server closes
//! it) and cookie jar, as every Locust user has. Redirects are followed as python-requests follows them and the
//! whole exchange is one request for the statistics.

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::cookies::CookieJar;
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
    sender: Option<SendRequest<Full<Bytes>>>,
    jar: CookieJar,
}

impl HttpUser {
    pub fn new(host: &str, port: u16) -> HttpUser {
        let host_header = if port == 80 { host.to_string() } else { format!("{host}:{port}") };
        HttpUser {
            host: host.to_string(),
            port,
            host_header: HeaderValue::from_str(&host_header).unwrap_or(HeaderValue::from_static("localhost")),
            sender: None,
            jar: CookieJar::default(),
        }
    }

    /// Drops the connection, e.g. after a timeout left a response unread.
    pub fn reset_connection(&mut self) {
        self.sender = None;
    }

    /// The open connection, or a new one; true when it is new.
    async fn connection(&mut self) -> Result<bool, String> {
        if let Some(sender) = &mut self.sender
            && !sender.is_closed()
            && sender.ready().await.is_ok()
        {
            return Ok(false);
        }
        self.sender = None;
        let stream = TcpStream::connect((connect_host(&self.host), self.port))
            .await
            .map_err(|e| format!("ConnectionError: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("ConnectionError: {e}"))?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("ConnectionError: {e}"))?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the user drops its sender.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(true)
    }

    /// Sends `request` on the user's connection. A request a kept-alive connection never started to send (the
    /// server closed it meanwhile) goes once more on a new connection, so idle keep-alive closes are no failures.
    async fn exchange(&mut self, mut request: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        loop {
            let fresh = self.connection().await?;
            let sender = self.sender.as_mut().expect("connected");
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut error) => {
                    self.sender = None;
                    match error.take_message() {
                        Some(unsent) if !fresh => request = unsent,
                        _ => return Err(format!("ConnectionError: {}", describe(&error.into_error()))),
                    }
                }
            }
        }
    }

    /// Sends a request and follows redirects; the whole exchange is one request for the statistics.
    pub async fn send(&mut self, outgoing: Outgoing) -> Result<Outcome, String> {
        let Outgoing { mut method, mut uri, headers, mut body } = outgoing;
        for _ in 0..=MAX_REDIRECTS {
            let mut map = HeaderMap::with_capacity(3 + headers.len());
            map.insert(header::HOST, self.host_header.clone());
            if let Some(cookie) = self.jar.header(uri.path()) {
                map.insert(header::COOKIE, cookie);
            }
            let bytes = match &body {
                Some((content_type, bytes)) => {
                    map.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                    bytes.clone()
                }
                None => Bytes::new(),
            };
            for (name, value) in &headers {
                map.insert(name.clone(), value.clone());
            }
            let mut request = Request::new(Full::new(bytes));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = map;
            let response = self.exchange(request).await?;
            let status = response.status();
            for value in response.headers().get_all(header::SET_COOKIE) {
                if let Ok(text) = value.to_str() {
                    self.jar.store(text, uri.path());
                }
            }
            let location = match status.as_u16() {
                301 | 302 | 303 | 307 | 308 => response.headers().get(header::LOCATION).cloned(),
                _ => None,
            };
            let mut incoming = response.into_body();
            let mut body_bytes = 0u64;
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| {
                    self.sender = None;
                    format!("ConnectionError: {}", describe(&e))
                })?;
                if let Some(data) = frame.data_ref() {
                    body_bytes += data.len() as u64;
                }
            }
            let Some(location) = location else { return Ok(Outcome { status, body_bytes }) };
            let location = location.to_str().map_err(|_| "InvalidRedirect: Location is not text".to_string())?;
            uri = self.redirect_target(&uri, location)?;
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

/// A hyper error with its causes, e.g. "connection closed before message completed".
fn describe(error: &hyper::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

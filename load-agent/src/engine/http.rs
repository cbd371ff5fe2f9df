//! One user's HTTP client: its own keep-alive HTTP/1.1 connection and cookie jar, as every Locust user has.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Redirects followed before a request fails (as requests' default, which Locust uses, caps at 30; browsers ~20).
const MAX_REDIRECTS: usize = 10;

/// What a request (with its redirects) came back with.
pub struct Response {
    pub status: StatusCode,
    pub body_bytes: u64,
}

pub struct HttpUser {
    host: String,
    port: u16,
    base_path: String,
    host_header: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// name → value; a user's session lives here (Online Boutique's shop_session-id).
    cookies: Vec<(String, String)>,
}

impl HttpUser {
    pub fn new(host: &str, port: u16, base_path: &str) -> HttpUser {
        let host_header = if port == 80 { host.to_string() } else { format!("{host}:{port}") };
        HttpUser {
            host: host.to_string(),
            port,
            base_path: base_path.to_string(),
            host_header: HeaderValue::from_str(&host_header).unwrap_or(HeaderValue::from_static("localhost")),
            sender: None,
            cookies: Vec::new(),
        }
    }

    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let reusable = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            let stream = TcpStream::connect((self.host.as_str(), self.port))
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
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Drops the connection, e.g. after a timeout left a response unread.
    pub fn reset_connection(&mut self) {
        self.sender = None;
    }

    /// Sends a request and follows redirects; the whole exchange is one request for the statistics.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, String)],
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Response, String> {
        let mut method = method;
        let mut path = format!("{}{path}", self.base_path);
        let mut body = body;
        let mut content_type = content_type;
        for _ in 0..=MAX_REDIRECTS {
            let mut builder = Request::builder().method(method.clone()).uri(path.as_str());
            let request_headers = builder.headers_mut().expect("valid builder");
            request_headers.insert(header::HOST, self.host_header.clone());
            if let Some(content_type) = content_type {
                request_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            if !self.cookies.is_empty() {
                let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    request_headers.insert(header::COOKIE, value);
                }
            }
            for (name, value) in headers {
                let value = HeaderValue::from_str(value).map_err(|e| format!("InvalidHeader {name}: {e}"))?;
                request_headers.insert(name.clone(), value);
            }
            let request = builder.body(Full::new(body.clone())).map_err(|e| format!("InvalidRequest: {e}"))?;
            let sender = self.connection().await?;
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                Err(e) => {
                    self.sender = None;
                    return Err(format!("ConnectionError: {e}"));
                }
            };
            let status = response.status();
            for value in response.headers().get_all(header::SET_COOKIE) {
                if let Ok(text) = value.to_str() {
                    self.store_cookie(text);
                }
            }
            let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
            let collected = response.into_body().collect().await.map_err(|e| {
                self.sender = None;
                format!("ConnectionError: {e}")
            })?;
            let body_bytes = collected.to_bytes().len() as u64;
            let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            match (redirect, location) {
                (true, Some(location)) => {
                    path = self.local_path(&location)?;
                    if matches!(status.as_u16(), 301..=303) {
                        // As browsers and python-requests do: the follow-up is a GET without a body.
                        method = Method::GET;
                        body = Bytes::new();
                        content_type = None;
                    }
                }
                _ => return Ok(Response { status, body_bytes }),
            }
        }
        Err(format!("TooManyRedirects: more than {MAX_REDIRECTS}"))
    }

    /// The path a Location header points to on this same target.
    fn local_path(&self, location: &str) -> Result<String, String> {
        if location.starts_with('/') {
            return Ok(location.to_string());
        }
        let rest = location.strip_prefix("http://").ok_or_else(|| format!("unsupported redirect to {location:?}"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let same =
            authority == self.host_header.to_str().unwrap_or("") || authority == format!("{}:{}", self.host, self.port);
        if !same {
            return Err(format!("redirect to another host: {location:?}"));
        }
        Ok(if path.is_empty() { "/".to_string() } else { path.to_string() })
    }

    /// Keeps `name=value` from a Set-Cookie header; `Max-Age=0` removes the cookie.
    fn store_cookie(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else { return };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
        self.cookies.retain(|(k, _)| *k != name);
        if !expired {
            self.cookies.push((name, value));
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of form fields.
pub fn form_encode(fields: &[(String, String)]) -> String {
    fn encode(text: &str, out: &mut String) {
        for byte in text.bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(byte as char),
                b' ' => out.push('+'),
                other => out.push_str(&format!("%{other:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(key, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_encoded() {
        let fields = vec![("email".to_string(), "a b@c.d".to_string()), ("q".to_string(), "x&y=z".to_string())];
        assert_eq!(form_encode(&fields), "email=a+b%40c.d&q=x%26y%3Dz");
    }

    #[test]
    fn cookies_are_stored_replaced_and_expired() {
        let mut user = HttpUser::new("localhost", 8080, "");
        user.store_cookie("shop_session-id=abc; Path=/; HttpOnly");
        user.store_cookie("shop_session-id=def");
        user.store_cookie("other=1");
        assert_eq!(user.cookies, vec![("shop_session-id".into(), "def".into()), ("other".into(), "1".into())]);
        user.store_cookie("other=; Max-Age=0");
        assert_eq!(user.cookies.len(), 1);
    }

    #[test]
    fn redirects_stay_on_the_target() {
        let user = HttpUser::new("localhost", 8080, "");
        assert_eq!(user.local_path("/cart").unwrap(), "/cart");
        assert_eq!(user.local_path("http://localhost:8080/x").unwrap(), "/x");
        assert!(user.local_path("http://evil:80/").is_err());
    }
}

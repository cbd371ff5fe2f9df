//! Which requests may come in at all: a web page open in a browser on the agent's host must not be able to drive
//! it (cross-site requests, DNS rebinding). Checked before the token, each refusal a JSON error naming the header:
//!
//! - `Host` (421): without a token it must name this agent — its IP literal with its port, or `localhost:PORT` when
//!   it listens on loopback — or an `--allow-host` name. A page that rebinds its own DNS name to 127.0.0.1 still
//!   sends that name as Host, so it is refused. With a token the Host is not checked: a browser cannot attach the
//!   `Authorization` header to a cross-site request (that takes a CORS preflight, which the agent never grants)
//!   and a rebinding page does not know the token; remote agents may so be reached by any name (an IP, a
//!   Kubernetes Service, a port-forward).
//! - `Origin` (403): browsers send it with a page's requests; one that is not this agent's own origin
//!   (`http://` + the Host it was reached by) comes from another site's page.
//! - `Content-Type` (415): a request with a body must send `application/json`. HTML forms and `no-cors` fetches can
//!   only send text/plain, form or multipart bodies, and a cross-site `application/json` needs the preflight.
//!
//! `/v1/health` is exempt: it tells nothing, and monitors probe it by whatever name they use.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::OPEN_PATH;
use super::errors::AgentError;
use super::{AppState, ServerConfig};

/// Refuses cross-site, rebound and non-JSON requests; lets the others through.
pub async fn check_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    match admit(&state.config, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The three checks, in order: Host, Origin, Content-Type.
pub fn admit(config: &ServerConfig, headers: &HeaderMap) -> Result<(), AgentError> {
    let host = match headers.get(header::HOST) {
        // Every browser sends a Host; a request without one (HTTP/1.0, raw tools) is no cross-site request.
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| AgentError::MisdirectedHost(not_this_agent("(not text)")))?),
    };
    if let Some(host) = host
        && config.token.is_none()
        && !host_names_this_agent(config, host)
    {
        return Err(AgentError::MisdirectedHost(not_this_agent(host)));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        let own = host.is_some_and(|host| origin.eq_ignore_ascii_case(&format!("http://{host}")));
        if !own {
            return Err(AgentError::CrossOrigin(format!(
                "Origin {} is not this agent's own: requests a browser sends for another site's page are refused",
                shorten(origin)
            )));
        }
    }
    if has_body(headers) && !is_json(headers) {
        let sent = headers.get(header::CONTENT_TYPE).map_or("none", |v| v.to_str().unwrap_or("(not text)"));
        return Err(AgentError::UnsupportedMediaType(format!(
            "a request body must be JSON: send Content-Type: application/json (got {})",
            shorten(sent)
        )));
    }
    Ok(())
}

fn not_this_agent(host: &str) -> String {
    format!(
        "Host {} does not name this agent: without a token it answers only to its own address (and to \
         localhost:PORT on loopback), since a web page could point its own name at this host; use that \
         address, or restart the agent with --allow-host NAME (or with a token)",
        shorten(host)
    )
}

/// Header values are the client's: keep what an error repeats of them short.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 100;
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(LIMIT).collect::<String>())
    }
}

/// Whether `host` (a Host header: `name[:port]`) names this agent: an `--allow-host` name with any port (a tunnel
/// or port-forward may change the port), or the listen address itself (`localhost` too on loopback) with its port.
fn host_names_this_agent(config: &ServerConfig, host: &str) -> bool {
    let Some((name, port)) = split_host(host) else { return false };
    if config.allow_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name)) {
        return true;
    }
    // In-process routers (tests) have no address; `serve` always sets it.
    let Some(local) = config.local_addr else { return true };
    if port != local.port() {
        return false;
    }
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    match bare.parse::<IpAddr>() {
        // An IP literal cannot be rebound; on 0.0.0.0 any of the host's addresses reaches the agent.
        Ok(ip) => ip == local.ip() || local.ip().is_unspecified(),
        Err(_) => name.eq_ignore_ascii_case("localhost") && local.ip().is_loopback(),
    }
}

/// `name[:port]` (IPv6 in brackets) into the name and the port (80 when absent); `None` when malformed.
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')? + 1;
        (&host[..end], host[end..].strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => 80,
        Some(text) => text.parse().ok()?,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Whether the request carries a body (whatever its method): a length above zero, or a chunked one.
fn has_body(headers: &HeaderMap) -> bool {
    // An unreadable length counts as a body.
    let length =
        headers.get(header::CONTENT_LENGTH).map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()));
    headers.contains_key(header::TRANSFER_ENCODING) || matches!(length, Some(None | Some(1..)))
}

/// `application/json`, parameters (a charset) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks an `--allow-host` value: a host name or IP address as a Host header carries it, without a port.
pub fn check_allow_host(value: &str) -> Result<String, String> {
    let valid_name = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !value.starts_with(['.', '-']);
    let bracketed_ip = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok());
    if valid_name || bracketed_ip {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a host name: give the name clients use, without scheme, port or wildcard \
             (e.g. agent.example or [::1])"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tests::test_config;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    fn status(config: &ServerConfig, pairs: &[(&str, &str)]) -> u16 {
        admit(config, &headers(pairs)).map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    #[test]
    fn hosts_must_name_an_open_agent() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.local_addr = Some("127.0.0.1:8089".parse().unwrap());
        for good in ["127.0.0.1:8089", "localhost:8089", "LOCALHOST:8089"] {
            assert_eq!(status(&config, &[("host", good)]), 200, "{good}");
        }
        for bad in ["evil.example:8089", "127.0.0.1:8090", "127.0.0.1", "127.0.0.2:8089", "[::1]:8089", ":8089", "x:y"]
        {
            assert_eq!(status(&config, &[("host", bad)]), 421, "{bad}");
        }
        assert_eq!(status(&config, &[]), 200, "no Host: no browser");
        config.allow_hosts = vec!["agent.internal".into()];
        assert_eq!(status(&config, &[("host", "Agent.Internal:9000")]), 200, "any port for a name");
        config.allow_hosts.clear();
        config.token = Some("t".into());
        assert_eq!(status(&config, &[("host", "loadgen.default.svc:8089")]), 200, "relaxed with a token");
    }

    #[test]
    fn origins_and_content_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.local_addr = Some("127.0.0.1:8089".parse().unwrap());
        let host = ("host", "127.0.0.1:8089");
        let json = ("content-type", "application/json; charset=utf-8");
        let body = ("content-length", "2");
        assert_eq!(status(&config, &[host, json, body, ("origin", "http://127.0.0.1:8089")]), 200);
        assert_eq!(status(&config, &[host, json, body, ("origin", "http://evil.example")]), 403);
        assert_eq!(status(&config, &[host, json, body, ("origin", "null")]), 403);
        assert_eq!(status(&config, &[host, ("content-type", "text/plain"), body]), 415);
        assert_eq!(status(&config, &[host, body]), 415, "a body without a type");
        assert_eq!(status(&config, &[host, ("transfer-encoding", "chunked")]), 415);
        assert_eq!(status(&config, &[host, ("content-length", "0")]), 200, "stop has no body");
        assert_eq!(status(&config, &[host]), 200);
        config.token = Some("t".into());
        assert_eq!(status(&config, &[host, ("origin", "http://evil.example")]), 403, "even with a token");
    }

    #[test]
    fn allow_hosts_are_names() {
        for good in ["agent.example", "localhost", "10.0.0.5", "[::1]", "load_gen-1"] {
            assert!(check_allow_host(good).is_ok(), "{good}");
        }
        for bad in ["", "agent:8089", "http://agent", "*.example", " agent", "a/b", "[zz]", ".example"] {
            assert!(check_allow_host(bad).is_err(), "{bad}");
        }
    }
}

//! Where requests go: an HTTP base URL or a Redis server.

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port[/base]`; request paths are appended to `base_path`. An IPv6 host keeps its brackets.
    Http { host: String, port: u16, base_path: String },
    /// `redis://host:port`
    Redis { host: String, port: u16 },
}

impl Target {
    /// Parses a target URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a URL: use http://host:port[/base] or redis://host:port"))?;
        let (http, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (true, 80),
            "redis" => (false, 6379),
            "https" => return Err(format!("{url:?}: https targets are not supported yet; use http://")),
            other => return Err(format!("{url:?}: unsupported scheme {other:?}; use http:// or redis://")),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(format!("{url:?}: credentials in the URL are not supported"));
        }
        if rest.contains(['?', '#']) {
            return Err(format!("{url:?}: a target takes no query or fragment"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            // [v6 address]:port
            let (address, after) =
                bracketed.split_once(']').ok_or_else(|| format!("{url:?}: unterminated '[' in the host"))?;
            if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                return Err(format!("{url:?}: bad IPv6 address {address:?}"));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| format!("{url:?}: unexpected {after:?} after ']'"))?),
            };
            (&authority[..address.len() + 2], port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("{url:?}: bad port {text:?}")),
            },
        };
        let valid_name = |h: &str| h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if host.is_empty() || !(host.starts_with('[') || valid_name(host)) {
            return Err(format!("{url:?}: bad host {host:?}"));
        }
        let host = host.to_string();
        if http {
            let base_path = path.trim_end_matches('/').to_string();
            Ok(Target::Http { host, port, base_path })
        } else if path.is_empty() || path == "/" {
            Ok(Target::Redis { host, port })
        } else {
            Err(format!("{url:?}: a redis target takes no path"))
        }
    }

    /// `host:port`, as allow-lists name targets.
    pub fn authority(&self) -> String {
        match self {
            Target::Http { host, port, .. } | Target::Redis { host, port } => format!("{host}:{port}"),
        }
    }
}

/// The host as a socket address wants it (an IPv6 address without its brackets).
pub fn connect_host(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/shop/").unwrap(),
            Target::Http { host: "127.0.0.1".into(), port: 8080, base_path: "/shop".into() }
        );
        assert_eq!(
            Target::parse("http://frontend.default.svc").unwrap(),
            Target::Http { host: "frontend.default.svc".into(), port: 80, base_path: String::new() }
        );
        assert_eq!(Target::parse("http://localhost").unwrap().authority(), "localhost:80");
        assert_eq!(Target::parse("HTTP://localhost:81/").unwrap().authority(), "localhost:81");
        assert_eq!(Target::parse("redis://10.0.0.1").unwrap().authority(), "10.0.0.1:6379");
        assert_eq!(Target::parse("redis://10.0.0.1:7000/").unwrap().authority(), "10.0.0.1:7000");
        let v6 = Target::parse("http://[::1]:8080/base").unwrap();
        assert_eq!(v6, Target::Http { host: "[::1]".into(), port: 8080, base_path: "/base".into() });
        assert_eq!(v6.authority(), "[::1]:8080");
        assert_eq!(Target::parse("redis://[fe80::1]").unwrap().authority(), "[fe80::1]:6379");
        assert_eq!(connect_host("[::1]"), "::1");
        assert_eq!(connect_host("localhost"), "localhost");
    }

    #[test]
    fn explains_bad_targets() {
        let error = |url: &str| Target::parse(url).unwrap_err();
        assert!(error("https://h").contains("https targets are not supported yet"));
        assert!(error("localhost:80").contains("is not a URL"));
        assert!(error("ftp://x").contains("unsupported scheme \"ftp\""));
        assert!(error("redis://h/x").contains("a redis target takes no path"));
        for bad in [
            "http://:80",
            "http://h:99999",
            "http://h:0",
            "http://h:",
            "http://user:pw@h",
            "http://h/base?x=1",
            "http://[::1",
            "http://[::1]x",
            "http://a b",
            "http://h:80:81",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}

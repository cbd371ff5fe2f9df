//! Where requests go: an HTTP base URL or a Redis server.

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port[/base]`; request paths are appended to `base_path`.
    Http { host: String, port: u16, base_path: String },
    /// `redis://host:port`
    Redis { host: String, port: u16 },
}

impl Target {
    /// Parses a target URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not a URL (http://host:port)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let default_port = match scheme {
            "http" => 80,
            "redis" => 6379,
            "https" => return Err("https targets are not supported yet; use http://".into()),
            other => return Err(format!("unsupported scheme {other:?}; use http:// or redis://")),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || port.is_empty() => {
                (host, port.parse::<u16>().map_err(|_| format!("bad port {port:?} in {url:?}"))?)
            }
            _ => (authority, default_port),
        };
        if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
            return Err(format!("bad host {host:?} in {url:?}"));
        }
        match scheme {
            "http" => Ok(Target::Http { host: host.to_string(), port, base_path: path.to_string() }),
            _ if path.is_empty() => Ok(Target::Redis { host: host.to_string(), port }),
            _ => Err(format!("a redis target takes no path: {url:?}")),
        }
    }

    /// `host:port`, as allow-lists name targets.
    pub fn authority(&self) -> String {
        match self {
            Target::Http { host, port, .. } | Target::Redis { host, port } => format!("{host}:{port}"),
        }
    }
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
        assert_eq!(Target::parse("http://localhost").unwrap().authority(), "localhost:80");
        assert_eq!(Target::parse("redis://10.0.0.1").unwrap().authority(), "10.0.0.1:6379");
        for bad in ["localhost:80", "ftp://x", "http://:80", "http://h:99999", "https://h", "redis://h/x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}

//! One user's cookie jar, minimal but honest: `name=value` with its Path (RFC 6265's default path when absent),
//! deleted by `Max-Age` ≤ 0 or an `Expires` in the past, expiring at `Max-Age`/`Expires`. Domain and Secure do not
//! matter against a single plain-HTTP target, except that a `Secure` cookie is never sent over it (as
//! python-requests' jar does), so it is not kept.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

struct Cookie {
    name: String,
    value: String,
    path: String,
    expires: Option<Instant>,
}

#[derive(Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
    /// The Cookie header while every cookie has Path=/ and no expiry (the usual session cookie): built once.
    cached: Option<HeaderValue>,
}

impl CookieJar {
    /// Applies one `Set-Cookie` header received for a request to `request_path`.
    pub fn store(&mut self, set_cookie: &str, request_path: &str) {
        let mut attributes = set_cookie.split(';');
        let Some((name, value)) = attributes.next().and_then(|pair| pair.split_once('=')) else { return };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return;
        }
        let mut path = None;
        let mut max_age: Option<i64> = None;
        let mut expires: Option<i64> = None;
        for attribute in attributes {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            let (key, val) = (key.trim(), val.trim());
            if key.eq_ignore_ascii_case("secure") {
                return;
            } else if key.eq_ignore_ascii_case("path") && val.starts_with('/') {
                path = Some(val.to_string());
            } else if key.eq_ignore_ascii_case("max-age") {
                max_age = val.parse().ok().or(max_age);
            } else if key.eq_ignore_ascii_case("expires") {
                expires = parse_http_date(val).or(expires);
            }
        }
        let path = path.unwrap_or_else(|| default_path(request_path));
        self.cached = None;
        self.cookies.retain(|c| !(c.name == name && c.path == path));
        // Max-Age wins over Expires (RFC 6265 5.3 step 3).
        let lifetime = match (max_age, expires) {
            (Some(seconds), _) => Some(seconds),
            (None, Some(at)) => Some(at - now_unix_s()),
            (None, None) => None,
        };
        if lifetime.is_some_and(|s| s <= 0) {
            return;
        }
        let expires = lifetime.map(|s| Instant::now() + Duration::from_secs(s.min(10 * 365 * 86_400) as u64));
        self.cookies.push(Cookie { name: name.to_string(), value: value.to_string(), path, expires });
    }

    /// The Cookie header for a request to `path`, if any cookie applies.
    pub fn header(&mut self, path: &str) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        if let Some(cached) = &self.cached {
            return Some(cached.clone());
        }
        let now = Instant::now();
        self.cookies.retain(|c| c.expires.is_none_or(|at| at > now));
        let simple = self.cookies.iter().all(|c| c.path == "/" && c.expires.is_none());
        let mut matching: Vec<&Cookie> = self.cookies.iter().filter(|c| path_matches(path, &c.path)).collect();
        // Longer paths first (RFC 6265 5.4); otherwise in the order they were set.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let mut text = String::new();
        for cookie in matching {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&cookie.name);
            text.push('=');
            text.push_str(&cookie.value);
        }
        let value = HeaderValue::from_str(&text).ok().filter(|_| !text.is_empty())?;
        if simple {
            self.cached = Some(value.clone());
        }
        Some(value)
    }
}

fn now_unix_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// RFC 6265 5.1.4: the directory of the request path.
fn default_path(request_path: &str) -> String {
    let path = request_path.split(['?', '#']).next().unwrap_or("");
    match path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path[..i].to_string(),
    }
}

/// RFC 6265 5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    let path = request_path.split(['?', '#']).next().unwrap_or("");
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// Unix seconds of a cookie date: `Wed, 21 Oct 2015 07:28:00 GMT`, also with dashes (`21-Oct-2015`) or a two-digit
/// year, as RFC 6265 5.1.1 reads them loosely.
fn parse_http_date(text: &str) -> Option<i64> {
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':')).filter(|t| !t.is_empty()) {
        if time.is_none() && token.contains(':') {
            let mut parts = token.split(':').map(|p| p.parse::<i64>().ok());
            if let (Some(Some(h)), Some(Some(m)), Some(Some(s))) = (parts.next(), parts.next(), parts.next()) {
                time = Some(h * 3600 + m * 60 + s);
            }
        } else if let Ok(number) = token.parse::<i64>() {
            if day.is_none() && token.len() <= 2 {
                day = Some(number);
            } else if year.is_none() {
                year = Some(match (token.len(), number) {
                    (2, 70..=99) => 1900 + number,
                    (2, _) => 2000 + number,
                    _ => number,
                });
            }
        } else if month.is_none() && token.len() >= 3 {
            let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
            let prefix = token[..3].to_ascii_lowercase();
            month = months.iter().position(|m| *m == prefix).map(|m| m as i64 + 1);
        }
    }
    let (day, month, year, time) = (day?, month?, year?, time?);
    if !(1..=31).contains(&day) || year < 1601 {
        return None;
    }
    // Days from civil (proleptic Gregorian), as in crate::clock.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(jar: &mut CookieJar, path: &str) -> Option<String> {
        jar.header(path).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn cookies_are_stored_replaced_and_deleted() {
        let mut jar = CookieJar::default();
        jar.store("shop_session-id=abc; Path=/; HttpOnly", "/");
        jar.store("shop_session-id=def", "/cart");
        assert_eq!(header(&mut jar, "/").as_deref(), Some("shop_session-id=def"));
        jar.store("other=1; Path=/", "/");
        assert_eq!(header(&mut jar, "/x").as_deref(), Some("shop_session-id=def; other=1"));
        jar.store("secret=1; Path=/; Secure", "/");
        assert_eq!(header(&mut jar, "/x").as_deref(), Some("shop_session-id=def; other=1"), "Secure needs https");
        jar.store("other=; Max-Age=0", "/");
        assert_eq!(header(&mut jar, "/").as_deref(), Some("shop_session-id=def"));
        jar.store("shop_session-id=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "/x");
        assert_eq!(header(&mut jar, "/"), None);
    }

    #[test]
    fn paths_limit_where_cookies_go() {
        let mut jar = CookieJar::default();
        jar.store("a=1; Path=/cart", "/");
        jar.store("b=2", "/shop/item");
        assert_eq!(header(&mut jar, "/"), None);
        assert_eq!(header(&mut jar, "/cart/checkout?x=1").as_deref(), Some("a=1"));
        assert_eq!(header(&mut jar, "/cartoon"), None);
        assert_eq!(header(&mut jar, "/shop/other").as_deref(), Some("b=2"));
    }

    #[test]
    fn dates_and_lifetimes() {
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480));
        assert_eq!(parse_http_date("Wednesday, 21-Oct-15 07:28:00 GMT"), Some(1_445_412_480));
        assert_eq!(parse_http_date("nonsense"), None);
        let mut jar = CookieJar::default();
        jar.store("future=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT", "/");
        jar.store("brief=1; Max-Age=3600; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "/");
        assert_eq!(header(&mut jar, "/").as_deref(), Some("future=1; brief=1"));
    }
}

//! Bearer-token check. The comparison takes the same time whatever the presented token is (its content and its
//! length), so timing tells an attacker nothing about the token.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::errors::AgentError;

/// The only route open without a token, so monitors can probe the agent.
pub const OPEN_PATH: &str = "/v1/health";

/// True when `presented` is exactly `expected`, compared in constant time.
///
/// The guess is copied into a buffer of the expected length first, so the work depends on the expected token's
/// length only; the lengths are compared with `ct_eq` as well and both results combined without branching.
pub fn token_matches(expected: &str, presented: &str) -> bool {
    let (expected, presented) = (expected.as_bytes(), presented.as_bytes());
    let padded: Vec<u8> = (0..expected.len()).map(|i| presented.get(i).copied().unwrap_or(0)).collect();
    let same_length = (expected.len() as u64).ct_eq(&(presented.len() as u64));
    (padded.as_slice().ct_eq(expected) & same_length).into()
}

/// The token as the agent compares it, or why no request could ever carry it. Surrounding whitespace (a newline
/// from a file, typically) is removed: a presented token is read trimmed, so with it the agent would refuse every
/// request. Inside, only printable ASCII: header values with other characters are not read as text.
pub fn usable_token(raw: &str) -> Result<String, String> {
    let token = raw.trim();
    if token.is_empty() {
        return Err("the token (--token or LOAD_AGENT_TOKEN) is only whitespace: give a real token".into());
    }
    if let Some(position) = token.chars().position(|c| !(' '..='~').contains(&c)) {
        return Err(format!(
            "the token (--token or LOAD_AGENT_TOKEN) has a character no HTTP header carries as text (at position \
             {}): use printable ASCII only",
            position + 1
        ));
    }
    Ok(token.to_string())
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive), if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Lets a request through when the agent has no token or the request carries it; `/v1/health` is always open.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.config.token else { return next.run(request).await };
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    // A missing header is compared too (as an empty token), so it takes the same path as a wrong one.
    let presented = bearer_token(request.headers()).unwrap_or("");
    if token_matches(expected, presented) { next.run(request).await } else { AgentError::Unauthorized.into_response() }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::server::tests::test_config;

    #[test]
    fn tokens_match_exactly() {
        assert!(token_matches("s3cret", "s3cret"));
        for wrong in ["", "s3cre", "s3cret!", "S3CRET", "s3cret ", "s3cret\0", "\0\0\0\0\0\0", "x"] {
            assert!(!token_matches("s3cret", wrong), "{wrong:?}");
        }
        // A guess that is a zero-padded prefix must not pass through the padding.
        assert!(!token_matches("ab\0", "ab"));
        assert!(!token_matches("", "anything"));
    }

    #[test]
    fn tokens_are_trimmed_or_refused() {
        assert_eq!(usable_token(" s3cret\n").as_deref(), Ok("s3cret"));
        assert_eq!(usable_token("two words").as_deref(), Ok("two words"));
        for bad in [" \t\n", "p\u{e4}ss", "a\tb", "a\u{7f}"] {
            assert!(usable_token(bad).is_err(), "{bad:?}");
        }
        // A trimmed token matches what a client presents.
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(token_matches(&usable_token("s3cret\n").unwrap(), bearer_token(&headers).unwrap()));
    }

    #[test]
    fn bearer_scheme_is_parsed() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        for (value, token) in
            [("Bearer abc", Some("abc")), ("bearer  abc ", Some("abc")), ("Basic abc", None), ("Bearerabc", None)]
        {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&headers), token, "{value}");
        }
    }

    async fn status(app: &axum::Router, path: &str, authorization: Option<&str>) -> StatusCode {
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn every_route_but_health_needs_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.token = Some("s3cret-token".into());
        let app = crate::server::router(config).unwrap();
        assert_eq!(status(&app, "/v1/health", None).await, StatusCode::OK);
        for path in ["/v1/info", "/v1/runs", "/v1/runs/0123456789abcdef", "/metrics", "/v1/nowhere"] {
            assert_eq!(status(&app, path, None).await, StatusCode::UNAUTHORIZED, "{path} without a token");
            for wrong in
                ["Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token"]
            {
                assert_eq!(status(&app, path, Some(wrong)).await, StatusCode::UNAUTHORIZED, "{path} with {wrong}");
            }
        }
        for path in ["/v1/info", "/v1/runs", "/metrics"] {
            assert_eq!(status(&app, path, Some("Bearer s3cret-token")).await, StatusCode::OK, "{path}");
        }
        // Authenticated, an unknown run is a 404, not a 401.
        assert_eq!(status(&app, "/v1/runs/0123456789abcdef", Some("Bearer s3cret-token")).await, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn without_a_token_configured_everything_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let app = crate::server::router(test_config(dir.path())).unwrap();
        assert_eq!(status(&app, "/v1/info", None).await, StatusCode::OK);
        assert_eq!(status(&app, "/v1/info", Some("Bearer whatever")).await, StatusCode::OK);
    }
}

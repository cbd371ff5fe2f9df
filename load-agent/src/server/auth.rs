//! Bearer-token check, in constant time so the comparison leaks nothing about the token.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::errors::AgentError;

pub fn token_matches(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Lets a request through when the agent has no token, or the request carries it; health is always open.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.config.token else { return next.run(request).await };
    if request.uri().path() == "/v1/health" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token_matches(expected, presented) { next.run(request).await } else { AgentError::Unauthorized.into_response() }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_match_exactly() {
        assert!(token_matches("s3cret", "s3cret"));
        for wrong in ["", "s3cre", "s3cret!", "S3CRET", "s3cret "] {
            assert!(!token_matches("s3cret", wrong), "{wrong:?}");
        }
    }
}

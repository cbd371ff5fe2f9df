//! The control API's errors: one typed error per failure, each mapped to its status code and an [`ApiError`] body
//! (naming the field at fault where there is one). Extractor rejections are mapped here too, so every answer of
//! the agent, even a malformed request's, is JSON.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::protocol::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub enum AgentError {
    /// 400: the body or query is invalid; `field` is the path of the offending value.
    Invalid { field: Option<String>, message: String },
    /// 401: the bearer token is missing or wrong.
    Unauthorized,
    /// 403: the target is not on the allow-list.
    Forbidden(String),
    /// 404: no such run, file or route.
    NotFound(String),
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 409: the agent runs as many runs as it may, or the run is over.
    Conflict(String),
    /// 413: the body is larger than `--max-body-bytes`.
    TooLarge(usize),
    /// 415: a body that is not `application/json`.
    UnsupportedMediaType(String),
    /// 421: the `Host` header names neither this agent's address nor an `--allow-host` name.
    MisdirectedHost(String),
    /// 403: the `Origin` header names a web page elsewhere (a browser sent the request for another site).
    CrossOrigin(String),
    /// 500: the agent could not do its part (e.g. write the run's folder).
    Internal(String),
}

impl AgentError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> AgentError {
        AgentError::Invalid { field: Some(field.into()), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AgentError::Invalid { .. } => StatusCode::BAD_REQUEST,
            AgentError::Unauthorized => StatusCode::UNAUTHORIZED,
            AgentError::Forbidden(_) => StatusCode::FORBIDDEN,
            AgentError::NotFound(_) => StatusCode::NOT_FOUND,
            AgentError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AgentError::Conflict(_) => StatusCode::CONFLICT,
            AgentError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AgentError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AgentError::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            AgentError::CrossOrigin(_) => StatusCode::FORBIDDEN,
            AgentError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body this error answers with.
    pub fn body(&self) -> ApiError {
        let (error, field) = match self {
            AgentError::Invalid { field, message } => (message.clone(), field.clone()),
            AgentError::Unauthorized => ("missing or wrong token: send Authorization: Bearer <token>".into(), None),
            AgentError::Forbidden(message) | AgentError::NotFound(message) | AgentError::Conflict(message) => {
                (message.clone(), None)
            }
            // The header at fault is the field, as a body's field is for a 400.
            AgentError::UnsupportedMediaType(message) => (message.clone(), Some("Content-Type".into())),
            AgentError::MisdirectedHost(message) => (message.clone(), Some("Host".into())),
            AgentError::CrossOrigin(message) => (message.clone(), Some("Origin".into())),
            AgentError::MethodNotAllowed => ("method not allowed on this route".into(), None),
            AgentError::TooLarge(limit) => {
                (format!("the body is larger than this agent accepts ({limit} bytes, --max-body-bytes)"), None)
            }
            AgentError::Internal(message) => (format!("internal error: {message}"), None),
        };
        ApiError { error, field }
    }

    /// A body that did not deserialize: `field` is its JSON path (a missing field is named, not its parent).
    pub fn from_json_path(path: &serde_path_to_error::Path, inner: &serde_json::Error) -> AgentError {
        let message = inner.to_string();
        // Broken JSON has no field to name (the path would be a placeholder).
        if inner.is_syntax() || inner.is_eof() {
            return AgentError::Invalid { field: None, message };
        }
        let mut field = path.to_string();
        if field == "." {
            field.clear();
        }
        if let Some(missing) = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            field = if field.is_empty() { missing.to_string() } else { format!("{field}.{missing}") };
        }
        AgentError::Invalid { field: (!field.is_empty()).then_some(field), message }
    }

    /// Body rejections: too large is 413, anything else (a broken stream) is 400.
    pub fn from_bytes_rejection(rejection: BytesRejection, limit: usize) -> AgentError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AgentError::TooLarge(limit)
        } else {
            AgentError::Invalid { field: None, message: rejection.body_text() }
        }
    }
}

impl From<QueryRejection> for AgentError {
    fn from(rejection: QueryRejection) -> AgentError {
        AgentError::Invalid { field: Some("query".into()), message: rejection.body_text() }
    }
}

impl From<PathRejection> for AgentError {
    fn from(rejection: PathRejection) -> AgentError {
        AgentError::NotFound(rejection.body_text())
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body();
        match body.field {
            Some(field) => write!(f, "{}: {field}: {}", self.status(), body.error),
            None => write!(f, "{}: {}", self.status(), body.error),
        }
    }
}

impl std::error::Error for AgentError {}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: AgentError) -> (u16, ApiError) {
        let response = error.into_response();
        let status = response.status().as_u16();
        assert_eq!(response.headers()["content-type"], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_error_maps_to_its_status_and_a_json_body() {
        let cases = [
            (AgentError::invalid("scenario.users", "needs one"), 400, Some("scenario.users")),
            (AgentError::Invalid { field: None, message: "broken".into() }, 400, None),
            (AgentError::Unauthorized, 401, None),
            (AgentError::Forbidden("target x:1 is not allowed".into()), 403, None),
            (AgentError::NotFound("no run".into()), 404, None),
            (AgentError::MethodNotAllowed, 405, None),
            (AgentError::Conflict("busy".into()), 409, None),
            (AgentError::TooLarge(10), 413, None),
            (AgentError::UnsupportedMediaType("send application/json".into()), 415, Some("Content-Type")),
            (AgentError::MisdirectedHost("evil:1 is not this agent".into()), 421, Some("Host")),
            (AgentError::CrossOrigin("http://evil is another site".into()), 403, Some("Origin")),
            (AgentError::Internal("disk full".into()), 500, None),
        ];
        for (error, status, field) in cases {
            let expected_text = error.body().error;
            let (code, body) = answer(error).await;
            assert_eq!(code, status, "{body:?}");
            assert_eq!(body.field.as_deref(), field);
            assert_eq!(body.error, expected_text);
            assert!(!body.error.is_empty());
        }
    }

    #[test]
    fn json_paths_name_missing_fields() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            weight: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            items: Vec<Inner>,
            target: String,
        }
        let parse = |text: &str| {
            let mut de = serde_json::Deserializer::from_str(text);
            let e = serde_path_to_error::deserialize::<_, Outer>(&mut de).unwrap_err();
            AgentError::from_json_path(e.path(), e.inner())
        };
        let field = |e: AgentError| match e {
            AgentError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(parse(r#"{"items": []}"#)).as_deref(), Some("target"));
        assert_eq!(field(parse(r#"{"items": [{}], "target": "x"}"#)).as_deref(), Some("items[0].weight"));
        assert_eq!(field(parse(r#"{"items": [{"weight": -1}], "target": "x"}"#)).as_deref(), Some("items[0].weight"));
        assert_eq!(field(parse("{\"items\": [")), None);
        assert_eq!(field(parse("{\"items\" 1}")), None);
    }
}

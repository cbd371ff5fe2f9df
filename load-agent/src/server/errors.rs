//! The control API's errors, each mapped to its status code and a JSON body naming the field where one is at fault.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::protocol::ApiError;

#[derive(Debug)]
pub enum AgentError {
    /// 400: the body is invalid; `field` is the JSON path of the offending value.
    Invalid {
        field: Option<String>,
        message: String,
    },
    Unauthorized,
    /// 403: the target is not on the allow-list.
    Forbidden(String),
    NotFound(String),
    /// 409: the agent runs as many runs as it may.
    Busy(String),
    Internal(String),
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let (status, error, field) = match self {
            AgentError::Invalid { field, message } => (StatusCode::BAD_REQUEST, message, field),
            AgentError::Unauthorized => {
                (StatusCode::UNAUTHORIZED, "missing or wrong token: send Authorization: Bearer <token>".into(), None)
            }
            AgentError::Forbidden(message) => (StatusCode::FORBIDDEN, message, None),
            AgentError::NotFound(message) => (StatusCode::NOT_FOUND, message, None),
            AgentError::Busy(message) => (StatusCode::CONFLICT, message, None),
            AgentError::Internal(message) => (StatusCode::INTERNAL_SERVER_ERROR, message, None),
        };
        (status, Json(ApiError { error, field })).into_response()
    }
}

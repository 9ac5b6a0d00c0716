//! One error type for the admin API: a status and a message naming the problem, as JSON.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid bearer token (writes need `authorization: Bearer <AURELIS_ADMIN_TOKEN>`)")]
    Unauthorized,
    #[error("admin writes are disabled: start the control plane with --admin-token or AURELIS_ADMIN_TOKEN")]
    WritesDisabled,
    #[error("{0}")]
    InvalidConfig(String),
}

impl AdminError {
    pub fn outcome(&self) -> &'static str {
        match self {
            AdminError::Unauthorized | AdminError::WritesDisabled => "unauthorized",
            AdminError::InvalidConfig(_) => "invalid",
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::Unauthorized | AdminError::WritesDisabled => StatusCode::UNAUTHORIZED,
            AdminError::InvalidConfig(_) => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({ "error": { "message": self.to_string() } }))).into_response()
    }
}

//! One error type for the admin API: a status and a message naming the problem, as JSON
//! `{"error":{"message":"..."}}`. Messages are written for the caller; nothing internal leaks.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid bearer token (send `authorization: Bearer <admin token>`)")]
    Unauthorized,
    #[error("the admin API is disabled: start the control plane with AURELIS_ADMIN_TOKEN or --admin-token-file")]
    TokenUnset,
    /// The filter's own `ConfigError` text: names the field and the value.
    #[error("{0}")]
    InvalidConfig(String),
    /// The body could not be read (too large, aborted); axum's text says which, without internals.
    #[error("request body: {message}")]
    Body { status: StatusCode, message: String },
    /// A model file or weights that do not validate; names the field and value.
    #[error("{0}")]
    InvalidModel(String),
    /// A named thing (model, endpoint) that does not exist.
    #[error("{0}")]
    Unknown(String),
    /// A dependency (the L2 Redis) is not configured or not answering.
    #[error("{0}")]
    Unavailable(String),
    /// A query parameter that is unknown or out of range; names it and the value.
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
}

impl AdminError {
    /// The `outcome` label of `aurelis_cp_admin_requests_total` (a small fixed set).
    pub fn outcome(&self) -> &'static str {
        match self {
            AdminError::Unauthorized | AdminError::TokenUnset => "unauthorized",
            AdminError::InvalidConfig(_)
            | AdminError::InvalidModel(_)
            | AdminError::InvalidQuery(_)
            | AdminError::Body { .. } => "invalid",
            AdminError::NotFound | AdminError::Unknown(_) | AdminError::MethodNotAllowed => "not_found",
            AdminError::Unavailable(_) => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized | AdminError::TokenUnset => StatusCode::UNAUTHORIZED,
            AdminError::InvalidConfig(_) | AdminError::InvalidModel(_) | AdminError::InvalidQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            AdminError::Unknown(_) => StatusCode::NOT_FOUND,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Body { status, .. } => *status,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for AdminError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        AdminError::Body { status: rejection.status(), message: rejection.body_text() }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": { "message": self.to_string() } }))).into_response();
        if matches!(self, AdminError::Unauthorized | AdminError::TokenUnset) {
            // RFC 6750: a 401 names the scheme the client should use.
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

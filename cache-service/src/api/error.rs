//! One error type for the cache API: a status and a message, as JSON `{"error":{"message":"..."}}`.
//! Redis details are logged, not returned: the filter only needs "unavailable".
use crate::store::StoreError;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad key, namespace, header or tag: names the field and the problem.
    #[error("{0}")]
    BadRequest(String),
    #[error("value is larger than the {max}-byte limit")]
    TooLarge { max: usize },
    /// Redis down, slow or failing: the filter treats it as "L2 unavailable" and fails open.
    #[error("L2 store unavailable ({0})")]
    Unavailable(&'static str),
    /// The request did not present one of the service's API tokens.
    #[error("missing or wrong API token: send `authorization: Bearer <token>`")]
    Unauthorized,
    /// The token is valid, but bound to another namespace than the one asked for.
    #[error("this API token is not bound to the namespace asked for (x-aurelis-namespace)")]
    Forbidden,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
}

impl ApiError {
    /// The `outcome` label of `aurelis_l2_operations_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::NotFound | ApiError::MethodNotAllowed => "bad_request",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::Unavailable(_) => "error",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(invalid) => ApiError::BadRequest(invalid.to_string()),
            StoreError::TooLarge { max, .. } => ApiError::TooLarge { max },
            StoreError::Timeout(_) => ApiError::Unavailable("redis timeout"),
            StoreError::Redis(_) => ApiError::Unavailable("redis error"),
            StoreError::Corrupt(_) => ApiError::Unavailable("stored value unreadable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": { "message": self.to_string() } }))).into_response();
        if let ApiError::Unauthorized = self {
            // RFC 6750: names the scheme expected, never the token.
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

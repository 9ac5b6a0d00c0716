//! The cache API the filter calls (h2c or HTTP/1.1): entries by key, health and readiness.
//! Every answer other than 200/204/404 means "L2 unavailable or refused" to the filter, which
//! then fails open; so Redis trouble is a fast 503, never a hang. With an API token set, entry
//! requests without it answer 401 (`auth`), which the filter also treats as "unavailable".
mod auth;
mod error;
pub mod headers;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use aurelis_core::cache::l2::MAX_FUTURE_SKEW_MS;
use aurelis_core::cache::sealed::{self, Clamp};
pub use auth::{Access, ApiToken, BindError, Namespace, TokenTable};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
pub use error::ApiError;
pub use headers::Defaults;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const ENTRIES: &str = "/v1/entries/";

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub defaults: Defaults,
    /// Which tokens entry requests need, and the namespace each may use.
    pub access: Access,
}

pub fn router(state: AppState) -> Router {
    // Bodies above the limit are refused while streaming, before they are buffered whole.
    let body_limit = DefaultBodyLimit::max(state.store.options().max_value_bytes);
    // Runs only for matched entry routes (health, readiness and 404/405 answers stay open),
    // before the handlers extract the body.
    let token = axum::middleware::from_fn_with_state(state.clone(), auth::authorize);
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
        // Keys may contain `/`: the key is the whole rest of the path, taken verbatim (no
        // percent-decoding; `%` is not a key character, so encoded keys are refused).
        .route(
            "/v1/entries/{*key}",
            get(get_entry).put(put_entry).delete(delete_entry).layer(body_limit).route_layer(token.clone()),
        )
        .route(ENTRIES, get(empty_key).put(empty_key).delete(empty_key).route_layer(token))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

fn key(uri: &Uri) -> &str {
    uri.path().strip_prefix(ENTRIES).unwrap_or_default()
}

async fn empty_key() -> ApiError {
    ApiError::BadRequest("key: is empty".into())
}

impl AppState {
    /// Counts the Redis failure by kind and logs its detail, which the response does not carry.
    fn store_error(&self, op: &'static str, e: StoreError) -> ApiError {
        match &e {
            StoreError::Timeout(_) => self.metrics.error(op, "timeout"),
            StoreError::Redis(_) | StoreError::Corrupt(_) => {
                self.metrics.error(op, "redis");
                tracing::warn!(op, error = %e, "L2 operation failed");
            }
            StoreError::Invalid(_) | StoreError::TooLarge { .. } => {}
        }
        e.into()
    }

    /// Records the operation's outcome and latency, and turns errors into responses.
    fn respond(
        &self,
        op: &'static str,
        started: Instant,
        result: Result<(&'static str, Response), ApiError>,
    ) -> Response {
        let (outcome, response) = match result {
            Ok(done) => done,
            Err(e) => (e.outcome(), e.into_response()),
        };
        self.metrics.observe(op, outcome, started.elapsed());
        response
    }
}

async fn get_entry(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    uri: Uri,
) -> Response {
    const OP: &str = "get";
    let started = Instant::now();
    let result = async {
        match s.store.get(&namespace, key(&uri)).await.map_err(|e| s.store_error(OP, e))? {
            Some(found) => {
                s.metrics.bytes("out", found.value.len(), found.stored_bytes);
                Ok(("hit", ([(CONTENT_TYPE, "application/octet-stream")], found.value).into_response()))
            }
            None => Ok(("miss", StatusCode::NOT_FOUND.into_response())),
        }
    }
    .await;
    s.respond(OP, started, result)
}

async fn put_entry(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const OP: &str = "put";
    let started = Instant::now();
    let result = async {
        let options = headers::put_options(&headers, s.defaults)?;
        let value = body.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { max: s.store.options().max_value_bytes },
            _ => ApiError::BadRequest(format!("request body: {}", rejection.body_text())),
        })?;
        let (value, outcome) = clamped(value, unix_ms_now());
        let stored = s.store.put(&namespace, key(&uri), &value, &options).await.map_err(|e| s.store_error(OP, e))?;
        s.metrics.bytes("in", value.len(), stored.stored_bytes);
        Ok((outcome, StatusCode::NO_CONTENT.into_response()))
    }
    .await;
    s.respond(OP, started, result)
}

async fn delete_entry(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    uri: Uri,
) -> Response {
    const OP: &str = "delete";
    let started = Instant::now();
    let result = async {
        s.store.delete(&namespace, key(&uri)).await.map_err(|e| s.store_error(OP, e))?;
        Ok(("deleted", StatusCode::NO_CONTENT.into_response()))
    }
    .await;
    s.respond(OP, started, result)
}

/// A value to store, with a future stored_at clamped to `now_ms` (same skew allowance as the
/// filter's readers), and the `outcome` label of the PUT: `clamped` or `stored`.
fn clamped(value: Bytes, now_ms: u64) -> (Bytes, &'static str) {
    // Read first: only a value that needs the rewrite is copied.
    match sealed::stored_at(&value) {
        Some(stored_at) if stored_at > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) => {
            let mut copy = value.to_vec();
            if sealed::clamp_stored_at(&mut copy, now_ms, MAX_FUTURE_SKEW_MS) == Clamp::Clamped {
                tracing::debug!("PUT of an entry dated in the future: stored_at clamped to now");
                return (Bytes::from(copy), "clamped");
            }
            (value, "stored")
        }
        _ => (value, "stored"),
    }
}

fn unix_ms_now() -> u64 {
    crate::store::layout::unix_ms(std::time::SystemTime::now())
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::debug!(error = %e, "not ready");
            ApiError::Unavailable("redis does not answer PING").into_response()
        }
    }
}

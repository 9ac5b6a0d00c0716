//! The cache API the filter calls (h2c or HTTP/1.1): entries by key, health and readiness;
//! purge by scope across both levels (`purge`); the hottest L3 entries for warming (`hot`).
//! Every answer other than 200/204/404 means "L2 unavailable or refused" to the filter, which
//! then fails open; so Redis trouble is a fast 503, never a hang. With an API token set, entry
//! requests without it answer 401 (`auth`), which the filter also treats as "unavailable".
mod auth;
mod error;
pub mod headers;
mod hits;
mod hot;
mod purge;
mod refresh;

use crate::l3::L3;
use crate::metrics::Metrics;
use crate::store::{PutOptions, Store, StoreError};
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
    /// The persistent level behind Redis, when configured.
    pub l3: Option<Arc<L3>>,
}

/// On an answer from L3 (Redis missed or is down), so tests and operators can tell the levels
/// apart.
pub const CACHE_LEVEL: &str = "x-aurelis-cache-level";
/// On an answer from Redis of an entry the service put there from L3 (promotion, refill): its
/// stored_at is its first store's, so the filter judges its age by L3's lifetime.
pub const ORIGIN: &str = aurelis_core::cache::l2::HEADER_ORIGIN;

pub fn router(state: AppState) -> Router {
    // Bodies above the limit are refused while streaming, before they are buffered whole.
    let body_limit_bytes = state.store.options().max_value_bytes;
    let body_limit = DefaultBodyLimit::max(body_limit_bytes);
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
        .route(ENTRIES, get(empty_key).put(empty_key).delete(empty_key).route_layer(token.clone()))
        .route("/v1/purge", axum::routing::post(purge::purge).route_layer(token.clone()))
        .route("/v1/hot", get(hot::hot).route_layer(token.clone()))
        .route(
            "/v1/hits",
            axum::routing::post(hits::hits)
                .layer(DefaultBodyLimit::max(hits::MAX_REPORT_BYTES))
                .route_layer(token.clone()),
        )
        .route(
            "/v1/refresh/{*key}",
            axum::routing::put(refresh::put_record).layer(DefaultBodyLimit::max(body_limit_bytes)).route_layer(token),
        )
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

    /// An L3 hit as the answer (promoted to Redis in the background), or `None`.
    async fn answer_from_l3(&self, namespace: &str, key: &str) -> Option<Response> {
        let found = self.l3.as_ref()?.lookup(namespace, key, signed_ms(unix_ms_now())).await?;
        // In Redis for what is left of its L3 life, at most the L2 default, at least a second.
        let ttl = found.remaining.min(self.defaults.ttl).max(std::time::Duration::from_secs(1));
        let options = PutOptions { ttl, compress_min_bytes: self.defaults.compress_min_bytes, tags: found.tags };
        let (store, namespace, key, value) =
            (self.store.clone(), namespace.to_string(), key.to_string(), found.value.clone());
        tokio::spawn(async move {
            if let Err(e) = store.put_from_l3(&namespace, &key, &value, &options).await {
                tracing::debug!(error = %e, "L3 hit not promoted to L2");
            }
        });
        self.metrics.bytes("out", found.value.len(), found.value.len());
        let level = axum::http::HeaderName::from_static(CACHE_LEVEL);
        Some(([(CONTENT_TYPE, "application/octet-stream"), (level, "L3")], found.value).into_response())
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
        let key = key(&uri);
        match s.store.get(&namespace, key).await {
            Ok(Some(found)) => {
                s.metrics.bytes("out", found.value.len(), found.stored_bytes);
                if let Some(l3) = &s.l3 {
                    // Redis hits count towards hotness too (in memory; written in batches).
                    l3.record_hits(&namespace, key, 1);
                    s.metrics.hot_hits.with_label_values(&["L2"]).inc();
                }
                let mut response = ([(CONTENT_TYPE, "application/octet-stream")], found.value).into_response();
                if found.from_l3 {
                    response.headers_mut().insert(
                        axum::http::HeaderName::from_static(ORIGIN),
                        axum::http::HeaderValue::from_static("L3"),
                    );
                }
                Ok(("hit", response))
            }
            Ok(None) => match s.answer_from_l3(&namespace, key).await {
                Some(answer) => Ok(("hit_l3", answer)),
                None => Ok(("miss", StatusCode::NOT_FOUND.into_response())),
            },
            // Redis down or slow: L3 still serves; without it the filter fails open as before.
            Err(e) => {
                let error = s.store_error(OP, e);
                match s.answer_from_l3(&namespace, key).await {
                    Some(answer) => Ok(("hit_l3", answer)),
                    None => Err(error),
                }
            }
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
        let now_ms = unix_ms_now();
        let (value, outcome) = clamped(value, now_ms);
        let stored = s.store.put(&namespace, key(&uri), &value, &options).await;
        // After L2 (whatever it answered), off the request path.
        if let Some(l3) = &s.l3 {
            l3.store_in_background(&namespace, key(&uri), value.to_vec(), &options.tags, signed_ms(now_ms));
        }
        let stored = stored.map_err(|e| s.store_error(OP, e))?;
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
        if let Some(l3) = &s.l3 {
            // Not forgotten by L3 means it could come back: the caller must retry.
            l3.delete(&namespace, key(&uri)).await.map_err(|_| ApiError::Unavailable("L3 did not delete the entry"))?;
        }
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

fn signed_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
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

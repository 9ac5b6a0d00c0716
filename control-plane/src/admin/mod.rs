//! The admin API: health, and the filter configuration (read, validate, replace).
mod error;

use crate::state::AppState;
use aurelis_core::config::FilterConfig;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
pub use error::AdminError;
use serde_json::{json, Value};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(|| async { Json(json!({ "status": "ready" })) }))
        .route("/v1/filter-config", get(get_filter_config).put(put_filter_config))
        .route("/v1/filter-config:validate", post(validate_filter_config))
        .with_state(state)
}

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(expected) = &state.admin_token else { return Err(AdminError::WritesDisabled) };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

fn parse(body: &[u8]) -> Result<FilterConfig, AdminError> {
    FilterConfig::from_json(body).map_err(|e| AdminError::InvalidConfig(e.to_string()))
}

fn count(state: &AppState, route: &str, outcome: &str) {
    state.metrics.admin_requests.with_label_values(&[route, outcome]).inc();
}

async fn get_filter_config(State(state): State<AppState>) -> Json<FilterConfig> {
    count(&state, "get_filter_config", "ok");
    Json(state.filter_config.borrow().clone())
}

async fn put_filter_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<FilterConfig>, AdminError> {
    let result = authorize(&state, &headers).and_then(|_| parse(&body));
    match result {
        Ok(config) => {
            state.filter_config.send_replace(config.clone());
            state.metrics.filter_config_updates.inc();
            count(&state, "put_filter_config", "ok");
            Ok(Json(config))
        }
        Err(e) => {
            count(&state, "put_filter_config", e.outcome());
            Err(e)
        }
    }
}

async fn validate_filter_config(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, AdminError> {
    let result = parse(&body);
    count(&state, "validate_filter_config", if result.is_ok() { "ok" } else { "invalid" });
    result.map(|_| Json(json!({ "valid": true })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, Value) {
        let resp = router(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn put(body: &str, token: Option<&str>) -> Request<Body> {
        let mut b = Request::put("/v1/filter-config").header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn health_and_read() {
        let state = AppState::new(FilterConfig::default(), None);
        let (status, body) = call(&state, Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
        let (status, body) = call(&state, Request::get("/v1/filter-config").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["cache"]["ttl_seconds"], 300);
    }

    #[tokio::test]
    async fn writes_need_the_token() {
        let state = AppState::new(FilterConfig::default(), Some("t0ken".into()));
        let (status, body) = call(&state, put(r#"{"cache":{"ttl_seconds":60}}"#, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["error"]["message"].as_str().unwrap().contains("bearer token"));
        let (status, _) = call(&state, put(r#"{"cache":{"ttl_seconds":60}}"#, Some("wrong"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(&state, put(r#"{"cache":{"ttl_seconds":60}}"#, Some("t0ken"))).await;
        assert_eq!((status, body["cache"]["ttl_seconds"].as_u64()), (StatusCode::OK, Some(60)));
        assert_eq!(state.filter_config.borrow().cache.ttl_seconds, 60);
    }

    #[tokio::test]
    async fn without_a_configured_token_writes_are_refused() {
        let state = AppState::new(FilterConfig::default(), None);
        let (status, body) = call(&state, put("{}", Some("anything"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["error"]["message"].as_str().unwrap().contains("AURELIS_ADMIN_TOKEN"));
    }

    #[tokio::test]
    async fn invalid_config_is_refused_naming_the_field() {
        let state = AppState::new(FilterConfig::default(), Some("t".into()));
        let (status, body) = call(&state, put(r#"{"cache":{"max_entries":0}}"#, Some("t"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].as_str().unwrap().contains("cache.max_entries"), "{body}");
        assert_eq!(state.filter_config.borrow().cache.max_entries, 1000, "unchanged");
        let req = Request::post("/v1/filter-config:validate").body(Body::from(r#"{"cache":{"bogus":1}}"#)).unwrap();
        let (status, body) = call(&state, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].as_str().unwrap().contains("bogus"));
    }
}

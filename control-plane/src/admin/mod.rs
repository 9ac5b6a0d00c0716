//! The admin API: health, status of the xDS fleet, the filter configuration, model weights and
//! endpoint health overrides. Reads are open (nothing returned holds a secret); every write
//! needs the bearer token.
mod endpoints;
mod error;
mod purge;
mod routing;
mod status;

use crate::state::{token_digest, AppState};
use aurelis_core::config::FilterConfig;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use axum::{Json, Router};
pub use error::AdminError;
use serde_json::{json, Value};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        // Nothing to wait for yet: the config is loaded and validated before the listener binds.
        // The xDS server will make this depend on its own readiness.
        .route("/readyz", get(|| async { Json(json!({ "status": "ready" })) }))
        .route("/v1/filter-config", get(get_filter_config).put(put_filter_config))
        .route("/v1/filter-config:validate", post(validate_filter_config))
        .route("/v1/status", get(status::get_status))
        .route("/v1/models", get(routing::get_models))
        .route("/v1/models/{model}/weights", put(routing::put_weights))
        .route("/v1/model:validate", post(routing::validate_model))
        .route("/v1/endpoints", get(endpoints::get_endpoints))
        .route("/v1/cache:purge", post(purge::purge))
        .route("/v1/endpoints/{provider}/{address}/health", put(endpoints::put_override))
        // JSON errors everywhere, so clients parse one shape.
        .fallback(|State(s): State<AppState>| async move { fail(&s, "unmatched", AdminError::NotFound) })
        .method_not_allowed_fallback(|State(s): State<AppState>| async move {
            fail(&s, "unmatched", AdminError::MethodNotAllowed)
        })
        .with_state(state)
}

/// Compares the two digests without an early exit, so timing says nothing about the token.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(expected) = &state.admin_token_digest else { return Err(AdminError::WritesDisabled) };
    // `Bearer <token>`, the scheme case-insensitively (RFC 7235).
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(AdminError::Unauthorized)?;
    if constant_time_eq(&token_digest(presented), expected) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

/// The filter's own parser and validator: what passes here, the filter accepts.
fn parse(body: Result<Bytes, BytesRejection>) -> Result<FilterConfig, AdminError> {
    FilterConfig::from_json(&body?).map_err(|e| AdminError::InvalidConfig(e.to_string()))
}

pub(crate) fn count(state: &AppState, route: &str, outcome: &str) {
    state.metrics.admin_requests.with_label_values(&[route, outcome]).inc();
}

pub(crate) fn fail(state: &AppState, route: &str, error: AdminError) -> AdminError {
    count(state, route, error.outcome());
    error
}

async fn get_filter_config(State(state): State<AppState>) -> Json<FilterConfig> {
    count(&state, "get_filter_config", "ok");
    Json(state.config.desired().filter)
}

async fn put_filter_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FilterConfig>, AdminError> {
    const ROUTE: &str = "put_filter_config";
    // Authorize before reading the body's content: unauthenticated callers learn nothing.
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let config = parse(body).map_err(|e| fail(&state, ROUTE, e))?;
    let next = config.clone();
    state.config.update(|d| d.filter = next);
    state.metrics.filter_config_updates.inc();
    count(&state, ROUTE, "ok");
    tracing::info!("filter configuration replaced via admin API");
    Ok(Json(config))
}

async fn validate_filter_config(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "validate_filter_config";
    parse(body).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(json!({ "valid": true })))
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

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    fn put(body: &str, authorization: Option<&str>) -> Request<Body> {
        let mut b = Request::put("/v1/filter-config").header("content-type", "application/json");
        if let Some(a) = authorization {
            b = b.header("authorization", a);
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    fn validate(body: &str) -> Request<Body> {
        Request::post("/v1/filter-config:validate").body(Body::from(body.to_string())).unwrap()
    }

    fn message(body: &Value) -> &str {
        body["error"]["message"].as_str().unwrap_or_else(|| panic!("not an error body: {body}"))
    }

    #[tokio::test]
    async fn health_ready_and_read() {
        let state = AppState::with_filter_config(FilterConfig::default(), None);
        let (status, body) = call(&state, get("/healthz")).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));
        let (status, body) = call(&state, get("/readyz")).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
        let (status, body) = call(&state, get("/v1/filter-config")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(serde_json::from_value::<FilterConfig>(body).unwrap(), FilterConfig::default());
    }

    #[tokio::test]
    async fn writes_need_the_token_and_reach_subscribers() {
        let state = AppState::with_filter_config(FilterConfig::default(), Some("t0ken"));
        let watcher = state.config.subscribe();
        let new = r#"{"cache":{"ttl_seconds":60}}"#;
        for auth in [None, Some("Bearer wrong"), Some("Bearer t0ken2"), Some("Basic t0ken"), Some("t0ken")] {
            let (status, body) = call(&state, put(new, auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert!(message(&body).contains("bearer token"), "{body}");
        }
        assert!(!watcher.has_changed().unwrap(), "refused writes change nothing");
        let (status, body) = call(&state, put(new, Some("bearer t0ken"))).await;
        assert_eq!((status, body["cache"]["ttl_seconds"].as_u64()), (StatusCode::OK, Some(60)));
        assert!(watcher.has_changed().unwrap(), "a new snapshot is published");
        assert_eq!(state.config.desired().filter.cache.ttl_seconds, 60);
        let (_, body) = call(&state, get("/v1/filter-config")).await;
        assert_eq!(body["cache"]["ttl_seconds"], 60);
    }

    #[tokio::test]
    async fn without_a_configured_token_writes_are_refused() {
        let state = AppState::with_filter_config(FilterConfig::default(), None);
        let resp = router(state.clone()).oneshot(put("{}", Some("Bearer anything"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let (_, body) = call(&state, put("{}", Some("Bearer anything"))).await;
        assert!(message(&body).contains("AURELIS_ADMIN_TOKEN"), "{body}");
    }

    #[tokio::test]
    async fn invalid_config_is_refused_naming_the_field() {
        let state = AppState::with_filter_config(FilterConfig::default(), Some("t"));
        let (status, body) = call(&state, put(r#"{"cache":{"max_entries":0}}"#, Some("Bearer t"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message(&body).contains("`cache.max_entries`: 0"), "{body}");
        assert_eq!(state.config.desired().filter.cache.max_entries, 1000, "unchanged");
        let (status, body) = call(&state, put("not json", Some("Bearer t"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn validate_needs_no_token_and_applies_nothing() {
        let state = AppState::with_filter_config(FilterConfig::default(), None);
        let (status, body) = call(&state, validate(r#"{"cache":{"ttl_seconds":60}}"#)).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "valid": true })));
        assert_eq!(state.config.desired().filter.cache.ttl_seconds, 300, "not applied");
        let (status, body) = call(&state, validate(r#"{"cache":{"bogus":1}}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message(&body).contains("unknown field `bogus`"), "{body}");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let state = AppState::with_filter_config(FilterConfig::default(), None);
        let (status, body) = call(&state, get("/nope")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        message(&body);
        let (status, body) = call(&state, Request::delete("/v1/filter-config").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        message(&body);
    }

    #[tokio::test]
    async fn requests_and_updates_are_counted() {
        let state = AppState::with_filter_config(FilterConfig::default(), Some("t"));
        call(&state, put("{}", None)).await;
        call(&state, put("{}", Some("Bearer t"))).await;
        call(&state, validate("not json")).await;
        let text = state.metrics.render();
        for line in [
            r#"aurelis_cp_admin_requests_total{outcome="unauthorized",route="put_filter_config"} 1"#,
            r#"aurelis_cp_admin_requests_total{outcome="ok",route="put_filter_config"} 1"#,
            r#"aurelis_cp_admin_requests_total{outcome="invalid",route="validate_filter_config"} 1"#,
            "aurelis_cp_filter_config_updates_total 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}

//! The admin API: health, status of the xDS fleet, the filter configuration, model weights,
//! endpoint health overrides and API-key consumers. Only the probes (`/healthz`, `/readyz`) are
//! open: every `/v1` route, reads included, needs the bearer token, because reads are sensitive
//! too (the filter configuration holds consumers and key digests, the status holds Envoys' NACK
//! texts, which quote configuration, and the fleet's addresses). Without a configured token,
//! `/v1` is refused.
mod consumers;
mod endpoints;
mod error;
mod events;
mod purge;
mod report;
mod routing;
mod status;

use crate::state::AppState;
use aurelis_core::config::FilterConfig;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
pub use error::AdminError;
use serde_json::{json, Value};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
        .route("/v1/filter-config", get(get_filter_config).put(put_filter_config))
        .route("/v1/filter-config:validate", post(validate_filter_config))
        .route("/v1/status", get(status::get_status))
        .route("/v1/report", get(report::get_report))
        .route("/v1/models", get(routing::get_models))
        .route("/v1/models/{model}/weights", put(routing::put_weights))
        .route("/v1/model:validate", post(routing::validate_model))
        .route("/v1/endpoints", get(endpoints::get_endpoints))
        .route("/v1/cache:purge", post(purge::purge))
        .route("/v1/endpoints/{provider}/{address}/health", put(endpoints::put_override))
        .route("/v1/events", get(events::get_events))
        .route("/v1/consumers", get(consumers::list))
        .route("/v1/consumers/{name}", put(consumers::put).delete(consumers::remove))
        .route("/v1/consumers/{name}/keys", post(consumers::add_key))
        .route("/v1/consumers/{name}/keys/{key_sha256}", delete(consumers::revoke_key))
        // The page and its data (`/dashboard`, `/v1/dashboard`).
        .merge(crate::dashboard::routes())
        // JSON errors everywhere, so clients parse one shape.
        .fallback(|State(s): State<AppState>| async move { fail(&s, "unmatched", AdminError::NotFound) })
        .method_not_allowed_fallback(|State(s): State<AppState>| async move {
            fail(&s, "unmatched", AdminError::MethodNotAllowed)
        })
        .with_state(state)
}

/// Ready when the model has been compiled into a snapshot with a version for every xDS type
/// (what an Envoy connecting now would be sent); the versions are shown, nothing else.
async fn ready(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let versions = state.config.current().versions();
    let built = !versions.is_empty() && versions.values().all(|v| !v.is_empty());
    if built {
        Json(json!({ "status": "ready", "versions": versions })).into_response()
    } else {
        let body = Json(json!({ "status": "not ready", "reason": "no configuration snapshot built" }));
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Every `/v1` handler calls this first, before reading the body: unauthenticated callers learn
/// nothing, and their refusal is counted under the handler's route.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &state.admin_token else { return Err(AdminError::TokenUnset) };
    if token.admits(headers) {
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

async fn get_filter_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FilterConfig>, AdminError> {
    const ROUTE: &str = "get_filter_config";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(state.config.desired().filter))
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
    // Checked against the model it will be compiled with, under the same lock.
    state
        .config
        .try_update(|desired| {
            desired.model.check_filter(&next).map_err(|e| AdminError::InvalidConfig(e.to_string()))?;
            // The model carries what is pushed, so later changes (weights, consumers) are
            // validated against this filter configuration, not the file's original one.
            desired.model.filter = serde_json::to_value(&next).map_err(|e| AdminError::InvalidConfig(e.to_string()))?;
            desired.filter = next;
            Ok(())
        })
        .map_err(|e| fail(&state, ROUTE, e))?;
    state.metrics.filter_config_updates.inc();
    count(&state, ROUTE, "ok");
    tracing::info!("filter configuration replaced via admin API");
    Ok(Json(config))
}

async fn validate_filter_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "validate_filter_config";
    // Checked against the current model: its errors describe the served configuration.
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let config = parse(body).map_err(|e| fail(&state, ROUTE, e))?;
    let model = state.config.desired().model;
    model.check_filter(&config).map_err(|e| fail(&state, ROUTE, AdminError::InvalidConfig(e.to_string())))?;
    count(&state, ROUTE, "ok");
    Ok(Json(json!({ "valid": true })))
}

#[cfg(test)]
mod consumers_tests;
#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod tests;

//! API-key consumers (`filter.auth.consumers`): list, add or update, remove, add a key, revoke
//! a key. Every change is validated like a new model file and pushed to the fleet over ECDS
//! (the filter swaps its configuration in place; Envoy keeps running).
//!
//! Keys are never stored or listed: the control plane keeps SHA-256 digests. A key it generates
//! is in the one response that creates it. Every read needs the admin token.
use super::{authorize, count, fail, AdminError};
use crate::model::{generate_key, ConsumerChange, ConsumerError};
use crate::state::AppState;
use aurelis_core::auth::key_sha256;
use aurelis_core::limits::Limits;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn consumers_json(state: &AppState) -> Value {
    let filter = state.config.desired().filter;
    let consumers: Vec<Value> = filter
        .auth
        .consumers
        .iter()
        .map(|c| {
            let entry = json!({
                "name": c.name,
                "tenant": c.tenant(),
                "models": c.models,
                "limits": c.limits,
                "keys": c.key_sha256.len(),
                "key_sha256": c.key_sha256,
            });
            entry
        })
        .collect();
    json!({ "consumers": consumers })
}

/// `GET /v1/consumers`: names, tenants, models, limits, key counts and digests (a sensitive
/// read: the admin token, like every `/v1` route).
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_consumers";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(consumers_json(&state)))
}

fn apply(state: &AppState, route: &str, change: ConsumerChange) -> Result<(), AdminError> {
    state
        .config
        .try_update(|desired| {
            let (model, filter) = desired.model.with_consumer_change(&desired.filter, change).map_err(|e| match e {
                ConsumerError::UnknownConsumer(_) | ConsumerError::UnknownKey(_) => AdminError::Unknown(e.to_string()),
                ConsumerError::Invalid(e) => AdminError::InvalidModel(e.to_string()),
            })?;
            desired.model = model;
            desired.filter = filter;
            Ok(())
        })
        .map_err(|e| fail(state, route, e))?;
    state.metrics.filter_config_updates.inc();
    count(state, route, "ok");
    Ok(())
}

fn body_json<T: serde::de::DeserializeOwned>(
    state: &AppState,
    route: &str,
    body: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, AdminError> {
    let body = body.map_err(|e| fail(state, route, e.into()))?;
    // An empty body is `{}`: every field of these bodies is optional.
    let body = if body.iter().all(u8::is_ascii_whitespace) { Bytes::from_static(b"{}") } else { body };
    serde_json::from_slice(&body)
        .map_err(|e| fail(state, route, AdminError::InvalidModel(format!("body must be {shape}: {e}"))))
}

/// `PUT /v1/consumers/{name}` with `{"tenant": "...", "models": [...], "limits": {...}}` (all
/// optional): adds the consumer or replaces those fields; its keys are kept.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "put_consumer";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fields {
        #[serde(default)]
        tenant: Option<String>,
        #[serde(default)]
        models: Vec<String>,
        #[serde(default)]
        limits: Option<Limits>,
    }
    let shape = r#"{"tenant"?, "models"?, "limits"?} (keys: POST /v1/consumers/{name}/keys)"#;
    let fields: Fields = body_json(&state, ROUTE, body, shape)?;
    let change = ConsumerChange::Upsert {
        name: name.clone(),
        tenant: fields.tenant,
        models: fields.models,
        limits: fields.limits,
    };
    apply(&state, ROUTE, change)?;
    tracing::info!(consumer = %name, "consumer added or updated via admin API");
    Ok(Json(consumers_json(&state)))
}

/// `DELETE /v1/consumers/{name}`: the consumer and all its keys.
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "delete_consumer";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    apply(&state, ROUTE, ConsumerChange::Remove { name: name.clone() })?;
    tracing::info!(consumer = %name, "consumer removed via admin API");
    Ok(Json(consumers_json(&state)))
}

/// `POST /v1/consumers/{name}/keys` with `{"key_sha256": "<64 hex>"}` (a key made elsewhere),
/// or `{}` to have one generated: 201 with `key` (generated only, shown this once) and its
/// `key_sha256` (the handle for revoking it).
pub async fn add_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    const ROUTE: &str = "add_consumer_key";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewKey {
        #[serde(default)]
        key_sha256: Option<String>,
    }
    let request: NewKey = body_json(&state, ROUTE, body, r#"{"key_sha256": "<64 lowercase hex>"} or {}"#)?;
    let (key, digest) = match request.key_sha256 {
        Some(digest) => (None, digest),
        None => {
            let key = generate_key().map_err(|e| {
                tracing::error!("the OS random source failed: {e}");
                fail(&state, ROUTE, AdminError::Unavailable("no randomness to generate a key; try again".into()))
            })?;
            let digest = key_sha256(&key);
            (Some(key), digest)
        }
    };
    apply(&state, ROUTE, ConsumerChange::AddKey { name: name.clone(), key_sha256: digest.clone() })?;
    // The digest's first characters identify the key in logs without making it guessable.
    tracing::info!(consumer = %name, key = %digest.get(..8).unwrap_or_default(), generated = key.is_some(), "key added via admin API");
    let mut answer = json!({ "consumer": name, "key_sha256": digest });
    if let Some(key) = key {
        answer["key"] = json!(key);
    }
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    // The answer may hold a key: no cache on the way may keep it.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /v1/consumers/{name}/keys/{key_sha256}`: the key stops working once Envoy has the
/// new filter configuration (see `/v1/status`, `ecds`).
pub async fn revoke_key(
    State(state): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "revoke_consumer_key";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    apply(&state, ROUTE, ConsumerChange::RevokeKey { name: name.clone(), key_sha256: digest.clone() })?;
    tracing::info!(consumer = %name, key = %digest.get(..8).unwrap_or_default(), "key revoked via admin API");
    Ok(Json(consumers_json(&state)))
}

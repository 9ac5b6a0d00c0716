//! Model routing: read the weights, change one model's weights, validate a whole model file.
use super::{authorize, count, fail, AdminError};
use crate::model::Model;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn routes_json(model: &Model) -> Value {
    let models: Vec<Value> = model
        .models
        .iter()
        .map(|m| {
            let weights: BTreeMap<&str, u32> = m.providers.iter().map(|p| (p.provider.as_str(), p.weight)).collect();
            json!({ "name": m.name, "weights": weights })
        })
        .collect();
    json!({ "models": models })
}

pub async fn get_models(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_models";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(routes_json(&state.config.desired().effective_model())))
}

/// `PUT /v1/models/{model}/weights` with `{"weights": {"provider-a": 80, "provider-b": 20}}`.
pub async fn put_weights(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "put_weights";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let body = body.map_err(|e| fail(&state, ROUTE, e.into()))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Weights {
        weights: BTreeMap<String, u32>,
    }
    let weights: Weights = serde_json::from_slice(&body).map_err(|e| {
        fail(
            &state,
            ROUTE,
            AdminError::InvalidModel(format!("body must be {{\"weights\": {{\"<provider>\": <weight>}}}}: {e}")),
        )
    })?;
    // Read, check and write under one lock: concurrent weight changes cannot lose each other.
    let mut answer = Value::Null;
    state
        .config
        .try_update(|desired| {
            if !desired.model.models.iter().any(|m| m.name == model) {
                return Err(AdminError::Unknown(format!("model `{model}` is not in the model file")));
            }
            let next = desired
                .model
                .with_weights(&model, &weights.weights)
                .map_err(|e| AdminError::InvalidModel(e.to_string()))?;
            answer = routes_json(&next);
            desired.model = next;
            // New intent from the operator: adaptive routing starts again from these weights.
            desired.adaptive_weights.remove(&model);
            Ok(())
        })
        .map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    tracing::info!(%model, weights = ?weights.weights, "model weights changed via admin API");
    Ok(Json(answer))
}

/// `POST /v1/model:validate`: a whole model file (YAML or JSON), checked without applying it.
pub async fn validate_model(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "validate_model";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let body = body.map_err(|e| fail(&state, ROUTE, e.into()))?;
    let text = String::from_utf8_lossy(&body);
    Model::from_yaml(&text).map_err(|e| fail(&state, ROUTE, AdminError::InvalidModel(e.to_string())))?;
    count(&state, ROUTE, "ok");
    Ok(Json(json!({ "valid": true })))
}

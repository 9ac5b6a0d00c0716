//! The adaptive loops, seen and steered: `GET /v1/routing` (per model: weights, targets, the
//! reason for each provider's weight, the inputs, pins, when it last changed, the recent
//! changes; per cluster: the load-balancing policy, the per-endpoint inputs and verdict behind
//! it, when it last changed, and the recent switches), operator pins that win over adaptive routing (`PUT`/`DELETE
//! /v1/routing/{model}/{provider}`), and `GET /v1/tuning`.
use super::{authorize, count, fail, AdminError};
use crate::adaptive::driver::apply_routing;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn routing_json(state: &AppState) -> Value {
    let desired = state.config.desired();
    let effective = desired.effective_model();
    let routing = state.adaptive.routing();
    let (decided, changes) = routing.view();
    let balancing = state.adaptive.balancing();
    let (balanced, balancing_changes) = balancing.view();
    let models: Vec<Value> = effective
        .models
        .iter()
        .map(|route| {
            let weights: std::collections::BTreeMap<&str, u32> =
                route.providers.iter().map(|p| (p.provider.as_str(), p.weight)).collect();
            let file: std::collections::BTreeMap<&str, u32> = desired
                .model
                .models
                .iter()
                .find(|m| m.name == route.name)
                .map(|m| m.providers.iter().map(|p| (p.provider.as_str(), p.weight)).collect())
                .unwrap_or_default();
            let fails_over = route.providers.len() > 1;
            let clusters: Vec<Value> = route
                .providers
                .iter()
                .filter_map(|p| effective.provider(&p.provider))
                .map(|p| {
                    let b = balanced.get(&p.name);
                    json!({
                        "cluster": p.name,
                        // What the route names: the failover cluster [this provider, the others].
                        "route_cluster": if fails_over {
                            crate::xds::resources::failover_cluster_name(&route.name, &p.name)
                        } else {
                            p.name.clone()
                        },
                        "lb_policy": p.limits.lb_policy,
                        "endpoint_weights": b.map(|b| &b.endpoint_weights),
                        "verdict": b.and_then(|b| b.verdict),
                        "inputs": b.map(|b| &b.inputs),
                        "decided_at_ms": b.map(|b| b.decided_at_ms),
                        "last_changed_ms": b.and_then(|b| b.last_changed_ms),
                    })
                })
                .collect();
            let decision = decided.get(&route.name);
            json!({
                "model": route.name,
                "weights": weights,
                "file_weights": file,
                "targets": decision.map(|d| &d.decision.targets),
                "reasons": decision.map(|d| &d.decision.reasons),
                "inputs": decision.map(|d| &d.inputs),
                "pins": decision.map(|d| &d.pins),
                "decided_at_ms": decision.map(|d| d.decided_at_ms),
                "last_changed_ms": decision.and_then(|d| d.last_changed_ms),
                "clusters": clusters,
            })
        })
        .collect();
    json!({
        "adaptive": desired.model.adaptive.routing.enabled,
        "settings": desired.model.adaptive.routing,
        "models": models,
        "changes": changes,
        "balancing": desired.model.adaptive.balancing,
        "balancing_changes": balancing_changes,
    })
}

pub async fn get_routing(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_routing";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(routing_json(&state)))
}

/// `PUT /v1/routing/{model}/{provider}` with `{"weight": 80}`: fixed until deleted.
pub async fn put_pin(
    State(state): State<AppState>,
    Path((model, provider)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "put_routing_pin";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let body = body.map_err(|e| fail(&state, ROUTE, e.into()))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pin {
        weight: u32,
    }
    let pin: Pin = serde_json::from_slice(&body).map_err(|e| {
        fail(&state, ROUTE, AdminError::InvalidModel(format!("body must be {{\"weight\": <0..=10000>}}: {e}")))
    })?;
    let desired = state.config.desired();
    let route = desired.model.models.iter().find(|m| m.name == model);
    if !route.is_some_and(|m| m.providers.iter().any(|p| p.provider == provider)) {
        let e = AdminError::Unknown(format!("model `{model}` has no provider `{provider}` in the model file"));
        return Err(fail(&state, ROUTE, e));
    }
    if pin.weight > 10_000 {
        return Err(fail(&state, ROUTE, AdminError::InvalidModel(format!("weight {} is above 10000", pin.weight))));
    }
    state.adaptive.routing().pin(&model, &provider, pin.weight);
    apply_routing(&state, now_ms());
    count(&state, ROUTE, "ok");
    tracing::info!(%model, %provider, weight = pin.weight, "routing weight pinned via admin API");
    Ok(Json(routing_json(&state)))
}

/// `DELETE /v1/routing/{model}/{provider}`: back to adaptive (or the file's weight).
pub async fn delete_pin(
    State(state): State<AppState>,
    Path((model, provider)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "delete_routing_pin";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    if !state.adaptive.routing().unpin(&model, &provider) {
        let e = AdminError::Unknown(format!("no pin for provider `{provider}` of model `{model}`"));
        return Err(fail(&state, ROUTE, e));
    }
    apply_routing(&state, now_ms());
    count(&state, ROUTE, "ok");
    tracing::info!(%model, %provider, "routing pin removed via admin API");
    Ok(Json(routing_json(&state)))
}

/// `GET /v1/tuning`: the mode, the rollout in progress and the settings.
pub async fn get_tuning(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_tuning";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let settings = state.config.desired().model.adaptive.tuning;
    let rollout = state.adaptive.tuner().rollout.clone();
    let log = state.adaptive.tuning_log();
    let memory = {
        let memory = state.adaptive.memory();
        json!({
            "settings": state.config.desired().model.adaptive.memory,
            "l1_budget_bytes": state.config.desired().filter.cache.max_bytes,
            "lowered_from_bytes": memory.governor.baseline,
            "events": memory.events,
        })
    };
    count(&state, ROUTE, "ok");
    Ok(Json(json!({
        "mode": settings.mode,
        "settings": settings,
        "candidates": log.candidates,
        "rollout": rollout,
        "events": log.events,
        "memory": memory,
    })))
}

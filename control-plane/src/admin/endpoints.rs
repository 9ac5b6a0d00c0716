//! Endpoint health: what the probes and overrides say, and operator overrides
//! (`PUT /v1/endpoints/{provider}/{address}/health` with `{"override": "unhealthy"}`,
//! `"healthy"`, or `null` to hand the endpoint back to the probes).
use super::{authorize, count, fail, AdminError};
use crate::state::{AppState, HealthOverride};
use crate::xds::resources::EndpointId;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

fn endpoints_json(state: &AppState) -> Value {
    let desired = state.config.desired();
    let unhealthy = desired.unhealthy();
    let mut out = Vec::new();
    for provider in &desired.model.providers {
        for (host, port, weight) in provider.endpoint_addresses() {
            let id = EndpointId::new(&provider.name, &host, port);
            out.push(json!({
                "provider": id.provider,
                "address": id.address,
                "weight": weight,
                "served_by": if provider.uses_eds() { "eds" } else { "dns" },
                "probe": if provider.health_check.is_none() { "off" } else if desired.probe_unhealthy.contains(&id) { "failing" } else { "passing" },
                "override": desired.overrides.get(&id),
                "healthy": !unhealthy.contains(&id),
            }));
        }
    }
    json!({ "endpoints": out })
}

pub async fn get_endpoints(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_endpoints";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(endpoints_json(&state)))
}

pub async fn put_override(
    State(state): State<AppState>,
    Path((provider, address)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "put_endpoint_health";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let body = body.map_err(|e| fail(&state, ROUTE, e.into()))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Override {
        r#override: Option<HealthOverride>,
    }
    let request: Override = serde_json::from_slice(&body).map_err(|e| {
        fail(
            &state,
            ROUTE,
            AdminError::InvalidModel(format!("body must be {{\"override\": \"healthy\" | \"unhealthy\" | null}}: {e}")),
        )
    })?;
    let desired = state.config.desired();
    let known = desired.model.provider(&provider).filter(|p| p.uses_eds()).is_some_and(|p| {
        p.endpoint_addresses().iter().any(|(h, port, _)| EndpointId::new(&provider, h, *port).address == address)
    });
    if !known {
        return Err(fail(
            &state,
            ROUTE,
            AdminError::Unknown(format!(
                "no EDS endpoint `{address}` in provider `{provider}` (see GET /v1/endpoints)"
            )),
        ));
    }
    let id = EndpointId { provider, address };
    state.config.update(|d| match request.r#override {
        Some(o) => {
            d.overrides.insert(id.clone(), o);
        }
        None => {
            d.overrides.remove(&id);
        }
    });
    count(&state, ROUTE, "ok");
    tracing::info!(provider = %id.provider, endpoint = %id.address, r#override = ?request.r#override, "endpoint health override via admin API");
    Ok(Json(endpoints_json(&state)))
}

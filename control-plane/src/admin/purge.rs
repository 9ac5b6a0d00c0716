//! `POST /v1/cache:purge`: removes L2 entries by one dimension, e.g.
//! `{"model": "gpt-4o-mini"}`, `{"tenant": "t=3f2a..."}` (the scope shown in the filter's
//! `x-aurelis-cache-key-info`) or `{"schema": "v1"}`; `namespace` defaults to the filter's
//! `l2.namespace`. L1 copies in each Envoy age out by their (shorter) TTL.
use super::{authorize, count, fail, AdminError};
use crate::state::AppState;
use aurelis_cache_service::Purge;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    namespace: Option<String>,
    tenant: Option<String>,
    model: Option<String>,
    schema: Option<String>,
}

pub async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "purge_cache";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let body = body.map_err(|e| fail(&state, ROUTE, e.into()))?;
    let request: PurgeRequest = serde_json::from_slice(&body).map_err(|e| {
        fail(
            &state,
            ROUTE,
            AdminError::InvalidModel(format!("body must be {{\"model\"|\"tenant\"|\"schema\": \"...\"}}: {e}")),
        )
    })?;
    let dimension = match (request.tenant, request.model, request.schema) {
        (Some(t), None, None) => Purge::Tenant(t),
        (None, Some(m), None) => Purge::Model(m),
        (None, None, Some(s)) => Purge::Schema(s),
        _ => {
            let message = "name exactly one of `tenant`, `model`, `schema`";
            return Err(fail(&state, ROUTE, AdminError::InvalidModel(message.into())));
        }
    };
    let Some(store) = &state.l2 else {
        let message = "no L2 Redis configured: start the control plane with --l2-redis-url / AURELIS_L2_REDIS_URL";
        return Err(fail(&state, ROUTE, AdminError::Unavailable(message.into())));
    };
    let namespace = request.namespace.unwrap_or_else(|| state.config.desired().filter.l2.namespace);
    let purged = store.purge(&namespace, &dimension).await.map_err(|e| {
        let error = if e.is_transient() {
            AdminError::Unavailable(format!("L2 Redis: {e}"))
        } else {
            AdminError::InvalidModel(e.to_string())
        };
        fail(&state, ROUTE, error)
    })?;
    count(&state, ROUTE, "ok");
    tracing::info!(%namespace, ?dimension, purged, "L2 purge via admin API");
    Ok(Json(json!({ "namespace": namespace, "purged": purged })))
}

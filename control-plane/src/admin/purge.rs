//! `POST /v1/cache:purge`: removes cached entries by one dimension, e.g.
//! `{"model": "gpt-4o-mini"}`, `{"tenant": "t=3f2a..."}` (the scope shown in the filter's
//! `x-aurelis-cache-key-info`) or `{"schema": "v1"}`; `namespace` defaults to the filter's
//! `l2.namespace`. First from L2 (Redis; `purged` is `null` for a fleet without L2, which has
//! only L1 to purge; a fleet with L2 but no Redis URL is refused). With the cache service's
//! token (`AppState::cache_service_token`) every cache service of the model is also asked to
//! purge (`POST /v1/purge`), which reaches its L3. Then,
//! for the fleet's own namespace, a purge rule goes to every Envoy over ECDS (`crate::purges`):
//! their L1 copies stored before it are misses. In that order, so an Envoy never refills its
//! L1 from a level that still holds the purged entries.
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
    let filter = state.config.desired().filter;
    // A fleet with L2 must purge it first (or its Envoys would refill their L1s from it); a
    // fleet without L2 has only the Envoys' L1s to purge.
    let store = match &state.l2 {
        Some(store) => Some(store),
        None if !filter.l2.enabled => None,
        None => {
            let message = "no L2 Redis configured: start the control plane with --l2-redis-url / AURELIS_L2_REDIS_URL";
            return Err(fail(&state, ROUTE, AdminError::Unavailable(message.into())));
        }
    };
    let namespace = request.namespace.unwrap_or(filter.l2.namespace);
    let purged = match store {
        Some(store) => Some(store.purge(&namespace, &dimension).await.map_err(|e| {
            let error = if e.is_transient() {
                AdminError::Unavailable(format!("L2 Redis: {e}"))
            } else {
                AdminError::InvalidModel(e.to_string())
            };
            fail(&state, ROUTE, error)
        })?),
        None => None,
    };
    let l3 = purge_cache_services(&state, &namespace, &dimension).await.map_err(|e| fail(&state, ROUTE, e))?;
    let l1_rule = push_l1_rule(&state, &namespace, &dimension).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    tracing::info!(%namespace, ?dimension, purged, ?l3, ?l1_rule, "purge via admin API");
    Ok(Json(json!({ "namespace": namespace, "purged": purged, "l3_purged": l3, "l1_rule": l1_rule })))
}

/// Adds the L1 purge rule to the pushed filter configuration (validated as the filter will)
/// and returns its id; `None` for another namespace than the fleet's (its Envoys' L1s hold
/// none of it).
fn push_l1_rule(state: &AppState, namespace: &str, dimension: &Purge) -> Result<Option<u64>, AdminError> {
    use aurelis_core::cache::purge::Scope;
    let scope = match dimension {
        Purge::Tenant(t) => Scope::Tenant(t.clone()),
        Purge::Model(m) => Scope::Model(m.clone()),
        Purge::Schema(s) => Scope::Schema(s.clone()),
    };
    let now_ms = u64::try_from(crate::telemetry::now_ms()).unwrap_or(0);
    let mut id = None;
    state.config.try_update(|desired| -> Result<(), AdminError> {
        if desired.filter.l2.namespace != namespace {
            return Ok(());
        }
        let rules = crate::purges::with_purge(&desired.purges, scope, now_ms, desired.filter.cache.ttl_seconds);
        let mut pushed = desired.pushed_filter();
        pushed.cache.purges.clone_from(&rules);
        pushed.validate().map_err(|e| AdminError::InvalidModel(e.to_string()))?;
        id = rules.last().map(|r| r.id);
        desired.purges = rules;
        Ok(())
    })?;
    if id.is_some() {
        state.metrics.filter_config_updates.inc();
    }
    Ok(id)
}

/// Asks every cache service of the model to purge the scope (Redis again, harmless, and its
/// L3); the sum of what their L3s removed, `None` without a token or cache services.
async fn purge_cache_services(state: &AppState, namespace: &str, dimension: &Purge) -> Result<Option<u64>, AdminError> {
    let Some(token) = &state.cache_service_token else { return Ok(None) };
    let endpoints = state.config.desired().model.cache_service.map(|c| c.endpoints).unwrap_or_default();
    if endpoints.is_empty() {
        return Ok(None);
    }
    let body = match dimension {
        Purge::Tenant(t) => json!({ "tenant": t }),
        Purge::Model(m) => json!({ "model": m }),
        Purge::Schema(s) => json!({ "schema": s }),
    };
    let client = reqwest::Client::new();
    let mut total = 0;
    for endpoint in &endpoints {
        let unavailable = |why: String| AdminError::Unavailable(format!("cache service {endpoint}: {why}"));
        let answer = client
            .post(format!("http://{endpoint}/v1/purge"))
            .bearer_auth(token)
            .header("x-aurelis-namespace", namespace)
            .timeout(std::time::Duration::from_secs(5))
            .json(&body)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !answer.status().is_success() {
            return Err(unavailable(format!("purge answered {}", answer.status())));
        }
        let counts: Value = answer.json().await.map_err(|e| unavailable(e.to_string()))?;
        total += counts["l3"].as_u64().unwrap_or(0);
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurelis_core::config::FilterConfig;

    #[test]
    fn a_purge_of_the_fleets_namespace_pushes_an_l1_rule() {
        let state = AppState::with_filter_config(FilterConfig::default(), None);
        let before = state.config.current().version(crate::xds::EXTENSION_CONFIG);
        let id = push_l1_rule(&state, "aurelis", &Purge::Tenant("t=0123456789abcdef".into())).unwrap();
        let pushed = state.config.desired().pushed_filter();
        assert_eq!(pushed.cache.purges.len(), 1);
        assert_eq!(pushed.cache.purges[0].id, id.unwrap());
        assert_eq!(pushed.cache.purges[0].tenant.as_deref(), Some("t=0123456789abcdef"));
        assert_ne!(state.config.current().version(crate::xds::EXTENSION_CONFIG), before, "a new filter configuration");
        assert_eq!(push_l1_rule(&state, "another-fleet", &Purge::Model("m".into())).unwrap(), None);
        assert_eq!(state.config.desired().purges.len(), 1, "another namespace's purge holds nothing here");
    }
}

//! `POST /v1/purge`: removes one scope of the caller's namespace (`{"tenant": …}`,
//! `{"model": …}` or `{"schema": …}`, exactly one) from both levels, Redis and L3.
//! Token-protected like the entries: the namespace is the one the token may use
//! (`x-aurelis-namespace`). Answers `{"l2": n, "l3": n}` (`l3` is null without L3), or 503 when
//! a level did not confirm, so the caller retries rather than L3 bringing entries back.
use super::{ApiError, AppState, Namespace};
use crate::store::Purge;
use aurelis_store::PurgeScope;
use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    tenant: Option<String>,
    model: Option<String>,
    schema: Option<String>,
}

/// The scope named by the body, for each level.
fn scope(body: &[u8]) -> Result<(Purge, PurgeScope), ApiError> {
    let request: PurgeRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body must be {{\"tenant\"|\"model\"|\"schema\": \"...\"}}: {e}")))?;
    match (request.tenant, request.model, request.schema) {
        (Some(t), None, None) => Ok((Purge::Tenant(t.clone()), PurgeScope::Tenant(t))),
        (None, Some(m), None) => Ok((Purge::Model(m.clone()), PurgeScope::Model(m))),
        (None, None, Some(s)) => Ok((Purge::Schema(s.clone()), PurgeScope::Schema(s))),
        _ => Err(ApiError::BadRequest("name exactly one of `tenant`, `model`, `schema`".into())),
    }
}

pub async fn purge(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (l2_scope, l3_scope) = scope(&body)?;
    let l2 = s.store.purge(&namespace, &l2_scope).await?;
    let l3 = match &s.l3 {
        Some(l3) => Some(l3.purge(&namespace, &l3_scope).await.map_err(|_| ApiError::Unavailable("L3 purge"))?),
        None => None,
    };
    tracing::info!(%namespace, ?l2_scope, l2, ?l3, "purge");
    Ok(Json(json!({ "l2": l2, "l3": l3 })))
}

//! `GET /v1/status`: the versions being served and every connected Envoy's view of them.
//! Needs the token: NACK texts quote configuration, and the list maps the fleet.
use super::{authorize, count, fail, AdminError};
use crate::state::AppState;
use crate::xds::short_name;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

pub async fn get_status(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_status";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    let versions: serde_json::Map<String, Value> =
        state.config.current().versions().into_iter().map(|(t, v)| (short_name(t).to_string(), json!(v))).collect();
    Ok(Json(json!({ "versions": versions, "clients": state.clients.list() })))
}

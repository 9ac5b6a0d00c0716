//! `GET /v1/status`: the versions being served and every connected Envoy's view of them.
use super::count;
use crate::state::AppState;
use crate::xds::short_name;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

pub async fn get_status(State(state): State<AppState>) -> Json<Value> {
    count(&state, "get_status", "ok");
    let versions: serde_json::Map<String, Value> =
        state.config.current().versions().into_iter().map(|(t, v)| (short_name(t).to_string(), json!(v))).collect();
    Json(json!({ "versions": versions, "clients": state.clients.list() }))
}

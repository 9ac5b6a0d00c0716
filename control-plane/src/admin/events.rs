//! `GET /v1/events?limit=N`: the latest anomaly events (oldest first, at most `limit`, default
//! 100) and the anomalies active now. Needs the token like every `/v1` read: events map the
//! fleet's models and providers.
use super::{authorize, count, fail, AdminError};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

const DEFAULT_LIMIT: usize = 100;

pub async fn get_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AdminError> {
    const ROUTE: &str = "get_events";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let limit = limit(query.as_deref()).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    Ok(Json(json!({ "events": state.anomalies.events(limit), "active": state.anomalies.active() })))
}

fn limit(query: Option<&str>) -> Result<usize, AdminError> {
    let mut limit = DEFAULT_LIMIT;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", value)) => {
                limit = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    AdminError::InvalidQuery(format!("`limit`: `{value}` is not a whole number of at least 1"))
                })?;
            }
            _ => return Err(AdminError::InvalidQuery(format!("unknown parameter `{pair}` (only `limit`)"))),
        }
    }
    Ok(limit)
}

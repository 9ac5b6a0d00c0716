//! `GET /v1/report?period=1h|24h|7d|30d`: the fleet's performance report (JSON), computed from
//! the telemetry's windows at the time of the request. Needs the token like every `/v1` read.
use super::{authorize, count, fail, AdminError};
use crate::state::AppState;
use crate::telemetry::report::{report, Period, Report, ReportInput};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use std::collections::HashMap;

pub async fn get_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Report>, AdminError> {
    const ROUTE: &str = "get_report";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    let text = query.get("period").map_or("1h", String::as_str);
    let period = Period::parse(text).ok_or_else(|| {
        fail(&state, ROUTE, AdminError::InvalidModel(format!("`period`: `{text}` is not one of 1h, 24h, 7d, 30d")))
    })?;
    let now_ms = crate::telemetry::now_ms();
    let windows = state.telemetry.windows(now_ms - period.millis(), now_ms).await;
    let desired = state.config.desired();
    let report = report(&ReportInput {
        period,
        now_ms,
        windows: &windows,
        spec: &desired.model.telemetry,
        filter: &desired.filter,
        sample_rate: state.telemetry.options().sample_rate,
    });
    count(&state, ROUTE, "ok");
    Ok(Json(report))
}

//! `GET /dashboard` on the admin port: one page (HTML, JS and CSS compiled into the binary, no
//! CDN, works offline) that charts the fleet's last windows, lists models, active anomalies,
//! recent events, hit rate by level and recommendations, polling the token-protected JSON.
//!
//! The page itself is public and carries no data; the data comes from `GET /v1/dashboard`
//! (this module) and `GET /v1/report` (the telemetry's), both needing the admin token. The
//! page asks for the token once and keeps it in the tab's `sessionStorage`, sending it as a
//! bearer header (see docs/operations.md, "Dashboard", for why not a cookie). A strict
//! content security policy (scripts from this origin only, no inline code) and rendering with
//! `textContent` only keep injected markup from reading the token.
mod history;

use crate::admin::{authorize, count, fail, AdminError};
use crate::state::AppState;
use crate::telemetry::WindowSummary;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
pub use history::{History, Point, SeriesRow};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Windows charted: 30 minutes of 10 s windows.
pub const KEPT_WINDOWS: usize = 180;
/// Recent events shown under the active anomalies.
const RECENT_EVENTS: usize = 20;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// No inline script or style, nothing from another origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub struct Dashboard {
    history: Mutex<History>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard { history: Mutex::new(History::new(KEPT_WINDOWS)) }
    }
}

impl Dashboard {
    pub fn record(&self, window: &[WindowSummary]) {
        self.lock().record(window);
    }

    fn snapshot(&self) -> (Vec<Point>, Vec<SeriesRow>) {
        let history = self.lock();
        (history.points(), history.rows())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        // Recording is a few pushes and additions: a panic cannot leave it half-written.
        self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/dashboard/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/dashboard/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/v1/dashboard", get(get_dashboard))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("content-security-policy"), CSP),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        body,
    )
}

/// `GET /v1/dashboard`: the charted windows, the per-series table, active anomalies and recent
/// events, in one read.
async fn get_dashboard(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, AdminError> {
    const ROUTE: &str = "get_dashboard";
    authorize(&state, &headers).map_err(|e| fail(&state, ROUTE, e))?;
    count(&state, ROUTE, "ok");
    let (points, series) = state.dashboard.snapshot();
    let body: Value = json!({
        "points": points,
        "series": series,
        "active": state.anomalies.active(),
        "events": state.anomalies.events(RECENT_EVENTS),
    });
    Ok(([(CACHE_CONTROL, "no-store")], Json(body)))
}

#[cfg(test)]
mod tests;

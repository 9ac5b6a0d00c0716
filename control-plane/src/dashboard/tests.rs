//! The dashboard's routes through the admin router (`oneshot`, no sockets).
use crate::admin::router;
use crate::anomaly::tests_support::spike_then_calm;
use crate::state::AppState;
use aurelis_core::config::FilterConfig;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "t0ken";

async fn get(state: &AppState, path: &str, token: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let resp = router(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary_without_data() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let (status, headers, html) = get(&state, "/dashboard", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline code: the CSP forbids it");
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from another origin");
    for (path, kind) in [("/dashboard/app.js", "text/javascript"), ("/dashboard/app.css", "text/css")] {
        let (status, headers, body) = get(&state, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert!(!body.contains("https://") || body.contains("www.w3.org/2000/svg"), "{path} loads nothing remote");
    }
    let (_, _, js) = get(&state, "/dashboard/app.js", None).await;
    assert!(!js.contains("innerHTML"), "values go in as text, never as markup");
    assert!(!js.contains("localStorage"), "the token stays in this tab (sessionStorage)");
}

#[tokio::test]
async fn the_data_needs_the_token_and_carries_windows_series_and_anomalies() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    assert_eq!(get(&state, "/v1/dashboard", None).await.0, StatusCode::UNAUTHORIZED);
    let window = crate::anomaly::tests_support::window("slow", 0, 120.0);
    state.dashboard.record(std::slice::from_ref(&window));
    spike_then_calm(&state.anomalies, 3, 0);
    let (status, headers, body) = get(&state, "/v1/dashboard", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["points"][0]["requests"], 100);
    assert_eq!(body["points"][0]["p95_ms"], 120.0);
    assert_eq!(body["series"][0]["model"], "gpt-4o-mini");
    assert_eq!(body["series"][0]["provider"], "slow");
    assert_eq!(body["series"][0]["hit_rate"], 0.5);
    assert_eq!(body["active"][0]["metric"], "p95_latency_ms");
    assert_eq!(body["events"][0]["kind"], "raised");
}

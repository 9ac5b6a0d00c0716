//! `GET /v1/events` through the admin router (`oneshot`, no sockets).
use super::*;
use crate::anomaly::tests_support::spike_then_calm;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "t0ken";

async fn get(state: &AppState, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let resp = router(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn events_need_the_token_and_show_raised_cleared_and_active() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    assert_eq!(get(&state, "/v1/events", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&state, "/v1/events", Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&state, "/v1/events", Some(TOKEN)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "events": [], "active": [] })));

    spike_then_calm(&state.anomalies, 3, 0);
    let (_, body) = get(&state, "/v1/events", Some(TOKEN)).await;
    let raised = &body["events"][0];
    assert_eq!(raised["kind"], "raised");
    assert_eq!(raised["series"], json!({ "model": "gpt-4o-mini", "provider": "slow" }));
    assert_eq!(raised["metric"], "p95_latency_ms");
    assert_eq!((raised["value"].as_f64(), raised["baseline"].as_f64()), (Some(2000.0), Some(100.0)));
    assert!(raised["at_ms"].as_i64().is_some() && raised["window_start_ms"].as_i64().is_some(), "{raised}");
    assert_eq!(body["active"][0]["series"]["provider"], "slow");

    spike_then_calm(&state.anomalies, 0, 3);
    let (_, body) = get(&state, "/v1/events?limit=1", Some(TOKEN)).await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (body["events"][0]["kind"].as_str(), body["events"][0]["reason"].as_str()),
        (Some("cleared"), Some("recovered"))
    );
    assert_eq!(body["active"], json!([]));
}

#[tokio::test]
async fn a_bad_limit_names_the_parameter() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    for query in ["limit=0", "limit=x", "since=1"] {
        let (status, body) = get(&state, &format!("/v1/events?{query}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"]["message"].as_str().unwrap().contains('`'), "{body}");
    }
}

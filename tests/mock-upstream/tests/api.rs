//! The mock behaves like an OpenAI-compatible provider: shapes, determinism, SSE, errors.
mod common;
use aurelis_mock_upstream::MockUpstream;
use common::{send_raw, start};
use serde_json::{json, Value};

async fn post(
    mock: &MockUpstream,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    send_raw(mock, "/v1/chat/completions", "application/json", body.to_string(), headers).await
}

fn chat(prompt: &str) -> Value {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": prompt }] })
}

#[tokio::test]
async fn chat_completion_shape_usage_and_determinism() {
    let mock = start();
    let (status, headers, body) = post(&mock, &chat("hello"), &[]).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-ratelimit-remaining-requests"));
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0))
    );
    let (_, _, again) = post(&mock, &chat("hello"), &[]).await;
    let again: Value = serde_json::from_str(&again).unwrap_or_default();
    assert_eq!(
        again["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"],
        "same prompt, same words"
    );
    assert_ne!(again["id"], v["id"], "ids carry the request serial");
    let (_, _, other) = post(&mock, &chat("something else entirely"), &[]).await;
    let other: Value = serde_json::from_str(&other).unwrap_or_default();
    assert_ne!(other["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"]);
    assert_eq!(mock.request_count(), 3);
    mock.reset();
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let mock = start();
    let mut req = chat("hello");
    req["max_tokens"] = json!(3);
    let (_, _, body) = post(&mock, &req, &[]).await;
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn streams_end_with_done_and_usage_only_when_asked() {
    let mock = start();
    let mut req = chat("stream");
    req["stream"] = json!(true);
    let (_, headers, plain) = post(&mock, &req, &[]).await;
    assert!(headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream")));
    assert!(plain.ends_with("data: [DONE]\n\n"));
    assert!(!plain.contains("\"usage\""));
    req["stream_options"] = json!({ "include_usage": true });
    let (_, _, with_usage) = post(&mock, &req, &[]).await;
    let events: Vec<&str> = with_usage.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.len() >= 5);
    assert!(events[events.len() - 2].contains("\"usage\""), "usage chunk right before [DONE]");
}

#[tokio::test]
async fn injected_failures_and_rate_limits() {
    let mock = start();
    mock.fail_next(503, 1);
    assert_eq!(post(&mock, &chat("x"), &[]).await.0, 503);
    assert_eq!(post(&mock, &chat("x"), &[]).await.0, 200);
    let (status, headers, body) = post(&mock, &chat("x"), &[("x-mock-status", "429")]).await;
    assert_eq!(status, 429);
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(headers.get("x-ratelimit-remaining-requests").and_then(|v| v.to_str().ok()), Some("0"));
    assert!(body.contains("rate_limit_exceeded"));
}

#[tokio::test]
async fn malformed_bodies_are_recorded_byte_for_byte() {
    let mock = start();
    let raw = b"{\"model\": oops".to_vec();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", mock.addr()))
        .header("content-type", "application/json")
        .body(raw.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(mock.last_request().map(|r| r.body), Some(raw));
}

//! The rest of the HTTP surface: `/_mock/*` controls, legacy and embedding routes, header
//! overrides, counting on arrival, and h2c (Envoy may speak HTTP/2 with prior knowledge).
mod common;
use aurelis_mock_upstream::{MockConfig, MockUpstream};
use common::{send_raw, start};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// Sends `body` with `content_type` and returns (status, headers, JSON body or Null).
async fn send(
    mock: &MockUpstream,
    path: &str,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let (status, headers, text) = send_raw(mock, path, content_type, body.to_string(), headers).await;
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(mock: &MockUpstream, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{}{path}", mock.addr())).await.unwrap_or_else(|e| panic!("{e}"));
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

fn chat(prompt: &str) -> String {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": prompt }] }).to_string()
}

const JSON: &str = "application/json";

#[tokio::test]
async fn http_controls_fail_stats_and_reset() {
    let mock = start();
    let (status, _, _) = send(&mock, "/_mock/fail", JSON, r#"{"status":500,"count":2}"#, &[]).await;
    assert!((200..300).contains(&status));
    let (first, headers, err) = send(&mock, "/v1/chat/completions", JSON, &chat("a"), &[]).await;
    assert_eq!(first, 500);
    assert_eq!(err["error"]["type"], "server_error");
    assert!(headers.contains_key("x-request-id"), "errors name their request too");
    assert_eq!(send(&mock, "/v1/chat/completions", JSON, &chat("a"), &[]).await.0, 500);
    assert_eq!(send(&mock, "/inference/chat/completions", JSON, &chat("a"), &[]).await.0, 200);
    assert_eq!(get(&mock, "/healthz").await, (200, "ok".to_string()));
    let stats: Value = serde_json::from_str(&get(&mock, "/_mock/stats").await.1).unwrap_or_default();
    assert_eq!(stats["requests"], 3, "controls and /healthz are not model requests");
    assert_eq!(stats["by_path"]["/v1/chat/completions"], 2);
    assert_eq!(stats["by_path"]["/inference/chat/completions"], 1);
    send(&mock, "/_mock/reset", JSON, "", &[]).await;
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn ids_stay_unique_across_reset() {
    let mock = start();
    let (_, _, a) = send(&mock, "/v1/chat/completions", JSON, &chat("same"), &[]).await;
    mock.reset();
    let (_, headers, b) = send(&mock, "/v1/chat/completions", JSON, &chat("same"), &[]).await;
    assert_eq!(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
    assert_ne!(a["id"], b["id"], "a repeated id must only ever mean a cached answer");
    assert!(b["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-mock-")));
    for name in ["x-ratelimit-limit-tokens", "x-ratelimit-reset-requests", "x-request-id"] {
        assert!(headers.contains_key(name), "{name}");
    }
}

#[tokio::test]
async fn models_completions_and_embeddings() {
    let mock = start();
    let (status, models) = get(&mock, "/v1/models").await;
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap_or_default();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "gpt-4o-mini");

    let legacy = json!({ "model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 2 }).to_string();
    let (_, _, text) = send(&mock, "/v1/completions", JSON, &legacy, &[]).await;
    assert_eq!(text["object"], "text_completion");
    assert!(text["choices"][0]["text"].is_string());
    assert_eq!(text["usage"]["completion_tokens"], 2);

    let embed = json!({ "model": "text-embedding-3-small", "input": ["one", "two"] }).to_string();
    let (_, _, e1) = send(&mock, "/v1/embeddings", JSON, &embed, &[]).await;
    let (_, _, e2) = send(&mock, "/v1/embeddings", JSON, &embed, &[]).await;
    assert_eq!(e1["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(e1["data"][0]["embedding"].as_array().map(Vec::len), Some(8));
    assert_eq!(e1["data"], e2["data"], "embeddings are deterministic");
    assert_ne!(e1["data"][0]["embedding"], e1["data"][1]["embedding"]);
    assert!(e1["usage"]["prompt_tokens"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test]
async fn header_overrides_and_bad_requests() {
    let mock = start();
    let (_, _, filtered) =
        send(&mock, "/v1/chat/completions", JSON, &chat("x"), &[("x-mock-finish-reason", "content_filter")]).await;
    assert_eq!(filtered["choices"][0]["finish_reason"], "content_filter");

    let (status, _, err) = send(&mock, "/v1/chat/completions", "text/plain", "hello", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(mock.last_request().map(|r| r.body), Some(b"hello".to_vec()));

    let no_messages = json!({ "model": "gpt-4o-mini" }).to_string();
    assert_eq!(send(&mock, "/v1/chat/completions", JSON, &no_messages, &[]).await.0, 400);
    let no_model = json!({ "messages": [] }).to_string();
    assert_eq!(send(&mock, "/v1/chat/completions", JSON, &no_model, &[]).await.0, 400);
    let last = mock.last_request().unwrap_or_else(|| panic!("recorded"));
    assert_eq!((last.method.as_str(), last.path.as_str()), ("POST", "/v1/chat/completions"));
    assert!(last.headers.iter().any(|(k, v)| k == "content-type" && v == JSON));
    assert_eq!(mock.request_count(), 4, "bad requests still reach the upstream");
}

#[tokio::test]
async fn requests_are_counted_on_arrival_before_latency() {
    let mock = start();
    mock.set_latency_ms(400);
    let addr = mock.addr();
    let calls: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("http://{addr}/v1/chat/completions"))
                    .header("content-type", JSON)
                    .body(chat(&format!("concurrent {i}")))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    while mock.request_count() < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.request_count(), 5, "all five counted while still sleeping");
    for call in calls {
        assert!(matches!(call.await, Ok(Ok(200))));
    }
    // The per-request header overrides the configured latency.
    let started = std::time::Instant::now();
    send(&mock, "/v1/chat/completions", JSON, &chat("fast"), &[("x-mock-latency-ms", "0")]).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

/// h2c with prior knowledge: after the client preface, the server must answer with its own
/// SETTINGS frame (type 0x4) rather than an HTTP/1.1 error.
#[test]
fn speaks_h2c_with_prior_knowledge() {
    let mock = start();
    let mut stream = std::net::TcpStream::connect(mock.addr()).unwrap_or_else(|e| panic!("{e}"));
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap_or_else(|e| panic!("{e}"));
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS frame
    stream.write_all(&preface).unwrap_or_else(|e| panic!("{e}"));
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header[3], 0x4, "first server frame is SETTINGS");
}

/// Streamed words arrive paced and one by one, not as one buffered body.
#[tokio::test]
async fn stream_chunks_are_flushed_separately() {
    use futures::StreamExt;
    let mock = MockUpstream::start(MockConfig { per_token_latency_ms: 30, ..MockConfig::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    let body = json!({
        "model": "gpt-4o-mini", "stream": true, "max_tokens": 4,
        "messages": [{ "role": "user", "content": "pace" }]
    });
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", mock.addr()))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut frames = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        frames.push(String::from_utf8_lossy(&chunk).into_owned());
    }
    assert!(frames.len() >= 4, "paced words come in separate reads: {frames:?}");
    let all = frames.concat();
    let events: Vec<Value> = all
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events.len(), 1 + 4 + 1, "role, four words, finish");
    assert_eq!(events[5]["choices"][0]["finish_reason"], "length");
    assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk" && e["id"] == events[0]["id"]));
    assert!(all.ends_with("data: [DONE]\n\n"));
}

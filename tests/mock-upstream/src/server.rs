//! The HTTP surface: OpenAI-compatible model routes plus `/_mock/*` controls.
use crate::completion;
use crate::control::{MockState, RecordedRequest};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(model_request))
        .route("/inference/chat/completions", post(model_request))
        .route("/v1/completions", post(model_request))
        .route("/v1/embeddings", post(model_request))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .route("/_mock/fail", post(fail))
        .with_state(state)
}

/// Serves HTTP/1.1 and h2c (prior knowledge) until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<MockState>) {
    // Like real providers' front ends: no Nagle, so small frames are not held for delayed ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(listener, router(state)).await;
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn error(status: StatusCode, kind: &str, message: &str, code: Option<&str>) -> Response {
    let body = json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    (status, Json(body)).into_response()
}

fn rate_limit_headers(headers: &mut HeaderMap, remaining_requests: u64, remaining_tokens: u64) {
    let pairs = [
        ("x-ratelimit-limit-requests", "10000".to_string()),
        ("x-ratelimit-remaining-requests", remaining_requests.to_string()),
        ("x-ratelimit-reset-requests", "6ms".to_string()),
        ("x-ratelimit-limit-tokens", "2000000".to_string()),
        ("x-ratelimit-remaining-tokens", remaining_tokens.to_string()),
        ("x-ratelimit-reset-tokens", "0s".to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn injected_failure(status: u16, retry_after_s: u64) -> Response {
    let mut response = match status {
        429 => error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit reached for requests",
            Some("rate_limit_exceeded"),
        ),
        503 => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The server is overloaded, please try again later.",
            None,
        ),
        other => error(
            StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "server_error",
            "The server had an error while processing your request.",
            None,
        ),
    };
    if status == 429 {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&retry_after_s.to_string()) {
            headers.insert("retry-after", value);
        }
        rate_limit_headers(headers, 0, 0);
    }
    response
}

async fn model_request(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Counted on arrival, before any latency, so concurrent callers see the count at once.
    let serial = state.record(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
            .collect(),
        body: body.to_vec(),
    });
    let mut response = answer_model_request(&state, uri.path(), &headers, &body, serial).await;
    // Like OpenAI, every answer (errors included) names its request, which helps when reading logs.
    if let Ok(v) = HeaderValue::from_str(&format!("req_mock_{serial}")) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn answer_model_request(
    state: &MockState,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    serial: u64,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let latency = header("x-mock-latency-ms").and_then(|v| v.parse().ok()).unwrap_or_else(|| state.latency_ms());
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let forced = header("x-mock-status").and_then(|s| s.parse::<u16>().ok()).filter(|s| (400..=599).contains(s));
    if let Some(status) = state.take_failure().or(forced) {
        return injected_failure(status, state.retry_after_s());
    }
    let is_json = header("content-type")
        .is_some_and(|c| c.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "Content-Type must be application/json", None);
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
            None,
        );
    };
    if request.get("model").and_then(Value::as_str).is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "you must provide a model parameter", None);
    }
    if path.ends_with("/embeddings") {
        return with_rate_limits(Json(completion::embeddings(&request, body)).into_response());
    }
    let is_chat = path.ends_with("/chat/completions");
    if is_chat && request.get("messages").and_then(Value::as_array).is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "'messages' is a required property", None);
    }
    let answer = completion::answer(&request, body, serial, header("x-mock-finish-reason"));
    let created = now();
    if !is_chat {
        return with_rate_limits(Json(completion::text_completion(&answer, created)).into_response());
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let mut events = completion::sse_events(&answer, created, include_usage);
        if header("x-mock-truncate-stream").is_some() {
            // A provider dying mid-stream: the last events (finish, usage, [DONE]) never come.
            events.truncate(events.len().saturating_sub(3).max(1));
        }
        return with_rate_limits(sse_response(events, answer.words.len(), state.per_token_latency_ms));
    }
    with_rate_limits(Json(completion::chat_completion(&answer, created)).into_response())
}

/// One body frame per event, so each chunk reaches the client on its own; the per-token delay
/// paces only the word chunks (events 1..=words), as a model generating tokens would.
fn sse_response(events: Vec<String>, words: usize, per_token_ms: u64) -> Response {
    let per_token = Duration::from_millis(per_token_ms);
    let stream = futures::stream::iter(events.into_iter().enumerate()).then(move |(i, event)| async move {
        if (1..=words).contains(&i) && !per_token.is_zero() {
            tokio::time::sleep(per_token).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(event))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream; charset=utf-8"));
    response.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

fn with_rate_limits(mut response: Response) -> Response {
    rate_limit_headers(response.headers_mut(), 9999, 1_999_000);
    response
}

async fn models() -> Json<Value> {
    let model = |id: &str| json!({ "id": id, "object": "model", "created": 1_715_367_049, "owned_by": "mock" });
    Json(json!({ "object": "list", "data": [model("gpt-4o-mini"), model("gpt-4o"), model("text-embedding-3-small")] }))
}

async fn stats(State(state): State<Arc<MockState>>) -> Json<Value> {
    Json(json!({ "requests": state.request_count(), "by_path": state.by_path() }))
}

async fn reset(State(state): State<Arc<MockState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn fail(State(state): State<Arc<MockState>>, Json(body): Json<Value>) -> StatusCode {
    let status = body.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(1) as u32;
    state.fail_next(status, count);
    StatusCode::NO_CONTENT
}

//! Helpers shared by the mock's own tests.
#![allow(dead_code)]
use aurelis_mock_upstream::{MockConfig, MockUpstream};

pub fn start() -> MockUpstream {
    MockUpstream::start(MockConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// POSTs `body` to `path` with `content_type` and extra headers; returns (status, headers, text).
pub async fn send_raw(
    mock: &MockUpstream,
    path: &str,
    content_type: &str,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", mock.addr()))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]
use aurelis_devstack::{Stack, StackOptions};
use serde_json::{json, Value};

pub fn start(options: StackOptions) -> Stack {
    match Stack::start(options) {
        Ok(stack) => stack,
        Err(e) => panic!("stack did not start: {e:#}"),
    }
}

/// A deterministic (cacheable by default) chat completion request.
pub fn chat(prompt: &str) -> Value {
    json!({ "model": "gpt-4o-mini", "temperature": 0, "messages": [{ "role": "user", "content": prompt }] })
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn cache(&self) -> &str {
        self.header("x-aurelis-cache").unwrap_or("<none>")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap_or_default()
}

pub async fn post_raw(stack: &Stack, path: &str, content_type: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Reply {
    let mut req = client().post(stack.url(path)).header("content-type", content_type).body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    Reply { status, headers, body }
}

pub async fn post_json(stack: &Stack, body: &Value, extra: &[(&str, &str)]) -> Reply {
    post_raw(stack, "/v1/chat/completions", "application/json", body.to_string().into_bytes(), extra).await
}

/// Sends `n` identical chat POSTs at once and returns (status, body) for each. With
/// `fresh_connections`, every request has its own client, so connections spread over all
/// Envoy workers; otherwise one pooled client is shared.
pub async fn concurrent_posts(stack: &Stack, body: &Value, n: usize, fresh_connections: bool) -> Vec<(u16, Vec<u8>)> {
    let shared = client();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let c = if fresh_connections { reqwest::Client::new() } else { shared.clone() };
            let req = c
                .post(stack.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body.to_string());
            tokio::spawn(async move {
                match req.send().await {
                    Ok(r) => (r.status().as_u16(), r.bytes().await.map(|b| b.to_vec()).unwrap_or_default()),
                    Err(_) => (0, Vec::new()),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap_or_default());
    }
    out
}

/// A chat completion POST to any gateway (`http://host:port`), e.g. one Envoy of a fleet.
pub async fn post_chat_to(gateway_url: &str, body: &Value, extra: &[(&str, &str)]) -> Reply {
    let mut req = client()
        .post(format!("{gateway_url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => panic!("POST {gateway_url}: {e}"),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    Reply { status, headers, body }
}

/// One uncached request per model every 50 ms, each on its own task (a slow provider does not
/// slow the rate down), until `stop` is set; then waits for the requests in flight. Every
/// answer must be a 200.
pub fn steady_traffic(
    gateway: String,
    models: &'static [&'static str],
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        let mut in_flight = tokio::task::JoinSet::new();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            for model in models {
                n += 1;
                let body =
                    json!({ "model": model, "messages": [{ "role": "user", "content": format!("steady {n}") }] });
                let gateway = gateway.clone();
                in_flight.spawn(async move {
                    let reply = post_chat_to(&gateway, &body, &[("cache-control", "no-store")]).await;
                    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
                });
            }
            while let Some(done) = in_flight.try_join_next() {
                done.unwrap();
            }
        }
        while let Some(done) = in_flight.join_next().await {
            done.unwrap();
        }
    })
}

pub fn start_fleet(options: aurelis_devstack::FleetOptions) -> aurelis_devstack::Fleet {
    match aurelis_devstack::Fleet::start(options) {
        Ok(fleet) => fleet,
        Err(e) => panic!("fleet did not start: {e:#}"),
    }
}

/// A filter `auth` section: consumers `(name, tenant, key)` (keys stored as their SHA-256), and
/// anonymous access when `anonymous`.
pub fn auth_with(consumers: &[(&str, &str, &str)], anonymous: bool) -> Value {
    let consumers: Vec<Value> = consumers
        .iter()
        .map(|(name, tenant, key)| {
            json!({ "name": name, "tenant": tenant, "key_sha256": [aurelis_core::auth::key_sha256(key)] })
        })
        .collect();
    let mut auth = json!({ "consumers": consumers });
    if anonymous {
        auth["anonymous"] = json!({});
    }
    auth
}

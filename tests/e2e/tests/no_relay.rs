//! The gateway is no open relay, checked against real Envoy: it listens on loopback unless told
//! otherwise, routes only the declared API paths and models (OpenAI-shaped 404s for the rest,
//! answered by Envoy), ignores client-sent `x-aurelis-*` headers even without the filter, and
//! a revoked API key stops working as soon as Envoy has acked the new filter configuration.
mod common;
use aurelis_devstack::fleet::ADMIN_TOKEN;
use aurelis_devstack::stack::http_get;
use aurelis_devstack::{Fleet, FleetOptions, StackOptions};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The default model's shape without a listener address (so the default applies), and with
/// explicit anonymous access: these tests are about routing, not about who calls.
const ANONYMOUS: &str = "
listener: { port: {{listen_port}} }
providers:
  - { name: mock, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: mock, weight: 1 }] }
  - { name: gpt-4o, providers: [{ provider: mock, weight: 1 }] }
filter: { auth: { anonymous: {} } }
";

async fn request(method: &str, url: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client().request(method, url);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    Reply { status, headers, body }
}

fn assert_openai_404(reply: &Reply, code: &str) {
    assert_eq!(reply.status, 404, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    assert!(error["param"].is_null() && error["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_binds_loopback_by_default() {
    let fleet = start_fleet(FleetOptions { model: Some(ANONYMOUS.into()), ..FleetOptions::default() });
    let listeners: Value =
        serde_json::from_str(&http_get(&format!("{}/listeners?format=json", fleet.envoy().admin_url)).unwrap())
            .unwrap();
    let gateway = listeners["listener_statuses"].as_array().unwrap().iter().find(|l| l["name"] == "gateway").unwrap();
    assert_eq!(gateway["local_address"]["socket_address"]["address"], "127.0.0.1", "{gateway}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_declared_paths_and_models_are_routed() {
    let fleet = start_fleet(FleetOptions { model: Some(ANONYMOUS.into()), ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    let chat = |model: &str| json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] });

    // Envoy lists the configured models itself.
    let models = request("GET", &format!("{gw}/v1/models"), None, &[]).await;
    assert_eq!(models.status, 200, "{}", String::from_utf8_lossy(&models.body));
    let ids: Vec<String> =
        models.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["gpt-4o-mini", "gpt-4o"]);

    // Other paths of the provider's API, or anything else: 404 `not_found`, nothing relayed.
    for (method, path) in [("POST", "/v1/files"), ("GET", "/v1/models/gpt-4o"), ("GET", "/"), ("DELETE", "/v1/models")]
    {
        let reply = request(method, &format!("{gw}{path}"), Some(&chat("gpt-4o-mini")), &[]).await;
        assert_openai_404(&reply, "not_found");
    }
    // A model the file does not declare: 404 `model_not_found`, not the first model.
    let reply = request("POST", &format!("{gw}/v1/chat/completions"), Some(&chat("gpt-5-turbo")), &[]).await;
    assert_openai_404(&reply, "model_not_found");
    assert_eq!(fleet.mocks[0].request_count(), 0, "nothing reached the provider");

    // Paths are normalized before matching; encoded slashes are refused.
    let reply = request("POST", &format!("{gw}/v1//chat/./completions"), Some(&chat("gpt-4o")), &[]).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(fleet.mocks[0].last_request().map(|r| r.path), Some("/v1/chat/completions".into()));
    let reply = request("POST", &format!("{gw}/v1/chat%2Fcompletions"), Some(&chat("gpt-4o")), &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(fleet.mocks[0].request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sent_model_header_picks_no_route_even_without_the_filter() {
    // No Aurelis filter at all (as when its VM is gone): Envoy's own config removes the header.
    let stack = start(StackOptions { with_filter: false, ..StackOptions::default() });
    let body = json!({ "messages": [{ "role": "user", "content": "no model in the body" }] });
    let reply = post_json(&stack, &body, &[("x-aurelis-model", "gpt-4o-mini")]).await;
    assert_openai_404(&reply, "model_not_found");
    assert_eq!(stack.mock().request_count(), 0);
}

const ONE_CONSUMER: &str = "
providers:
  - { name: mock, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: mock, weight: 1 }] }
listener: { port: {{listen_port}} }
filter:
  auth:
    consumers: [{ name: team-a, tenant: acme }]
";

fn ecds_acked(fleet: &Fleet) -> bool {
    let s = fleet.control_plane.get("/v1/status").unwrap_or(Value::Null);
    let want = &s["versions"]["ecds"];
    let clients = s["clients"].as_array().cloned().unwrap_or_default();
    !clients.is_empty() && clients.iter().all(|c| &c["types"]["ecds"]["acked_version"] == want)
}

/// Polls until every Envoy acked the current filter configuration; returns how long it took.
fn wait_ecds_acked(fleet: &Fleet, timeout: Duration) -> Duration {
    let started = Instant::now();
    while !ecds_acked(fleet) {
        assert!(started.elapsed() < timeout, "ECDS not acked within {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

/// Needs the filter's authentication (lead's part): before it, keys are not checked.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_stops_working_within_a_second() {
    let fleet = start_fleet(FleetOptions { model: Some(ONE_CONSUMER.into()), ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    let (status, issued) =
        fleet.control_plane.send("POST", "/v1/consumers/team-a/keys", &json!({}), Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().unwrap().to_string();
    let digest = issued["key_sha256"].as_str().unwrap().to_string();
    wait_ecds_acked(&fleet, Duration::from_secs(5));
    let bearer = format!("Bearer {key}");
    let chat = chat("revocation");
    let ok = post_chat_to(&gw, &chat, &[("authorization", &bearer), ("cache-control", "no-store")]).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let seen = fleet.mocks[0].last_request().unwrap();
    assert!(
        !seen.headers.iter().any(|(_, v)| v.contains(&key)),
        "the gateway key reached the provider: {:?}",
        seen.headers
    );
    let anonymous = post_chat_to(&gw, &chat, &[]).await;
    assert_eq!(anonymous.status, 401, "no key, no anonymous access");

    let revoked_at = Instant::now();
    let path = format!("/v1/consumers/team-a/keys/{digest}");
    let (status, body) = fleet.control_plane.send("DELETE", &path, &Value::Null, Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(status, 200, "{body}");
    wait_ecds_acked(&fleet, Duration::from_secs(5));
    let took = revoked_at.elapsed();
    let refused = post_chat_to(&gw, &chat, &[("authorization", &bearer), ("cache-control", "no-store")]).await;
    assert_eq!(refused.status, 401, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["code"], "invalid_api_key");
    assert!(took < Duration::from_secs(1), "revocation took {took:?} to reach Envoy");
    eprintln!("key revoked and acked by Envoy after {took:?}");
    assert_eq!(fleet.mocks[0].request_count(), 1, "only the request with the live key reached the provider");
}

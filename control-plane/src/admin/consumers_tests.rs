//! The consumers API driven with `oneshot`: keys shown once, every read behind the token,
//! every change validated and pushed over ECDS.
use super::*;
use crate::xds::EXTENSION_CONFIG;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "t0ken";

async fn send(state: &AppState, method: &str, path: &str, body: &str, token: bool) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if token {
        request = request.header("authorization", format!("Bearer {TOKEN}"));
    }
    let resp = router(state.clone()).oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The filter configuration as pushed over ECDS (the Wasm plugin's configuration string).
fn pushed_filter_config(state: &AppState) -> String {
    let snapshot = state.config.current();
    let any = &snapshot.get(EXTENSION_CONFIG).unwrap().resources[crate::xds::resources::FILTER_NAME];
    String::from_utf8_lossy(&any.value).into_owned()
}

#[tokio::test]
async fn a_generated_key_is_returned_once_and_only_its_digest_is_kept_and_pushed() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let (status, _, _) = send(&state, "PUT", "/v1/consumers/team-a", r#"{"tenant":"acme"}"#, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "writes need the token");
    let (status, _, body) = send(&state, "PUT", "/v1/consumers/team-a", r#"{"tenant":"acme"}"#, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ecds_before = state.config.current().version(EXTENSION_CONFIG);

    let (status, headers, body) = send(&state, "POST", "/v1/consumers/team-a/keys", "", true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let key = body["key"].as_str().unwrap().to_string();
    let digest = body["key_sha256"].as_str().unwrap().to_string();
    assert_eq!(digest, aurelis_core::auth::key_sha256(&key));
    assert_ne!(state.config.current().version(EXTENSION_CONFIG), ecds_before, "pushed over ECDS");
    let pushed = pushed_filter_config(&state);
    assert!(pushed.contains(&digest) && !pushed.contains(&key), "the digest is pushed, never the key");

    // Consumers and the filter configuration are sensitive reads: the token, like every `/v1`.
    let (status, _, open) = send(&state, "GET", "/v1/consumers", "", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!open.to_string().contains(&digest), "{open}");
    let (_, _, authorized) = send(&state, "GET", "/v1/consumers", "", true).await;
    assert_eq!(authorized["consumers"][0]["name"], "team-a");
    assert_eq!(
        (authorized["consumers"][0]["tenant"].as_str(), authorized["consumers"][0]["keys"].as_u64()),
        (Some("acme"), Some(1))
    );
    assert_eq!(authorized["consumers"][0]["key_sha256"], json!([digest]));
    assert!(!authorized.to_string().contains(&key), "the key is never listed");
    let (status, _, config) = send(&state, "GET", "/v1/filter-config", "", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!config.to_string().contains(&digest), "{config}");
    let (_, _, config) = send(&state, "GET", "/v1/filter-config", "", true).await;
    assert!(config.to_string().contains(&digest));

    // Revoked: gone from what is pushed; revoking again is a 404.
    let path = format!("/v1/consumers/team-a/keys/{digest}");
    let (status, _, body) = send(&state, "DELETE", &path, "", true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!pushed_filter_config(&state).contains(&digest));
    let (status, _, _) = send(&state, "DELETE", &path, "", true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_digest_made_elsewhere_is_accepted_and_mistakes_are_named() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let digest = aurelis_core::auth::key_sha256("made elsewhere");
    let body = json!({ "key_sha256": digest }).to_string();
    let (status, _, _) = send(&state, "POST", "/v1/consumers/nobody/keys", &body, true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "keys belong to a declared consumer");
    send(&state, "PUT", "/v1/consumers/b", "{}", true).await;
    let (status, _, answer) = send(&state, "POST", "/v1/consumers/b/keys", &body, true).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer, json!({ "consumer": "b", "key_sha256": digest }), "no key to show");
    let (status, _, answer) =
        send(&state, "POST", "/v1/consumers/b/keys", r#"{"key_sha256":"sk-my-actual-key"}"#, true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("key_sha256") && !message.contains("sk-my-actual-key"), "{message}");
    let (status, _, answer) = send(&state, "PUT", "/v1/consumers/b", r#"{"key_sha256":[]}"#, true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("/keys"), "{answer}");
    let (status, _, _) = send(&state, "DELETE", "/v1/consumers/b", "", true).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, "DELETE", "/v1/consumers/b", "", true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A model whose provider injects a credential (read by Envoy), with one consumer key.
fn credentialed_state() -> (AppState, String) {
    let digest = aurelis_core::auth::key_sha256("first");
    let yaml = format!(
        "providers:\n  - {{ name: paid, base_url: 'https://api.example.com/v1', \
         headers: [{{ name: authorization, envoy_env: PAID_TOKEN }}] }}\n\
         models:\n  - {{ name: gpt-4o-mini, providers: [{{ provider: paid, weight: 1 }}] }}\n\
         filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{digest}'] }}] }} }}\n"
    );
    let model = crate::model::Model::from_yaml(&yaml).unwrap();
    let filter = model.filter_config().unwrap();
    let desired = crate::state::Desired::new(model, filter, crate::model::Secrets::default(), "/w.wasm".into());
    (AppState::new(desired, Some(TOKEN)), digest)
}

#[tokio::test]
async fn no_admin_change_can_open_a_gateway_that_holds_a_provider_credential() {
    let (state, digest) = credentialed_state();
    let version = state.config.current().version(EXTENSION_CONFIG);
    let path = format!("/v1/consumers/a/keys/{digest}");
    let (status, _, body) = send(&state, "DELETE", &path, "", true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the last key: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`filter.auth`"), "{body}");
    let (status, _, _) = send(&state, "DELETE", "/v1/consumers/a", "", true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let open = r#"{"auth":{"anonymous":{}}}"#;
    let (status, _, body) = send(&state, "PUT", "/v1/filter-config", open, true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(state.config.current().version(EXTENSION_CONFIG), version, "nothing was pushed");

    // A replacement filter config with another consumer: later consumer changes build on it.
    let other = aurelis_core::auth::key_sha256("other");
    let replacement = json!({ "auth": { "consumers": [{ "name": "b", "key_sha256": [other] }] } }).to_string();
    let (status, _, body) = send(&state, "PUT", "/v1/filter-config", &replacement, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(&state, "POST", "/v1/consumers/b/keys", "{}", true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!("/v1/consumers/b/keys/{other}");
    let (status, _, body) = send(&state, "DELETE", &path, "", true).await;
    assert_eq!(status, StatusCode::OK, "b keeps its generated key: {body}");
}

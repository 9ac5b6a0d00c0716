//! The admin router driven with `oneshot`: tokens, JSON errors, weights, filter settings.
use super::*;
use crate::model::{Model, Secrets};
use crate::state::Desired;
use crate::xds::{CLUSTER, ENDPOINT, ROUTE};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub(crate) async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A read with the token (every `/v1` route needs it).
pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(path).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap()
}

fn put(body: &str, authorization: Option<&str>) -> Request<Body> {
    let mut b = Request::put("/v1/filter-config").header("content-type", "application/json");
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

fn validate(body: &str) -> Request<Body> {
    Request::post("/v1/filter-config:validate")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn health_ready_and_read() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let (status, body) = call(&state, get("/healthz")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    // Ready means the snapshot is built: the versions an Envoy connecting now would get.
    let versions = state.config.current().versions();
    assert!(versions.len() >= 4, "{versions:?}");
    for (type_url, version) in versions {
        assert_eq!(body["versions"][type_url].as_str(), Some(version.as_str()), "{type_url}");
    }
    let (status, body) = call(&state, get("/v1/filter-config")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<FilterConfig>(body).unwrap(), FilterConfig::default());
}

/// Reads are sensitive (consumers and key digests in the filter configuration, NACK texts in
/// the status): every `/v1` route needs the token; only the probes stay open.
#[tokio::test]
async fn sensitive_reads_need_the_token() {
    let reads = ["/v1/filter-config", "/v1/status", "/v1/models", "/v1/endpoints"];
    let posts = ["/v1/filter-config:validate", "/v1/model:validate"];
    for configured in [Some(TOKEN), None] {
        let state = AppState::with_filter_config(FilterConfig::default(), configured);
        for presented in [None, Some("Bearer wrong"), Some("Basic t0ken")] {
            let requests =
                reads.iter().map(|p| (*p, Request::get(*p))).chain(posts.iter().map(|p| (*p, Request::post(*p))));
            for (path, builder) in requests {
                let builder = match presented {
                    Some(value) => builder.header("authorization", value),
                    None => builder,
                };
                let resp = router(state.clone()).oneshot(builder.body(Body::from("{}")).unwrap()).await.unwrap();
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {presented:?} (token set: {configured:?})");
                assert_eq!(resp.headers()["www-authenticate"], "Bearer");
                let body: Value =
                    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
                assert!(!body.to_string().contains("ttl_seconds"), "nothing of the configuration leaks: {body}");
            }
        }
        for probe in ["/healthz", "/readyz"] {
            let (status, _) = call(&state, Request::get(probe).body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{probe} stays open");
        }
    }
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    for path in reads {
        assert_eq!(call(&state, get(path)).await.0, StatusCode::OK, "{path} with the token");
    }
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_cp_admin_requests_total{outcome="ok",route="get_status"} 1"#), "{text}");
}

#[tokio::test]
async fn writes_need_the_token_and_reach_subscribers() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some("t0ken"));
    let watcher = state.config.subscribe();
    let new = r#"{"cache":{"ttl_seconds":60}}"#;
    for auth in [None, Some("Bearer wrong"), Some("Bearer t0ken2"), Some("Basic t0ken"), Some("t0ken")] {
        let (status, body) = call(&state, put(new, auth)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(message(&body).contains("bearer token"), "{body}");
    }
    assert!(!watcher.has_changed().unwrap(), "refused writes change nothing");
    let (status, body) = call(&state, put(new, Some("bearer t0ken"))).await;
    assert_eq!((status, body["cache"]["ttl_seconds"].as_u64()), (StatusCode::OK, Some(60)));
    assert!(watcher.has_changed().unwrap(), "a new snapshot is published");
    assert_eq!(state.config.desired().filter.cache.ttl_seconds, 60);
    let (_, body) = call(&state, get("/v1/filter-config")).await;
    assert_eq!(body["cache"]["ttl_seconds"], 60);
}

#[tokio::test]
async fn without_a_configured_token_the_api_is_refused() {
    let state = AppState::with_filter_config(FilterConfig::default(), None);
    let resp = router(state.clone()).oneshot(put("{}", Some("Bearer anything"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (_, body) = call(&state, put("{}", Some("Bearer anything"))).await;
    assert!(message(&body).contains("AURELIS_ADMIN_TOKEN"), "{body}");
}

#[tokio::test]
async fn invalid_config_is_refused_naming_the_field() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some("t"));
    let (status, body) = call(&state, put(r#"{"cache":{"max_entries":0}}"#, Some("Bearer t"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("`cache.max_entries`: 0"), "{body}");
    assert_eq!(state.config.desired().filter.cache.max_entries, 1000, "unchanged");
    let (status, body) = call(&state, put("not json", Some("Bearer t"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn validate_applies_nothing() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let (status, body) = call(&state, validate(r#"{"cache":{"ttl_seconds":60}}"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "valid": true })));
    assert_eq!(state.config.desired().filter.cache.ttl_seconds, 300, "not applied");
    let (status, body) = call(&state, validate(r#"{"cache":{"bogus":1}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("unknown field `bogus`"), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let state = AppState::with_filter_config(FilterConfig::default(), None);
    let (status, body) = call(&state, get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    message(&body);
    let (status, body) = call(&state, Request::delete("/v1/filter-config").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    message(&body);
}

#[tokio::test]
async fn requests_and_updates_are_counted() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    call(&state, put("{}", None)).await;
    call(&state, put("{}", Some("Bearer t0ken"))).await;
    call(&state, validate("not json")).await;
    let text = state.metrics.render();
    for line in [
        r#"aurelis_cp_admin_requests_total{outcome="unauthorized",route="put_filter_config"} 1"#,
        r#"aurelis_cp_admin_requests_total{outcome="ok",route="put_filter_config"} 1"#,
        r#"aurelis_cp_admin_requests_total{outcome="invalid",route="validate_filter_config"} 1"#,
        "aurelis_cp_filter_config_updates_total 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

// --- model routing, endpoints, purge, status ---

pub(crate) const TOKEN: &str = "t0ken";

const TWO_PROVIDERS: &str = r#"
providers:
  - name: a
    base_url: http://127.0.0.1:8000/v1
  - name: b
    base_url: http://127.0.0.2:8000/v1
models:
  - name: gpt-4o-mini
    providers:
      - { provider: a, weight: 100 }
  - name: gpt-4o
    providers:
      - { provider: b, weight: 100 }
"#;

fn two_providers() -> AppState {
    let model = Model::from_yaml(TWO_PROVIDERS).unwrap();
    let desired = Desired::new(model, FilterConfig::default(), Secrets::default(), "aurelis_filter.wasm".into());
    AppState::new(desired, Some(TOKEN))
}

fn send(method: &str, path: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn status_lists_the_version_of_every_type() {
    let state = two_providers();
    let (status, body) = call(&state, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    let versions = body["versions"].as_object().unwrap_or_else(|| panic!("{body}"));
    let types: Vec<_> = versions.keys().map(String::as_str).collect();
    assert_eq!(types, ["cds", "ecds", "eds", "lds", "rds"]);
    let snapshot = state.config.current();
    assert_eq!(versions["rds"], snapshot.version(ROUTE));
    assert_eq!(versions["cds"], snapshot.version(CLUSTER));
    assert_eq!(body["clients"], json!([]), "no Envoy connected");
}

#[tokio::test]
async fn put_weights_needs_the_token() {
    let state = two_providers();
    let before = state.config.current();
    let body = r#"{"weights":{"a":50,"b":50}}"#;
    for token in [None, Some("wrong")] {
        let (status, _) = call(&state, send("PUT", "/v1/models/gpt-4o-mini/weights", body, token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    assert!(state.config.current() == before, "refused writes change nothing");
}

#[tokio::test]
async fn put_weights_refuses_unknown_providers_and_models() {
    let state = two_providers();
    let before = state.config.current();
    let put = |path: &'static str, body: &'static str| send("PUT", path, body, Some(TOKEN));
    let (status, body) =
        call(&state, put("/v1/models/gpt-4o-mini/weights", r#"{"weights":{"a":50,"openai":50}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("`openai` is not a defined provider"), "{body}");
    assert!(message(&body).contains("models[0].providers[1].provider"), "{body}");
    let (status, body) = call(&state, put("/v1/models/gpt-4o-mini/weights", r#"{"weights":{"a":0}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("sum to 0"), "{body}");
    let (status, body) = call(&state, put("/v1/models/gpt-5/weights", r#"{"weights":{"a":1}}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&body).contains("`gpt-5`"), "{body}");
    let (status, body) = call(&state, put("/v1/models/gpt-4o-mini/weights", r#"{"a":1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains(r#"{"weights""#), "the message shows the expected shape: {body}");
    assert!(state.config.current() == before, "refused writes change nothing");
}

#[tokio::test]
async fn put_weights_changes_the_routes_and_nothing_else() {
    let state = two_providers();
    let before = state.config.current();
    let watcher = state.config.subscribe();
    let request = send("PUT", "/v1/models/gpt-4o-mini/weights", r#"{"weights":{"a":80,"b":20}}"#, Some(TOKEN));
    let (status, body) = call(&state, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"][0], json!({ "name": "gpt-4o-mini", "weights": { "a": 80, "b": 20 } }));
    let (_, models) = call(&state, get("/v1/models")).await;
    assert_eq!(
        models,
        json!({ "models": [
                { "name": "gpt-4o-mini", "weights": { "a": 80, "b": 20 } },
                { "name": "gpt-4o", "weights": { "b": 100 } },
            ] })
    );
    assert!(watcher.has_changed().unwrap(), "a new snapshot is published");
    let after = state.config.current();
    assert_ne!(after.version(ROUTE), before.version(ROUTE), "RDS changes");
    // A second provider for the model brings its failover clusters (CDS) ...
    assert_ne!(after.version(CLUSTER), before.version(CLUSTER), "the model now fails over");
    assert_eq!(after.version(ENDPOINT), before.version(ENDPOINT), "EDS does not");
    // ... and a change of weights alone touches nothing but RDS.
    let request = send("PUT", "/v1/models/gpt-4o-mini/weights", r#"{"weights":{"a":60,"b":40}}"#, Some(TOKEN));
    assert_eq!(call(&state, request).await.0, StatusCode::OK);
    let reweighted = state.config.current();
    assert_ne!(reweighted.version(ROUTE), after.version(ROUTE), "RDS changes");
    assert_eq!(reweighted.version(CLUSTER), after.version(CLUSTER), "CDS does not");
    assert_eq!(reweighted.version(ENDPOINT), after.version(ENDPOINT), "EDS does not");
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_cp_admin_requests_total{outcome="ok",route="put_weights"} 2"#), "{text}");
}

#[tokio::test]
async fn model_validate_checks_without_applying() {
    let state = two_providers();
    let before = state.config.current();
    let good = TWO_PROVIDERS.replace("weight: 100 }\n  - name: gpt-4o", "weight: 1 }\n  - name: gpt-4o");
    let (status, body) = call(&state, send("POST", "/v1/model:validate", &good, Some(TOKEN))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "valid": true })));
    let json_body = serde_json::to_string(&Model::embedded_default()).unwrap();
    let (status, _) = call(&state, send("POST", "/v1/model:validate", &json_body, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "JSON is YAML too");
    let bad = TWO_PROVIDERS.replace("provider: b,", "provider: c,");
    let (status, body) = call(&state, send("POST", "/v1/model:validate", &bad, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("`models[1].providers[0].provider`"), "{body}");
    assert!(message(&body).contains("`c` is not a defined provider"), "{body}");
    let (status, body) = call(&state, send("POST", "/v1/model:validate", "providers: [", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    message(&body);
    assert!(state.config.current() == before, "validation applies nothing");
}

#[tokio::test]
async fn endpoint_overrides_mark_endpoints_unhealthy_and_back() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let before = state.config.current();
    let path = "/v1/endpoints/mock/127.0.0.1:8000/health";
    let (status, _) = call(&state, send("PUT", path, r#"{"override":"unhealthy"}"#, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let unknown = "/v1/endpoints/mock/127.0.0.1:9999/health";
    let (status, body) = call(&state, send("PUT", unknown, r#"{"override":"unhealthy"}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&body).contains("`127.0.0.1:9999`") && message(&body).contains("`mock`"), "{body}");
    let (status, body) = call(&state, send("PUT", path, r#"{"override":"sick"}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("sick"), "{body}");
    assert!(state.config.current() == before, "refused writes change nothing");

    let (_, listed) = call(&state, get("/v1/endpoints")).await;
    assert_eq!(listed["endpoints"][0]["healthy"], true, "{listed}");
    let (status, body) = call(&state, send("PUT", path, r#"{"override":"unhealthy"}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = call(&state, get("/v1/endpoints")).await;
    let endpoint = &listed["endpoints"][0];
    assert_eq!(
        (&endpoint["provider"], &endpoint["address"], &endpoint["served_by"]),
        (&json!("mock"), &json!("127.0.0.1:8000"), &json!("eds"))
    );
    assert_eq!((&endpoint["override"], &endpoint["healthy"]), (&json!("unhealthy"), &json!(false)), "{listed}");
    let after = state.config.current();
    assert_ne!(after.version(ENDPOINT), before.version(ENDPOINT), "EDS tells Envoy");
    assert_eq!(after.version(ROUTE), before.version(ROUTE));

    // `null` hands the endpoint back to the probes.
    let (status, _) = call(&state, send("PUT", path, r#"{"override":null}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = call(&state, get("/v1/endpoints")).await;
    assert_eq!((&listed["endpoints"][0]["override"], &listed["endpoints"][0]["healthy"]), (&json!(null), &json!(true)));
    assert!(state.config.current() == before, "back to the original snapshot");
}

#[tokio::test]
async fn purge_without_redis_says_how_to_configure_it() {
    let mut filter = FilterConfig::default();
    filter.l2.enabled = true;
    let state = AppState::with_filter_config(filter, Some(TOKEN));
    let (status, body) = call(&state, send("POST", "/v1/cache:purge", r#"{"model":"gpt-4o-mini"}"#, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let two = r#"{"model":"gpt-4o-mini","tenant":"t"}"#;
    let (status, body) = call(&state, send("POST", "/v1/cache:purge", two, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("exactly one of"), "{body}");
    let (status, _) = call(&state, send("POST", "/v1/cache:purge", "{}", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no dimension at all");
    let (status, body) = call(&state, send("POST", "/v1/cache:purge", r#"{"everything":true}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("everything"), "{body}");
    let (status, body) = call(&state, send("POST", "/v1/cache:purge", r#"{"model":"gpt-4o-mini"}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(message(&body).contains("--l2-redis-url"), "{body}");
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_cp_admin_requests_total{outcome="unavailable",route="purge_cache"} 1"#), "{text}");
    assert!(state.config.desired().purges.is_empty(), "no L1 rule while L2 still holds the entries");
}

#[tokio::test]
async fn a_fleet_without_l2_purges_its_l1s_only() {
    let state = AppState::with_filter_config(FilterConfig::default(), Some(TOKEN));
    let (status, body) = call(&state, send("POST", "/v1/cache:purge", r#"{"model":"gpt-4o-mini"}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["purged"], &body["l3_purged"]), (&json!(null), &json!(null)), "{body}");
    let id = body["l1_rule"].as_u64().unwrap();
    let pushed = state.config.desired().pushed_filter();
    assert_eq!(
        pushed.cache.purges.iter().map(|r| (r.id, r.model.as_deref())).collect::<Vec<_>>(),
        [(id, Some("gpt-4o-mini"))]
    );
}

#[tokio::test]
async fn filter_settings_must_fit_the_model() {
    // The embedded default model has a provider `mock` and no cache service.
    let state = AppState::with_filter_config(FilterConfig::default(), Some("t0ken"));
    let watcher = state.config.subscribe();
    let l2_without_service = r#"{"l2":{"enabled":true}}"#;
    let (status, body) = call(&state, put(l2_without_service, Some("Bearer t0ken"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("filter.l2.enabled") && message(&body).contains("cache_service"), "{body}");
    let (status, body) = call(&state, validate(l2_without_service)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!watcher.has_changed().unwrap(), "a refused config publishes nothing");

    // With a cache service, the L2 cluster may not take a provider's name (it would replace
    // the provider's cluster and send model traffic to the cache service).
    let model = Model::from_yaml(
        "providers: [{ name: mock, base_url: 'http://127.0.0.1:8000/v1' }]\n\
         models: [{ name: m, providers: [{ provider: mock, weight: 1 }] }]\n\
         cache_service: { endpoints: ['127.0.0.1:18080'] }\n",
    )
    .unwrap();
    let desired = Desired::new(model, FilterConfig::default(), Secrets::default(), "x.wasm".into());
    let state = AppState::new(desired, Some("t0ken"));
    let (status, body) = call(&state, put(r#"{"l2":{"enabled":true,"cluster":"mock"}}"#, Some("Bearer t0ken"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("`filter.l2.cluster`: `mock` is also a provider's name"), "{body}");
    assert!(!state.config.desired().filter.l2.enabled, "nothing applied");
    let (status, _) = call(&state, put(r#"{"l2":{"enabled":true}}"#, Some("Bearer t0ken"))).await;
    assert_eq!(status, StatusCode::OK);
}

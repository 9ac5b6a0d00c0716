//! Adaptive routing through the admin API and the config store: windows in, weights pushed
//! (the compiled route's weights change), pins win, `GET /v1/routing` explains.
use super::tests::{call, get, TOKEN};
use super::*;
use crate::adaptive::driver::apply_routing;
use crate::model::{Model, Secrets};
use crate::state::Desired;
use crate::telemetry::{SeriesKey, WindowSummary};
use axum::body::Body;
use axum::http::{Request, StatusCode};

const TWO_PROVIDERS: &str = r#"
providers:
  - { name: fast, base_url: "http://10.0.0.1:8000/v1" }
  - name: slow
    base_url: "http://10.0.0.2:8000/v1"
    endpoints: [{ address: "10.0.0.2:8000" }, { address: "10.0.0.3:8000" }]
models:
  - name: gpt-4o-mini
    providers: [{ provider: fast, weight: 50 }, { provider: slow, weight: 50 }]
adaptive:
  routing: { enabled: true, observe_windows: 1 }
  balancing: { enabled: true }
filter: { auth: { anonymous: {} } }
"#;

fn state() -> AppState {
    let model = Model::from_yaml(TWO_PROVIDERS).unwrap_or_else(|e| panic!("{e}"));
    let filter = model.filter_config().unwrap_or_else(|e| panic!("{e}"));
    AppState::new(Desired::new(model, filter, Secrets::default(), "x.wasm".into()), Some(TOKEN))
}

fn window(provider: &str, p95_ms: f64, errors: u64) -> WindowSummary {
    WindowSummary {
        series: SeriesKey { model: "gpt-4o-mini".into(), provider: provider.into() },
        start_ms: 0,
        window_secs: 10,
        requests: 100,
        errors,
        hits: 0,
        p50_ms: Some(p95_ms / 2.0),
        p95_ms: Some(p95_ms),
        p99_ms: Some(p95_ms),
        tokens_in: 0,
        tokens_out: 0,
        tokens_saved: 0,
    }
}

fn pushed_weights(state: &AppState) -> Vec<(String, u32)> {
    let model = state.config.desired().effective_model();
    model.models[0].providers.iter().map(|p| (p.provider.clone(), p.weight)).collect()
}

fn observe(state: &AppState, batch: &[WindowSummary]) {
    let settings = state.config.desired().model.adaptive.routing.clone();
    state.adaptive.routing().observe(batch, &settings);
}

#[tokio::test]
async fn a_slow_provider_loses_weight_step_by_step_and_the_route_is_recompiled() {
    let state = state();
    let version_before = state.config.current().version(crate::xds::ROUTE).to_string();
    observe(&state, &[window("fast", 400.0, 0), window("slow", 4000.0, 0)]);
    let changes = apply_routing(&state, 1_000);
    assert_eq!(changes.len(), 1);
    assert_eq!(pushed_weights(&state), [("fast".into(), 60), ("slow".into(), 40)]);
    assert_ne!(state.config.current().version(crate::xds::ROUTE), version_before, "a new RDS version is pushed");
    for t in 2..10 {
        apply_routing(&state, t * 10_000);
    }
    let weights = pushed_weights(&state);
    assert!(weights[1].1 <= 10, "{weights:?}");
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_cp_routing_weight{model="gpt-4o-mini",provider="slow"}"#), "{text}");
    assert!(text.contains(r#"aurelis_cp_routing_weight_changes_total{cause="adaptive"}"#), "{text}");
}

#[tokio::test]
async fn a_pin_wins_at_once_and_deleting_it_returns_to_adaptive() {
    let state = state();
    observe(&state, &[window("fast", 400.0, 0), window("slow", 4000.0, 0)]);
    let pin = Request::put("/v1/routing/gpt-4o-mini/slow")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(r#"{"weight": 90}"#))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = call(&state, pin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(pushed_weights(&state), [("fast".into(), 10), ("slow".into(), 90)]);
    assert_eq!(body["models"][0]["reasons"]["slow"], "pinned");

    let (status, body) = call(&state, get("/v1/routing")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["models"][0]["weights"]["slow"], 90);
    assert_eq!(body["models"][0]["file_weights"]["slow"], 50);
    assert_eq!(body["models"][0]["inputs"]["slow"]["p95_ms"], 4000.0);
    assert!(body["changes"].as_array().is_some_and(|c| !c.is_empty()), "{body}");

    let unpin = Request::delete("/v1/routing/gpt-4o-mini/slow")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = call(&state, unpin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"][0]["reasons"]["slow"], "adaptive");
    assert_eq!(pushed_weights(&state)[1].1, 80, "one bounded step back down from the pin");
}

#[tokio::test]
async fn pins_are_checked_and_need_the_token() {
    let state = state();
    let unknown = Request::put("/v1/routing/gpt-4o-mini/nobody")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(r#"{"weight": 90}"#))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&state, unknown).await.0, StatusCode::NOT_FOUND);
    let anonymous = Request::put("/v1/routing/gpt-4o-mini/slow")
        .body(Body::from(r#"{"weight": 90}"#))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&state, anonymous).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&state, Request::get("/v1/routing").body(Body::empty()).unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&state, get("/v1/tuning")).await;
    assert_eq!((status, body["mode"].as_str()), (StatusCode::OK, Some("recommend")));
}

#[tokio::test]
async fn an_operator_weight_change_restarts_adaptive_routing_from_the_new_intent() {
    let state = state();
    observe(&state, &[window("fast", 400.0, 0), window("slow", 4000.0, 0)]);
    apply_routing(&state, 1_000);
    let put = Request::put("/v1/models/gpt-4o-mini/weights")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(r#"{"weights": {"fast": 20, "slow": 80}}"#))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&state, put).await.0, StatusCode::OK);
    assert_eq!(pushed_weights(&state), [("fast".into(), 20), ("slow".into(), 80)]);
}

#[test]
fn adaptive_settings_are_validated_with_the_field_named() {
    let bad = TWO_PROVIDERS.replace("observe_windows: 1", "observe_windows: 1, min_weight: 90");
    let error = Model::from_yaml(&bad).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("adaptive.routing.min_weight"), "{error}");
}

#[tokio::test]
async fn uneven_load_switches_the_cluster_to_round_robin_after_two_windows() {
    use crate::adaptive::driver::apply_balancing;
    use crate::adaptive::EndpointLoad;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;
    let state = state();
    let cluster_policy = |state: &AppState| {
        let snapshot = state.config.current();
        let any = snapshot
            .get(crate::xds::CLUSTER)
            .and_then(|c| c.resources.get("slow"))
            .unwrap_or_else(|| panic!("no cluster"));
        Cluster::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}")).lb_policy
    };
    assert_eq!(cluster_policy(&state), 1, "least request by default");
    let uneven: std::collections::BTreeMap<String, std::collections::BTreeMap<String, EndpointLoad>> = [(
        "slow".to_string(),
        [
            ("10.0.0.2:8000".to_string(), EndpointLoad { requests: 900, mean_response_ms: 800.0 }),
            ("10.0.0.3:8000".to_string(), EndpointLoad { requests: 40, mean_response_ms: 800.0 }),
        ]
        .into_iter()
        .collect(),
    )]
    .into_iter()
    .collect();
    assert!(apply_balancing(&state, &uneven, 10_000).is_empty(), "one window is not enough");
    assert_eq!(apply_balancing(&state, &uneven, 20_000), ["slow"]);
    assert!(apply_balancing(&state, &uneven, 30_000).is_empty(), "no switch to the policy in force");
    assert_eq!(cluster_policy(&state), 0, "round robin pushed over CDS");
    let (_, body) = call(&state, get("/v1/routing")).await;
    let slow = &body["models"][0]["clusters"][1];
    assert_eq!(slow["lb_policy"], "round_robin", "{body}");
    assert_eq!(slow["verdict"], "round_robin", "{body}");
    assert_eq!(slow["inputs"]["10.0.0.2:8000"]["requests"], 900, "{body}");
    assert_eq!((slow["last_changed_ms"].as_i64(), slow["decided_at_ms"].as_i64()), (Some(20_000), Some(30_000)));
    let switches = body["balancing_changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(switches.len(), 1, "{body}");
    assert_eq!((switches[0]["provider"].as_str(), switches[0]["after"].as_str()), (Some("slow"), Some("round_robin")));
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_cp_balancing_changes_total{policy="round_robin"} 1"#), "{text}");
}

#[tokio::test]
async fn auto_tuning_applies_steps_over_ecds_and_rolls_back_a_degrading_step() {
    use crate::adaptive::driver::tune;
    use crate::adaptive::{Guard, TuningEvent, TuningEvidence};
    let yaml = TWO_PROVIDERS.replace(
        "  balancing: { enabled: true }",
        "  balancing: { enabled: true }\n  tuning: { mode: auto, step_interval_s: 1 }",
    );
    let model = Model::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let filter = model.filter_config().unwrap_or_else(|e| panic!("{e}"));
    let state = AppState::new(Desired::new(model, filter, Secrets::default(), "x.wasm".into()), Some(TOKEN));
    let ttl = |state: &AppState| state.config.desired().filter.cache.ttl_seconds;
    let start = ttl(&state);
    let ecds = |state: &AppState| state.config.current().version(crate::xds::EXTENSION_CONFIG).to_string();
    let ecds_before = ecds(&state);
    let evidence = TuningEvidence { requests: 10_000, expired_misses: 2_000, ..Default::default() };
    let good = Guard { error_rate: 0.01, p95_ms: 900.0, hit_rate: 0.5 };

    let events = tune(&state, &evidence, good, 0);
    assert!(matches!(events.as_slice(), [TuningEvent::Apply { step: 1, of: 5, .. }]), "{events:?}");
    let step = (start * 2 - start) / 5;
    assert_eq!(ttl(&state), start + step);
    assert_ne!(ecds(&state), ecds_before, "the step went out over ECDS");
    tune(&state, &evidence, good, 1_000);
    assert_eq!(ttl(&state), start + 2 * step);

    // The third step's guard shows p95 up 60 %: back to the start at once.
    let slow = Guard { p95_ms: 1_440.0, ..good };
    let events = tune(&state, &evidence, slow, 2_000);
    assert!(matches!(events.as_slice(), [TuningEvent::RolledBack { .. }]), "{events:?}");
    assert_eq!(ttl(&state), start);

    let (status, body) = call(&state, get("/v1/tuning")).await;
    assert_eq!(status, StatusCode::OK);
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "rolled_back", "{body}");
    assert_eq!(last["after"].as_f64(), Some(start as f64));
    assert!(last["reason"].as_str().is_some_and(|r| r.contains("p95")), "{last}");
    assert_eq!(body["candidates"][0]["setting"], "cache_ttl_seconds");
}

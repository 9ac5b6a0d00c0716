//! The model file: parsing, weight changes, secrets and the design defaults.
use super::*;

const TWO_PROVIDERS: &str = r#"
providers:
  - name: a
    base_url: http://10.0.0.1:8000/v1
  - name: b
    base_url: https://api.example.com/v1
    headers:
      - { name: authorization, value_from_env: B_TOKEN, prefix: "Bearer " }
      - { name: x-org, value_from_env: B_ORG }
models:
  - name: gpt-4o-mini
    providers:
      - { provider: a, weight: 70 }
      - { provider: b, weight: 30 }
  - name: gpt-4o
    providers:
      - { provider: b, weight: 1 }
filter:
  auth:
    consumers: [{ name: team, key_sha256: ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"] }]
"#;

fn two_providers() -> Model {
    Model::from_yaml(TWO_PROVIDERS).unwrap()
}

fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(p, w)| (p.to_string(), *w)).collect()
}

/// `Secrets` is deliberately not `Debug`, so `unwrap_err` is not available on its results.
fn secrets_err(result: Result<Secrets, ModelError>) -> ModelError {
    match result {
        Ok(_) => panic!("expected a missing secret to be refused"),
        Err(e) => e,
    }
}

fn invalid_field(err: &ModelError) -> &str {
    match err {
        ModelError::Invalid { field, .. } => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn defaults_are_filled_in() {
    let model = two_providers();
    let listener = ListenerSpec {
        address: "127.0.0.1".into(),
        port: 10000,
        compression: true,
        xff_num_trusted_hops: 0,
        filter: FilterHost::Wasm,
        access_log: AccessLogSpec { path: "/dev/stdout".into() },
    };
    assert_eq!(model.listener, listener, "loopback unless the file says otherwise; the access log on stdout");
    assert_eq!(model.api, ApiSpec::default());
    assert_eq!(model.api.paths, ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]);
    assert!(model.api.list_models && model.api.fallback_model.is_none(), "unknown models are refused");
    assert_eq!(model.jwt, None);
    let a = model.provider("a").unwrap();
    assert_eq!(a.protocol, UpstreamProtocol::Auto);
    assert_eq!(a.limits, UpstreamLimits::default());
    assert!(a.endpoints.is_empty() && a.health_check.is_none());
    assert_eq!(model.cache_service, None);
    let filter = model.filter_config().unwrap();
    assert_eq!(FilterConfig { auth: Default::default(), ..filter }, FilterConfig::default());
    assert_eq!(model.models[0].providers[1], WeightedProvider { provider: "b".into(), weight: 30 });
}

#[test]
fn yaml_and_json_round_trip() {
    let model = two_providers();
    let yaml = serde_yaml_ng::to_string(&model).unwrap();
    assert_eq!(Model::from_yaml(&yaml).unwrap(), model);
    // JSON is YAML too: the admin API's validate endpoint takes either.
    let json = serde_json::to_string(&model).unwrap();
    assert_eq!(Model::from_yaml(&json).unwrap(), model);
    for shipped in
        [EMBEDDED_DEFAULT, include_str!("../../models/local.yaml"), include_str!("../../models/github-models.yaml")]
    {
        let model = Model::from_yaml(shipped).unwrap();
        assert_eq!(Model::from_yaml(&serde_yaml_ng::to_string(&model).unwrap()).unwrap(), model);
    }
}

#[test]
fn syntax_errors_name_the_place() {
    let err = Model::from_yaml("providers: [").unwrap_err();
    assert!(matches!(err, ModelError::Syntax(_)), "{err:?}");
    let err = Model::from_yaml(&TWO_PROVIDERS.replace("weight: 70", "weight: -1")).unwrap_err();
    assert!(err.to_string().contains("models[0].providers[0].weight"), "{err}");
    let err = Model::from_yaml(&TWO_PROVIDERS.replace("name: a\n", "name: a\n    protocol: http3\n")).unwrap_err();
    assert!(err.to_string().contains("http3"), "{err}");
}

#[test]
fn embedded_default_parses() {
    let model = Model::embedded_default();
    assert_eq!(model.listener.address, "127.0.0.1");
    assert_eq!(model.providers.len(), 1);
    assert_eq!(model.providers[0].base().port, 8000);
    assert!(model.providers[0].uses_eds(), "loopback IP: EDS with our probes");
    assert!(model.providers[0].health_check.is_some());
    let names: Vec<_> = model.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["gpt-4o-mini", "gpt-4o"]);
    assert!(!model.filter_config().unwrap().l2.enabled, "the embedded default runs without L2");
    assert!(model.resolve_secrets(|_| None).is_ok(), "needs no environment");
}

#[test]
fn upstream_limits_default_to_the_design_numbers() {
    let limits = UpstreamLimits::default();
    assert_eq!(limits.consecutive_5xx, 5);
    assert_eq!(limits.outlier_interval_s, 30);
    assert_eq!(limits.base_ejection_time_s, 30);
    assert_eq!(limits.max_ejection_percent, 50);
    assert_eq!(limits.num_retries, 3);
    assert_eq!(limits.retry_on, "5xx,reset,connect-failure");
    assert_eq!(limits.healthy_panic_threshold_percent, 50);
    // Partial `limits` keep the other defaults.
    let model =
        Model::from_yaml(&TWO_PROVIDERS.replace("name: a\n", "name: a\n    limits: { num_retries: 1 }\n")).unwrap();
    assert_eq!(model.provider("a").unwrap().limits, UpstreamLimits { num_retries: 1, ..UpstreamLimits::default() });
}

#[test]
fn with_weights_replaces_one_models_weights() {
    let model = two_providers();
    let next = model.with_weights("gpt-4o-mini", &weights(&[("a", 10), ("b", 90)])).unwrap();
    assert_eq!(
        next.models[0].providers,
        [WeightedProvider { provider: "a".into(), weight: 10 }, WeightedProvider { provider: "b".into(), weight: 90 }]
    );
    assert_eq!(next.models[1], model.models[1], "other models untouched");
    // A weight of 0 drains one provider; a known provider can join a model.
    let next = model.with_weights("gpt-4o", &weights(&[("a", 0), ("b", 5)])).unwrap();
    assert_eq!(next.models[1].providers.len(), 2);
}

#[test]
fn with_weights_refuses_what_a_file_would_refuse() {
    let model = two_providers();
    let err = model.with_weights("gpt-4o-mini", &weights(&[("a", 50), ("nope", 50)])).unwrap_err();
    assert_eq!(invalid_field(&err), "models[0].providers[1].provider");
    assert!(err.to_string().contains("`nope` is not a defined provider"), "{err}");

    let err = model.with_weights("gpt-4o-mini", &weights(&[("a", 0), ("b", 0)])).unwrap_err();
    assert_eq!(invalid_field(&err), "models[0].providers");
    assert!(err.to_string().contains("sum to 0"), "{err}");

    let err = model.with_weights("gpt-4o-mini", &weights(&[])).unwrap_err();
    assert_eq!(invalid_field(&err), "models[0].providers");

    let err = model.with_weights("gpt-5", &weights(&[("a", 1)])).unwrap_err();
    assert_eq!(invalid_field(&err), "model");
    assert!(err.to_string().contains("`gpt-5`"), "{err}");

    let err = model.with_weights("gpt-4o-mini", &weights(&[("a", 10_001)])).unwrap_err();
    assert!(err.to_string().contains("10001 is above 10000"), "{err}");
}

#[test]
fn resolve_secrets_reads_trims_and_prefixes() {
    let model = two_providers();
    let env = |name: &str| match name {
        "B_TOKEN" => Some(" tok-123\n".to_string()),
        "B_ORG" => Some("org-9".to_string()),
        _ => None,
    };
    let secrets = model.resolve_secrets(env).unwrap();
    assert_eq!(secrets.get("b", "authorization"), Some("Bearer tok-123"));
    assert_eq!(secrets.get("b", "x-org"), Some("org-9"));
    assert_eq!(secrets.get("a", "authorization"), None);
}

#[test]
fn a_missing_secret_is_named_and_no_value_is_shown() {
    let model = two_providers();
    let value = "sk-live-DO-NOT-PRINT";
    let err = secrets_err(model.resolve_secrets(|name| (name == "B_TOKEN").then(|| value.to_string())));
    assert_eq!(invalid_field(&err), "providers[1].headers[1].value_from_env");
    let text = err.to_string();
    assert!(text.contains("`B_ORG` is not set"), "{text}");
    assert!(!text.contains(value) && !format!("{err:?}").contains(value), "{text}");
    // Blank counts as missing: an empty credential would only turn into a 401 later.
    let err = secrets_err(model.resolve_secrets(|name| Some(if name == "B_TOKEN" { "  " } else { value }.to_string())));
    assert_eq!(invalid_field(&err), "providers[1].headers[0].value_from_env");
    assert!(err.to_string().contains("`B_TOKEN`"), "{err}");
    assert!(!err.to_string().contains(value) && !format!("{err:?}").contains(value));
}

#[test]
fn the_cache_service_becomes_an_http2_upstream_that_fails_fast() {
    let model = Model::from_yaml(include_str!("../../models/local.yaml")).unwrap();
    let l2 = model.cache_service_upstream("aurelis_l2").unwrap();
    assert_eq!((l2.name.as_str(), l2.protocol), ("aurelis_l2", UpstreamProtocol::Http2));
    assert_eq!(l2.endpoint_addresses(), [("127.0.0.1".to_string(), 18080, 1)]);
    assert_eq!(l2.limits.healthy_panic_threshold_percent, 0, "a dead L2 gets no traffic");
    assert_eq!(l2.limits.num_retries, 0, "the filter fails open instead of waiting for retries");
    assert_eq!(two_providers().cache_service_upstream("aurelis_l2"), None);
}

#[test]
fn an_l2_cluster_named_like_a_provider_is_refused() {
    let yaml = TWO_PROVIDERS.replace(
        "filter:\n",
        "cache_service: { endpoints: ['127.0.0.1:18080'] }\nfilter:\n  l2: { enabled: true, cluster: a }\n",
    );
    let err = Model::from_yaml(&yaml).unwrap_err();
    assert_eq!(invalid_field(&err), "filter.l2.cluster");
    assert!(err.to_string().contains("`a`"), "{err}");
}

#[test]
fn a_header_names_exactly_one_source() {
    let with = |header: &str| TWO_PROVIDERS.replace("value_from_env: B_TOKEN, ", header);
    for header in ["", "value_from_env: B_TOKEN, envoy_env: KEY, "] {
        let err = Model::from_yaml(&with(header)).unwrap_err();
        assert_eq!(invalid_field(&err), "providers[1].headers[0].value_from_env");
        assert!(err.to_string().contains("exactly one of"), "{err}");
    }
    // `envoy_env` alone: Envoy reads it, so the control plane needs no such variable.
    let model = Model::from_yaml(&with("envoy_env: B_TOKEN, ")).unwrap();
    let secrets = match model.resolve_secrets(|name| (name == "B_ORG").then(|| "org".to_string())) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(secrets.get("b", "authorization"), None);
}

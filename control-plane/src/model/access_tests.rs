//! Who may use the gateway: the open-relay refusal, the `jwt` and `api` sections, and consumer
//! changes through the admin API validated like a model file.
use super::*;
use aurelis_core::auth::key_sha256;

/// A provider that injects a credential; `{filter}` is the file's filter section.
fn credentialed(filter: &str) -> String {
    format!(
        "providers:\n  - name: paid\n    base_url: https://api.example.com/v1\n    headers:\n      \
         - {{ name: authorization, envoy_env: PAID_TOKEN, prefix: 'Bearer ' }}\n\
         models:\n  - {{ name: gpt-4o-mini, providers: [{{ provider: paid, weight: 1 }}] }}\n{filter}"
    )
}

fn field_of(err: &ModelError) -> String {
    match err {
        ModelError::Invalid { field, .. } => field.clone(),
        other => panic!("expected a field error, got {other:?}"),
    }
}

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

#[test]
fn a_provider_credential_without_client_authentication_is_refused() {
    for filter in [
        "",
        "filter: {}\n",
        "filter: { auth: { anonymous: {} } }\n",
        "filter: { auth: { consumers: [{ name: a }] } }\n",
    ] {
        let err = Model::from_yaml(&credentialed(filter)).unwrap_err();
        assert_eq!(field_of(&err), "filter.auth", "{filter}: {err}");
        let text = err.to_string();
        assert!(text.contains("`paid`") && text.contains("authorization"), "names the provider and header: {text}");
    }
    let digest = key_sha256("k");
    let keyed = format!("filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{digest}'] }}] }} }}\n");
    assert!(Model::from_yaml(&credentialed(&keyed)).is_ok());
    let jwt =
        format!("jwt: {{ issuer: https://issuer.example, jwks: '{JWKS}' }}\nfilter: {{ auth: {{ jwt: {{}} }} }}\n");
    assert!(Model::from_yaml(&credentialed(&jwt)).is_ok(), "JWT clients authenticate");
    // Without a credential to spend, anonymous access is the operator's call.
    let open = credentialed("filter: { auth: { anonymous: {} } }\n")
        .replace("    headers:\n      - { name: authorization, envoy_env: PAID_TOKEN, prefix: 'Bearer ' }\n", "");
    assert!(Model::from_yaml(&open).is_ok(), "{open}");
}

#[test]
fn the_relay_check_also_guards_replacement_filter_configs() {
    let digest = key_sha256("k");
    let model = Model::from_yaml(&credentialed(&format!(
        "filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{digest}'] }}] }} }}\n"
    )))
    .unwrap();
    // What `PUT /v1/filter-config` and `--filter-config` go through.
    let err = model.check_filter(&FilterConfig::default()).unwrap_err();
    assert_eq!(field_of(&err), "filter.auth");
}

#[test]
fn jwt_sections_are_checked_and_must_come_in_pairs() {
    let digest = key_sha256("k");
    let keys = format!("consumers: [{{ name: a, key_sha256: ['{digest}'] }}]");
    let file = |jwt: &str, auth: &str| credentialed(&format!("{jwt}filter: {{ auth: {{ {auth} }} }}\n"));
    let jwt = |body: &str| format!("jwt: {{ issuer: https://issuer.example, {body} }}\n");
    let cases = [
        (jwt(&format!("jwks: '{JWKS}'")), keys.clone(), "filter.auth.jwt"),
        (String::new(), format!("{keys}, jwt: {{}}"), "jwt"),
        (jwt("jwks: '{\"keys\":[]}'"), "jwt: {}".into(), "jwt.jwks"),
        (jwt("jwks: 'not json'"), "jwt: {}".into(), "jwt.jwks"),
        (jwt("clock_skew_seconds: 5"), "jwt: {}".into(), "jwt.jwks"),
        (jwt(&format!("jwks: '{JWKS}', jwks_file: /etc/jwks.json")), "jwt: {}".into(), "jwt.jwks"),
        (jwt("jwks_file: jwks.json"), "jwt: {}".into(), "jwt.jwks_file"),
        (jwt(r#"jwks: '{"keys":[{"kty":"EC","d":"secret"}]}'"#), "jwt: {}".into(), "jwt.jwks"),
        ("jwt: { issuer: '', jwks_file: /j }\n".into(), "jwt: {}".into(), "jwt.issuer"),
    ];
    for (jwt, auth, field) in cases {
        let err = Model::from_yaml(&file(&jwt, &auth)).unwrap_err();
        assert_eq!(field_of(&err), field, "{jwt} / {auth}: {err}");
    }
    let model =
        Model::from_yaml(&file(&jwt("jwks_file: /etc/aurelis/jwks.json, audiences: [aurelis]"), "jwt: {}")).unwrap();
    let spec = model.jwt.unwrap();
    assert_eq!((spec.audiences.as_slice(), spec.clock_skew_seconds), (["aurelis".to_string()].as_slice(), 60));
}

#[test]
fn api_paths_and_the_fallback_model_are_checked() {
    let base = credentialed("filter: { auth: { anonymous: {} } }\n")
        .replace("    headers:\n      - { name: authorization, envoy_env: PAID_TOKEN, prefix: 'Bearer ' }\n", "");
    let with = |api: &str| format!("{base}api: {api}\n");
    for (api, field) in [
        ("{ paths: [] }", "api.paths"),
        ("{ paths: [/v2/chat] }", "api.paths[0]"),
        ("{ paths: ['/v1/chat/(.*)'] }", "api.paths[0]"),
        ("{ paths: [/v1/models] }", "api.paths[0]"),
        ("{ paths: [/v1/a, /v1/a] }", "api.paths[1]"),
        ("{ fallback_model: gpt-5 }", "api.fallback_model"),
    ] {
        let err = Model::from_yaml(&with(api)).unwrap_err();
        assert_eq!(field_of(&err), field, "{api}: {err}");
    }
    let model =
        Model::from_yaml(&with("{ paths: [/v1/responses], list_models: false, fallback_model: gpt-4o-mini }")).unwrap();
    assert_eq!(model.api.fallback_model.as_deref(), Some("gpt-4o-mini"));
}

fn keyed_model() -> (Model, FilterConfig) {
    let digest = key_sha256("first");
    let model = Model::from_yaml(&credentialed(&format!(
        "filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{digest}'] }}] }} }}\n"
    )))
    .unwrap();
    let filter = model.filter_config().unwrap();
    (model, filter)
}

#[test]
fn consumers_and_keys_change_like_a_new_model_file() {
    let (model, filter) = keyed_model();
    let upsert = ConsumerChange::Upsert {
        name: "b".into(),
        tenant: Some("team".into()),
        models: vec!["gpt-4o-mini".into()],
        limits: None,
    };
    let (model, filter) = model.with_consumer_change(&filter, upsert).unwrap();
    let second = key_sha256("second");
    let add = ConsumerChange::AddKey { name: "b".into(), key_sha256: second.clone() };
    let (model, filter) = model.with_consumer_change(&filter, add).unwrap();
    let b = &filter.auth.consumers[1];
    assert_eq!((b.name.as_str(), b.tenant(), b.key_sha256.as_slice()), ("b", "team", [second.clone()].as_slice()));
    assert_eq!(model.filter_config().unwrap(), filter, "the model file carries what is pushed");
    // Updating keeps the keys.
    let update = ConsumerChange::Upsert { name: "b".into(), tenant: None, models: Vec::new(), limits: None };
    let (model, filter) = model.with_consumer_change(&filter, update).unwrap();
    assert_eq!(filter.auth.consumers[1].key_sha256, std::slice::from_ref(&second));
    let revoke = ConsumerChange::RevokeKey { name: "b".into(), key_sha256: second.clone() };
    let (model, filter) = model.with_consumer_change(&filter, revoke.clone()).unwrap();
    assert!(filter.auth.consumers[1].key_sha256.is_empty());
    assert_eq!(model.with_consumer_change(&filter, revoke).unwrap_err(), ConsumerError::UnknownKey("b".into()));
    let (_, filter) = model.with_consumer_change(&filter, ConsumerChange::Remove { name: "b".into() }).unwrap();
    assert_eq!(filter.auth.consumers.len(), 1);
}

#[test]
fn consumer_changes_a_file_would_refuse_are_refused() {
    let (model, filter) = keyed_model();
    let unknown = ConsumerChange::AddKey { name: "nobody".into(), key_sha256: key_sha256("x") };
    assert_eq!(
        model.with_consumer_change(&filter, unknown).unwrap_err(),
        ConsumerError::UnknownConsumer("nobody".into())
    );
    // A key, not its digest: refused without echoing it.
    let raw = ConsumerChange::AddKey { name: "a".into(), key_sha256: "sk-live-not-a-digest".into() };
    let err = model.with_consumer_change(&filter, raw).unwrap_err().to_string();
    assert!(err.contains("auth.consumers.key_sha256") && !err.contains("sk-live"), "{err}");
    let bad_name = ConsumerChange::Upsert { name: "a b".into(), tenant: None, models: Vec::new(), limits: None };
    assert!(matches!(model.with_consumer_change(&filter, bad_name), Err(ConsumerError::Invalid(_))));
    // Revoking the last key of a gateway holding a provider credential would open the relay.
    let last = ConsumerChange::RevokeKey { name: "a".into(), key_sha256: key_sha256("first") };
    let err = model.with_consumer_change(&filter, last).unwrap_err();
    assert!(err.to_string().contains("`filter.auth`"), "{err}");
    assert!(matches!(
        model.with_consumer_change(&filter, ConsumerChange::Remove { name: "a".into() }),
        Err(ConsumerError::Invalid(_))
    ));
}

#[test]
fn generated_keys_are_long_random_and_distinct() {
    let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
    assert_ne!(a, b);
    assert!(a.starts_with("sk-aurelis-") && a.len() == "sk-aurelis-".len() + 64, "{a}");
}

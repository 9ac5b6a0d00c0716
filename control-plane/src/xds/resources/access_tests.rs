//! What Envoy is told about access: only the API paths route, unknown models and paths get
//! OpenAI-shaped 404s, the listener is hardened by Envoy's own config, JWTs are verified ahead
//! of the filter, and the filter fails closed when it is the gate.
use super::*;
use crate::xds::{EXTENSION_CONFIG, LISTENER, ROUTE};
use envoy_types::pb::envoy::config::core::v3::{address, data_source::Specifier, TypedExtensionConfig};
use envoy_types::pb::envoy::config::listener::v3::{filter::ConfigType as FilterConfigType, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route, RouteConfiguration,
};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType, requirement_rule::RequirementType,
    JwtAuthentication,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::PathWithEscapedSlashesAction, http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::http::early_header_mutation::header_mutation::v3::HeaderMutation;
use envoy_types::pb::envoy::extensions::wasm::v3::FailurePolicy;
use prost::Message;

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

/// One model on a provider whose base path is `/inference`; `extra` is appended.
fn model(extra: &str) -> Model {
    let yaml = format!(
        "providers:\n  - {{ name: hosted, base_url: 'https://api.example.com/inference' }}\n\
         models:\n  - {{ name: gpt-4o-mini, providers: [{{ provider: hosted, weight: 1 }}] }}\n\
         \x20 - {{ name: gpt-4o, providers: [{{ provider: hosted, weight: 1 }}] }}\n{extra}"
    );
    Model::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn anonymous(extra: &str) -> Model {
    model(&format!("{extra}filter: {{ auth: {{ anonymous: {{}} }} }}\n"))
}

fn snapshot(model: &Model) -> Snapshot {
    let filter = model.filter_config().unwrap();
    let unhealthy = BTreeSet::new();
    compile(&Inputs { model, filter: &filter, secrets: &Secrets::default(), unhealthy: &unhealthy, wasm_path: "/w" })
}

fn routes(model: &Model) -> Vec<Route> {
    let snapshot = snapshot(model);
    let any = &snapshot.get(ROUTE).unwrap().resources[ROUTE_CONFIG_NAME];
    let config = RouteConfiguration::decode(any.value.as_slice()).unwrap();
    config.virtual_hosts[0].routes.clone()
}

fn route<'a>(routes: &'a [Route], name: &str) -> &'a Route {
    routes.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no route {name}"))
}

/// A direct response's status and JSON body.
fn answer(route: &Route) -> (u32, serde_json::Value) {
    let Some(Action::DirectResponse(direct)) = &route.action else { panic!("{}: not a direct response", route.name) };
    let Some(Specifier::InlineString(body)) = direct.body.as_ref().and_then(|b| b.specifier.clone()) else {
        panic!("no inline body")
    };
    (direct.status, serde_json::from_str(&body).unwrap())
}

fn path_regex(route: &Route) -> String {
    match route.r#match.as_ref().and_then(|m| m.path_specifier.clone()) {
        Some(PathSpecifier::SafeRegex(r)) => r.regex,
        other => panic!("{}: {other:?}", route.name),
    }
}

#[test]
fn only_the_api_paths_route_and_everything_else_is_an_openai_404() {
    let routes = routes(&anonymous(""));
    let names: Vec<_> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["models", "model:gpt-4o-mini", "model:gpt-4o", "model_not_found", "not_found"]);
    let model_route = route(&routes, "model:gpt-4o-mini");
    assert_eq!(path_regex(model_route), r"(/v1/chat/completions|/v1/completions|/v1/embeddings)");
    assert_eq!(path_regex(route(&routes, "model_not_found")), path_regex(model_route));
    let (status, body) = answer(route(&routes, "model_not_found"));
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(
        (&body["error"]["type"], &body["error"]["param"]),
        (&"invalid_request_error".into(), &serde_json::Value::Null)
    );
    let not_found = route(&routes, "not_found");
    assert_eq!(not_found.r#match.as_ref().unwrap().path_specifier, Some(PathSpecifier::Prefix("/".into())));
    let (status, body) = answer(not_found);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert!(body["error"]["message"].is_string(), "{body}");
    // The provider's base path replaces the matched path's `/v1/` prefix only.
    let Some(Action::Route(action)) = &model_route.action else { panic!() };
    let rewrite = action.regex_rewrite.as_ref().unwrap();
    assert_eq!(
        (rewrite.pattern.as_ref().unwrap().regex.as_str(), rewrite.substitution.as_str()),
        ("^/v1/", "/inference/")
    );
    assert!(action.prefix_rewrite.is_empty());
}

#[test]
fn get_v1_models_lists_the_configured_models() {
    let routes = routes(&anonymous(""));
    let models = route(&routes, "models");
    let matcher = models.r#match.as_ref().unwrap();
    assert_eq!(matcher.path_specifier, Some(PathSpecifier::Path("/v1/models".into())));
    assert_eq!(matcher.headers[0].name, ":method", "GET only; other methods fall through to 404");
    let (status, body) = answer(models);
    assert_eq!(status, 200);
    let ids: Vec<_> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!((body["object"].as_str(), ids), (Some("list"), vec!["gpt-4o-mini", "gpt-4o"]));
    let routes = self::routes(&anonymous("api: { list_models: false }\n"));
    assert!(!routes.iter().any(|r| r.name == "models"));
}

#[test]
fn a_catch_all_model_is_explicit_and_configured_paths_are_escaped() {
    let routes = routes(&anonymous("api: { fallback_model: gpt-4o, paths: [/v1/chat/completions, /v1/x.y] }\n"));
    let names: Vec<_> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["models", "model:gpt-4o-mini", "model:gpt-4o", "fallback", "model_not_found", "not_found"]);
    let fallback = route(&routes, "fallback");
    assert!(fallback.r#match.as_ref().unwrap().headers.is_empty(), "any model, or none");
    assert_eq!(fallback.action, route(&routes, "model:gpt-4o").action);
    assert_eq!(path_regex(fallback), r"(/v1/chat/completions|/v1/x\.y)");
}

fn manager(model: &Model) -> HttpConnectionManager {
    let snapshot = snapshot(model);
    let any = &snapshot.get(LISTENER).unwrap().resources[LISTENER_NAME];
    let listener = Listener::decode(any.value.as_slice()).unwrap();
    let Some(address::Address::SocketAddress(socket)) = listener.address.as_ref().and_then(|a| a.address.clone())
    else {
        panic!("no socket address")
    };
    assert_eq!(socket.address, model.listener.address);
    let Some(FilterConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type else { panic!() };
    HttpConnectionManager::decode(any.value.as_slice()).unwrap()
}

#[test]
fn the_listener_is_hardened_by_envoys_own_config() {
    let model = anonymous("");
    assert_eq!(model.listener.address, "127.0.0.1", "loopback by default");
    let hcm = manager(&model);
    assert_eq!(hcm.use_remote_address.map(|b| b.value), Some(true));
    assert_eq!(hcm.xff_num_trusted_hops, 0);
    assert_eq!(hcm.normalize_path.map(|b| b.value), Some(true));
    assert!(hcm.merge_slashes);
    assert_eq!(hcm.path_with_escaped_slashes_action, PathWithEscapedSlashesAction::RejectRequest as i32);
    let [early] = hcm.early_header_mutation_extensions.as_slice() else { panic!("one early mutation") };
    let mutation = HeaderMutation::decode(early.typed_config.as_ref().unwrap().value.as_slice()).unwrap();
    let text = format!("{mutation:?}");
    for header in reserved_request_headers() {
        assert!(text.contains(&format!("Remove(\"{header}\")")), "{header} not removed: {text}");
    }
    assert!(reserved_request_headers().contains(&MODEL_HEADER));
    assert!(text.contains("Prefix(\"x-aurelis-\")"), "{text}");
    let hops = anonymous("listener: { xff_num_trusted_hops: 1 }\n");
    assert_eq!(manager(&hops).xff_num_trusted_hops, 1);
}

#[test]
fn a_jwt_section_puts_jwt_authn_ahead_of_the_filter() {
    let names = |m: &Model| manager(m).http_filters.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert!(!names(&anonymous("")).iter().any(|n| n == JWT_FILTER_NAME));
    let jwt = format!(
        "jwt: {{ issuer: https://issuer.example, audiences: [aurelis], jwks: '{JWKS}' }}\n\
         filter: {{ auth: {{ jwt: {{ tenant_claim: org }} }} }}\n"
    );
    let model = model(&jwt);
    let names = names(&model);
    let at = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("{n} not in {names:?}"));
    assert!(at(JWT_FILTER_NAME) + 1 == at(FILTER_NAME), "{names:?}");
    assert_eq!(JWT_FILTER_NAME, aurelis_core::auth::JWT_METADATA_NAMESPACE);
    let hcm = manager(&model);
    let filter = hcm.http_filters.iter().find(|f| f.name == JWT_FILTER_NAME).unwrap();
    let Some(http_filter::ConfigType::TypedConfig(any)) = &filter.config_type else { panic!() };
    let config = JwtAuthentication::decode(any.value.as_slice()).unwrap();
    let provider = &config.providers["aurelis"];
    assert_eq!(provider.issuer, "https://issuer.example");
    assert_eq!(provider.audiences, ["aurelis"]);
    assert_eq!(provider.payload_in_metadata, aurelis_core::auth::JWT_PAYLOAD_KEY);
    assert!(provider.require_expiration && !provider.forward, "no eternal tokens; the token is not forwarded");
    let Some(JwksSourceSpecifier::LocalJwks(jwks)) = &provider.jwks_source_specifier else { panic!() };
    assert_eq!(jwks.specifier, Some(Specifier::InlineString(JWKS.into())));
    let Some(RequirementType::Requires(requirement)) = &config.rules[0].requirement_type else { panic!() };
    let Some(RequiresType::RequiresAny(any)) = &requirement.requires_type else { panic!("{requirement:?}") };
    let kinds: Vec<_> = any.requirements.iter().map(|r| r.requires_type.clone().unwrap()).collect();
    assert_eq!(kinds[0], RequiresType::ProviderName("aurelis".into()));
    assert!(matches!(kinds[1], RequiresType::AllowMissingOrFailed(_)), "API-key clients pass on to the filter");
}

fn failure_policy_of(model: &Model) -> i32 {
    let snapshot = snapshot(model);
    let any = &snapshot.get(EXTENSION_CONFIG).unwrap().resources[FILTER_NAME];
    let config = TypedExtensionConfig::decode(any.value.as_slice()).unwrap();
    let wasm = Wasm::decode(config.typed_config.unwrap().value.as_slice()).unwrap();
    wasm.config.unwrap().failure_policy
}

#[test]
fn the_filter_fails_closed_when_it_authenticates_clients() {
    assert_eq!(failure_policy_of(&anonymous("")), FailurePolicy::FailOpen as i32);
    let keyed = model(&format!("filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{DIGEST}'] }}] }} }}\n"));
    assert_eq!(failure_policy_of(&keyed), FailurePolicy::FailReload as i32);
}

fn removed_headers(model: &Model) -> Vec<String> {
    let routes = routes(model);
    let Some(Action::Route(action)) = &route(&routes, "model:gpt-4o-mini").action else { panic!() };
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &action.cluster_specifier else { panic!() };
    weighted.clusters[0].request_headers_to_remove.clone()
}

#[test]
fn gateway_keys_never_reach_a_provider() {
    let keyed = model(&format!("filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{DIGEST}'] }}] }} }}\n"));
    assert_eq!(removed_headers(&keyed), CLIENT_CREDENTIAL_HEADERS);
    assert_eq!(CLIENT_CREDENTIAL_HEADERS, ["authorization", "api-key", "x-api-key"]);
    // Whatever the filter config: the routes do not change when keys come and go.
    assert_eq!(removed_headers(&anonymous("")), CLIENT_CREDENTIAL_HEADERS);
    assert_eq!(routes(&keyed), routes(&anonymous("")));
}

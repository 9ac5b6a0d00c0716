//! RDS: the client API surface and one route per model. In match order:
//! 1. `GET /v1/models`: Envoy answers with the configured models (`api.list_models`).
//! 2. Per model: an API path (`api.paths`, exact) and the `x-aurelis-model` header the filter
//!    copies from the request body (Envoy removed any client-sent one before filters run, see
//!    `listener`), split across providers by weight (Envoy weighted clusters).
//! 3. `api.fallback_model`, when configured: the API paths without a model condition.
//! 4. The API paths again: 404 `model_not_found` (no model, or one not configured).
//! 5. Everything else: 404 `not_found`, so the gateway relays nothing but the declared API.
//!
//! The clients' `/v1` prefix is replaced by a provider's base path.
use super::answers::{json_route, models_list, openai_error};
use super::proto::seconds;
use crate::model::{HeaderSpec, Model, ModelRoute, Provider, Secrets, UpstreamLimits, MODELS_PATH};
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::retry_policy::{
    retry_host_predicate::ConfigType as RetryHostPredicateConfig, retry_priority::ConfigType as RetryPriorityConfig,
    RetryHostPredicate, RetryPriority,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
    route_action::HostRewriteSpecifier, route_match::PathSpecifier, weighted_cluster::ClusterWeight, HeaderMatcher,
    RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatchAndSubstitute, RegexMatcher, StringMatcher,
};
use envoy_types::pb::google::protobuf::BoolValue;

/// The header the filter sets from the body's `model` (and clears when a client sends it):
/// the filter's own constant, so the two sides cannot drift apart.
pub use aurelis_core::routing::MODEL_HEADER;
/// The path prefix OpenAI-compatible clients use, which a provider's base path replaces.
const CLIENT_PREFIX: &str = "/v1/";
/// The headers a client presents its API key in: the filter's own list
/// (`aurelis_core::auth::KEY_HEADERS`), so the two cannot drift apart. They never reach a provider: the filter refuses any key
/// that is not a consumer's (anonymous access included), so what arrives here is a gateway key,
/// and a verified JWT was already removed by `jwt_authn`. Not depending on the filter config
/// also keeps the routes unchanged when keys come and go.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 3] = aurelis_core::auth::KEY_HEADERS;

pub fn route_configuration(name: &str, model: &Model, secrets: &Secrets) -> RouteConfiguration {
    let mut routes = Vec::new();
    if model.api.list_models {
        let names: Vec<&str> = model.models.iter().map(|m| m.name.as_str()).collect();
        routes.push(json_route("models", exact_path(MODELS_PATH, Some("GET")), 200, models_list(&names)));
    }
    for m in &model.models {
        let mut matcher = api_paths(model);
        matcher.headers.push(exact_header(MODEL_HEADER, &m.name));
        routes.push(Route {
            name: format!("model:{}", m.name),
            r#match: Some(matcher),
            action: Some(Action::Route(route_action(model, m, secrets))),
            ..Default::default()
        });
    }
    if let Some(fallback) = model.api.fallback_model.as_ref().and_then(|f| model.models.iter().find(|m| &m.name == f)) {
        routes.push(Route {
            name: "fallback".into(),
            r#match: Some(api_paths(model)),
            action: Some(Action::Route(route_action(model, fallback, secrets))),
            ..Default::default()
        });
    }
    routes.push(json_route(
        "model_not_found",
        api_paths(model),
        404,
        openai_error("The model named in the request does not exist on this gateway.", "model_not_found"),
    ));
    routes.push(json_route(
        "not_found",
        RouteMatch { path_specifier: Some(PathSpecifier::Prefix("/".into())), ..Default::default() },
        404,
        openai_error("Unknown path: this gateway serves the OpenAI-compatible API under /v1/.", "not_found"),
    ));
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "llm".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        // A refresh grant is for the filter only (`aurelis_core::refresh`), which removes it;
        // removed here again by the router, so it never reaches a provider even when the filter
        // did not run (a failed VM that fails open).
        request_headers_to_remove: vec![aurelis_core::refresh::GRANT_HEADER.to_string()],
        ..Default::default()
    }
}

/// Any of the API paths, exactly (Envoy matches the path without its query string). One RE2
/// pattern per route rather than one route per path: the route table grows with the models only.
fn api_paths(model: &Model) -> RouteMatch {
    // Validation allows letters, digits and `/_-.` only; `.` is the one RE2 metacharacter.
    let alternatives: Vec<String> = model.api.paths.iter().map(|p| p.replace('.', "\\.")).collect();
    RouteMatch {
        path_specifier: Some(PathSpecifier::SafeRegex(RegexMatcher {
            regex: format!("({})", alternatives.join("|")),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn exact_path(path: &str, method: Option<&str>) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Path(path.into())),
        headers: method.map(|m| exact_header(":method", m)).into_iter().collect(),
        ..Default::default()
    }
}

fn exact_header(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The pushed value: resolved by the control plane, or a reference Envoy resolves itself.
pub(super) fn header_value(provider: &Provider, header: &HeaderSpec, secrets: &Secrets) -> Option<String> {
    if header.envoy_env.is_empty() {
        // Envoy's header values are format strings: a literal `%` is written `%%`.
        secrets.get(&provider.name, &header.name).map(|v| v.replace('%', "%%"))
    } else {
        // `%` in the prefix would start a formatter command: escape it as `%%`.
        Some(format!("{}%ENVIRONMENT({})%", header.prefix.replace('%', "%%"), header.envoy_env))
    }
}

fn route_action(model: &Model, route: &ModelRoute, secrets: &Secrets) -> RouteAction {
    let providers: Vec<_> =
        route.providers.iter().filter_map(|w| model.provider(&w.provider).map(|p| (p, w.weight))).collect();
    // More than one provider: each weighted cluster is a failover cluster, whose upstream
    // filters add the credentials of whichever provider answers the attempt (`failover`).
    let fails_over = super::failover::fails_over(route);
    let clusters = providers
        .iter()
        .map(|(provider, weight)| ClusterWeight {
            name: if fails_over {
                super::failover::cluster_name(&route.name, &provider.name)
            } else {
                provider.name.clone()
            },
            weight: super::proto::u32v(*weight),
            request_headers_to_add: if fails_over { Vec::new() } else { credential_headers(provider, secrets) },
            // Removed on the weighted cluster itself: Envoy removes before it adds at one level,
            // so a provider credential injected above under the same name survives.
            request_headers_to_remove: CLIENT_CREDENTIAL_HEADERS.map(String::from).to_vec(),
            ..Default::default()
        })
        .collect();
    // Validation guarantees one base path per model, and the same TLS-ness decides host rewriting.
    let base = providers.first().map(|(p, _)| p.base());
    let path = base.as_ref().map(|b| b.path.clone()).unwrap_or_default();
    let limits = providers.first().map(|(p, _)| p.limits.clone()).unwrap_or_default();
    let timeout = providers.iter().map(|(p, _)| p.limits.request_timeout_s).max().unwrap_or(limits.request_timeout_s);
    let idle =
        providers.iter().map(|(p, _)| p.limits.stream_idle_timeout_s).max().unwrap_or(limits.stream_idle_timeout_s);
    let dns = providers.iter().any(|(p, _)| !p.uses_eds());
    RouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster { clusters, ..Default::default() })),
        // The path matched exactly, so its `/v1/` prefix is there to replace (Envoy's
        // `prefix_rewrite` would replace the whole of an exactly matched path).
        regex_rewrite: (format!("{path}/") != CLIENT_PREFIX && !path.is_empty()).then(|| RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher { regex: format!("^{CLIENT_PREFIX}"), ..Default::default() }),
            substitution: format!("{path}/"),
        }),
        // Public providers route on the Host header: send theirs, not the gateway's.
        host_rewrite_specifier: dns.then_some(HostRewriteSpecifier::AutoHostRewrite(BoolValue { value: true })),
        timeout: seconds(timeout),
        idle_timeout: seconds(idle),
        retry_policy: Some(retry_policy(&limits, fails_over)),
        ..Default::default()
    }
}

/// The provider's own headers (credentials), as a weighted cluster adds them.
fn credential_headers(provider: &Provider, secrets: &Secrets) -> Vec<HeaderValueOption> {
    provider
        .headers
        .iter()
        .filter_map(|h| header_value(provider, h, secrets).map(|value| (h, value)))
        .map(|(h, value)| HeaderValueOption {
            header: Some(HeaderValue { key: h.name.clone(), value, ..Default::default() }),
            // The provider's credential replaces whatever the client sent.
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}

/// The status a provider refuses with when its quota is spent: retried on the next provider.
const QUOTA_STATUS: u32 = 429;

fn retry_policy(limits: &UpstreamLimits, fails_over: bool) -> RetryPolicy {
    let mut policy = RetryPolicy {
        retry_on: limits.retry_on.clone(),
        num_retries: super::proto::u32v(limits.num_retries),
        // A retry goes to another endpoint when there is one: the one that just failed is
        // the likeliest to fail again.
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(RetryHostPredicateConfig::TypedConfig(super::proto::any(
                &PreviousHostsPredicate::default(),
            ))),
        }],
        host_selection_retry_max_attempts: 3,
        ..Default::default()
    };
    if fails_over {
        // One retry, on the next provider (the next priority of the failover cluster): a 429
        // from a provider out of quota, or the limits' own conditions. Never more than one, so
        // no provider is asked twice and two refusals end in one answer to the client.
        if !policy.retry_on.split(',').any(|c| c.trim() == "retriable-status-codes") {
            let conditions: Vec<&str> =
                [policy.retry_on.as_str(), "retriable-status-codes"].into_iter().filter(|c| !c.is_empty()).collect();
            policy.retry_on = conditions.join(",");
        }
        policy.retriable_status_codes = vec![QUOTA_STATUS];
        policy.num_retries = super::proto::u32v(limits.num_retries.min(1));
        policy.retry_priority = Some(RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".into(),
            config_type: Some(RetryPriorityConfig::TypedConfig(super::proto::any(&PreviousPrioritiesConfig {
                update_frequency: 1,
            }))),
        });
    }
    policy
}

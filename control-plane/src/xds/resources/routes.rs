//! RDS: one route per model, matched on the `x-aurelis-model` header the filter copies from the
//! request body, split across providers by weight (Envoy weighted clusters). Requests without a
//! model header (e.g. `GET /v1/models`) or with an unknown model take the first model's route.
//! Everything is under `/v1/`, the OpenAI-compatible prefix, which a provider's base path replaces.
use super::proto::seconds;
use crate::model::{HeaderSpec, Model, ModelRoute, Provider, Secrets};
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::retry_policy::{
    retry_host_predicate::ConfigType as RetryHostPredicateConfig, RetryHostPredicate,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
    route_action::HostRewriteSpecifier, route_match::PathSpecifier, weighted_cluster::ClusterWeight, HeaderMatcher,
    RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::BoolValue;

/// The header the filter sets from the body's `model` (and clears when a client sends it):
/// the filter's own constant, so the two sides cannot drift apart.
pub use aurelis_core::routing::MODEL_HEADER;
/// The path prefix OpenAI-compatible clients use.
const CLIENT_PREFIX: &str = "/v1/";

pub fn route_configuration(name: &str, model: &Model, secrets: &Secrets) -> RouteConfiguration {
    let mut routes: Vec<Route> = model
        .models
        .iter()
        .map(|m| Route {
            name: format!("model:{}", m.name),
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix(CLIENT_PREFIX.into())),
                headers: vec![HeaderMatcher {
                    name: MODEL_HEADER.into(),
                    header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                        match_pattern: Some(MatchPattern::Exact(m.name.clone())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            action: Some(Action::Route(route_action(model, m, secrets))),
            ..Default::default()
        })
        .collect();
    if let Some(default) = model.models.first() {
        routes.push(Route {
            name: "default".into(),
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix(CLIENT_PREFIX.into())),
                ..Default::default()
            }),
            action: Some(Action::Route(route_action(model, default, secrets))),
            ..Default::default()
        });
    }
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "llm".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The pushed value: resolved by the control plane, or a reference Envoy resolves itself.
fn header_value(provider: &Provider, header: &HeaderSpec, secrets: &Secrets) -> Option<String> {
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
    let clusters = providers
        .iter()
        .map(|(provider, weight)| ClusterWeight {
            name: provider.name.clone(),
            weight: super::proto::u32v(*weight),
            request_headers_to_add: provider
                .headers
                .iter()
                .filter_map(|h| header_value(provider, h, secrets).map(|value| (h, value)))
                .map(|(h, value)| HeaderValueOption {
                    header: Some(HeaderValue { key: h.name.clone(), value, ..Default::default() }),
                    // The provider's credential replaces whatever the client sent.
                    append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                    ..Default::default()
                })
                .collect(),
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
        prefix_rewrite: if format!("{path}/") == CLIENT_PREFIX || path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        },
        // Public providers route on the Host header: send theirs, not the gateway's.
        host_rewrite_specifier: dns.then_some(HostRewriteSpecifier::AutoHostRewrite(BoolValue { value: true })),
        timeout: seconds(timeout),
        idle_timeout: seconds(idle),
        retry_policy: Some(RetryPolicy {
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
        }),
        ..Default::default()
    }
}

//! Failover between the providers of one model: a request a provider refuses with 429 (or a
//! 5xx, a reset) is retried once on the next provider, never back on the same one.
//!
//! Shape: per model with more than one provider and per provider P, an aggregate cluster
//! `[P, the model's other providers in the file's order]` is the weighted-cluster target instead of
//! P's own cluster. Envoy's aggregate cluster makes each member a priority level; the route's
//! retry policy (`previous_priorities`, one retry) sends the retry to the next level, so every
//! provider is asked at most once. Models with one provider keep routing to its cluster.
//!
//! The route no longer knows which provider answers an attempt, so the per-provider request
//! headers (credentials) move into the aggregate cluster's upstream filters, which Envoy runs
//! per attempt after the host is chosen. Checked against Envoy 1.40: the upstream filters of the
//! cluster the route names run (the aggregate's), not those of the member that answers, so
//! each provider's `header_mutation` is wrapped in a matcher that skips it unless the chosen
//! host's endpoint metadata names that provider (a CEL match; a host without it skips every
//! credential: fail closed). Their changes outlive the attempt (the retry reuses the mutated
//! headers), so a first filter removes every provider header of the model on each attempt. A last filter writes the answering provider into the response
//! (`PROVIDER_HEADER`) so the telemetry attributes the request to it: Envoy reports the
//! aggregate as `upstream_cluster`.
use super::cel::{upstream_host_metadata_is, HttpAttributesCelMatchInput};
use super::clusters::{circuit_breakers, protocol_options, PROVIDER_METADATA};
use super::proto::{any, millis};
use super::routes::header_value;
use crate::model::{Model, ModelRoute, Provider, Secrets};
use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, CustomClusterType, LbPolicy},
    Cluster,
};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation::Action, HeaderMutation};
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
use envoy_types::pb::envoy::extensions::common::matching::v3::ExtensionWithMatcher;
use envoy_types::pb::envoy::extensions::filters::common::matcher::action::v3::SkipFilter;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutation as HeaderMutationFilter, Mutations,
};
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::xds::core::v3::TypedExtensionConfig as XdsExtension;
use envoy_types::pb::xds::r#type::matcher::v3::{
    matcher::{
        matcher_list::{
            predicate::{single_predicate, MatchType, SinglePredicate},
            FieldMatcher, Predicate,
        },
        on_match, MatcherList, MatcherType, OnMatch,
    },
    Matcher,
};
use std::collections::HashMap;

/// The response header naming the provider that answered (set by Envoy, never by a client or
/// provider: ours overwrites one a provider sends).
pub const PROVIDER_HEADER: &str = "x-aurelis-provider";

/// Whether a model's requests fail over (more than one provider).
pub fn fails_over(route: &ModelRoute) -> bool {
    route.providers.len() > 1
}

/// Whether Envoy's `upstream_cluster` is one of these aggregates: only then was
/// `PROVIDER_HEADER` written by our own upstream filter (overwriting anything a provider sent).
pub fn is_failover_cluster(cluster: &str) -> bool {
    cluster.starts_with("failover:")
}

/// The aggregate cluster a model's weighted cluster names for `provider`. Model ids may hold
/// `.` or `/` (`openai/gpt-4.1`), and dots split Envoy's stat names: anything but letters,
/// digits, `_` and `-` becomes `_`, and a hash of the id keeps two such ids apart.
pub fn cluster_name(model: &str, provider: &str) -> String {
    let plain: String =
        model.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if plain == model {
        format!("failover:{model}:{provider}")
    } else {
        format!("failover:{plain}_{:08x}:{provider}", fnv1a(model) as u32)
    }
}

/// FNV-1a: stable across builds and platforms, so names (and CDS versions) are too.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Every failover cluster of the model, in model and provider order.
pub fn clusters(model: &Model, secrets: &Secrets) -> Vec<Cluster> {
    let mut out = Vec::new();
    for route in model.models.iter().filter(|m| fails_over(m)) {
        // In the order the file declares providers, not the route's: a weight change (which
        // may rewrite the route's list) leaves the clusters, hence CDS, untouched.
        let providers: Vec<&Provider> =
            model.providers.iter().filter(|p| route.providers.iter().any(|w| w.provider == p.name)).collect();
        for first in &providers {
            let order: Vec<String> = std::iter::once(first.name.clone())
                .chain(providers.iter().filter(|p| p.name != first.name).map(|p| p.name.clone()))
                .collect();
            out.push(aggregate(&cluster_name(&route.name, &first.name), first, order, &providers, secrets));
        }
    }
    out
}

fn aggregate(name: &str, first: &Provider, order: Vec<String>, providers: &[&Provider], secrets: &Secrets) -> Cluster {
    let mut options = protocol_options(first.protocol, first.base().tls);
    options.http_filters = clear_credentials(providers).into_iter().collect();
    options.http_filters.extend(providers.iter().filter_map(|p| credentials_filter(p, secrets)));
    options.http_filters.push(upstream_filter(
        "aurelis.provider",
        any(&HeaderMutationFilter {
            mutations: Some(Mutations {
                response_mutations: vec![append(
                    PROVIDER_HEADER,
                    format!("%UPSTREAM_METADATA({}:{})%", PROVIDER_METADATA.0, PROVIDER_METADATA.1),
                )],
                ..Default::default()
            }),
            ..Default::default()
        }),
    ));
    options.http_filters.push(upstream_filter("envoy.filters.http.upstream_codec", any(&UpstreamCodec::default())));
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: "envoy.clusters.aggregate".into(),
            typed_config: Some(any(&ClusterConfig { clusters: order })),
        })),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: millis(first.limits.connect_timeout_ms),
        circuit_breakers: Some(circuit_breakers(&first.limits)),
        typed_extension_protocol_options: HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&options),
        )]),
        ..Default::default()
    }
}

fn append(name: &str, value: String) -> HeaderMutation {
    HeaderMutation {
        action: Some(Action::Append(HeaderValueOption {
            header: Some(HeaderValue { key: name.to_string(), value, ..Default::default() }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })),
    }
}

fn upstream_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// Removes every provider header of the model before each attempt. Envoy's upstream filters
/// change the request headers the router keeps for retries (seen with Envoy 1.40: the first
/// provider's `authorization` reached the second on the retry), so each attempt starts clean.
fn clear_credentials(providers: &[&Provider]) -> Option<HttpFilter> {
    let names: std::collections::BTreeSet<String> =
        providers.iter().flat_map(|p| p.headers.iter().map(|h| h.name.to_ascii_lowercase())).collect();
    if names.is_empty() {
        return None;
    }
    let request_mutations =
        names.into_iter().map(|name| HeaderMutation { action: Some(Action::Remove(name)) }).collect();
    let mutation = HeaderMutationFilter {
        mutations: Some(Mutations { request_mutations, ..Default::default() }),
        ..Default::default()
    };
    Some(upstream_filter("aurelis.credentials.clear", any(&mutation)))
}

/// The provider's headers, applied only when the attempt's host is one of its endpoints.
fn credentials_filter(provider: &Provider, secrets: &Secrets) -> Option<HttpFilter> {
    let request_mutations: Vec<HeaderMutation> = provider
        .headers
        .iter()
        .filter_map(|h| header_value(provider, h, secrets).map(|value| append(&h.name, value)))
        .collect();
    if request_mutations.is_empty() {
        return None;
    }
    let mutation = HeaderMutationFilter {
        mutations: Some(Mutations { request_mutations, ..Default::default() }),
        ..Default::default()
    };
    let (namespace, key) = PROVIDER_METADATA;
    // Skip unless the host is this provider's: an evaluation error (no metadata) skips too.
    let not_this_provider = Predicate {
        match_type: Some(MatchType::NotMatcher(Box::new(Predicate {
            match_type: Some(MatchType::SinglePredicate(SinglePredicate {
                input: Some(XdsExtension {
                    name: "cel".into(),
                    typed_config: Some(any(&HttpAttributesCelMatchInput {})),
                }),
                matcher: Some(single_predicate::Matcher::CustomMatch(XdsExtension {
                    name: "cel".into(),
                    typed_config: Some(any(&upstream_host_metadata_is(namespace, key, &provider.name))),
                })),
            })),
        }))),
    };
    let skip = OnMatch {
        on_match: Some(on_match::OnMatch::Action(XdsExtension {
            name: "skip".into(),
            typed_config: Some(any(&SkipFilter {})),
        })),
        ..Default::default()
    };
    let matcher = Matcher {
        matcher_type: Some(MatcherType::MatcherList(MatcherList {
            matchers: vec![FieldMatcher { predicate: Some(not_this_provider), on_match: Some(skip) }],
        })),
        ..Default::default()
    };
    let wrapped = ExtensionWithMatcher {
        xds_matcher: Some(matcher),
        extension_config: Some(TypedExtensionConfig {
            name: "envoy.filters.http.header_mutation".into(),
            typed_config: Some(any(&mutation)),
        }),
        ..Default::default()
    };
    Some(upstream_filter(&format!("aurelis.credentials.{}", provider.name), any(&wrapped)))
}

#[cfg(test)]
mod tests {
    use super::cluster_name;

    #[test]
    fn cluster_names_are_plain_stat_names_and_distinct() {
        assert_eq!(cluster_name("gpt-4o-mini", "main"), "failover:gpt-4o-mini:main");
        let dotted = cluster_name("openai/gpt-4.1", "main");
        assert!(dotted.starts_with("failover:openai_gpt-4_1_") && !dotted.contains('.'), "{dotted}");
        assert_ne!(dotted, cluster_name("openai_gpt-4_1", "main"));
        assert_ne!(dotted, cluster_name("openai/gpt-4_1", "main"));
    }
}

//! Envoy's own stats for the control plane: the metrics-service stat sink
//! (`envoy.stat_sinks.metrics_service`) streaming a bounded set of stats to the control
//! plane's `MetricsService` over the ADS cluster (so with the same TLS, client certificate and
//! node identity as xDS and the access log), once per stats flush.
//!
//! Envoy has no per-sink filter: the only way to bound what the sink sends is the bootstrap's
//! `stats_matcher`, which decides which stats exist at all (also on `/stats` and
//! `/stats/prometheus`). The inclusion list therefore keeps every family an operator, the
//! Grafana dashboard or the adaptive loops read (listeners, HTTP connection managers,
//! clusters, the overload manager, xDS, the filter's own stats) and drops the rest (virtual
//! hosts, codecs, TLS, watchdogs, DNS, file system, Wasm VM internals).
use super::bootstrap::ADS_CLUSTER;
use super::proto::any;
use envoy_types::pb::envoy::config::core::v3::{
    grpc_service::{EnvoyGrpc, TargetSpecifier},
    ApiVersion, GrpcService,
};
use envoy_types::pb::envoy::config::metrics::v3::{
    stats_matcher, stats_sink, HistogramEmitMode, MetricsServiceConfig, StatsMatcher, StatsSink,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, ListStringMatcher, StringMatcher};

/// How often Envoys flush stats to the sink by default (Envoy's own default): the control
/// plane's view of a counter is at most this old.
pub const DEFAULT_STATS_FLUSH_MS: u64 = 5000;

/// The stat families Envoys create (and so send): name prefixes.
pub const STATS_INCLUDED_PREFIXES: [&str; 12] = [
    "cluster.",
    "cluster_manager.",
    "control_plane.",
    "extension_config_discovery.",
    "http.",
    "listener.",
    "listener_manager.",
    "overload.",
    "runtime.",
    "server.",
    "wasmcustom.aurelis_",
    "dynamicmodulescustom.aurelis_",
];

pub fn stats_matcher() -> StatsMatcher {
    let patterns = STATS_INCLUDED_PREFIXES
        .iter()
        .map(|prefix| StringMatcher {
            match_pattern: Some(MatchPattern::Prefix(prefix.to_string())),
            ..Default::default()
        })
        .collect();
    StatsMatcher { stats_matcher: Some(stats_matcher::StatsMatcher::InclusionList(ListStringMatcher { patterns })) }
}

pub fn metrics_service_sink() -> StatsSink {
    let config = MetricsServiceConfig {
        grpc_service: Some(GrpcService {
            target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                cluster_name: ADS_CLUSTER.into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        transport_api_version: ApiVersion::V3 as i32,
        // Cumulative counters (the default): a lost message loses nothing, the control plane
        // takes differences itself.
        report_counters_as_deltas: None,
        // Quantiles only: nothing reads the buckets, and they are most of a histogram's bytes.
        histogram_emit_mode: HistogramEmitMode::Summary as i32,
        ..Default::default()
    };
    StatsSink {
        name: "envoy.stat_sinks.metrics_service".into(),
        config_type: Some(stats_sink::ConfigType::TypedConfig(any(&config))),
    }
}

//! Fleet telemetry as Envoy configuration: the gateway listener's gRPC access log
//! (`envoy.access_loggers.http_grpc`) streaming per-request records to the control plane's
//! access log service, over the ADS cluster (so with the same TLS and client certificate as
//! xDS). Envoy batches records (`FLUSH_INTERVAL_MS`, `BUFFER_BYTES`): one gRPC message per
//! worker per flush, not one per request. Below a sample rate of 1 a runtime filter keeps that
//! share of requests, drawn independently per request.
use super::bootstrap::ADS_CLUSTER;
use super::proto::{any, millis, u32v};
use crate::model::TelemetrySpec;
use crate::telemetry::record::{FACTS_FILTER_STATE, REQUEST_HEADERS, RESPONSE_HEADERS};
use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log::ConfigType, access_log_filter::FilterSpecifier, comparison_filter, AccessLog, AccessLogFilter,
    ComparisonFilter, RuntimeFilter, StatusCodeFilter,
};
use envoy_types::pb::envoy::config::core::v3::RuntimeUInt32;
use envoy_types::pb::envoy::config::core::v3::{
    grpc_service::{EnvoyGrpc, TargetSpecifier},
    ApiVersion, GrpcService,
};
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};

/// The access log's `log_name` (Envoy keeps one stream per name and worker).
pub const TELEMETRY_LOG_NAME: &str = "aurelis_telemetry";
/// The router's per-attempt log (`upstream_log`): only attempts a provider refused with 429,
/// so a refusal the failover retry hid from the client still tells adaptive routing that the
/// provider is out of quota. Its records feed quota signals only, never the windows.
pub const ATTEMPTS_LOG_NAME: &str = "aurelis_attempts";
/// The status the attempts log keeps.
const QUOTA_STATUS: u32 = 429;
/// The runtime key an operator can override the sample rate with, per Envoy, without a push.
pub const SAMPLE_RUNTIME_KEY: &str = "aurelis.telemetry.sample_rate";
const FLUSH_INTERVAL_MS: u64 = 1000;
const BUFFER_BYTES: u32 = 64 * 1024;

/// The sampling filter for `rate`; `None` at 1.0 (every request, no filter to evaluate).
fn sampling(rate: f64) -> Option<AccessLogFilter> {
    if rate >= 1.0 {
        return None;
    }
    let per_million = (rate * 1_000_000.0).round().clamp(1.0, 1_000_000.0) as u32;
    Some(AccessLogFilter {
        filter_specifier: Some(FilterSpecifier::RuntimeFilter(RuntimeFilter {
            runtime_key: SAMPLE_RUNTIME_KEY.into(),
            percent_sampled: Some(FractionalPercent {
                numerator: per_million,
                denominator: DenominatorType::Million as i32,
            }),
            // Not tied to x-request-id: a client cannot steer which of its requests are seen.
            use_independent_randomness: true,
        })),
    })
}

pub fn fleet_access_log(spec: &TelemetrySpec) -> AccessLog {
    grpc_log(TELEMETRY_LOG_NAME, sampling(spec.sample_rate))
}

/// The router's upstream log of refused attempts (`ATTEMPTS_LOG_NAME`), unsampled: a 429 is
/// rare and each one matters.
pub fn fleet_attempt_log() -> AccessLog {
    let only_429 = AccessLogFilter {
        filter_specifier: Some(FilterSpecifier::StatusCodeFilter(StatusCodeFilter {
            comparison: Some(ComparisonFilter {
                op: comparison_filter::Op::Eq as i32,
                value: Some(RuntimeUInt32 {
                    default_value: QUOTA_STATUS,
                    runtime_key: "aurelis.telemetry.attempts_status".into(),
                }),
            }),
        })),
    };
    grpc_log(ATTEMPTS_LOG_NAME, Some(only_429))
}

fn grpc_log(log_name: &str, filter: Option<AccessLogFilter>) -> AccessLog {
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: log_name.into(),
            grpc_service: Some(GrpcService {
                target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                    cluster_name: ADS_CLUSTER.into(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
            buffer_flush_interval: millis(FLUSH_INTERVAL_MS),
            buffer_size_bytes: u32v(BUFFER_BYTES),
            // The Wasm filter's facts (the native module's are dynamic metadata, always logged).
            filter_state_objects_to_log: vec![FACTS_FILTER_STATE.into()],
            ..Default::default()
        }),
        additional_request_headers_to_log: REQUEST_HEADERS.iter().map(|h| h.to_string()).collect(),
        additional_response_headers_to_log: RESPONSE_HEADERS.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    };
    AccessLog {
        name: "envoy.access_loggers.http_grpc".into(),
        filter,
        config_type: Some(ConfigType::TypedConfig(any(&config))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_logged_at_rate_one_and_a_share_below() {
        assert_eq!(fleet_access_log(&TelemetrySpec::default()).filter, None);
        let sampled = fleet_access_log(&TelemetrySpec { sample_rate: 0.01, ..Default::default() });
        let Some(FilterSpecifier::RuntimeFilter(filter)) = sampled.filter.and_then(|f| f.filter_specifier) else {
            panic!("a runtime filter")
        };
        assert_eq!(
            filter.percent_sampled.map(|p| (p.numerator, p.denominator)),
            Some((10_000, DenominatorType::Million as i32))
        );
        assert!(filter.use_independent_randomness);
    }
}

//! One request as the control plane sees it, read from an Envoy access log entry (the gRPC
//! access log service). Pure: no I/O, and every field of the entry is optional, so a record
//! from another Envoy version or a request the filter never saw still reads (as `unknown`).
//!
//! Where a fact comes from: the filter's dynamic metadata (namespace `FACTS_NAMESPACE`) when
//! present, else the headers the filter always sets (`x-aurelis-model` on the request,
//! `x-aurelis-cache*` on the response), else Envoy's own (`upstream_cluster`, status, timings).
use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::google::protobuf::{value::Kind, BytesValue, Duration, Struct, Value};
use prost::Message;
use std::borrow::Cow;

/// The filter's per-request facts: dynamic metadata under this namespace (native module), or
/// the filter-state object `FACTS_FILTER_STATE` (Wasm), a `google.protobuf.Struct` either way.
pub const FACTS_NAMESPACE: &str = aurelis_core::flow::facts::NAMESPACE;
pub const FACTS_FILTER_STATE: &str = "wasm.aurelis";
/// Headers the access log config asks Envoy to include (`xds::resources::telemetry`).
pub const REQUEST_HEADERS: [&str; 1] = [aurelis_core::routing::MODEL_HEADER];
pub const RESPONSE_HEADERS: [&str; 10] = [
    aurelis_core::http::HEADER_CACHE,
    // The provider that answered when a failover cluster chose it (`xds::resources::failover`):
    // Envoy's `upstream_cluster` then names the failover cluster.
    crate::xds::resources::PROVIDER_HEADER,
    aurelis_core::http::HEADER_LEVEL,
    aurelis_core::http::HEADER_REASON,
    "content-type",
    // The provider's own quota signals, for adaptive routing (`adaptive::quota`).
    "retry-after",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

/// Why a request failed, as the report groups errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The provider answered 5xx.
    Provider5xx,
    /// The provider answered 429 (its own rate limit).
    Provider429,
    /// Envoy answered 5xx without a provider answer (timeout, connection failure, no endpoint).
    Gateway5xx,
    /// The filter's limiter refused the request (429 before any provider call).
    LimiterRefused,
    /// Any other 4xx: the client's request (unknown model, no key, malformed).
    Client4xx,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Provider5xx => "provider_5xx",
            ErrorClass::Provider429 => "provider_429",
            ErrorClass::Gateway5xx => "gateway_5xx",
            ErrorClass::LimiterRefused => "limiter_refused",
            ErrorClass::Client4xx => "client_4xx",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Request start, Unix milliseconds.
    pub start_ms: i64,
    pub model: String,
    pub provider: String,
    /// `HIT`, `MISS`, `BYPASS`, or `NONE` when the filter did not mark the answer.
    pub cache_status: String,
    pub level: Option<String>,
    pub bypass_reason: Option<String>,
    /// The tenant scope id (a hash the filter computed, never a key).
    pub tenant: Option<String>,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    /// From the first byte sent to the provider to its last byte back: the provider's share.
    pub upstream_ms: Option<f64>,
    pub streamed: bool,
    pub status: u32,
    pub error: Option<ErrorClass>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Evidence for the recommendations, by name. The filter's facts give `coalesced`; the
    /// rules also read `l2_timeout`, `coalesce_timeout` and `l1_eviction` once a source
    /// reports them per request (see docs/operations.md).
    pub events: Vec<String>,
    /// The provider said, in this answer, that it has no quota left until then (Unix ms).
    pub quota_exhausted_until_ms: Option<i64>,
    /// The provider endpoint (`ip:port`) that answered, when one did: per-endpoint load for
    /// the balancing rule (`adaptive::balancing`).
    pub upstream_host: Option<String>,
}

/// The provider of an answer no provider gave: a cache hit.
pub const CACHE_PROVIDER: &str = "cache";

/// Names longer than this are cut: a label, not a payload (it ends up in store keys).
const MAX_NAME: usize = 128;

fn name(value: &str) -> String {
    value.chars().take(MAX_NAME).collect()
}

fn millis(d: Option<&Duration>) -> Option<f64> {
    d.map(|d| d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1_000_000.0)
}

fn fact<'a>(facts: Option<&'a Struct>, key: &str) -> Option<&'a Kind> {
    facts.and_then(|s| s.fields.get(key)).and_then(|v: &Value| v.kind.as_ref())
}

fn fact_str(facts: Option<&Struct>, key: &str) -> Option<String> {
    match fact(facts, key)? {
        Kind::StringValue(s) if !s.is_empty() => Some(name(s)),
        _ => None,
    }
}

fn fact_u64(facts: Option<&Struct>, key: &str) -> Option<u64> {
    match fact(facts, key)? {
        Kind::NumberValue(n) if n.is_finite() && *n >= 0.0 => Some(*n as u64),
        Kind::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn fact_bool(facts: Option<&Struct>, key: &str) -> bool {
    matches!(fact(facts, key), Some(Kind::BoolValue(true)))
}

/// The facts Struct of an entry: dynamic metadata first, else the Wasm filter state, which
/// Envoy logs as an `Any` holding the Struct (or, from a host that could not declare its type,
/// raw bytes that may still be one).
fn facts_of(entry: &HttpAccessLogEntry) -> Option<Cow<'_, Struct>> {
    let common = entry.common_properties.as_ref()?;
    if let Some(facts) = common.metadata.as_ref().and_then(|m| m.filter_metadata.get(FACTS_NAMESPACE)) {
        return Some(Cow::Borrowed(facts));
    }
    let any = common.filter_state_objects.get(FACTS_FILTER_STATE)?;
    if any.type_url.ends_with("google.protobuf.BytesValue") {
        let bytes = BytesValue::decode(any.value.as_slice()).ok()?;
        return Struct::decode(bytes.value.as_slice()).ok().map(Cow::Owned);
    }
    Struct::decode(any.value.as_slice()).ok().map(Cow::Owned)
}

impl Record {
    pub fn from_entry(entry: &HttpAccessLogEntry) -> Record {
        let common = entry.common_properties.as_ref();
        let facts_struct = facts_of(entry);
        let facts = facts_struct.as_deref();
        let request_header =
            |h: &str| entry.request.as_ref().and_then(|r| r.request_headers.get(h)).filter(|v| !v.is_empty());
        let response_header =
            |h: &str| entry.response.as_ref().and_then(|r| r.response_headers.get(h)).filter(|v| !v.is_empty());
        let start_ms = common
            .and_then(|c| c.start_time.as_ref())
            .map(|t| t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos / 1_000_000)))
            .unwrap_or_default();
        let model = fact_str(facts, "model")
            .or_else(|| request_header(aurelis_core::routing::MODEL_HEADER).map(|m| name(m)))
            .unwrap_or_else(|| "unknown".into());
        let cache_status = fact_str(facts, "cache_status")
            .or_else(|| response_header(aurelis_core::http::HEADER_CACHE).map(|s| name(s)))
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_else(|| "NONE".into());
        let cluster = common.map(|c| c.upstream_cluster.as_str()).filter(|c| !c.is_empty());
        let provider =
            match answered_by(response_header(crate::xds::resources::PROVIDER_HEADER).map(String::as_str), cluster) {
                _ if cache_status == "HIT" => CACHE_PROVIDER.to_string(),
                Some(answered) => name(answered),
                None => "none".into(),
            };
        let level = fact_str(facts, "cache_level")
            .or_else(|| response_header(aurelis_core::http::HEADER_LEVEL).map(|s| name(s)));
        let bypass_reason = fact_str(facts, "bypass_reason")
            .or_else(|| response_header(aurelis_core::http::HEADER_REASON).map(|s| name(s)))
            .filter(|_| cache_status == "BYPASS");
        let status = entry.response.as_ref().and_then(|r| r.response_code).map_or(0, |c| c.value);
        let upstream_answered = common.and_then(|c| c.time_to_first_upstream_rx_byte.as_ref()).is_some();
        let limiter_refused =
            cache_status == "LIMITED" || fact_str(facts, "ratelimit").is_some_and(|d| d.starts_with("refused"));
        let error = classify(status, upstream_answered, limiter_refused);
        // The filter publishes `ttfb_ms` for streamed answers only.
        let streamed = fact_u64(facts, "ttfb_ms").is_some()
            || response_header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
        let latency_ms = millis(common.and_then(|c| c.time_to_last_downstream_tx_byte.as_ref()))
            .or_else(|| millis(common.and_then(|c| c.duration.as_ref())))
            .unwrap_or_default();
        let ttfb_ms = fact_u64(facts, "ttfb_ms")
            .map(|ms| ms as f64)
            .or_else(|| millis(common.and_then(|c| c.time_to_first_downstream_tx_byte.as_ref())));
        let upstream_ms = millis(common.and_then(|c| c.time_to_last_upstream_rx_byte.as_ref()))
            .zip(millis(common.and_then(|c| c.time_to_first_upstream_tx_byte.as_ref())))
            .map(|(last, first)| (last - first).max(0.0));
        // Only a provider's own answer speaks for its quota (not a cache hit, not our limiter).
        let quota_exhausted_until_ms = (upstream_answered && !limiter_refused && provider != CACHE_PROVIDER)
            .then(|| {
                crate::adaptive::quota::exhausted_until(
                    status,
                    |h| response_header(h).map(String::as_str),
                    start_ms.saturating_add(latency_ms as i64),
                )
            })
            .flatten();
        let upstream_host = common
            .and_then(|c| c.upstream_remote_address.as_ref())
            .and_then(socket_address)
            .filter(|_| upstream_answered && cache_status != "HIT");
        let mut events = Vec::new();
        if fact_bool(facts, "coalesced") {
            events.push("coalesced".to_string());
        }
        Record {
            start_ms,
            model,
            provider,
            level: level.filter(|_| cache_status == "HIT"),
            cache_status,
            bypass_reason,
            tenant: fact_str(facts, "tenant_scope"),
            latency_ms,
            ttfb_ms,
            upstream_ms,
            streamed,
            status,
            error,
            tokens_in: fact_u64(facts, "prompt_tokens").unwrap_or_default(),
            tokens_out: fact_u64(facts, "completion_tokens").unwrap_or_default(),
            events,
            quota_exhausted_until_ms,
            upstream_host,
        }
    }
}

/// Who answered: the provider our failover cluster's upstream filter named, else the cluster.
/// The header is believed only behind a failover cluster, where that filter overwrites it: an
/// upstream of a single-provider cluster could send its own and have its 429s (and their quota
/// pause) pinned on another provider.
fn answered_by<'a>(header: Option<&'a str>, cluster: Option<&'a str>) -> Option<&'a str> {
    match cluster {
        Some(cluster) if crate::xds::resources::is_failover_cluster(cluster) => header.or(Some(cluster)),
        cluster => cluster,
    }
}

/// A refused attempt from the router's attempts log (`ATTEMPTS_LOG_NAME`): the provider that
/// refused and until when it said its quota is spent. The failover retry may have hidden the
/// refusal from the client, so the request's own record does not carry it.
pub fn attempt_quota(entry: &HttpAccessLogEntry, now_ms: i64) -> Option<(String, i64)> {
    let header = |h: &str| {
        entry.response.as_ref().and_then(|r| r.response_headers.get(h)).map(String::as_str).filter(|v| !v.is_empty())
    };
    let status = entry.response.as_ref().and_then(|r| r.response_code).map_or(0, |c| c.value);
    let cluster = entry.common_properties.as_ref().map(|c| c.upstream_cluster.as_str()).filter(|c| !c.is_empty());
    let provider = answered_by(header(crate::xds::resources::PROVIDER_HEADER), cluster)?;
    let until = crate::adaptive::quota::exhausted_until(status, header, now_ms)?;
    Some((name(provider), until))
}

/// `ip:port` of an Envoy address (`[ip]:port` for IPv6, as `EndpointId` names endpoints).
fn socket_address(address: &envoy_types::pb::envoy::config::core::v3::Address) -> Option<String> {
    use envoy_types::pb::envoy::config::core::v3::{address::Address as Kind, socket_address::PortSpecifier};
    let Some(Kind::SocketAddress(socket)) = address.address.as_ref() else { return None };
    let Some(PortSpecifier::PortValue(port)) = socket.port_specifier else { return None };
    let host = &socket.address;
    Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

fn classify(status: u32, upstream_answered: bool, limiter_refused: bool) -> Option<ErrorClass> {
    match status {
        429 if limiter_refused || !upstream_answered => Some(ErrorClass::LimiterRefused),
        429 => Some(ErrorClass::Provider429),
        500..=599 if upstream_answered => Some(ErrorClass::Provider5xx),
        500..=599 => Some(ErrorClass::Gateway5xx),
        // 0: the client went away before any answer; not the gateway's error.
        400..=499 => Some(ErrorClass::Client4xx),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpRequestProperties, HttpResponseProperties};
    use envoy_types::pb::google::protobuf::{Timestamp, UInt32Value};
    use std::collections::HashMap;

    fn dur(ms: i64) -> Option<Duration> {
        Some(Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 })
    }

    fn entry(status: u32, upstream: bool, headers: &[(&str, &str)], facts: Option<Struct>) -> HttpAccessLogEntry {
        HttpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 250_000_000 }),
                time_to_last_downstream_tx_byte: dur(1234),
                time_to_first_downstream_tx_byte: dur(200),
                time_to_first_upstream_rx_byte: if upstream { dur(150) } else { None },
                upstream_cluster: "mock".into(),
                metadata: facts.map(|f| Metadata {
                    filter_metadata: HashMap::from([(FACTS_NAMESPACE.to_string(), f)]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request: Some(HttpRequestProperties {
                request_headers: HashMap::from([("x-aurelis-model".to_string(), "gpt-4o".to_string())]),
                ..Default::default()
            }),
            response: Some(HttpResponseProperties {
                response_code: Some(UInt32Value { value: status }),
                response_headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn facts(fields: &[(&str, Kind)]) -> Struct {
        Struct { fields: fields.iter().map(|(k, v)| (k.to_string(), Value { kind: Some(v.clone()) })).collect() }
    }

    #[test]
    fn a_providers_429_or_spent_quota_is_a_quota_signal_a_limiter_refusal_is_not() {
        let end = 1_700_000_000_250 + 1234;
        let throttled = Record::from_entry(&entry(429, true, &[("retry-after", "7")], None));
        assert_eq!(throttled.quota_exhausted_until_ms, Some(end + 7000));
        let spent = [("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "1m")];
        assert_eq!(Record::from_entry(&entry(200, true, &spent, None)).quota_exhausted_until_ms, Some(end + 60_000));
        let ours = Record::from_entry(&entry(429, false, &[("retry-after", "7")], None));
        assert_eq!(ours.quota_exhausted_until_ms, None, "our limiter's 429 says nothing about the provider");
        assert_eq!(Record::from_entry(&entry(200, true, &[], None)).quota_exhausted_until_ms, None);
    }

    #[test]
    fn the_provider_that_answered_wins_over_the_failover_cluster_envoy_names() {
        let mut e = entry(200, true, &[("x-aurelis-provider", "spare")], None);
        if let Some(common) = e.common_properties.as_mut() {
            common.upstream_cluster = "failover:gpt-4o:main".into();
        }
        assert_eq!(Record::from_entry(&e).provider, "spare");
        assert_eq!(Record::from_entry(&entry(200, true, &[], None)).provider, "mock", "one provider: its cluster");
        // Outside a failover cluster nothing of ours wrote the header: the provider did.
        let spoofed = entry(429, true, &[("x-aurelis-provider", "spare"), ("retry-after", "30")], None);
        assert_eq!(Record::from_entry(&spoofed).provider, "mock");
        assert_eq!(attempt_quota(&spoofed, 1000), Some(("mock".to_string(), 31_000)));
    }

    #[test]
    fn a_refused_attempt_is_a_quota_signal_for_the_provider_that_refused() {
        let mut refused = entry(429, true, &[("x-aurelis-provider", "main"), ("retry-after", "30")], None);
        if let Some(common) = refused.common_properties.as_mut() {
            common.upstream_cluster = "failover:gpt-4o:main".into();
        }
        assert_eq!(attempt_quota(&refused, 1000), Some(("main".to_string(), 31_000)));
        assert_eq!(attempt_quota(&entry(200, true, &[("x-aurelis-provider", "main")], None), 1000), None);
    }

    #[test]
    fn headers_alone_give_model_provider_status_level_and_timings() {
        let r = Record::from_entry(&entry(
            200,
            false,
            &[("x-aurelis-cache", "HIT"), ("x-aurelis-cache-level", "L2")],
            None,
        ));
        assert_eq!((r.model.as_str(), r.provider.as_str(), r.cache_status.as_str()), ("gpt-4o", "cache", "HIT"));
        assert_eq!(r.level.as_deref(), Some("L2"));
        assert_eq!(r.start_ms, 1_700_000_000_250);
        assert_eq!(r.latency_ms, 1234.0);
        assert_eq!(r.error, None);
        assert!(!r.streamed);
    }

    #[test]
    fn the_filters_facts_win_and_give_tokens_tenant_and_evidence() {
        let f = facts(&[
            ("model", Kind::StringValue("gpt-4o-mini".into())),
            ("prompt_tokens", Kind::NumberValue(12.0)),
            ("completion_tokens", Kind::NumberValue(30.0)),
            ("tenant_scope", Kind::StringValue("t-1f2e".into())),
            ("coalesced", Kind::BoolValue(true)),
        ]);
        let r = Record::from_entry(&entry(
            200,
            true,
            &[("x-aurelis-cache", "MISS"), ("content-type", "text/event-stream")],
            Some(f),
        ));
        assert_eq!(r.model, "gpt-4o-mini");
        assert_eq!((r.tokens_in, r.tokens_out), (12, 30));
        assert_eq!(r.tenant.as_deref(), Some("t-1f2e"));
        assert_eq!(r.events, vec!["coalesced".to_string()]);
        assert!(r.streamed);
        assert_eq!(r.ttfb_ms, Some(200.0));
    }

    #[test]
    fn the_wasm_filters_facts_come_from_its_filter_state_object() {
        let f = facts(&[
            ("model", Kind::StringValue("gpt-4o".into())),
            ("cache_status", Kind::StringValue("LIMITED".into())),
        ]);
        let mut e = entry(429, false, &[], None);
        let any = envoy_types::pb::google::protobuf::Any {
            type_url: "type.googleapis.com/google.protobuf.Struct".into(),
            value: f.encode_to_vec(),
        };
        if let Some(common) = e.common_properties.as_mut() {
            common.filter_state_objects.insert(FACTS_FILTER_STATE.to_string(), any);
        }
        let r = Record::from_entry(&e);
        assert_eq!((r.model.as_str(), r.cache_status.as_str()), ("gpt-4o", "LIMITED"));
        assert_eq!(r.error, Some(ErrorClass::LimiterRefused));
    }

    #[test]
    fn errors_are_classed_by_who_answered() {
        let class = |status, upstream| Record::from_entry(&entry(status, upstream, &[], None)).error;
        assert_eq!(class(503, true), Some(ErrorClass::Provider5xx));
        assert_eq!(class(503, false), Some(ErrorClass::Gateway5xx));
        assert_eq!(class(429, true), Some(ErrorClass::Provider429));
        assert_eq!(class(429, false), Some(ErrorClass::LimiterRefused));
        assert_eq!(class(404, false), Some(ErrorClass::Client4xx));
        assert_eq!(class(200, true), None);
    }

    #[test]
    fn an_empty_entry_reads_as_unknown() {
        let r = Record::from_entry(&HttpAccessLogEntry::default());
        assert_eq!((r.model.as_str(), r.provider.as_str(), r.cache_status.as_str()), ("unknown", "none", "NONE"));
    }
}

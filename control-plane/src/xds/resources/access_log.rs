//! The gateway listener's access logs: one JSON line per request with Envoy's own facts
//! (status, duration, upstream cluster, bytes) and the filter's (`aurelis_core::flow::facts`).
//! Never the body, headers with credentials, or the query string (which may carry an API key):
//! the path is logged without its query.
//!
//! The filter's facts are read with CEL, from where each host can put them: the native module
//! writes dynamic metadata (`metadata.filter_metadata.aurelis`), the Wasm filter one filter
//! state object (`filter_state['wasm.aurelis']`, a `Struct`; proxy-wasm cannot write dynamic
//! metadata). CEL renders every value as a string, so both hosts give byte-identical lines;
//! a fact the request does not have is `null`.
//!
//! `access_logs` is the one place listeners get their loggers: a further sink (e.g. a gRPC
//! access log service) is one more entry in the list it returns.
use super::proto::any;
use crate::model::{AccessLogSpec, FilterHost};
use aurelis_core::flow::facts::{FIELDS, NAMESPACE};
use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::core::v3::{substitution_format_string::Format, SubstitutionFormatString};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{file_access_log, FileAccessLog};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use std::collections::BTreeMap;

/// Envoy's own fields of each line (command operators of Envoy's access log format).
pub const ENVOY_FIELDS: [(&str, &str); 12] = [
    ("start_time", "%START_TIME%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%PATH(NQ)%"),
    ("status", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("duration_ms", "%DURATION%"),
    ("route", "%ROUTE_NAME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
];

/// The CEL expression of the object holding the facts on `host`.
fn facts_object(host: FilterHost) -> String {
    match host {
        FilterHost::Native => format!("metadata.filter_metadata['{NAMESPACE}']"),
        FilterHost::Wasm => format!("filter_state['wasm.{NAMESPACE}']"),
    }
}

/// Every field of a line and its format, Envoy's first, then the filter's facts by name.
pub fn json_fields(host: FilterHost) -> BTreeMap<String, String> {
    let object = facts_object(host);
    let envoy = ENVOY_FIELDS.iter().map(|(name, format)| (name.to_string(), format.to_string()));
    let facts = FIELDS.iter().map(|name| (name.to_string(), format!("%CEL({object}.{name})%")));
    envoy.chain(facts).collect()
}

fn json_format(host: FilterHost) -> Struct {
    let fields = json_fields(host)
        .into_iter()
        .map(|(name, format)| (name, Value { kind: Some(Kind::StringValue(format)) }))
        .collect();
    Struct { fields }
}

fn file_log(spec: &AccessLogSpec, host: FilterHost) -> AccessLog {
    let file = FileAccessLog {
        path: spec.path.clone(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(SubstitutionFormatString {
            format: Some(Format::JsonFormat(json_format(host))),
            ..Default::default()
        })),
    };
    AccessLog {
        name: "envoy.access_loggers.file".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&file))),
        ..Default::default()
    }
}

/// The listener's access logs (the JSON file log; more sinks go here).
pub fn access_logs(spec: &AccessLogSpec, host: FilterHost) -> Vec<AccessLog> {
    vec![file_log(spec, host)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_hosts_log_the_same_fields_and_every_fact() {
        let (wasm, native) = (json_fields(FilterHost::Wasm), json_fields(FilterHost::Native));
        assert!(wasm.keys().eq(native.keys()), "the same JSON keys whichever host runs the filter");
        for fact in FIELDS {
            assert_eq!(wasm[fact], format!("%CEL(filter_state['wasm.aurelis'].{fact})%"));
            assert_eq!(native[fact], format!("%CEL(metadata.filter_metadata['aurelis'].{fact})%"));
        }
        for (name, _) in ENVOY_FIELDS {
            assert!(!FIELDS.contains(&name), "`{name}` is both Envoy's and a fact");
        }
    }

    #[test]
    fn nothing_that_can_carry_a_prompt_or_a_key_is_logged() {
        let formats: Vec<String> = json_fields(FilterHost::Wasm).into_values().collect();
        for format in &formats {
            let upper = format.to_ascii_uppercase();
            for banned in ["AUTHORIZATION", "API-KEY", "%REQ(:PATH)%", "BODY", "QUERY_PARAM"] {
                assert!(!upper.contains(banned), "{format}");
            }
        }
    }
}

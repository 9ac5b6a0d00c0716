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
use crate::model::{AccessLogSpec, FilterHost};
use aurelis_core::flow::facts::{FIELDS, NAMESPACE};
use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::google::protobuf::{value::Kind, Any, Value};
use prost::{Message, Name};
use std::collections::BTreeMap;

/// Envoy's own fields of each line (command operators of Envoy's access log format). Not the
/// route name: an answer the filter gives itself (a hit, a refusal) is logged with the route
/// matched before the filter read the model (`model_not_found`), which would mislead.
pub const ENVOY_FIELDS: [(&str, &str); 11] = [
    ("start_time", "%START_TIME%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%PATH(NQ)%"),
    ("status", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("duration_ms", "%DURATION%"),
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

/// One `Struct.fields` map entry, to encode the JSON format's fields in a fixed order.
#[derive(Clone, PartialEq, prost::Message)]
struct FieldEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Value>,
}

/// The file log's `FileAccessLog`, encoded by hand around its JSON format: prost keeps a
/// `Struct`'s fields in a `HashMap`, whose encoding order changes from process to process,
/// while the compile step must give the same bytes every time (versions are content hashes).
fn file_log_config(spec: &AccessLogSpec, host: FilterHost) -> Any {
    let mut json_format = Vec::new();
    for (key, format) in json_fields(host) {
        let value = Some(Value { kind: Some(Kind::StringValue(format)) });
        prost::encoding::message::encode(1, &FieldEntry { key, value }, &mut json_format);
    }
    // SubstitutionFormatString.json_format = 2; FileAccessLog.log_format = 5 (after `path`).
    let mut log_format = Vec::new();
    prost::encoding::bytes::encode(2, &json_format, &mut log_format);
    let mut file = FileAccessLog { path: spec.path.clone(), access_log_format: None }.encode_to_vec();
    prost::encoding::bytes::encode(5, &log_format, &mut file);
    Any { type_url: FileAccessLog::type_url(), value: file }
}

fn file_log(spec: &AccessLogSpec, host: FilterHost) -> AccessLog {
    AccessLog {
        name: "envoy.access_loggers.file".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(file_log_config(spec, host))),
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
    fn the_hand_encoding_is_a_file_access_log_with_the_json_format_and_is_stable() {
        use envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format;
        use envoy_types::pb::envoy::extensions::access_loggers::file::v3::file_access_log::AccessLogFormat;
        let spec = AccessLogSpec { path: "/var/log/aurelis.log".into() };
        let any = file_log_config(&spec, FilterHost::Native);
        assert_eq!(any, file_log_config(&spec, FilterHost::Native), "same bytes every time");
        let decoded = FileAccessLog::decode(any.value.as_slice()).unwrap();
        assert_eq!(decoded.path, "/var/log/aurelis.log");
        let Some(AccessLogFormat::LogFormat(format)) = decoded.access_log_format else { panic!("no log_format") };
        let Some(Format::JsonFormat(json)) = format.format else { panic!("no json_format") };
        let fields: BTreeMap<String, String> = json
            .fields
            .into_iter()
            .map(|(k, v)| match v.kind {
                Some(Kind::StringValue(s)) => (k, s),
                other => panic!("{k}: {other:?}"),
            })
            .collect();
        assert_eq!(fields, json_fields(FilterHost::Native));
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

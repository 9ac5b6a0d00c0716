//! `make bench` (telemetry part): the control plane's CPU per 10k access-log records per
//! second. Records are built like Envoy's (headers, timings, the filter's facts), encoded into
//! `StreamAccessLogsMessage` batches of 100 (about one 64 KiB flush), then decoded, read and
//! folded into windows exactly as the gRPC service does, on one thread. The cost is the
//! process's CPU time (Linux `/proc/self/stat`; wall time elsewhere), so other work on a
//! shared machine does not inflate it. Prints the cost per record and the share of one core
//! 10k records/s take.
use aurelis_control_plane::metrics::Metrics;
use aurelis_control_plane::telemetry::record::{Record, FACTS_NAMESPACE};
use aurelis_control_plane::telemetry::{Telemetry, TelemetryOptions};
use aurelis_store::memory::MemoryStore;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{HttpAccessLogEntries, LogEntries};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::google::protobuf::{value::Kind, Duration, Struct, Timestamp, UInt32Value, Value};
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 100;
const BATCHES: usize = 3000;

fn text(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.into())) }
}

fn number(n: f64) -> Value {
    Value { kind: Some(Kind::NumberValue(n)) }
}

fn entry(i: usize, now_s: i64) -> HttpAccessLogEntry {
    let ms = |ms: i64| Some(Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 });
    let facts = Struct {
        fields: HashMap::from([
            ("cache_status".to_string(), text(if i.is_multiple_of(3) { "HIT" } else { "MISS" })),
            ("model".to_string(), text(["gpt-4o-mini", "gpt-4o", "llama-3"][i % 3])),
            ("tenant_scope".to_string(), text(&format!("{:016x}", i % 50))),
            ("prompt_tokens".to_string(), number(120.0)),
            ("completion_tokens".to_string(), number(300.0)),
            ("ratelimit".to_string(), text("allowed")),
        ]),
    };
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            start_time: Some(Timestamp { seconds: now_s, nanos: 0 }),
            time_to_last_downstream_tx_byte: ms(40 + (i % 900) as i64),
            time_to_first_downstream_tx_byte: ms(20),
            time_to_first_upstream_tx_byte: ms(1),
            time_to_last_upstream_rx_byte: ms(35 + (i % 900) as i64),
            upstream_cluster: ["openai", "azure"][i % 2].into(),
            metadata: Some(Metadata {
                filter_metadata: HashMap::from([(FACTS_NAMESPACE.to_string(), facts)]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: 2,
            path: "/v1/chat/completions".into(),
            request_headers: HashMap::from([("x-aurelis-model".to_string(), "gpt-4o".to_string())]),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: 200 }),
            response_headers: HashMap::from([
                ("x-aurelis-cache".to_string(), "MISS".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// This process's user + system CPU time in seconds (`None` off Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn main() {
    let now_ms = aurelis_control_plane::telemetry::now_ms();
    let batches: Vec<Vec<u8>> = (0..BATCHES)
        .map(|b| {
            let log_entry = (0..BATCH).map(|i| entry(b * BATCH + i, now_ms / 1000)).collect();
            StreamAccessLogsMessage {
                identifier: None,
                log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry })),
            }
            .encode_to_vec()
        })
        .collect();
    let bytes: usize = batches.iter().map(Vec::len).sum();
    let telemetry =
        Telemetry::new(Arc::new(MemoryStore::default()), TelemetryOptions::default(), &Metrics::new(), now_ms);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    for batch in &batches {
        let Ok(message) = StreamAccessLogsMessage::decode(batch.as_slice()) else { continue };
        if let Some(LogEntries::HttpLogs(logs)) = message.log_entries {
            let records: Vec<Record> = logs.log_entry.iter().map(Record::from_entry).collect();
            telemetry.ingest(&records, now_ms);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let (seconds, clock) = match (cpu_started, cpu_seconds()) {
        (Some(before), Some(after)) => (after - before, "CPU"),
        _ => (wall, "wall"),
    };
    let records = (BATCH * BATCHES) as f64;
    let per_record_us = seconds * 1e6 / records;
    println!(
        "telemetry ingest: {records} records ({} bytes/record on the wire) in {:.0} ms {clock} ({:.0} ms wall): \
         {per_record_us:.2} µs/record, 10k records/s = {:.1} % of one core",
        bytes / (BATCH * BATCHES),
        seconds * 1000.0,
        wall * 1000.0,
        per_record_us * 10_000.0 / 1e6 * 100.0
    );
    assert_eq!(telemetry.ingested(), records as u64);
}

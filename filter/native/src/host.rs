//! `aurelis_core::flow::Host` over Envoy's dynamic-module callbacks: translation only. A
//! failed call becomes the value the flow expects (no data, `false`), never a panic.
//!
//! Unlike the Wasm host, a call here costs nanoseconds (no VM boundary), so the host reads the
//! clock from the OS and records stats straight into Envoy's atomic counters.
use crate::abi::{self, CalloutAnswer, Filter, HeaderMap, Level};
use crate::factory::Factory;
use crate::metrics::MetricsSink;
use crate::store::ProcessStore;
use crate::thread;
use aurelis_core::auth::{jwt_claim_header, JWT_METADATA_NAMESPACE, JWT_PAYLOAD_KEY};
use aurelis_core::coalescing::StreamId;
use aurelis_core::flow::facts::NAMESPACE;
use aurelis_core::flow::stats::StatSink;
use aurelis_core::flow::{FactValue, Facts, Host, LogLevel};
use aurelis_core::http::{Callout, Headers, Reply};
use aurelis_core::warm::WorkerCall;
use std::time::{SystemTime, UNIX_EPOCH};

/// The host as one callback sees it: a stream's (with its filter) or the worker's (without).
pub struct NativeHost<'a> {
    filter: Option<Filter>,
    factory: &'a Factory,
    answer: Option<&'a CalloutAnswer>,
    now: Option<u64>,
    /// JWT claims read (and taken out of the request) in this callback.
    claims: Vec<(String, Option<String>)>,
}

impl<'a> NativeHost<'a> {
    pub fn for_stream(filter: Filter, factory: &'a Factory) -> Self {
        NativeHost { filter: Some(filter), factory, answer: None, now: None, claims: Vec::new() }
    }

    /// A stream's callout answer is being delivered.
    pub fn for_answer(filter: Filter, factory: &'a Factory, answer: &'a CalloutAnswer) -> Self {
        NativeHost { answer: Some(answer), ..NativeHost::for_stream(filter, factory) }
    }

    /// A worker event (tick, wake-up): no stream of its own.
    pub fn for_worker(factory: &'a Factory) -> Self {
        NativeHost { filter: None, factory, answer: None, now: None, claims: Vec::new() }
    }

    /// Publishes the panics caught at the ABI boundary since the last tick.
    pub fn flush_panics(&mut self) {
        let caught = crate::panics::take();
        self.counter_add(crate::panics::STAT, caught);
    }
}

fn pairs<K: AsRef<str>>(headers: &[(K, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect()
}

fn send(filter: Filter, reply: &Reply) {
    filter.send_response(reply.status, &pairs(&reply.headers), &reply.body);
}

impl StatSink for NativeHost<'_> {
    fn counter_add(&mut self, name: &str, by: u64) {
        MetricsSink(&self.factory.metrics).counter_add(name, by);
    }

    fn gauge_set(&mut self, name: &str, value: u64) {
        MetricsSink(&self.factory.metrics).gauge_set(name, value);
    }

    fn histogram_record(&mut self, name: &str, value: u64) {
        MetricsSink(&self.factory.metrics).histogram_record(name, value);
    }
}

impl Host for NativeHost<'_> {
    type Store = ProcessStore;

    fn store(&self) -> &ProcessStore {
        ProcessStore::global()
    }

    /// Wall-clock milliseconds, read once per callback; 0 if the clock is before 1970.
    fn now_ms(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    }

    fn request_headers(&mut self) -> Headers {
        self.filter.map(|f| f.headers(HeaderMap::Request)).unwrap_or_default()
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        let mut body = self.filter?.request_body()?;
        body.truncate(size);
        Some(body)
    }

    fn response_headers(&mut self) -> Headers {
        self.filter.map(|f| f.headers(HeaderMap::Response)).unwrap_or_default()
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        let mut chunk = self.filter?.response_chunk()?;
        chunk.truncate(size);
        Some(chunk)
    }

    /// Envoy's ABI reads a string at `namespace` -> top-level key only. A claim inside the JWT
    /// payload struct is read where the control plane has `jwt_authn` copy it for the native
    /// filter (`claim_to_headers`: `jwt_claim_header`, set only for a verified token, and
    /// removed here so it does not travel to the provider); any other deeper path reads as
    /// absent (the flow then refuses as for a missing claim: fail closed).
    fn metadata_string(&mut self, path: &[&str]) -> Option<String> {
        let filter = self.filter?;
        match path {
            [namespace, key] => filter.metadata_string(namespace, key),
            [JWT_METADATA_NAMESPACE, JWT_PAYLOAD_KEY, claim] => {
                if let Some((_, value)) = self.claims.iter().find(|(name, _)| name == claim) {
                    return value.clone();
                }
                let header = jwt_claim_header(claim);
                let value = filter.header(HeaderMap::Request, &header);
                if value.is_some() {
                    filter.set_header(HeaderMap::Request, &header, None);
                }
                self.claims.push((claim.to_string(), value.clone()));
                value
            }
            _ => {
                abi::log(
                    Level::Debug,
                    "aurelis: nested dynamic metadata is not readable through the dynamic-module ABI",
                );
                None
            }
        }
    }

    fn client_address(&mut self) -> Option<String> {
        let address = self.filter?.source_address()?;
        let host = match address.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
            _ => address,
        };
        Some(host.trim_start_matches('[').trim_end_matches(']').to_string())
    }

    fn callout_status(&mut self) -> Option<u16> {
        self.answer?.status
    }

    fn callout_body(&mut self, size: usize) -> Option<Vec<u8>> {
        let body = &self.answer?.body;
        Some(body.get(..size.min(body.len())).unwrap_or_default().to_vec())
    }

    fn callout_header(&mut self, name: &str) -> Option<String> {
        self.answer?.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// The flow changes request headers only for routing (`x-aurelis-model`): Envoy must then
    /// match the route again, as it does for the Wasm filter.
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if let Some(filter) = self.filter {
            filter.set_header(HeaderMap::Request, name, value);
            filter.clear_route_cache();
        }
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        if let Some(filter) = self.filter {
            filter.set_header(HeaderMap::Response, name, Some(value));
        }
    }

    fn send_reply(&mut self, reply: &Reply) -> bool {
        let Some(filter) = self.filter else { return false };
        send(filter, reply);
        true
    }

    fn resume(&mut self) {
        if let Some(filter) = self.filter {
            filter.continue_decoding();
        }
    }

    fn dispatch(&mut self, callout: &Callout) -> bool {
        let Some(filter) = self.filter else { return false };
        let body = callout.body.as_deref().unwrap_or_default();
        filter.callout(&callout.cluster, &pairs(&callout.headers), body, callout.timeout_ms)
    }

    fn send_reply_to(&mut self, stream: StreamId, reply: &Reply) -> bool {
        let Some(filter) = thread::filter_of(stream) else { return false };
        send(filter, reply);
        true
    }

    fn resume_stream(&mut self, stream: StreamId) {
        if let Some(filter) = thread::filter_of(stream) {
            filter.continue_decoding();
        }
    }

    fn wake_worker(&mut self) {
        thread::wake();
    }

    fn dispatch_from_worker(&mut self, callout: &Callout) -> bool {
        self.factory.queue_store(callout.clone())
    }

    fn dispatch_call(&mut self, call: WorkerCall, callout: &Callout) -> bool {
        self.factory.queue_call(Some(call), callout.clone())
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        abi::log(level, message);
    }

    /// Dynamic metadata under `aurelis`, one value per fact (the access log reads
    /// `metadata.filter_metadata.aurelis.<fact>`): the strings in one batch, then the few
    /// numbers and the flag (the ABI has no batch for those; a serialized Struct in one call
    /// measured slower still: Envoy's parse of it costs more than the merges it saves).
    fn publish_facts(&mut self, facts: &Facts) {
        let Some(filter) = self.filter else { return };
        let fields = facts.fields();
        let mut strings = Vec::with_capacity(fields.len());
        for (name, value) in &fields {
            match *value {
                FactValue::Text(text) => strings.push((*name, text)),
                FactValue::Number(n) => filter.set_metadata_number(NAMESPACE, name, n as f64),
                FactValue::Flag(b) => filter.set_metadata_flag(NAMESPACE, name, b),
            }
        }
        filter.set_metadata_strings(NAMESPACE, &strings);
    }
}

//! One request through the filter. Callbacks stay short: read from Envoy, ask `aurelis-core`,
//! act. The flow:
//!
//! 1. request headers: the header gate; a refusal marks the request BYPASS and lets it through.
//! 2. request body (buffered up to `max_body_bytes`): canonicalize, body gate, cache key, L1
//!    lookup. A hit is answered locally; an identical in-flight miss waits for its leader; the
//!    leader asks L2 (when enabled), and a hit there is promoted to L1 and answered locally;
//!    otherwise the request goes upstream as a MISS.
//! 3. response headers: add `x-aurelis-cache*` headers; the response gate decides whether to
//!    keep a copy of the body as it streams by (never buffering it: chunks pass straight on).
//! 4. response end: if complete and valid, store in L1 (and L2, after the answer) and answer
//!    the waiters.
//!
//! The code is split by concern so each piece reads on its own: this file holds the request's
//! state and the proxy-wasm callbacks (each reads from Envoy and hands off); `request` decides
//! what to do once the body is buffered (step 2); `cache` serves hits and keeps the upstream
//! answer (steps 2 to 4); `rate_limit` is the rate-limit glue (admit, settle, headers).
mod cache;
mod rate_limit;
mod request;

use crate::host::{self, Headers};
use crate::limit::Ticket;
use crate::metrics::{self, CacheStatus};
use crate::worker::Worker;
use aurelis_core::gate::{self, BodyFormat, BypassReason, RequestDirectives, RequestHead, ResponseHead};
use aurelis_core::routing;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub const HEADER_CACHE: &str = "x-aurelis-cache";
pub const HEADER_REASON: &str = "x-aurelis-cache-reason";
pub const HEADER_LEVEL: &str = "x-aurelis-cache-level";
pub const HEADER_KEY_INFO: &str = "x-aurelis-cache-key-info";

enum State {
    /// Headers seen, body not yet.
    Start,
    Bypass(BypassReason),
    /// Answered from L1 by this context.
    Hit,
    /// The leader of an L1 miss, waiting (paused) for the L2 lookup it dispatched.
    L2Lookup {
        key: String,
        started_ms: u64,
    },
    /// Waiting for an identical in-flight request's fill.
    Waiting {
        key: String,
    },
    /// Went upstream; `leader` if it owns the coalescing slot for its key.
    Miss {
        key: String,
        leader: bool,
    },
    /// Refused by a rate limit (answered 429 by this context).
    Limited,
}

/// The copy of an upstream answer kept while it streams to the client.
struct Fill {
    format: BodyFormat,
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// Set once the answer is known not to be storable; copying stops.
    refused: Option<&'static str>,
    /// Kept only to read the answer's token usage for a rate-limit settlement.
    usage_only: bool,
}

pub struct AurelisHttp {
    context_id: u32,
    worker: Rc<Worker>,
    started_ms: u64,
    state: State,
    directives: RequestDirectives,
    model: Option<String>,
    /// A bypassed model call whose body is still read, only to route it by model.
    route_pending: bool,
    /// The cache scope (tenant) of the key, tagged on L2 stores for purging.
    tenant_scope: Option<String>,
    key_info: Option<String>,
    fill: Option<Fill>,
    /// Request headers read once in the header phase, used again for the tenant in the body phase.
    request_headers: Option<Headers>,
    /// The rate-limit admission this request holds, if limits apply.
    ticket: Option<Ticket>,
}

impl AurelisHttp {
    pub fn new(context_id: u32, worker: Rc<Worker>) -> Self {
        AurelisHttp {
            context_id,
            worker,
            started_ms: 0,
            state: State::Start,
            directives: RequestDirectives::default(),
            model: None,
            route_pending: false,
            tenant_scope: None,
            key_info: None,
            fill: None,
            request_headers: None,
            ticket: None,
        }
    }

    fn bypass(&mut self, reason: BypassReason) -> Action {
        self.worker.metrics.bypass(reason);
        self.worker.metrics.request(CacheStatus::Bypass, self.model.as_deref());
        self.state = State::Bypass(reason);
        Action::Continue
    }
}

/// Copies the body's model into the routing header (see `aurelis_core::routing`).
fn route_on_model(model: Option<&str>) {
    if let Some(value) = model.and_then(routing::model_header_value) {
        host::set_request_header(routing::MODEL_HEADER, Some(value));
    }
}

impl Context for AurelisHttp {
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let State::L2Lookup { key, started_ms } = &self.state {
            let (key, started_ms) = (key.clone(), *started_ms);
            self.on_l2_answer(key, started_ms, body_size);
        }
    }
}

impl HttpContext for AurelisHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.started_ms = host::now_ms();
        let headers = Headers::request();
        if headers.get(routing::MODEL_HEADER).is_some() {
            // Only the body says which model a request is for.
            host::set_request_header(routing::MODEL_HEADER, None);
        }
        let head = RequestHead {
            method: headers.get(":method").unwrap_or_default(),
            path: headers.get(":path").unwrap_or_default(),
            content_type: headers.get("content-type"),
            content_encoding: headers.get("content-encoding"),
            cache_control: headers.get("cache-control"),
            content_length: if end_of_stream {
                Some(0)
            } else {
                headers.get("content-length").and_then(|v| v.trim().parse().ok())
            },
        };
        let is_model_call = head.method.eq_ignore_ascii_case("POST")
            && self.worker.config.cache.paths.iter().any(|p| p == gate::path_without_query(head.path));
        let content_length = head.content_length;
        match gate::check_request_head(&head, &self.worker.config.cache) {
            Ok(directives) => {
                self.directives = directives;
                self.request_headers = Some(headers);
                // Hold the headers until the body is read: a hit never reaches the router.
                Action::Pause
            }
            Err(reason) => {
                self.request_headers = Some(headers);
                // Model calls the cache will not read are still rate limited, reserving by size.
                if is_model_call {
                    if let Some(action) = self.limit_without_body(content_length) {
                        return action;
                    }
                }
                let action = self.bypass(reason);
                if is_model_call && !end_of_stream {
                    // Not cached, but still routed by model: hold the headers for the body.
                    self.route_pending = true;
                    return Action::Pause;
                }
                action
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.route_pending {
            if !end_of_stream && body_size as u64 <= self.worker.config.cache.max_body_bytes {
                return Action::Pause;
            }
            self.route_pending = false;
            if end_of_stream && body_size as u64 <= self.worker.config.cache.max_body_bytes {
                let model = host::request_body(body_size).and_then(|b| routing::model_of(&b));
                route_on_model(model.as_deref());
            }
            return Action::Continue;
        }
        if !matches!(self.state, State::Start) {
            return Action::Continue;
        }
        if body_size as u64 > self.worker.config.cache.max_body_bytes {
            if let Some(action) = self.limit_without_body(Some(body_size as u64)) {
                return action;
            }
            return self.bypass(BypassReason::BodyTooLarge);
        }
        if !end_of_stream {
            // Envoy keeps buffering; we look again when the body is complete.
            return Action::Pause;
        }
        match host::request_body(body_size) {
            Some(body) => self.on_full_body(&body),
            None => self.bypass(BypassReason::EmptyBody),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.worker.take_served_locally(self.context_id) {
            // A waiter answered from its leader's fill: headers came with the local reply.
            self.state = State::Hit;
            return Action::Continue;
        }
        for (name, value) in self.ratelimit_headers() {
            if !matches!(self.state, State::Hit | State::Limited) {
                host::set_response_header(&name, &value);
            }
        }
        match &self.state {
            State::Hit | State::Limited => return Action::Continue,
            State::Bypass(reason) => {
                host::set_response_header(HEADER_CACHE, "BYPASS");
                host::set_response_header(HEADER_REASON, reason.as_str());
                if self.ticket.as_ref().is_some_and(|t| t.reserved > 0) {
                    let headers = Headers::response();
                    let sse = headers.get("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
                    let format = if sse { BodyFormat::Sse } else { BodyFormat::Json };
                    self.fill = Some(Fill {
                        format,
                        status: 0,
                        content_type: String::new(),
                        body: Vec::new(),
                        refused: None,
                        usage_only: true,
                    });
                }
                return Action::Continue;
            }
            State::Start | State::L2Lookup { .. } => {
                // An Envoy local reply (e.g. a timeout) before our decision: leave it alone.
                return Action::Continue;
            }
            State::Waiting { key } => {
                // Released to go upstream itself (timeout, or the leader had no storable answer).
                self.state = State::Miss { key: key.clone(), leader: false };
                metrics::increment(self.worker.metrics.misses, 1);
                self.worker.metrics.request(CacheStatus::Miss, self.model.as_deref());
            }
            State::Miss { .. } => {}
        }
        host::set_response_header(HEADER_CACHE, "MISS");
        if let Some(info) = &self.key_info {
            host::set_response_header(HEADER_KEY_INFO, info);
        }
        let headers = Headers::response();
        let status: u16 = headers.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let content_type = headers.get("content-type").map(str::to_string);
        let head = ResponseHead {
            status,
            content_type: content_type.as_deref(),
            content_encoding: headers.get("content-encoding"),
            cache_control: headers.get("cache-control"),
            content_length: headers.get("content-length").and_then(|v| v.trim().parse().ok()),
        };
        let sse = head.content_type.is_some_and(|c| c.starts_with("text/event-stream"));
        let (format, refused) = match gate::check_response_head(&head, &self.worker.config.cache) {
            Ok(format) => (format, None),
            Err(reason) => (if sse { BodyFormat::Sse } else { BodyFormat::Json }, Some(reason.as_str())),
        };
        // An answer that will not be stored is still copied when a token reservation needs
        // its usage (`usage_only`); the skipped store is counted when the answer ends.
        let usage_only = refused.is_some() && self.ticket.as_ref().is_some_and(|t| t.reserved > 0);
        if let (true, Some(reason)) = (usage_only, refused) {
            self.worker.metrics.store_skipped(reason);
        }
        let refused = if usage_only { None } else { refused };
        let content_type = content_type.unwrap_or_default();
        self.fill = Some(Fill { format, status, content_type, body: Vec::new(), refused, usage_only });
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max_entry = self.worker.layout.max_entry_bytes;
        if let Some(fill) = self.fill.as_mut().filter(|f| f.refused.is_none()) {
            // Copy the chunk and let it go on at once: no added buffering, even for streams.
            if (fill.body.len() + body_size) as u64 > max_entry {
                fill.refused = Some("too_large");
                fill.body = Vec::new();
            } else if body_size > 0 {
                match host::response_body(body_size) {
                    Some(chunk) => fill.body.extend_from_slice(&chunk),
                    None => fill.refused = Some("unreadable"),
                }
            }
        }
        if end_of_stream {
            self.finish_fill();
            self.settle(None);
            let m = &self.worker.metrics;
            if matches!(self.state, State::Miss { .. }) {
                metrics::record(m.response_time_miss, host::now_ms().saturating_sub(self.started_ms));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        match &self.state {
            // The leader ended without a complete answer (reset, timeout): free its waiters.
            State::Miss { key, leader: true } => self.worker.abandon(key, self.context_id),
            // The client left while the leader's L2 lookup was out: Envoy cancels the call, so
            // `on_l2_answer` never runs; without this the flight would stay claimed forever
            // and every later miss for the key on this worker would wait out the timeout.
            State::L2Lookup { key, .. } => self.worker.abandon(key, self.context_id),
            State::Waiting { .. } => self.worker.forget(self.context_id),
            _ => {}
        }
    }
}

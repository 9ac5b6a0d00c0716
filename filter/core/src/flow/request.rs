//! One request through the filter: its state and the events of its stream. The flow:
//!
//! 1. request headers: authentication (`access`: 401 before any work); requests that are not
//!    model calls pass as BYPASS; model calls wait for their body, whatever the header gate
//!    says about caching (compressed bodies are refused, 415, since their model is unreadable).
//! 2. request body (buffered up to `max_request_body_bytes`, else 413): the model is read for
//!    every model call (allowed models: 403; limits; routing); then, if cacheable,
//!    canonicalize (or reuse a byte-identical repeat's parse), body gate, cache key, L1 lookup. A hit is answered locally; an identical
//!    in-flight miss waits for its leader; the leader asks L2 (when enabled), and a hit there
//!    is promoted to L1 and answered locally; otherwise the request goes upstream as a MISS
//!    (`lookup`).
//! 3. response headers: add `x-aurelis-cache*` headers; the response gate decides whether to
//!    keep a copy of the body as it streams by (never buffering it: chunks pass straight on).
//! 4. response end: if complete and valid, store in L1 (and queue for L2), settle the rate
//!    limit, and release the waiters (`response`).
//!
//! Rate limits (`admission`) apply to every model call, with its model: requests the cache
//! will not serve, once their body is read; a hit, after the lookup (spending only what hits
//! spend); a miss, before it joins a flight or asks L2.
use super::admission::Ticket;
use super::facts::Outcome;
use super::host::Host;
use super::refresh::{GrantCheck, RecordSource, Replay};
use super::reply;
use super::response::Fill;
use super::stats::{CacheStatus, Counter};
use super::worker::Worker;
use crate::auth::Identity;
use crate::coalescing::StreamId;
use crate::gate::{self, BypassReason, RequestDirectives, RequestHead};
use crate::http::Headers;
use crate::key::CacheKey;
use crate::replay::ReplyShape;
use crate::routing;

/// What the host does with the stream once the callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold the stream (waiting for the body, a callout, a leader, or answered locally).
    Pause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Headers seen, body not yet.
    Start,
    Bypass(BypassReason),
    /// Answered locally from a cache level (by this stream or by its worker, as a waiter).
    Hit,
    /// The leader of an L1 miss, paused for the L2 lookup it dispatched.
    L2Lookup {
        key: CacheKey,
        started_ms: u64,
    },
    /// Waiting for an identical in-flight request's fill.
    Waiting {
        key: CacheKey,
    },
    /// Went upstream; `leader` while it owns the key's flight.
    Miss {
        key: CacheKey,
        leader: bool,
    },
    /// Refused by a rate limit (answered 429).
    Limited,
    /// Refused before any work (401, 403, 413, 415, 503), answered with an OpenAI-style error.
    Refused,
}

pub struct Request {
    pub(super) stream: StreamId,
    pub(super) state: State,
    pub(super) directives: RequestDirectives,
    pub(super) model: Option<String>,
    /// Why the header gate refused the cache (the body is still read for its model).
    pub(super) head_bypass: Option<BypassReason>,
    /// How the client wants its answer (JSON, or a stream with or without a usage chunk): a
    /// hit stored in another shape is rewritten (`replay`).
    pub(super) shape: ReplyShape,
    /// The cache scope (tenant) of the key, tagged on L2 stores for purging.
    pub(super) tenant_scope: Option<String>,
    pub(super) key_info: Option<String>,
    pub(super) fill: Option<Fill>,
    /// Read once in the header phase; used again for the tenant and the rate-limit identity.
    pub(super) headers: Headers,
    pub(super) ticket: Option<Ticket>,
    /// Who the request is, verified in the header phase (`None` only before it).
    pub(super) identity: Option<Identity>,
    /// When the body was complete (the filter's work starts there), for response times.
    pub(super) started_ms: u64,
    /// What the published facts need beyond the state (level, tokens, limiter, ...).
    pub(super) outcome: Outcome,
    /// A refresh replay's grant (`refresh`): its identity replaces authentication.
    pub(super) replay: Option<Replay>,
    /// An opted-in tenant's request, kept for its refresh record until the answer is stored.
    pub(super) record_source: Option<RecordSource>,
}

impl Request {
    pub fn new(stream: StreamId) -> Request {
        Request {
            stream,
            state: State::Start,
            directives: RequestDirectives::default(),
            model: None,
            head_bypass: None,
            shape: ReplyShape::Json,
            tenant_scope: None,
            key_info: None,
            fill: None,
            headers: Headers::default(),
            ticket: None,
            identity: None,
            started_ms: 0,
            outcome: Outcome::default(),
            replay: None,
            record_source: None,
        }
    }

    /// The cache status this request shows (`None` before the flow decided).
    pub fn cache_status(&self) -> Option<CacheStatus> {
        match self.state {
            State::Start | State::L2Lookup { .. } | State::Waiting { .. } | State::Limited | State::Refused => None,
            State::Bypass(_) => Some(CacheStatus::Bypass),
            State::Hit => Some(CacheStatus::Hit),
            State::Miss { .. } => Some(CacheStatus::Miss),
        }
    }

    /// Event: the request headers.
    pub fn on_request_headers(&mut self, w: &Worker, host: &mut impl Host, end_of_stream: bool) -> Action {
        self.headers = host.request_headers();
        if w.config.route_by_model && self.headers.get(routing::MODEL_HEADER).is_some() {
            // Only the body says which model a request is for.
            host.set_request_header(routing::MODEL_HEADER, None);
        }
        match self.check_grant(w, host) {
            GrantCheck::Absent => {
                if self.authenticate(w, host) {
                    return Action::Pause;
                }
            }
            GrantCheck::Accepted => {}
            GrantCheck::Refused => return Action::Pause,
        }
        let h = &self.headers;
        let head = RequestHead {
            method: h.get(":method").unwrap_or_default(),
            path: h.get(":path").unwrap_or_default(),
            content_type: h.get("content-type"),
            content_encoding: h.get("content-encoding"),
            cache_control: h.get("cache-control"),
            content_length: if end_of_stream {
                Some(0)
            } else {
                h.get("content-length").and_then(|v| v.trim().parse().ok())
            },
        };
        let is_model_call = head.method.eq_ignore_ascii_case("POST")
            && w.config.cache.paths.iter().any(|p| p == gate::path_without_query(head.path));
        let gate = gate::check_request_head(&head, &w.config.cache);
        let encoded = head.content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let too_large = head.content_length.is_some_and(|n| n > w.config.max_request_body_bytes);
        if self.refuse_unusable_replay(w, host, is_model_call && !end_of_stream && gate.is_ok()) {
            return Action::Pause;
        }
        if !is_model_call {
            self.bypass(w, gate.err().unwrap_or(BypassReason::Path));
            return Action::Continue;
        }
        // Every model call has its model read, whatever the cache decides: the consumer's
        // allowed models, the model's limits and the route all depend on it.
        if encoded {
            let message = "Compressed request bodies are not accepted: send the body uncompressed.";
            self.refuse(w, host, 415, reply::UNSUPPORTED_ENCODING, message);
            return Action::Pause;
        }
        if too_large {
            self.refuse_too_large(w, host);
            return Action::Pause;
        }
        if end_of_stream {
            // No body, so no model: limited without one, never cached.
            if self.admit_without_body(w, host, Some(0)) {
                return Action::Pause;
            }
            self.bypass(w, BypassReason::EmptyBody);
            return Action::Continue;
        }
        match gate {
            Ok(directives) => self.directives = directives,
            Err(reason) => self.head_bypass = Some(reason),
        }
        // Hold the headers until the body is read: a hit never reaches the router. Without
        // that (`hold_request_headers: false`), only the body is held.
        if w.config.hold_request_headers {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// Event: a request body chunk (`size` is everything buffered so far).
    pub fn on_request_body(&mut self, w: &Worker, host: &mut impl Host, size: usize, end_of_stream: bool) -> Action {
        if self.state != State::Start {
            return Action::Continue;
        }
        if size as u64 > w.config.max_request_body_bytes {
            self.refuse_too_large(w, host);
            return Action::Pause;
        }
        if !end_of_stream {
            // Envoy keeps buffering; we look again when the body is complete.
            return Action::Pause;
        }
        match host.request_body(size) {
            Some(body) => self.on_full_body(w, host, &body),
            None => {
                if self.admit_without_body(w, host, Some(0)) {
                    return Action::Pause;
                }
                self.bypass(w, BypassReason::EmptyBody);
                Action::Continue
            }
        }
    }

    fn refuse_too_large(&mut self, w: &Worker, host: &mut impl Host) {
        let message = format!("The request body is larger than {} bytes.", w.config.max_request_body_bytes);
        self.refuse(w, host, 413, reply::REQUEST_TOO_LARGE, &message);
    }

    /// Event: the stream ended (completed, reset or timed out); the last callback. The facts
    /// were published at the response's end; a stream that ended without one publishes here.
    pub fn on_stream_end(&mut self, w: &Worker, host: &mut impl Host) {
        self.publish_facts(host);
        match &self.state {
            // The leader ended without a complete answer (reset, timeout): free its waiters.
            // A client leaving during the L2 lookup also lands here: the host cancels the
            // callout, so `on_l2_answer` never runs, and the flight must not stay claimed.
            State::Miss { key, leader: true } | State::L2Lookup { key, .. } => {
                let key = key.clone();
                w.finish_flight(host, &key, self.stream, false);
            }
            State::Waiting { .. } => w.forget(self.stream),
            _ => {}
        }
    }

    pub(super) fn bypass(&mut self, w: &Worker, reason: BypassReason) {
        let mut tally = w.tally.borrow_mut();
        tally.add(Counter::Bypass(reason), 1);
        tally.request(CacheStatus::Bypass, self.model.as_deref());
        self.state = State::Bypass(reason);
    }

    /// Copies the body's model into the routing header, for requests about to go upstream
    /// (see `routing`). Hits never reach the router and skip it.
    pub(super) fn route_on_model(&self, w: &Worker, host: &mut impl Host, model: Option<&str>) {
        if !w.config.route_by_model {
            return;
        }
        if let Some(value) = model.and_then(routing::model_header_value) {
            host.set_request_header(routing::MODEL_HEADER, Some(value));
        }
    }
}

//! The response side of one request (steps 3 and 4 of the flow): cache headers, a copy of the
//! upstream answer kept while it streams to the client (never held back), and at its end the
//! store into L1 (and the queue for L2), the rate-limit settlement and the waiters' release.
use super::host::Host;
use super::request::{Action, Request, State};
use super::stats::{Counter, Histogram};
use super::worker::Worker;
use crate::cache::{Entry, Insert, PendingStore};
use crate::completion;
use crate::gate::{self, BodyFormat, ResponseHead};
use crate::http::{Headers, HEADER_CACHE, HEADER_KEY_INFO, HEADER_REASON};

/// The copy of an upstream answer kept while it streams to the client.
#[derive(Debug)]
pub(super) struct Fill {
    format: BodyFormat,
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// Set once the answer is known not to be storable; copying stops.
    refused: Option<&'static str>,
    /// Kept only to read the answer's token usage for a rate-limit settlement.
    usage_only: bool,
}

fn format_of(headers: &Headers) -> BodyFormat {
    let sse = headers.get("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
    if sse {
        BodyFormat::Sse
    } else {
        BodyFormat::Json
    }
}

impl Request {
    fn holds_reservation(&self) -> bool {
        self.ticket.as_ref().is_some_and(|t| t.reserved > 0)
    }

    /// Event: the response headers (from upstream, or this filter's own local reply).
    pub fn on_response_headers(&mut self, w: &Worker, host: &mut impl Host, end_of_stream: bool) -> Action {
        let action = self.response_headers(w, host, end_of_stream);
        if end_of_stream {
            self.publish_facts(host);
        }
        action
    }

    fn response_headers(&mut self, w: &Worker, host: &mut impl Host, end_of_stream: bool) -> Action {
        if let Some(served) = w.take_served_locally(self.stream) {
            // A waiter answered from its leader's fill: the headers came with the reply, and
            // the hit spends what a hit spends, not the reservation it was admitted with.
            self.state = State::Hit;
            self.outcome.hit("L1", served.prompt_tokens, served.completion_tokens);
            self.outcome.coalesced = true;
            self.note_first_byte(host);
            self.settle(w, host, Some(served.spend));
            return Action::Continue;
        }
        match &self.state {
            // Local replies carry their own headers; an Envoy local reply before the flow
            // decided (e.g. a timeout) is left alone.
            State::Hit | State::Limited | State::Refused | State::Start | State::L2Lookup { .. } => {
                return Action::Continue
            }
            State::Bypass(reason) => {
                let reason = reason.as_str();
                self.note_first_byte(host);
                self.set_limit_headers(host);
                host.set_response_header(HEADER_CACHE, "BYPASS");
                host.set_response_header(HEADER_REASON, reason);
                if self.holds_reservation() {
                    let format = format_of(&host.response_headers());
                    self.fill = Some(Fill::usage_only(format));
                }
            }
            State::Waiting { key } => {
                // Released to go upstream itself (timeout, or the leader had no storable answer).
                self.state = State::Miss { key: key.clone(), leader: false };
                self.count_miss(w);
                self.start_fill(w, host);
            }
            State::Miss { .. } => self.start_fill(w, host),
        }
        if end_of_stream {
            self.on_response_end(w, host);
        }
        Action::Continue
    }

    /// MISS headers, and the decision whether to copy the answer.
    fn start_fill(&mut self, w: &Worker, host: &mut impl Host) {
        self.note_first_byte(host);
        self.set_limit_headers(host);
        host.set_response_header(HEADER_CACHE, "MISS");
        if let Some(info) = &self.key_info {
            host.set_response_header(HEADER_KEY_INFO, info);
        }
        let headers = host.response_headers();
        let status: u16 = headers.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let head = ResponseHead {
            status,
            content_type: headers.get("content-type"),
            content_encoding: headers.get("content-encoding"),
            cache_control: headers.get("cache-control"),
            content_length: headers.get("content-length").and_then(|v| v.trim().parse().ok()),
        };
        // Stored in whichever mode it came (even JSON to a streaming request): the key names no
        // mode, and a hit in the other one is rewritten (`replay`).
        let (format, refused) = match gate::check_response_head(&head, &w.config.cache) {
            Ok(format) => (format, None),
            Err(reason) => (format_of(&headers), Some(reason.as_str())),
        };
        // An answer that will not be stored is still copied when a token reservation needs
        // its usage; the skipped store is counted now.
        let usage_only = refused.is_some() && self.holds_reservation();
        if let (true, Some(reason)) = (usage_only, refused) {
            w.count(Counter::StoreSkipped(reason), 1);
        }
        let content_type = headers.get("content-type").unwrap_or_default().to_string();
        self.fill = Some(Fill {
            format,
            status,
            content_type,
            body: Vec::new(),
            refused: if usage_only { None } else { refused },
            usage_only,
        });
    }

    fn set_limit_headers(&self, host: &mut impl Host) {
        for (name, value) in self.ratelimit_headers() {
            host.set_response_header(name, &value);
        }
    }

    /// Event: a response body chunk of `size` bytes (Envoy's buffer holds just this chunk:
    /// the filter copies it and lets it go on at once, even for streams).
    pub fn on_response_body(&mut self, w: &Worker, host: &mut impl Host, size: usize, end_of_stream: bool) -> Action {
        let max_entry = w.layout.max_entry_bytes;
        if let Some(fill) = self.fill.as_mut().filter(|f| f.refused.is_none()) {
            if (fill.body.len() + size) as u64 > max_entry {
                fill.refused = Some("too_large");
                fill.body = Vec::new();
            } else if size > 0 {
                match host.response_body(size) {
                    Some(chunk) => fill.body.extend_from_slice(&chunk),
                    None => fill.refused = Some("unreadable"),
                }
            }
        }
        if end_of_stream {
            self.on_response_end(w, host);
            self.publish_facts(host);
        }
        Action::Continue
    }

    /// The answer is complete: settle the reservation against its usage, store it if it is a
    /// complete, successful completion, and release everyone waiting for this key.
    fn on_response_end(&mut self, w: &Worker, host: &mut impl Host) {
        let needs_usage = self.ticket.as_ref().is_some_and(|t| !t.settled && t.reserved > 0);
        if let Some(fill) = self.fill.as_ref().filter(|f| needs_usage && f.refused.is_none()) {
            let usage = completion::usage_for_settlement(&fill.body, fill.format == BodyFormat::Sse);
            self.settle(w, host, usage);
        }
        if self.fill.as_ref().is_some_and(|f| f.usage_only) {
            self.fill = None;
        }
        // No usage known (unparseable answer): the whole reservation stays charged.
        self.settle(w, host, None);
        let State::Miss { key, leader } = &mut self.state else { return };
        let key = key.clone();
        let leader = std::mem::replace(leader, false);
        let now = host.now_ms();
        w.tally.borrow_mut().sample(Histogram::ResponseTimeMiss, now.saturating_sub(self.started_ms));
        let stored = match self.fill.take() {
            Some(fill) => store(w, host, &key, fill, now),
            None => None,
        };
        if let Some(entry) = &stored {
            self.outcome.usage(u64::from(entry.prompt_tokens), u64::from(entry.completion_tokens));
        }
        if self.replay.is_some() || self.record_source.is_some() {
            self.after_refreshable_fill(w, host, &key, stored.as_ref());
        }
        if let Some(entry) = stored.as_ref().filter(|_| w.config.l2.enabled) {
            // Sent by the worker after this answer is on its way: never delays the client.
            let pending = PendingStore {
                key: key.text.clone(),
                value: entry.encode(),
                model: self.model.clone(),
                tenant: self.tenant_scope.clone(),
            };
            w.queue_l2_store(host, pending);
        }
        if leader {
            w.finish_flight(host, &key, self.stream, stored.is_some());
        }
    }
}

impl Fill {
    fn usage_only(format: BodyFormat) -> Fill {
        Fill { format, status: 0, content_type: String::new(), body: Vec::new(), refused: None, usage_only: true }
    }
}

/// Stores a complete answer in L1; `None` (counted by reason) when it is not storable.
fn store(w: &Worker, host: &mut impl Host, key: &crate::key::CacheKey, fill: Fill, now: u64) -> Option<Entry> {
    if let Some(reason) = fill.refused {
        w.count(Counter::StoreSkipped(reason), 1);
        return None;
    }
    let allowed = &w.config.cache.cacheable_finish_reasons;
    let checked = match fill.format {
        BodyFormat::Json => completion::check_json(&fill.body, allowed),
        BodyFormat::Sse => completion::check_sse(&fill.body, allowed),
    };
    let usage = match checked {
        Ok(usage) => usage,
        Err(reason) => {
            w.count(Counter::StoreSkipped(reason.as_str()), 1);
            return None;
        }
    };
    w.count(Counter::PromptTokens, usage.prompt_tokens);
    w.count(Counter::CompletionTokens, usage.completion_tokens);
    let entry = Entry {
        key: key.text.clone(),
        stored_at_ms: now,
        status: fill.status,
        content_type: fill.content_type,
        format: fill.format,
        prompt_tokens: u32::try_from(usage.prompt_tokens).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(usage.completion_tokens).unwrap_or(u32::MAX),
        body: fill.body,
    };
    match w.l1(host.store()).insert(key, &entry, now) {
        Insert::Stored { evicted } => {
            w.hot.borrow_mut().put(key, now, now, &entry);
            w.count(Counter::Stores, 1);
            w.count(Counter::Evictions, u64::from(evicted));
            Some(entry)
        }
        Insert::TooLarge => {
            w.count(Counter::StoreSkipped("too_large"), 1);
            None
        }
        Insert::Contended => {
            w.count(Counter::StoreSkipped("contended"), 1);
            None
        }
        Insert::StoreFailed => {
            w.count(Counter::Error("l1_store"), 1);
            None
        }
    }
}

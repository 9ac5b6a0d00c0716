//! One request through the filter. Callbacks stay short: read from Envoy, ask `aurelis-core`,
//! act. The flow:
//!
//! 1. request headers: the header gate; a refusal marks the request BYPASS and lets it through.
//! 2. request body (buffered up to `max_body_bytes`): canonicalize, body gate, cache key, L1
//!    lookup. A hit is answered locally; an identical in-flight miss waits for its leader;
//!    otherwise the request goes upstream as a MISS.
//! 3. response headers: add `x-aurelis-cache*` headers; the response gate decides whether to
//!    keep a copy of the body as it streams by (never buffering it: chunks pass straight on).
//! 4. response end: if complete and valid, store in L1 and answer the waiters.
use crate::host::{self, Headers};
use crate::l2;
use crate::limit::{self, Ticket};
use crate::metrics::{self, CacheStatus};
use crate::worker::Worker;
use aurelis_core::cache::{self, Entry, Insert, L1Cache, L2Answer, Lookup};
use aurelis_core::completion;
use aurelis_core::gate::{self, BodyFormat, BypassReason, RequestDirectives, RequestHead, ResponseHead};
use aurelis_core::key;
use aurelis_core::limits::{self, headers as limits_headers, LimitTable};
use aurelis_core::routing;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
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

    /// Admits this request against its rate limits, reserving `reserve` LLM tokens; answers
    /// 429 and returns `Some(Pause)` when refused. Fails open (counted) if the shared table
    /// cannot be read or written.
    fn limit(&mut self, reserve: u64) -> Option<Action> {
        let config = &self.worker.config;
        if !config.rate_limit.enabled || self.ticket.is_some() {
            return None;
        }
        let headers = self.request_headers.get_or_insert_with(Headers::request);
        let (label, identity) = limit::identity(config, headers, self.model.as_deref());
        let limits = config.rate_limit.limits_for(&label, self.model.as_deref());
        let reserve = if limits.tokens_per_minute.is_some() { reserve } else { 0 };
        let table = LimitTable::new(&host::HostStore, config.rate_limit.max_identities);
        let m = &self.worker.metrics;
        let decision = match table.admit(identity, &limits, reserve, host::now_ms()) {
            Ok(decision) => decision,
            Err(_) => {
                m.error("ratelimit_unavailable");
                return None;
            }
        };
        if let Some(reason) = decision.refused {
            m.ratelimited(reason.as_str());
            let body = limits_headers::refusal_body(reason, &decision);
            let extra = limits_headers::ratelimit_headers(&decision);
            let mut reply: Vec<(&str, &str)> = vec![("content-type", "application/json")];
            reply.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            self.state = State::Limited;
            if !host::send_local_response(429, &reply, body.as_bytes()) {
                m.error("local_reply");
                return None;
            }
            return Some(Action::Pause);
        }
        metrics::increment(m.tokens_reserved, reserve);
        self.ticket = Some(Ticket { identity, limits, reserved: reserve, decision, settled: false });
        None
    }

    /// Charges the actual usage of the answer against the reservation.
    fn settle(&mut self, actual: Option<u64>) {
        let Some(ticket) = self.ticket.as_mut().filter(|t| !t.settled && t.reserved > 0) else { return };
        ticket.settled = true;
        // No usage known (unparseable answer): keep the whole reservation charged.
        let actual = actual.unwrap_or(ticket.reserved);
        let table = LimitTable::new(&host::HostStore, self.worker.config.rate_limit.max_identities);
        let m = &self.worker.metrics;
        if table.settle(ticket.identity, &ticket.limits, ticket.reserved, actual, host::now_ms()).is_err() {
            m.error("ratelimit_unavailable");
            return;
        }
        metrics::increment(m.tokens_settled, actual);
        metrics::increment(m.tokens_refunded, ticket.reserved.saturating_sub(actual));
    }

    fn ratelimit_headers(&self) -> Vec<(String, String)> {
        self.ticket.as_ref().map(|t| limits_headers::ratelimit_headers(&t.decision)).unwrap_or_default()
    }

    /// Rate limits for a request whose body the cache will not read: reserve from its size.
    fn limit_without_body(&mut self, content_length: Option<u64>) -> Option<Action> {
        let estimate = limits::estimate_prompt_tokens(content_length.unwrap_or(0) as usize);
        self.limit(estimate + self.worker.config.rate_limit.default_max_tokens)
    }

    fn bypass(&mut self, reason: BypassReason) -> Action {
        self.worker.metrics.bypass(reason);
        self.worker.metrics.request(CacheStatus::Bypass, self.model.as_deref());
        self.state = State::Bypass(reason);
        Action::Continue
    }

    /// Runs once the whole request body is buffered.
    fn on_full_body(&mut self, body: &[u8]) -> Action {
        let config = &self.worker.config;
        let default_reserve = limits::estimate_prompt_tokens(body.len()) + config.rate_limit.default_max_tokens;
        let canonical = match key::canonicalize(body, &config.normalization) {
            Ok(c) => c,
            Err(err) => {
                if let Some(action) = self.limit(default_reserve) {
                    return action;
                }
                return self.bypass(bypass_reason_of(&err));
            }
        };
        self.model = canonical.facts.model.clone();
        route_on_model(self.model.as_deref());
        let reserve = limits::estimate_prompt_tokens(body.len())
            + canonical.facts.max_tokens.unwrap_or(config.rate_limit.default_max_tokens);
        if config.log_prompts {
            host::log(LogLevel::Debug, &format!("aurelis: request body: {}", String::from_utf8_lossy(body)));
        }
        if let Err(reason) = gate::check_request_facts(&canonical.facts, &config.cache) {
            if let Some(action) = self.limit(reserve) {
                return action;
            }
            return self.bypass(reason);
        }
        let config = &self.worker.config;
        let headers = self.request_headers.get_or_insert_with(Headers::request);
        let tenant = key::tenant_scope(&config.tenant, |name| headers.get(name).map(str::to_string));
        let cache_key = key::entry_key(&config.cache.key_prefix, &tenant, &canonical, &config.normalization);
        self.tenant_scope = Some(tenant.key_part());
        if config.debug_headers {
            let shape = key::response_shape(&canonical.facts);
            self.key_info = Some(format!("{}; shape={shape}", key::key_info(&tenant, &canonical)));
        }
        let now = host::now_ms();
        if !self.directives.skip_lookup {
            if let Some(action) = self.serve_from_l1(&cache_key, now) {
                return action;
            }
        }
        if let Some(action) = self.limit(reserve) {
            return action;
        }
        if self.directives.skip_lookup || self.worker.join(&cache_key, self.context_id, now, self.model.as_deref()) {
            let leader = !self.directives.skip_lookup;
            // The leader asks L2 before going upstream; identical requests wait on it as on a fill.
            if leader && self.worker.config.l2.enabled {
                if l2::lookup(&self.worker.config.l2, &cache_key).is_some() {
                    self.state = State::L2Lookup { key: cache_key, started_ms: now };
                    return Action::Pause;
                }
                self.worker.metrics.l2_lookup("error");
            }
            metrics::increment(self.worker.metrics.misses, 1);
            self.worker.metrics.request(CacheStatus::Miss, self.model.as_deref());
            self.state = State::Miss { key: cache_key, leader };
            Action::Continue
        } else {
            self.state = State::Waiting { key: cache_key };
            Action::Pause
        }
    }

    fn serve_from_l1(&mut self, cache_key: &str, now: u64) -> Option<Action> {
        let l1 = L1Cache::new(&host::HostStore, &self.worker.layout);
        let Lookup::Hit { entry, age_seconds } = l1.lookup(cache_key, now) else { return None };
        self.serve_entry(&entry, age_seconds, "L1")
    }

    /// Answers with a cached entry (from L1, or from L2 after promotion).
    fn serve_entry(&mut self, entry: &Entry, age_seconds: u64, level: &'static str) -> Option<Action> {
        // Hits count as requests; they spend tokens only if configured to.
        let spend = if self.worker.config.rate_limit.cache_hits_spend_tokens {
            u64::from(entry.prompt_tokens) + u64::from(entry.completion_tokens)
        } else {
            0
        };
        if self.ticket.is_some() {
            // Admitted before the L2 lookup with a reservation for a real call: settle it as a hit.
            self.settle(Some(spend));
        } else if let Some(action) = self.limit(spend) {
            return Some(action);
        }
        let age = age_seconds.to_string();
        let mut headers = vec![
            ("content-type", entry.content_type.as_str()),
            (HEADER_CACHE, "HIT"),
            (HEADER_LEVEL, level),
            ("age", age.as_str()),
        ];
        if let Some(info) = &self.key_info {
            headers.push((HEADER_KEY_INFO, info.as_str()));
        }
        let limit_headers = self.ratelimit_headers();
        headers.extend(limit_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if !host::send_local_response(entry.status, &headers, &entry.body) {
            self.worker.metrics.error("local_reply");
            return None;
        }
        self.state = State::Hit;
        self.worker.metrics.hit(entry, level, self.model.as_deref(), host::now_ms().saturating_sub(self.started_ms));
        Some(Action::Pause)
    }

    /// The L2 answer for this leader: a hit is promoted to L1 and served (waiters are answered
    /// from L1 like after a fill); anything else goes upstream as an ordinary miss.
    fn on_l2_answer(&mut self, key: String, started_ms: u64, body_size: usize) {
        let now = host::now_ms();
        let m = &self.worker.metrics;
        let status = l2::response_status();
        let body = if status == Some(200) { l2::response_body(body_size) } else { None };
        let answer = cache::l2::classify(
            status,
            body.as_deref(),
            &key,
            now.saturating_sub(started_ms),
            self.worker.config.l2.timeout_ms,
        );
        m.l2_lookup(answer.as_str());
        if let L2Answer::Hit(entry) = answer {
            // Promotion: later requests (and this key's waiters) are served from L1.
            let layout = &self.worker.layout;
            let l2_ttl_ms = self.worker.config.l2.ttl_seconds.saturating_mul(1000);
            let fresh_since = cache::l2::promotion_fresh_since(now, entry.stored_at_ms, layout.ttl_ms, l2_ttl_ms);
            let promoted = matches!(
                L1Cache::new(&host::HostStore, layout).insert_fresh_since(&entry, now, fresh_since),
                Insert::Stored { .. }
            );
            let age = now.saturating_sub(entry.stored_at_ms) / 1000;
            if self.serve_entry(&entry, age, "L2").is_some() {
                self.worker.finish(&key, self.context_id, promoted);
                return;
            }
        }
        metrics::increment(self.worker.metrics.misses, 1);
        self.worker.metrics.request(CacheStatus::Miss, self.model.as_deref());
        self.state = State::Miss { key, leader: true };
        let _ = proxy_wasm::hostcalls::resume_http_request();
    }

    /// The upstream answer ended: store it if it is a complete, successful completion, then
    /// answer (or release) everyone waiting for this key.
    fn finish_fill(&mut self) {
        let needs_usage = self.ticket.as_ref().is_some_and(|t| !t.settled && t.reserved > 0);
        if let Some(fill) = self.fill.as_ref().filter(|f| needs_usage && f.refused.is_none()) {
            let usage = completion::usage_for_settlement(&fill.body, fill.format == BodyFormat::Sse);
            self.settle(usage);
        }
        if self.fill.as_ref().is_some_and(|f| f.usage_only) {
            self.fill = None;
        }
        let State::Miss { key, leader } = &self.state else { return };
        let (key, leader) = (key.clone(), *leader);
        let stored = self.fill.take().and_then(|fill| self.store(&key, fill));
        if let Some(entry) = stored.as_ref().filter(|_| self.worker.config.l2.enabled) {
            // Written by the root context after this answer is on its way: never delays the client.
            self.worker.queue_l2_store(l2::PendingStore {
                key: key.clone(),
                value: entry.encode(),
                model: self.model.clone(),
                tenant: self.tenant_scope.clone(),
            });
        }
        if leader {
            // Waiters are answered from the root context (see `worker`), not from here.
            self.worker.finish(&key, self.context_id, stored.is_some());
        }
        if let State::Miss { leader, .. } = &mut self.state {
            *leader = false;
        }
    }

    fn store(&self, key: &str, fill: Fill) -> Option<Entry> {
        let m = &self.worker.metrics;
        if let Some(reason) = fill.refused {
            m.store_skipped(reason);
            return None;
        }
        let allowed = &self.worker.config.cache.cacheable_finish_reasons;
        let checked = match fill.format {
            BodyFormat::Json => completion::check_json(&fill.body, allowed),
            BodyFormat::Sse => completion::check_sse(&fill.body, allowed),
        };
        let usage = match checked {
            Ok(usage) => usage,
            Err(reason) => {
                m.store_skipped(reason.as_str());
                return None;
            }
        };
        metrics::increment(m.prompt_tokens, usage.prompt_tokens);
        metrics::increment(m.completion_tokens, usage.completion_tokens);
        let now = host::now_ms();
        let entry = Entry {
            key: key.to_string(),
            stored_at_ms: now,
            status: fill.status,
            content_type: fill.content_type,
            format: fill.format,
            prompt_tokens: u32::try_from(usage.prompt_tokens).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(usage.completion_tokens).unwrap_or(u32::MAX),
            body: fill.body,
        };
        match L1Cache::new(&host::HostStore, &self.worker.layout).insert(&entry, now) {
            Insert::Stored { evicted } => {
                metrics::increment(m.stores, 1);
                metrics::increment(m.evictions, u64::from(evicted));
                Some(entry)
            }
            Insert::TooLarge => {
                m.store_skipped("too_large");
                None
            }
            Insert::Contended => {
                m.store_skipped("contended");
                None
            }
            Insert::StoreFailed => {
                m.error("l1_store");
                None
            }
        }
    }
}

/// Copies the body's model into the routing header (see `aurelis_core::routing`).
fn route_on_model(model: Option<&str>) {
    if let Some(value) = model.and_then(routing::model_header_value) {
        host::set_request_header(routing::MODEL_HEADER, Some(value));
    }
}

fn bypass_reason_of(err: &key::KeyError) -> BypassReason {
    match err {
        key::KeyError::InvalidUtf8 => BypassReason::InvalidUtf8,
        key::KeyError::InvalidJson => BypassReason::InvalidJson,
        key::KeyError::TooDeep => BypassReason::TooDeep,
        key::KeyError::NotAnObject => BypassReason::NotAnObject,
        key::KeyError::MissingModel => BypassReason::MissingModel,
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
            State::Waiting { .. } => self.worker.forget(self.context_id),
            _ => {}
        }
    }
}

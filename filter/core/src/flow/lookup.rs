//! The body phase of one request (step 2 of the flow): once the body is buffered, find its
//! key, then serve it from L1, wait for an identical in-flight request, ask L2, or go upstream
//! as a MISS.
use super::host::{Host, LogLevel};
use super::memo::Parsed;
use super::reply::{self, HitContext};
use super::request::{Action, Request, State};
use super::stats::{CacheStatus, Counter};
use super::worker::Worker;
use crate::cache::{self, Entry, Insert, L2Answer, Lookup};
use crate::coalescing::{Role, Waiter};
use crate::gate::{self, BypassReason};
use crate::http::HEADER_LEVEL;
use crate::key::{self, CacheKey, KeyError, TenantIdentity, TenantScope};
use crate::limits;
use crate::replay::ReplyShape;
use crate::routing;
use std::rc::Rc;

impl Request {
    /// Runs once the whole request body is buffered.
    pub(super) fn on_full_body(&mut self, w: &Worker, host: &mut impl Host, body: &[u8]) -> Action {
        if self.is_replay() {
            return self.on_replay_body(w, host, body);
        }
        let config = &w.config;
        let now = host.now_ms();
        self.started_ms = now;
        if config.log_prompts {
            host.log(LogLevel::Debug, &format!("aurelis: request body: {}", String::from_utf8_lossy(body)));
        }
        let size_reserve = limits::estimate_prompt_tokens(body.len());
        let over_cache_limit = body.len() as u64 > config.cache.max_body_bytes;
        if let Some(reason) = self.head_bypass.or(over_cache_limit.then_some(BypassReason::BodyTooLarge)) {
            self.model = routing::model_of(body);
            return self.pass_uncached(w, host, reason, size_reserve + config.rate_limit.default_max_tokens);
        }
        let parsed = match parse(w, body) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.model = routing::model_of(body);
                return self.pass_uncached(
                    w,
                    host,
                    bypass_reason_of(err),
                    size_reserve + config.rate_limit.default_max_tokens,
                );
            }
        };
        let facts = &parsed.canonical.facts;
        self.model = facts.model.clone();
        self.shape = ReplyShape::of(facts);
        let reserve = size_reserve + facts.max_tokens.unwrap_or(config.rate_limit.default_max_tokens);
        let path = self.headers.get(":path").unwrap_or_default();
        if let Err(reason) = gate::check_request_facts(facts, &config.cache, gate::is_deterministic_endpoint(path)) {
            return self.pass_uncached(w, host, reason, reserve);
        }
        if self.refuse_model(w, host) {
            return Action::Pause;
        }
        let identity = self.identity.as_ref().map_or(TenantIdentity::Anonymous, |i| i.tenant.clone());
        let (tenant, key) = self.key_for(w, identity, &parsed);
        self.tenant_scope = Some(tenant.key_part());
        if !config.refresh.is_off() {
            self.keep_record_source(w, body);
        }
        if !self.directives.skip_lookup {
            if let Some((entry, age_seconds)) = find_in_l1(w, host, &key, self.model.as_deref(), now) {
                if let Some(action) = self.serve(w, host, entry, age_seconds, "L1") {
                    if matches!(self.state, State::Hit) {
                        w.note_l1_hit(&key);
                    }
                    return action;
                }
            }
        }
        if self.admit(w, host, reserve) {
            return Action::Pause;
        }
        if self.directives.skip_lookup {
            // `no-cache`: no lookup and no coalescing, but the fresh answer is stored.
            return self.go_upstream(w, host, key, false);
        }
        let waiter = || Waiter { stream: self.stream, deadline_ms: self.deadline(w), context: self.hit_context() };
        let claims = w.claims(host.store());
        let deadline = self.deadline(w);
        let role = w.flights.borrow_mut().join(
            &key,
            self.stream,
            waiter,
            claims.as_ref().map(|c| || c.claim(&key, now, deadline)),
        );
        match role {
            Role::Leader if config.l2.enabled => self.ask_l2(w, host, key, now),
            Role::Leader => self.go_upstream(w, host, key, true),
            Role::Alone => self.go_upstream(w, host, key, false),
            Role::Waiter => {
                // Routed now: a waiter released upstream (timeout, or a leader without a
                // storable answer) is resumed from a worker event, not from its own callback.
                self.route_on_model(w, host, self.model.as_deref());
                self.state = State::Waiting { key };
                Action::Pause
            }
        }
    }

    /// A model call the cache does not serve: still refused for a model the consumer may not
    /// use, still limited with its model, still routed by it.
    fn pass_uncached(&mut self, w: &Worker, host: &mut impl Host, reason: BypassReason, reserve: u64) -> Action {
        if self.refuse_model(w, host) || self.admit(w, host, reserve) {
            return Action::Pause;
        }
        self.bypass(w, reason);
        self.route_on_model(w, host, self.model.as_deref());
        Action::Continue
    }

    /// The request's scope (from `identity`) and cache key; with `debug_headers`, the key info.
    pub(super) fn key_for(&mut self, w: &Worker, identity: TenantIdentity, parsed: &Parsed) -> (TenantScope, CacheKey) {
        let config = &w.config;
        let tenant = w.scopes.borrow_mut().scope(identity.under(&config.tenant));
        let context = w.contexts.borrow_mut().context(self.context_input(w));
        let key = CacheKey::new(key::entry_key_from_hash(
            &config.cache.key_prefix,
            &tenant,
            &context,
            &parsed.content_hash,
            &config.normalization,
        ));
        if config.debug_headers {
            let shape = key::response_shape(&parsed.canonical.facts);
            self.key_info = Some(format!("{}; shape={shape}", key::key_info(&tenant, &parsed.canonical)));
        }
        (tenant, key)
    }

    /// What besides the body changes the answer: method, path, keyed query, keyed headers.
    fn context_input(&self, w: &Worker) -> String {
        let h = &self.headers;
        let path = h.get(":path").unwrap_or_default();
        // The header gate let only allowlisted parameters through.
        let query = gate::keyed_query(path, &w.config.cache.key_query_params).unwrap_or_default();
        let headers: Vec<Option<&str>> = w.config.cache.key_headers.iter().map(|name| h.get(name)).collect();
        key::context_input(h.get(":method").unwrap_or_default(), gate::path_without_query(path), &query, &headers)
    }

    fn deadline(&self, w: &Worker) -> u64 {
        self.started_ms.saturating_add(w.config.cache.coalesce_timeout_ms)
    }

    pub(super) fn hit_context(&self) -> HitContext {
        HitContext {
            model: self.model.clone(),
            key_info: self.key_info.clone(),
            decision: self.ticket.as_ref().map(|t| t.decision),
            started_ms: self.started_ms,
            shape: self.shape,
        }
    }

    /// The leader asks L2 before going upstream; identical requests wait on it as on a fill.
    fn ask_l2(&mut self, w: &Worker, host: &mut impl Host, key: CacheKey, now: u64) -> Action {
        let callout = cache::l2::lookup_callout(&w.config.l2, &w.l2_secrets, &key);
        if host.dispatch(&callout) {
            self.state = State::L2Lookup { key, started_ms: now };
            return Action::Pause;
        }
        w.count(Counter::L2Lookup("error"), 1);
        self.go_upstream(w, host, key, true)
    }

    /// A MISS: the request goes on to the router (and `leader` owns the key's flight).
    pub(super) fn go_upstream(&mut self, w: &Worker, host: &mut impl Host, key: CacheKey, leader: bool) -> Action {
        self.count_miss(w);
        self.route_on_model(w, host, self.model.as_deref());
        self.state = State::Miss { key, leader };
        Action::Continue
    }

    pub(super) fn count_miss(&self, w: &Worker) {
        let mut tally = w.tally.borrow_mut();
        tally.add(Counter::Misses, 1);
        tally.request(CacheStatus::Miss, self.model.as_deref());
    }

    /// Answers with a cached entry (from L1, or from L2 after promotion), in the shape the
    /// client asked for; `None` if it could not be rewritten into that shape or sent (the
    /// request then carries on as a miss, and its fresh answer replaces the entry).
    fn serve(
        &mut self,
        w: &Worker,
        host: &mut impl Host,
        entry: Entry,
        age: u64,
        level: &'static str,
    ) -> Option<Action> {
        // Before admission: an entry that cannot answer this client must not cost it a hit.
        let (entry, rewrite) = reply::reshape(w, entry, self.shape)?;
        let spend = reply::hit_spend(&w.config, &entry);
        let tokens = reply::tokens_of(&entry);
        let (prompt_tokens, completion_tokens) = (entry.prompt_tokens, entry.completion_tokens);
        if self.ticket.is_some() {
            // Admitted before the L2 lookup with a reservation for a real call: settle as a hit.
            self.settle(w, host, Some(spend));
        } else if self.admit(w, host, spend) {
            return Some(Action::Pause);
        }
        let context = self.hit_context();
        if !host.send_reply(&reply::hit_owned(entry, level, age, &context)) {
            w.count(Counter::Error("local_reply"), 1);
            return None;
        }
        self.state = State::Hit;
        self.outcome.hit(level, u64::from(prompt_tokens), u64::from(completion_tokens));
        self.note_first_byte(host);
        let now = host.now_ms();
        reply::count_hit(&mut w.tally.borrow_mut(), tokens, level, &context, now);
        if let Some(kind) = rewrite {
            w.count(Counter::Replayed(kind), 1);
        }
        Some(Action::Pause)
    }

    /// Event: the answer to this leader's L2 lookup. A hit is promoted to L1 and served
    /// (waiters are answered from L1 like after a fill); anything else goes upstream.
    pub fn on_l2_answer(&mut self, w: &Worker, host: &mut impl Host, body_size: usize) {
        let State::L2Lookup { key, started_ms } = &self.state else { return };
        let (key, started_ms) = (key.clone(), *started_ms);
        let now = host.now_ms();
        let status = host.callout_status();
        let body = if status == Some(200) { host.callout_body(body_size) } else { None };
        let elapsed = now.saturating_sub(started_ms);
        // The service says which of its levels answered (L3: its persistent store), and for a
        // Redis entry that came from L3, that its age counts against L3's lifetime.
        let level = match status {
            Some(200) => cache::l2::answering_level(host.callout_header(HEADER_LEVEL).as_deref()),
            _ => "L2",
        };
        let age_rule = match (status, level) {
            (Some(200), "L2") => cache::l2::age_rule(level, host.callout_header(cache::l2::HEADER_ORIGIN).as_deref()),
            _ => level,
        };
        // Verified (a forged or stale value is a miss, counted) and stored_at clamped to now.
        let (l2, secrets) = (&w.config.l2, &w.l2_secrets);
        let answer = cache::l2::classify_from(age_rule, secrets, l2, status, body.as_deref(), &key.text, now, elapsed);
        w.count(Counter::L2Lookup(answer.as_str()), 1);
        if let L2Answer::Hit(entry) = answer {
            let service_ttl_ms = l2.freshness_bound_ms(age_rule);
            let fresh_since =
                cache::l2::promotion_fresh_since(now, entry.stored_at_ms, w.layout.ttl_ms, service_ttl_ms);
            let promoted =
                matches!(w.l1(host.store()).insert_fresh_since(&key, &entry, now, fresh_since), Insert::Stored { .. });
            w.hot.borrow_mut().put(&key, fresh_since, now, &entry);
            let age = now.saturating_sub(entry.stored_at_ms) / 1000;
            if self.serve(w, host, entry, age, level).is_some() {
                w.finish_flight(host, &key, self.stream, promoted);
                return;
            }
        }
        self.go_upstream(w, host, key, true);
        host.resume();
    }
}

/// `key` in L1: this worker's own copy when it has a fresh one (no store read), else the
/// shared slots (and a copy is kept for the next time). A purged entry is a miss (and dropped).
fn find_in_l1(w: &Worker, host: &mut impl Host, key: &CacheKey, model: Option<&str>, now: u64) -> Option<(Entry, u64)> {
    let copy = w.hot.borrow().get(key, now, w.layout.ttl_ms);
    if let Some(copy) = copy {
        if w.purged(host.store(), key, copy.inserted_ms, model) {
            return None;
        }
        w.l1(host.store()).touch_if_due(key, now);
        let age = now.saturating_sub(copy.entry.stored_at_ms) / 1000;
        return Some((copy.entry.clone(), age));
    }
    match w.l1(host.store()).lookup(key, now) {
        Lookup::Hit { inserted_ms, .. } if w.purged(host.store(), key, inserted_ms, model) => None,
        Lookup::Hit { entry, age_seconds, fresh_since_ms, inserted_ms } => {
            w.hot.borrow_mut().put(key, fresh_since_ms, inserted_ms, &entry);
            Some((entry, age_seconds))
        }
        Lookup::Expired => {
            w.count(Counter::L1Expired, 1);
            None
        }
        Lookup::Miss => None,
    }
}

/// The body's content hash and facts: from the memo for a byte-identical repeat, else
/// canonicalized (and memoized).
pub(super) fn parse(w: &Worker, body: &[u8]) -> Result<Rc<Parsed>, KeyError> {
    if let Some(parsed) = w.memo.borrow().get(body) {
        return Ok(parsed);
    }
    let mut canonical = key::canonicalize(body, &w.config.normalization)?;
    let content_hash = key::content_hash(&canonical);
    canonical.bytes = Vec::new();
    let parsed = Rc::new(Parsed { content_hash, canonical });
    w.memo.borrow_mut().put(body, Rc::clone(&parsed));
    Ok(parsed)
}

fn bypass_reason_of(err: KeyError) -> BypassReason {
    match err {
        KeyError::InvalidUtf8 => BypassReason::InvalidUtf8,
        KeyError::InvalidJson => BypassReason::InvalidJson,
        KeyError::TooDeep => BypassReason::TooDeep,
        KeyError::NotAnObject => BypassReason::NotAnObject,
        KeyError::MissingModel => BypassReason::MissingModel,
    }
}

//! Serving and filling the cache for one request: answering a hit (from L1, or from L2 after
//! promotion), handling the L2 lookup's answer, and, when the upstream answer ends, checking
//! it is a complete completion and storing it in L1 (and queueing it for L2).
use super::{AurelisHttp, Fill, State, HEADER_CACHE, HEADER_KEY_INFO, HEADER_LEVEL};
use crate::host;
use crate::l2;
use crate::metrics::{self, CacheStatus};
use aurelis_core::cache::{self, Entry, Insert, L1Cache, L2Answer, Lookup};
use aurelis_core::completion;
use aurelis_core::gate::BodyFormat;
use proxy_wasm::types::Action;

impl AurelisHttp {
    pub(super) fn serve_from_l1(&mut self, cache_key: &str, now: u64) -> Option<Action> {
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
    pub(super) fn on_l2_answer(&mut self, key: String, started_ms: u64, body_size: usize) {
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
    pub(super) fn finish_fill(&mut self) {
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

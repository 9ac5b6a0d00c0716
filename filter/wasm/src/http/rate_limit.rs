//! The rate-limit glue of one request: admission (answering 429 when refused), settling the
//! reservation against the answer's actual token usage, and the `x-ratelimit-*` headers. The
//! decisions themselves live in `aurelis_core::limits`; this only feeds them host data.
use super::{AurelisHttp, State};
use crate::host::{self, Headers};
use crate::limit::{self, Ticket};
use crate::metrics;
use aurelis_core::limits::{self, headers as limits_headers, LimitTable};
use proxy_wasm::types::Action;

impl AurelisHttp {
    /// Admits this request against its rate limits, reserving `reserve` LLM tokens; answers
    /// 429 and returns `Some(Pause)` when refused. Fails open (counted) if the shared table
    /// cannot be read or written.
    pub(super) fn limit(&mut self, reserve: u64) -> Option<Action> {
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
    pub(super) fn settle(&mut self, actual: Option<u64>) {
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

    pub(super) fn ratelimit_headers(&self) -> Vec<(String, String)> {
        self.ticket.as_ref().map(|t| limits_headers::ratelimit_headers(&t.decision)).unwrap_or_default()
    }

    /// Rate limits for a request whose body the cache will not read: reserve from its size.
    pub(super) fn limit_without_body(&mut self, content_length: Option<u64>) -> Option<Action> {
        let estimate = limits::estimate_prompt_tokens(content_length.unwrap_or(0) as usize);
        self.limit(estimate + self.worker.config.rate_limit.default_max_tokens)
    }
}

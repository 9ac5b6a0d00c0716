//! Rate limits for one request: who it is (never a raw key), admission against the shared
//! table (answering 429 when refused), and the settlement of its token reservation against the
//! answer's real usage. The buckets themselves are in `limits`. The table is shared by every
//! worker, so limits are exact across workers; if it cannot be read or written the request is
//! admitted (fail open) and the error counted.
use super::host::Host;
use super::reply;
use super::request::{Request, State};
use super::stats::Counter;
use super::worker::Worker;
use crate::auth::Identity;
use crate::limits::{self, headers as limit_headers, Decision, FailurePolicy, IdentitySource, Limits};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// An admitted request's reservation, settled when its answer ends.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub identity: u64,
    pub limits: Limits,
    pub reserved: u64,
    pub decision: Decision,
    pub settled: bool,
}

impl Request {
    /// Admits this request reserving `reserve` LLM tokens. Returns `true` when it was refused
    /// and answered 429 (the caller pauses the stream).
    pub(super) fn admit(&mut self, w: &Worker, host: &mut impl Host, reserve: u64) -> bool {
        let config = &w.config;
        if !config.rate_limit.enabled || self.ticket.is_some() {
            return false;
        }
        let address = match config.rate_limit.identity {
            IdentitySource::ClientAddress => host.client_address(),
            _ => None,
        };
        let (label, identity) = identity(w, self.identity.as_ref(), address, self.model.as_deref());
        let consumer_limits = self.identity.as_ref().and_then(|i| i.consumer).and_then(|i| w.auth_consumer_limits(i));
        let limits = config.rate_limit.limits_for_consumer(&label, self.model.as_deref(), consumer_limits);
        let reserve = if limits.tokens_per_minute.is_some() { reserve } else { 0 };
        let now = host.now_ms();
        let decision = match w.limit_table(host.store()).admit(identity, &limits, reserve, now) {
            Ok(decision) => decision,
            Err(_) => {
                w.count(Counter::Error("ratelimit_unavailable"), 1);
                self.outcome.ratelimit = Some("unavailable");
                if config.rate_limit.failure_policy == FailurePolicy::Closed {
                    let message = "Rate limits cannot be checked right now; retry shortly.";
                    return self.refuse(w, host, 503, reply::RATE_LIMIT_UNAVAILABLE, message);
                }
                return false;
            }
        };
        self.outcome.admitted(&decision);
        if let Some(reason) = decision.refused {
            w.count(Counter::Ratelimited(reason), 1);
            self.state = State::Limited;
            if host.send_reply(&reply::limited(reason, &decision)) {
                return true;
            }
            w.count(Counter::Error("local_reply"), 1);
            return false;
        }
        w.count(Counter::TokensReserved, reserve);
        self.ticket = Some(Ticket { identity, limits, reserved: reserve, decision, settled: false });
        false
    }

    /// Rate limits for a request whose body the cache will not read: reserve from its size.
    pub(super) fn admit_without_body(&mut self, w: &Worker, host: &mut impl Host, content_length: Option<u64>) -> bool {
        let estimate = limits::estimate_prompt_tokens(content_length.unwrap_or(0) as usize);
        self.admit(w, host, estimate + w.config.rate_limit.default_max_tokens)
    }

    /// Charges `actual` tokens against the reservation (once); `None` keeps it all charged.
    pub(super) fn settle(&mut self, w: &Worker, host: &mut impl Host, actual: Option<u64>) {
        let Some(ticket) = self.ticket.as_mut().filter(|t| !t.settled && t.reserved > 0) else { return };
        ticket.settled = true;
        let actual = actual.unwrap_or(ticket.reserved);
        if actual != ticket.reserved {
            let now = host.now_ms();
            let table = w.limit_table(host.store());
            if table.settle(ticket.identity, &ticket.limits, ticket.reserved, actual, now).is_err() {
                w.count(Counter::Error("ratelimit_unavailable"), 1);
                return;
            }
        }
        w.count(Counter::TokensSettled, actual);
        w.count(Counter::TokensRefunded, ticket.reserved.saturating_sub(actual));
    }

    pub(super) fn ratelimit_headers(&self) -> Vec<(&'static str, String)> {
        self.ticket.as_ref().map(|t| limit_headers::ratelimit_headers(&t.decision)).unwrap_or_default()
    }
}

/// The identity's label (used by overrides; a consumer's name, never a key) and its 64-bit
/// table hash. The verified identity's kind is hashed in, so a consumer named like a client
/// address never shares its bucket.
pub fn identity(
    w: &Worker,
    verified: Option<&Identity>,
    address: Option<String>,
    model: Option<&str>,
) -> (String, u64) {
    let r = &w.config.rate_limit;
    let mut hasher = DefaultHasher::new();
    "aurelis-ratelimit".hash(&mut hasher);
    let label = match r.identity {
        IdentitySource::Consumer => match verified {
            Some(identity) => {
                identity.kind.as_str().hash(&mut hasher);
                identity.label.clone()
            }
            None => "unknown".to_string(),
        },
        IdentitySource::ClientAddress => address.unwrap_or_else(|| "unknown".to_string()),
        IdentitySource::Route => "route".to_string(),
    };
    // SipHash, not SHA-256: a table slot needs a well-spread 64-bit value, and finding another
    // label with a given label's 64-bit value (to share its bucket) takes ~2^64 tries either way.
    label.hash(&mut hasher);
    if r.per_model {
        model.unwrap_or("").hash(&mut hasher);
    }
    (label, hasher.finish())
}

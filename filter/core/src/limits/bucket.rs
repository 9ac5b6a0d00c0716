//! Token buckets for one identity, as pure functions of `now`: requests (rate and burst) and
//! LLM tokens per minute with reserve-then-settle. Levels are kept in thousandths so slow
//! refill rates do not round to zero.
use super::config::Limits;

const MILLI: i64 = 1000;
const MINUTE_MS: u64 = 60_000;

/// One identity's buckets. Token levels may go negative: an answer that used more than its
/// reservation leaves a debt that the refill pays back before the next admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketState {
    pub requests_milli: i64,
    pub tokens_milli: i64,
    pub at_ms: u64,
}

/// What a limit looks like after a decision, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitReason {
    Requests,
    Tokens,
}

impl LimitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::Requests => "requests",
            LimitReason::Tokens => "tokens",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub refused: Option<LimitReason>,
    /// When a refused request could succeed.
    pub retry_after_ms: u64,
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
}

fn request_capacity_milli(limits: &Limits) -> Option<(i64, u64, u64)> {
    limits.requests.map(|r| (r.capacity() as i64 * MILLI, u64::from(r.rate.max(1)), r.per.millis()))
}

fn token_capacity_milli(limits: &Limits) -> Option<(i64, u64, u64)> {
    limits.tokens_per_minute.map(|t| ((t.max(1) as i64).saturating_mul(MILLI), t.max(1), MINUTE_MS))
}

/// Level after `elapsed_ms` of refill at `rate` per `period_ms`, capped at `capacity`.
fn refill(level: i64, capacity: i64, rate: u64, period_ms: u64, elapsed_ms: u64) -> i64 {
    let gained = (u128::from(elapsed_ms) * u128::from(rate) * MILLI as u128 / u128::from(period_ms.max(1)))
        .min(i64::MAX as u128) as i64;
    level.saturating_add(gained).min(capacity)
}

/// Milliseconds until `level` reaches `target` at `rate` per `period_ms`.
fn time_to(level: i64, target: i64, rate: u64, period_ms: u64) -> u64 {
    if level >= target {
        return 0;
    }
    let missing = (target - level) as u128;
    let per_ms = u128::from(rate) * MILLI as u128;
    (missing * u128::from(period_ms)).div_ceil(per_ms.max(1)).min(u64::MAX as u128) as u64
}

fn quota(level: i64, capacity: i64, rate: u64, period_ms: u64) -> Quota {
    Quota {
        limit: (capacity / MILLI) as u64,
        remaining: (level.max(0) / MILLI) as u64,
        reset_ms: time_to(level, capacity, rate, period_ms),
    }
}

impl BucketState {
    /// A new identity starts with full buckets.
    pub fn full(limits: &Limits, now_ms: u64) -> BucketState {
        BucketState {
            requests_milli: request_capacity_milli(limits).map_or(0, |c| c.0),
            tokens_milli: token_capacity_milli(limits).map_or(0, |c| c.0),
            at_ms: now_ms,
        }
    }

    fn refill_to(&mut self, limits: &Limits, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        if let Some((cap, rate, period)) = request_capacity_milli(limits) {
            self.requests_milli = refill(self.requests_milli, cap, rate, period, elapsed);
        }
        if let Some((cap, rate, period)) = token_capacity_milli(limits) {
            self.tokens_milli = refill(self.tokens_milli, cap, rate, period, elapsed);
        }
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Full buckets: the identity can be forgotten without changing any future decision.
    pub fn is_idle(&self, limits: &Limits, now_ms: u64) -> bool {
        let mut s = *self;
        s.refill_to(limits, now_ms);
        request_capacity_milli(limits).is_none_or(|c| s.requests_milli >= c.0)
            && token_capacity_milli(limits).is_none_or(|c| s.tokens_milli >= c.0)
    }

    /// Admits one request reserving `reserve_tokens`, or refuses it without changing anything.
    pub fn admit(&mut self, limits: &Limits, reserve_tokens: u64, now_ms: u64) -> Decision {
        self.refill_to(limits, now_ms);
        let reserve_milli = (reserve_tokens.min(i64::MAX as u64 / 1000) as i64) * MILLI;
        let mut refused = None;
        let mut retry_after_ms = 0;
        if let Some((cap, rate, period)) = request_capacity_milli(limits) {
            if self.requests_milli < MILLI {
                refused = Some(LimitReason::Requests);
                retry_after_ms = time_to(self.requests_milli, MILLI, rate, period);
            }
            let _ = cap;
        }
        if let Some((cap, rate, period)) = token_capacity_milli(limits) {
            // A reservation larger than the whole budget could never fit: admit it when the
            // bucket is full rather than refusing forever (it then runs into debt).
            let needed = reserve_milli.min(cap);
            if refused.is_none() && self.tokens_milli < needed {
                refused = Some(LimitReason::Tokens);
                retry_after_ms = time_to(self.tokens_milli, needed, rate, period);
            }
        }
        if refused.is_none() {
            if request_capacity_milli(limits).is_some() {
                self.requests_milli -= MILLI;
            }
            if token_capacity_milli(limits).is_some() {
                self.tokens_milli = self.tokens_milli.saturating_sub(reserve_milli);
            }
        }
        Decision {
            refused,
            retry_after_ms,
            requests: request_capacity_milli(limits).map(|(c, r, p)| quota(self.requests_milli, c, r, p)),
            tokens: token_capacity_milli(limits).map(|(c, r, p)| quota(self.tokens_milli, c, r, p)),
        }
    }

    /// Charges the actual usage of an admitted request: refunds the unused part of its
    /// reservation, or takes the excess as debt.
    pub fn settle(&mut self, limits: &Limits, reserved_tokens: u64, actual_tokens: u64, now_ms: u64) {
        self.refill_to(limits, now_ms);
        if let Some((cap, _, _)) = token_capacity_milli(limits) {
            let delta = (reserved_tokens as i64).saturating_sub(actual_tokens as i64).saturating_mul(MILLI);
            self.tokens_milli = self.tokens_milli.saturating_add(delta).min(cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::config::{Period, RequestLimit};

    fn limits(rate: u32, burst: u32, tpm: Option<u64>) -> Limits {
        Limits {
            requests: Some(RequestLimit { rate, per: Period::Second, burst: Some(burst) }),
            tokens_per_minute: tpm,
        }
    }

    #[test]
    fn burst_then_refill() {
        let l = limits(2, 3, None);
        let mut s = BucketState::full(&l, 0);
        for _ in 0..3 {
            assert_eq!(s.admit(&l, 0, 0).refused, None);
        }
        let d = s.admit(&l, 0, 0);
        assert_eq!(d.refused, Some(LimitReason::Requests));
        assert_eq!(d.retry_after_ms, 500, "2/s refills one request in 500 ms");
        assert_eq!(s.admit(&l, 0, 499).refused, Some(LimitReason::Requests));
        assert_eq!(s.admit(&l, 0, 500).refused, None);
    }

    #[test]
    fn tokens_are_reserved_then_settled() {
        let l = Limits { requests: None, tokens_per_minute: Some(1000) };
        let mut s = BucketState::full(&l, 0);
        assert_eq!(s.admit(&l, 600, 0).refused, None);
        assert_eq!(s.admit(&l, 600, 0).refused, Some(LimitReason::Tokens), "400 left");
        s.settle(&l, 600, 100, 0);
        let d = s.admit(&l, 600, 0);
        assert_eq!(d.refused, None, "500 refunded: 900 left");
        assert_eq!(d.tokens.map(|q| q.remaining), Some(300));
    }

    #[test]
    fn overuse_becomes_debt() {
        let l = Limits { requests: None, tokens_per_minute: Some(1000) };
        let mut s = BucketState::full(&l, 0);
        assert_eq!(s.admit(&l, 100, 0).refused, None);
        s.settle(&l, 100, 1500, 0);
        let d = s.admit(&l, 10, 0);
        assert_eq!(d.refused, Some(LimitReason::Tokens));
        assert!(d.retry_after_ms >= 30_000, "debt of 500 tokens + 10 at 1000/min: {}", d.retry_after_ms);
    }

    #[test]
    fn idle_after_full_refill() {
        let l = limits(10, 10, Some(600));
        let mut s = BucketState::full(&l, 0);
        s.admit(&l, 60, 0);
        assert!(!s.is_idle(&l, 50));
        assert!(s.is_idle(&l, 6_000));
    }
}

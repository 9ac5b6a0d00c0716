//! Per-stream limits, so one client cannot flood the control plane: the size of one request
//! (enforced by tonic's decoder) and the rate of requests (a token bucket per stream, pure:
//! the caller passes `now`). An Envoy sends a handful of requests per configuration change
//! (one subscription or ACK per resource type), far below the defaults.
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamLimits {
    /// Largest request accepted, in bytes (a larger one ends the stream with OUT_OF_RANGE).
    pub max_request_bytes: usize,
    /// Requests a stream may send at once before the rate applies.
    pub burst: u32,
    /// Sustained requests per second per stream.
    pub per_second: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        // Requests carry a node (first only), resource names and at most a NACK's error text.
        StreamLimits { max_request_bytes: 1 << 20, burst: 100, per_second: 20 }
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`; each request takes one.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RequestBudget {
    pub fn new(limits: &StreamLimits, now: Instant) -> RequestBudget {
        let capacity = f64::from(limits.burst.max(1));
        RequestBudget { capacity, per_second: f64::from(limits.per_second), tokens: capacity, last: now }
    }

    /// Whether one more request fits now; takes its token if so.
    pub fn take(&mut self, now: Instant) -> bool {
        // A clock that goes backwards grants nothing and does not move `last` back.
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next request fits (for the refusal message).
    pub fn retry_after(&self) -> Duration {
        if self.per_second <= 0.0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0)) / self.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let limits = StreamLimits { max_request_bytes: 1, burst: 3, per_second: 2 };
        let t0 = Instant::now();
        let mut budget = RequestBudget::new(&limits, t0);
        assert!((0..3).all(|_| budget.take(t0)), "the burst");
        assert!(!budget.take(t0), "past the burst");
        assert_eq!(budget.retry_after(), Duration::from_millis(500));
        assert!(!budget.take(t0 + Duration::from_millis(400)));
        assert!(budget.take(t0 + Duration::from_millis(500)), "one token per 1/rate");
        assert!(!budget.take(t0 + Duration::from_millis(500)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| budget.take(later)));
        assert!(!budget.take(later));
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut budget = RequestBudget::new(&StreamLimits { max_request_bytes: 1, burst: 1, per_second: 1 }, t0);
        assert!(budget.take(t0));
        assert!(!budget.take(t0 - Duration::from_secs(5)));
        assert!(!budget.take(t0), "going back and forth refills nothing");
    }
}

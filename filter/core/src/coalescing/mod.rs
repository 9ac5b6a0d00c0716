//! Request coalescing: the first cacheable miss for a key becomes the leader and goes upstream;
//! identical requests wait (paused) until the leader's fill lands in L1, then are answered from
//! it. A waiter that outlives its deadline, or whose leader ends without a storable answer, is
//! resumed and goes upstream itself.
//!
//! `Flights` is one worker's table. Leaders on other workers are found through a claim in
//! shared data (`Claims`), and this worker's waiters on them are settled by the timer
//! (`settle_remote`: answered once the fill is in L1, released once the claim is gone). When
//! Envoy runs a single worker there is nobody to coordinate with, and the flow skips the claims.
//!
//! The table is generic over what a waiter needs to be answered (`T`), so it knows nothing of
//! replies or limits.
mod claims;

pub use claims::Claims;

use crate::key::CacheKey;
use std::collections::HashMap;

/// A request (HTTP stream) as the host names it.
pub type StreamId = u32;

pub struct Waiter<T> {
    pub stream: StreamId,
    pub deadline_ms: u64,
    pub context: T,
}

/// A finished flight taken out of the table, for the worker to answer or release its waiters.
pub struct Finished<T> {
    pub key: CacheKey,
    /// The leader's answer is in L1.
    pub stored: bool,
    pub waiters: Vec<Waiter<T>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Goes upstream and must `finish` the flight.
    Leader,
    /// Waits for the leader's fill.
    Waiter,
    /// Goes upstream without leading: the key's previous flight is still being released.
    Alone,
}

struct Flight<T> {
    key: CacheKey,
    /// The leading stream on this worker; `None` when the leader is on another worker.
    leader: Option<StreamId>,
    /// This worker holds the cross-worker claim and must release it.
    claimed: bool,
    waiters: Vec<Waiter<T>>,
    /// Set when the leader is done: `Some(true)` if its answer was stored in L1.
    done: Option<bool>,
}

pub struct Flights<T> {
    flights: HashMap<String, Flight<T>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights { flights: HashMap::new() }
    }
}

impl<T> Flights<T> {
    /// Registers `stream` for `key`. `claim` asks the other workers (see `Claims::claim`;
    /// `None` when this worker is alone) and is only called when no local flight exists.
    pub fn join(
        &mut self,
        key: &CacheKey,
        stream: StreamId,
        waiter: impl FnOnce() -> Waiter<T>,
        claim: Option<impl FnOnce() -> bool>,
    ) -> Role {
        if let Some(flight) = self.flights.get_mut(&key.text) {
            if flight.done.is_some() {
                // Being released right now: go upstream rather than replace it (its waiters
                // would be lost).
                return Role::Alone;
            }
            if flight.leader != Some(stream) {
                flight.waiters.push(waiter());
                return Role::Waiter;
            }
        }
        let (leads, claimed) = match claim {
            Some(claim) => {
                let leads = claim();
                (leads, leads)
            }
            None => (true, false),
        };
        let flight = if leads {
            Flight { key: key.clone(), leader: Some(stream), claimed, waiters: Vec::new(), done: None }
        } else {
            Flight { key: key.clone(), leader: None, claimed: false, waiters: vec![waiter()], done: None }
        };
        self.flights.insert(key.text.clone(), flight);
        if leads {
            Role::Leader
        } else {
            Role::Waiter
        }
    }

    /// The leader is done (`stored`: its answer is in L1). Returns whether it held a
    /// cross-worker claim (to release) and whether waiters need releasing (wake the worker).
    pub fn finish(&mut self, key: &CacheKey, leader: StreamId, stored: bool) -> (bool, bool) {
        let Some(flight) = self.flights.get_mut(&key.text).filter(|f| f.leader == Some(leader)) else {
            return (false, false);
        };
        let claimed = flight.claimed;
        if flight.waiters.is_empty() {
            self.flights.remove(&key.text);
            return (claimed, false);
        }
        flight.done = Some(stored);
        (claimed, true)
    }

    /// Takes the finished flights out of the table.
    pub fn take_finished(&mut self) -> Vec<Finished<T>> {
        let done: Vec<String> = self.flights.iter().filter(|(_, f)| f.done.is_some()).map(|(k, _)| k.clone()).collect();
        done.into_iter()
            .filter_map(|text| {
                let flight = self.flights.remove(&text)?;
                Some(Finished { stored: flight.done == Some(true), waiters: flight.waiters, key: flight.key })
            })
            .collect()
    }

    /// Settles flights led by other workers: done once their fill is in L1 (`filled`), or once
    /// their claim is gone or expired (`claimed` false); forgets those nobody waits on.
    pub fn settle_remote(&mut self, filled: impl Fn(&CacheKey) -> bool, claimed: impl Fn(&CacheKey) -> bool) {
        self.flights.retain(|_, f| f.leader.is_some() || f.done.is_some() || !f.waiters.is_empty());
        for flight in self.flights.values_mut().filter(|f| f.leader.is_none() && f.done.is_none()) {
            if filled(&flight.key) {
                flight.done = Some(true);
            } else if !claimed(&flight.key) {
                // The leader stores its fill before it drops its claim: a claim gone since the
                // first look may mean the fill landed in between (the leader runs on another
                // thread), so look again before sending every waiter upstream.
                flight.done = Some(filled(&flight.key));
            }
        }
    }

    /// Takes the waiters whose deadline passed; they go upstream themselves.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Waiter<T>> {
        let mut expired = Vec::new();
        for flight in self.flights.values_mut().filter(|f| f.done.is_none()) {
            let (late, on_time): (Vec<_>, Vec<_>) =
                std::mem::take(&mut flight.waiters).into_iter().partition(|w| w.deadline_ms <= now_ms);
            flight.waiters = on_time;
            expired.extend(late);
        }
        expired
    }

    /// A waiting stream went away (client reset): forget it.
    pub fn forget(&mut self, stream: StreamId) {
        for flight in self.flights.values_mut() {
            flight.waiters.retain(|w| w.stream != stream);
        }
    }

    pub fn has_waiters(&self) -> bool {
        self.flights.values().any(|f| !f.waiters.is_empty())
    }

    pub fn has_remote_waiters(&self) -> bool {
        self.flights.values().any(|f| f.leader.is_none() && f.done.is_none() && !f.waiters.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(stream: StreamId) -> impl FnOnce() -> Waiter<()> {
        move || Waiter { stream, deadline_ms: 100, context: () }
    }

    const ALONE: Option<fn() -> bool> = None;

    #[test]
    fn the_first_leads_and_the_others_wait_until_it_finishes() {
        let mut flights = Flights::default();
        let key = CacheKey::new("k".into());
        assert_eq!(flights.join(&key, 1, waiter(1), ALONE), Role::Leader);
        assert_eq!(flights.join(&key, 2, waiter(2), ALONE), Role::Waiter);
        assert_eq!(flights.join(&key, 3, waiter(3), ALONE), Role::Waiter);
        assert_eq!(flights.finish(&key, 2, true), (false, false), "only the leader finishes");
        assert_eq!(flights.finish(&key, 1, true), (false, true));
        assert_eq!(flights.join(&key, 4, waiter(4), ALONE), Role::Alone, "still being released");
        let finished = flights.take_finished();
        assert_eq!(finished.len(), 1);
        assert!(finished.iter().all(|f| f.stored && f.waiters.len() == 2));
        assert_eq!(flights.join(&key, 5, waiter(5), ALONE), Role::Leader, "a new flight");
    }

    #[test]
    fn a_remote_leader_is_settled_by_its_fill_or_its_claim() {
        let mut flights = Flights::default();
        let (a, b) = (CacheKey::new("a".into()), CacheKey::new("b".into()));
        assert_eq!(flights.join(&a, 1, waiter(1), Some(|| false)), Role::Waiter);
        assert_eq!(flights.join(&b, 2, waiter(2), Some(|| false)), Role::Waiter);
        assert!(flights.has_remote_waiters());
        flights.settle_remote(|k| k.text == "a", |_| true);
        let finished = flights.take_finished();
        assert_eq!(finished.iter().map(|f| (f.key.text.as_str(), f.stored)).collect::<Vec<_>>(), vec![("a", true)]);
        flights.settle_remote(|_| false, |_| false);
        let finished = flights.take_finished();
        assert_eq!(finished.iter().map(|f| (f.key.text.as_str(), f.stored)).collect::<Vec<_>>(), vec![("b", false)]);
    }

    #[test]
    fn a_fill_landing_between_the_two_looks_is_a_fill() {
        let mut flights: Flights<()> = Flights::default();
        let key = CacheKey::new("k".into());
        assert_eq!(flights.join(&key, 1, waiter(1), Some(|| false)), Role::Waiter);
        // The other worker stores and releases right after the first look at L1.
        let looks = std::cell::Cell::new(0);
        let filled = |_: &CacheKey| {
            looks.set(looks.get() + 1);
            looks.get() > 1
        };
        flights.settle_remote(filled, |_| false);
        let finished = flights.take_finished();
        assert_eq!(finished.iter().map(|f| f.stored).collect::<Vec<_>>(), vec![true], "served from L1, not upstream");
    }

    #[test]
    fn waiters_expire_and_leave() {
        let mut flights = Flights::default();
        let key = CacheKey::new("k".into());
        flights.join(&key, 1, waiter(1), ALONE);
        flights.join(&key, 2, || Waiter { stream: 2, deadline_ms: 50, context: () }, ALONE);
        flights.join(&key, 3, || Waiter { stream: 3, deadline_ms: 500, context: () }, ALONE);
        let expired: Vec<StreamId> = flights.expire(60).iter().map(|w| w.stream).collect();
        assert_eq!(expired, vec![2]);
        flights.forget(3);
        assert!(!flights.has_waiters());
    }
}

//! State one Envoy worker shares between its root context and its HTTP contexts: the parsed
//! configuration, the L1 layout, stat ids, and the request-coalescing table.
//!
//! Coalescing: the first cacheable miss for a key becomes the leader and goes upstream;
//! identical requests wait (paused) until the leader's fill lands in L1, then are answered from
//! it. A waiter that outlives `coalesce_timeout_ms`, or whose leader ends without a storable
//! answer, is resumed and goes upstream itself. Leaders on this worker are tracked here;
//! leaders on other workers are found through a claim in shared data (`L1Cache::claim_flight`),
//! and their waiters here are answered when the timer sees the fill in L1 (within one tick).
//!
//! Waiters are answered from the root context, never from the leader's own callback: switching
//! the effective context to another stream inside a response-body callback stops Envoy from
//! forwarding the leader's own body (observed with HTTP/2 upstreams, where the last data frame
//! and end of stream arrive in one callback). The leader marks its flight done and posts the
//! key on this worker's shared queue; `on_queue_ready` (root context, same thread) serves the
//! waiters. The timer does the same as a fallback if the queue is unavailable.
use crate::host;
use crate::http::{HEADER_CACHE, HEADER_LEVEL};
use crate::metrics::Metrics;
use aurelis_core::cache::Entry;
use aurelis_core::cache::{L1Cache, Layout, Lookup};
use aurelis_core::config::FilterConfig;
use proxy_wasm::hostcalls;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

pub struct Worker {
    pub config: FilterConfig,
    pub layout: Layout,
    pub metrics: Metrics,
    inflight: RefCell<HashMap<String, Inflight>>,
    /// Contexts answered by someone else's local reply: their response callbacks must not store.
    served_locally: RefCell<HashSet<u32>>,
    /// This worker's shared queue for finished flights (see the module docs).
    release_queue: Option<u32>,
    /// L2 stores queued by requests, dispatched by the root context.
    l2_stores: RefCell<Vec<crate::l2::PendingStore>>,
    /// `Bearer <token>` for L2 calls, from Envoy's environment (never from the JSON config).
    /// Never logged.
    pub l2_authorization: Option<String>,
}

struct Inflight {
    /// The leading context on this worker; 0 when the leader is on another worker.
    leader: u32,
    waiters: Vec<Waiter>,
    /// Set when the leader is done: `Some(true)` if its answer was stored in L1.
    done: Option<bool>,
}

struct Waiter {
    context_id: u32,
    deadline_ms: u64,
    started_ms: u64,
    model: Option<String>,
}

/// A finished flight taken out of the table, to be released from the root context.
pub struct Finished {
    pub key: String,
    pub stored: bool,
    waiters: Vec<Waiter>,
}

impl Worker {
    pub fn new(
        config: FilterConfig,
        metrics: Metrics,
        release_queue: Option<u32>,
        l2_authorization: Option<String>,
    ) -> Worker {
        let layout = Layout::from_config(&config.cache);
        Worker {
            config,
            layout,
            metrics,
            inflight: RefCell::default(),
            served_locally: RefCell::default(),
            release_queue,
            l2_stores: RefCell::new(Vec::new()),
            l2_authorization,
        }
    }

    /// Registers `context_id` for `key`: `true` if it leads (goes upstream), `false` if it must
    /// wait for the current leader.
    pub fn join(&self, key: &str, context_id: u32, now_ms: u64, model: Option<&str>) -> bool {
        let deadline_ms = now_ms.saturating_add(self.config.cache.coalesce_timeout_ms);
        let waiter = Waiter { context_id, deadline_ms, started_ms: now_ms, model: model.map(str::to_string) };
        let mut inflight = self.inflight.borrow_mut();
        if let Some(flight) = inflight.get_mut(key) {
            if flight.done.is_some() {
                // The previous flight is still being released by the root context: go upstream
                // without coalescing rather than replace it (its waiters would be lost).
                return true;
            }
            if flight.leader != context_id {
                flight.waiters.push(waiter);
                return false;
            }
        }
        let leads = L1Cache::new(&host::HostStore, &self.layout).claim_flight(key, now_ms, deadline_ms);
        let flight = if leads {
            Inflight { leader: context_id, waiters: Vec::new(), done: None }
        } else {
            Inflight { leader: 0, waiters: vec![waiter], done: None }
        };
        inflight.insert(key.to_string(), flight);
        leads
    }

    /// Timer: settles flights led by other workers — answered once their fill is in L1,
    /// released upstream once their claim is gone or expired; forgets those nobody waits on.
    pub fn poll_remote_flights(&self, now_ms: u64) {
        let l1 = L1Cache::new(&host::HostStore, &self.layout);
        let mut inflight = self.inflight.borrow_mut();
        inflight.retain(|_, f| f.leader != 0 || f.done.is_some() || !f.waiters.is_empty());
        for (key, flight) in inflight.iter_mut().filter(|(_, f)| f.leader == 0 && f.done.is_none()) {
            if matches!(l1.lookup(key, now_ms), Lookup::Hit { .. }) {
                flight.done = Some(true);
            } else if !l1.flight_pending(key, now_ms) {
                flight.done = Some(false);
            }
        }
    }

    /// The leader is done (`stored`: its answer is in L1). Called from the leader's callback:
    /// only marks the flight and posts it to the root context.
    /// Queues an L2 store and wakes the root context to send it.
    pub fn queue_l2_store(&self, store: crate::l2::PendingStore) {
        let mut stores = self.l2_stores.borrow_mut();
        // Bounded: if L2 is slower than the fills, drop (and count) rather than grow.
        if stores.len() >= 1024 {
            self.metrics.l2_store("dropped");
            return;
        }
        stores.push(store);
        drop(stores);
        if let Some(queue) = self.release_queue {
            let _ = hostcalls::enqueue_shared_queue(queue, Some(b"l2"));
        }
    }

    pub fn take_l2_stores(&self) -> Vec<crate::l2::PendingStore> {
        std::mem::take(&mut *self.l2_stores.borrow_mut())
    }

    pub fn finish(&self, key: &str, leader: u32, stored: bool) {
        L1Cache::new(&host::HostStore, &self.layout).release_flight(key);
        let mut inflight = self.inflight.borrow_mut();
        let Some(flight) = inflight.get_mut(key).filter(|f| f.leader == leader) else { return };
        if flight.waiters.is_empty() {
            inflight.remove(key);
            return;
        }
        flight.done = Some(stored);
        if let Some(queue) = self.release_queue {
            let _ = hostcalls::enqueue_shared_queue(queue, Some(key.as_bytes()));
        }
    }

    /// Takes the finished flights out of the table (root context only).
    pub fn take_finished(&self) -> Vec<Finished> {
        let mut inflight = self.inflight.borrow_mut();
        let keys: Vec<String> = inflight.iter().filter(|(_, f)| f.done.is_some()).map(|(k, _)| k.clone()).collect();
        keys.into_iter()
            .filter_map(|key| {
                let flight = inflight.remove(&key)?;
                Some(Finished { stored: flight.done == Some(true), waiters: flight.waiters, key })
            })
            .collect()
    }

    /// Answers (from `entry`) or resumes a finished flight's waiters (root context only).
    /// Returns how many were answered locally.
    pub fn release(&self, finished: Finished, entry: Option<&Entry>, now_ms: u64) -> u64 {
        let mut served = 0;
        for waiter in finished.waiters {
            if hostcalls::set_effective_context(waiter.context_id).is_err() {
                continue;
            }
            let answered = entry.is_some_and(|entry| {
                let headers = [
                    ("content-type", entry.content_type.as_str()),
                    (HEADER_CACHE, "HIT"),
                    (HEADER_LEVEL, "L1"),
                    ("age", "0"),
                ];
                self.served_locally.borrow_mut().insert(waiter.context_id);
                let sent = host::send_local_response(entry.status, &headers, &entry.body);
                if sent {
                    self.metrics.hit(entry, "L1", waiter.model.as_deref(), now_ms.saturating_sub(waiter.started_ms));
                } else {
                    self.served_locally.borrow_mut().remove(&waiter.context_id);
                }
                sent
            });
            if answered {
                served += 1;
            } else {
                let _ = hostcalls::resume_http_request();
            }
        }
        served
    }

    /// A waiting context went away (client reset): forget it.
    pub fn forget(&self, context_id: u32) {
        for flight in self.inflight.borrow_mut().values_mut() {
            flight.waiters.retain(|w| w.context_id != context_id);
        }
        self.served_locally.borrow_mut().remove(&context_id);
    }

    pub fn take_served_locally(&self, context_id: u32) -> bool {
        self.served_locally.borrow_mut().remove(&context_id)
    }

    /// Timer: resumes waiters whose deadline passed; they go upstream themselves.
    pub fn expire_waiters(&self, now_ms: u64) -> u64 {
        let mut expired = Vec::new();
        for flight in self.inflight.borrow_mut().values_mut().filter(|f| f.done.is_none()) {
            flight.waiters.retain(|w| {
                let keep = w.deadline_ms > now_ms;
                if !keep {
                    expired.push(w.context_id);
                }
                keep
            });
        }
        for context_id in &expired {
            if hostcalls::set_effective_context(*context_id).is_ok() {
                let _ = hostcalls::resume_http_request();
            }
        }
        expired.len() as u64
    }

    pub fn has_waiters(&self) -> bool {
        self.inflight.borrow().values().any(|f| !f.waiters.is_empty())
    }

    /// The leader went away without finishing (reset, timeout): release its waiters upstream.
    pub fn abandon(&self, key: &str, leader: u32) {
        self.finish(key, leader, false);
    }
}

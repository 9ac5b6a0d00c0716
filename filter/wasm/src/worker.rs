//! State one Envoy worker shares between its root context and its HTTP contexts: the parsed
//! configuration, the L1 layout, stat ids, and the request-coalescing table.
//!
//! Coalescing is per worker: the first cacheable miss for a key becomes the leader and goes
//! upstream; identical requests on the same worker wait (paused) until the leader's fill lands
//! in L1, then are answered from it. A waiter that outlives `coalesce_timeout_ms`, or whose
//! leader ends without a storable answer, is resumed and goes upstream itself.
use crate::host;
use crate::metrics::Metrics;
use aurelis_core::cache::Layout;
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
}

struct Inflight {
    leader: u32,
    waiters: Vec<Waiter>,
}

struct Waiter {
    context_id: u32,
    deadline_ms: u64,
}

/// What the leader's fill means for its waiters.
pub enum Release<'a> {
    /// Answer each waiter with this local reply.
    Serve { status: u16, headers: &'a [(&'a str, &'a str)], body: &'a [u8] },
    /// Let each waiter go upstream itself.
    Resume,
}

impl Worker {
    pub fn new(config: FilterConfig, metrics: Metrics) -> Worker {
        let layout = Layout::from_config(&config.cache);
        Worker { config, layout, metrics, inflight: RefCell::default(), served_locally: RefCell::default() }
    }

    /// Registers `context_id` for `key`: `true` if it leads (goes upstream), `false` if it must
    /// wait for the current leader.
    pub fn join(&self, key: &str, context_id: u32, now_ms: u64) -> bool {
        let mut inflight = self.inflight.borrow_mut();
        match inflight.get_mut(key) {
            Some(flight) if flight.leader != context_id => {
                let deadline_ms = now_ms.saturating_add(self.config.cache.coalesce_timeout_ms);
                flight.waiters.push(Waiter { context_id, deadline_ms });
                false
            }
            _ => {
                inflight.insert(key.to_string(), Inflight { leader: context_id, waiters: Vec::new() });
                true
            }
        }
    }

    /// The leader is done: answer or resume its waiters. Returns how many were served.
    /// Must be called from the leader's own callback: it restores the leader as the effective
    /// context before returning.
    pub fn release(&self, key: &str, leader: u32, release: Release<'_>) -> u64 {
        let flight = {
            let mut inflight = self.inflight.borrow_mut();
            match inflight.get(key) {
                Some(f) if f.leader == leader => inflight.remove(key),
                _ => None,
            }
        };
        let Some(flight) = flight else { return 0 };
        let mut served = 0;
        for waiter in flight.waiters {
            if hostcalls::set_effective_context(waiter.context_id).is_err() {
                continue;
            }
            match release {
                Release::Serve { status, headers, body } => {
                    self.served_locally.borrow_mut().insert(waiter.context_id);
                    if host::send_local_response(status, headers, body) {
                        served += 1;
                    } else {
                        self.served_locally.borrow_mut().remove(&waiter.context_id);
                        let _ = hostcalls::resume_http_request();
                    }
                }
                Release::Resume => {
                    let _ = hostcalls::resume_http_request();
                }
            }
        }
        let _ = hostcalls::set_effective_context(leader);
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
        for flight in self.inflight.borrow_mut().values_mut() {
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
}

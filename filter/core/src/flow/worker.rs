//! One Envoy worker's share of the flow: the parsed configuration and what its requests have
//! in common — the L1 view, the coalescing table, queued L2 stores, the stats tally and the
//! repeat memo — plus the worker's own events (timer tick, wake-up, L2 store answers).
//!
//! Waiters are answered from a worker event, never from the leader's own callback: switching
//! to another stream inside a response-body callback stops Envoy from forwarding the leader's
//! own body (observed with HTTP/2 upstreams, where the last data frame and end of stream arrive
//! in one callback). The leader marks its flight done and asks for a wake-up (`wake_worker`);
//! the tick does the same as a fallback.
use super::host::Host;
use super::hot::HotCopies;
use super::memo::Memo;
use super::reply::{self, HitContext};
use super::scopes::{ContextMemo, ScopeMemo};
use super::stats::{Counter, Gauge, Tally};
use super::workers;
use crate::auth::Authenticator;
use crate::cache::{self, KeyNames, L1Cache, L2Secrets, Layout, Lookup, PendingStore, Purges, WayHints};
use crate::coalescing::{Claims, Flights, StreamId};
use crate::config::FilterConfig;
use crate::key::CacheKey;
use crate::limits::LimitTable;
use crate::warm::{self, hits, HitCounts, WorkerCall};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// Gauges walk every L1 set's metadata: refresh them at most this often. Counted in time, not
/// ticks: a host may run the tick's work more often than every 50 ms (the native host flushes
/// whenever a worker runs out of streams, under load many times a second), and each walk costs
/// as much as dozens of requests.
const GAUGE_INTERVAL_MS: u64 = 2_000;
/// Bound on queued L2 stores: if L2 is slower than the fills, drop (and count) rather than grow.
const MAX_PENDING_STORES: usize = 1024;

/// A coalesced waiter answered by a worker event: what its hit spends from its budget, and
/// what the answer cost upstream (for its facts).
#[derive(Debug, Clone, Copy)]
pub(super) struct ServedLocally {
    pub spend: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub struct Worker {
    pub config: FilterConfig,
    pub layout: Layout,
    names: KeyNames,
    hints: WayHints,
    pub(super) flights: RefCell<Flights<HitContext>>,
    /// Streams answered by a worker event (coalesced waiters), with the tokens their hit spends:
    /// their own response callbacks settle that instead of storing anything.
    served_locally: RefCell<HashMap<StreamId, ServedLocally>>,
    l2_stores: RefCell<Vec<PendingStore>>,
    /// Refresh records to send to the cache service (opted-in tenants' fills), bounded like
    /// the stores.
    records: RefCell<Vec<crate::http::Callout>>,
    /// Shared with the worker of the next configuration, so counts of streams still running
    /// under this one are flushed too.
    pub(super) tally: Rc<RefCell<Tally>>,
    pub(super) memo: RefCell<Memo>,
    pub(super) hot: RefCell<HotCopies>,
    /// The purge rules in force and when this Envoy first applied each (`on_configure`).
    purges: RefCell<Purges>,
    pub(super) scopes: RefCell<ScopeMemo>,
    pub(super) contexts: RefCell<ContextMemo>,
    /// The consumers of this configuration, by key digest.
    pub(super) auth: RefCell<Authenticator>,
    /// The L2 token and signing key, from the host's environment (never from the JSON config).
    /// Never logged.
    pub l2_secrets: L2Secrets,
    /// Why L2 is off although the configuration enables it (no signing key).
    l2_off: Option<&'static str>,
    /// Other workers exist: coalescing must claim flights across workers.
    shared_with_others: Cell<bool>,
    /// When the gauges were last recorded (`None`: not yet).
    gauges_at_ms: Cell<Option<u64>>,
    /// When L1 hits were last reported (`None`: not yet); in time, like the gauges.
    hits_reported_at_ms: Cell<Option<u64>>,
    /// Warming was considered (on the worker's first tick; the store's mark decides who warms).
    warm_checked: Cell<bool>,
    /// L1 hits since the last report, when this configuration reports them.
    reports_hits: bool,
    hit_counts: RefCell<HitCounts>,
}

impl Worker {
    pub fn new(config: FilterConfig, l2_secrets: L2Secrets) -> Worker {
        Worker::continuing(config, l2_secrets, None)
    }

    /// A worker for a new configuration that carries on `previous`'s stats tally (streams
    /// that started under the previous configuration still count into it).
    pub fn continuing(mut config: FilterConfig, l2_secrets: L2Secrets, previous: Option<&Worker>) -> Worker {
        let tally = previous.map_or_else(Rc::default, |w| Rc::clone(&w.tally));
        // Without a signing key L2 is off (fail open: lookups go upstream, nothing is stored),
        // counted once per configuration and said by `describe`.
        let l2_off = config.l2.enabled.then(|| l2_secrets.disabled_reason()).flatten();
        if let Some(reason) = l2_off {
            config.l2.enabled = false;
            tally.borrow_mut().add(Counter::L2Disabled(reason), 1);
        }
        let layout = Layout::from_config(&config.cache);
        let names = KeyNames::new(&layout);
        let hints = WayHints::new(layout.capacity());
        let auth = RefCell::new(Authenticator::new(&config.auth));
        let reports_hits = hits::reporting(&config, &l2_secrets);
        // Hits counted under the previous configuration are reported under this one.
        let hit_counts = RefCell::new(previous.map(Worker::take_hit_counts).unwrap_or_default());
        Worker {
            auth,
            config,
            names,
            hints,
            layout,
            flights: RefCell::default(),
            served_locally: RefCell::default(),
            l2_stores: RefCell::default(),
            records: RefCell::default(),
            tally,
            memo: RefCell::default(),
            hot: RefCell::default(),
            purges: RefCell::default(),
            scopes: RefCell::default(),
            contexts: RefCell::default(),
            l2_secrets,
            l2_off,
            // Until the first tick says otherwise, assume company: claims are always correct.
            shared_with_others: Cell::new(true),
            gauges_at_ms: Cell::new(None),
            hits_reported_at_ms: Cell::new(None),
            warm_checked: Cell::new(false),
            reports_hits,
            hit_counts,
        }
    }

    /// A one-line summary for the host's log (no secrets: only whether they are set).
    pub fn describe(&self) -> String {
        let set = |present: bool| if present { "set" } else { "unset" };
        format!(
            "L1 {} sets x {} ways, {} bytes, ttl {} s; L2 {}, API token {}, signing key {}; auth: {} consumers, jwt {}, anonymous {}; refresh-ahead: {} tenants, secret {}",
            self.layout.sets,
            self.layout.ways,
            self.config.cache.max_bytes,
            self.config.cache.ttl_seconds,
            match (self.config.l2.enabled, self.l2_off) {
                (true, _) => "on",
                (false, Some(_)) => "off (no signing key: set AURELIS_L2_SIGNING_KEY, at least 32 bytes)",
                (false, None) => "off",
            },
            set(self.l2_secrets.authorization.is_some()),
            set(self.l2_secrets.signing_key.is_some()),
            self.config.auth.consumers.len(),
            if self.config.auth.jwt.is_some() { "on" } else { "off" },
            if self.config.auth.anonymous.is_some() { "on" } else { "off" },
            self.config.refresh.tenants.len(),
            set(self.l2_secrets.refresh.is_some()),
        )
    }

    /// A declared consumer's own limits.
    pub(super) fn auth_consumer_limits(&self, consumer: usize) -> Option<crate::limits::Limits> {
        self.config.auth.consumers.get(consumer).and_then(|c| c.limits)
    }

    pub fn l1<'a, S: cache::SharedStore>(&'a self, store: &'a S) -> L1Cache<'a, S> {
        L1Cache::new(store, &self.layout, &self.names, &self.hints)
    }

    pub(super) fn claims<'a, S: cache::SharedStore>(&'a self, store: &'a S) -> Option<Claims<'a, S>> {
        self.shared_with_others.get().then(|| Claims::new(store, &self.layout, &self.names))
    }

    pub(super) fn limit_table<'a, S: cache::SharedStore>(&self, store: &'a S) -> LimitTable<'a, S> {
        LimitTable::new(store, self.config.rate_limit.max_identities)
    }

    pub(super) fn count(&self, counter: Counter, by: u64) {
        self.tally.borrow_mut().add(counter, by);
    }

    /// A new configuration: empties a replaced L1 shape's slots (shared data never frees keys,
    /// but their values can be emptied). The first worker to see the new shape does it.
    pub fn on_configure(&self, host: &mut impl Host) {
        if let Some(old) = workers::swap_layout(host.store(), &self.layout.namespace()) {
            let names = KeyNames::new(&old);
            let hints = WayHints::default();
            L1Cache::new(host.store(), &old, &names, &hints).clear();
        }
        let now = host.now_ms();
        *self.purges.borrow_mut() = cache::purge::apply(host.store(), &self.config.cache.purges, now);
    }

    /// Whether a purge covers `key`'s L1 entry (for `model`; `None`: unknown), which this Envoy
    /// put into L1 at `inserted_ms`. A purged entry is dropped from L1 and this worker's
    /// copies, and counted: the request then goes on as a miss.
    pub(super) fn purged<S: cache::SharedStore>(
        &self,
        store: &S,
        key: &CacheKey,
        inserted_ms: u64,
        model: Option<&str>,
    ) -> bool {
        let covered = self.purges.borrow().covers(inserted_ms, &key.text, &self.config.cache.key_prefix, model);
        if covered {
            self.hot.borrow_mut().remove(key);
            self.l1(store).remove(key, inserted_ms);
            self.count(Counter::L1Purged, 1);
        }
        covered
    }

    /// The leader of `key` is done; its waiters are released from the next worker event.
    pub(super) fn finish_flight(&self, host: &mut impl Host, key: &CacheKey, leader: StreamId, stored: bool) {
        let (claimed, has_waiters) = self.flights.borrow_mut().finish(key, leader, stored);
        if claimed {
            Claims::new(host.store(), &self.layout, &self.names).release(key);
        }
        if has_waiters {
            host.wake_worker();
        }
    }

    pub(super) fn queue_l2_store(&self, host: &mut impl Host, store: PendingStore) {
        let mut stores = self.l2_stores.borrow_mut();
        if stores.len() >= MAX_PENDING_STORES {
            drop(stores);
            self.count(Counter::L2Store("dropped"), 1);
            return;
        }
        stores.push(store);
        drop(stores);
        host.wake_worker();
    }

    pub(super) fn queue_record(&self, host: &mut impl Host, record: crate::http::Callout) {
        let mut records = self.records.borrow_mut();
        if records.len() >= MAX_PENDING_STORES {
            drop(records);
            self.count(Counter::Refresh("record_dropped"), 1);
            return;
        }
        records.push(record);
        drop(records);
        host.wake_worker();
    }

    /// A waiter's own response callbacks ask whether a worker event answered it, and what its
    /// hit spends.
    pub(super) fn take_served_locally(&self, stream: StreamId) -> Option<ServedLocally> {
        self.served_locally.borrow_mut().remove(&stream)
    }

    pub(super) fn forget(&self, stream: StreamId) {
        self.flights.borrow_mut().forget(stream);
        self.served_locally.borrow_mut().remove(&stream);
    }

    /// Event: the wake-up a leader or a queued store asked for.
    pub fn on_wake(&self, host: &mut impl Host) {
        self.release_finished(host);
        self.send_l2_stores(host);
    }

    /// Event: the timer (every 50 ms).
    pub fn on_tick(&self, host: &mut impl Host) {
        self.tend(host);
        self.tally.borrow_mut().flush(host);
    }

    /// Event: this worker's last stream ended, on a host whose worker has no timer without
    /// streams (the native module). The timer's work is done now; the stats counted are handed
    /// back for the host to flush later, in one batch with other idle moments': a flush costs
    /// ~3k instructions per stat in Envoy's labelled-metric calls, which at low concurrency
    /// (every request ending idle) cost more than the request itself (callgrind).
    pub fn on_idle(&self, host: &mut impl Host) -> Tally {
        self.tend(host);
        self.tally.borrow_mut().take_pending()
    }

    /// The timer's work but the stats flush.
    fn tend(&self, host: &mut impl Host) {
        let now = host.now_ms();
        self.shared_with_others.set(workers::count(host.store()) != 1);
        if self.flights.borrow().has_remote_waiters() {
            let l1 = self.l1(host.store());
            let claims = Claims::new(host.store(), &self.layout, &self.names);
            self.flights
                .borrow_mut()
                .settle_remote(|key| self.live_in_l1(&l1, key, now), |key| claims.pending(key, now));
        }
        self.on_wake(host);
        let expired = self.flights.borrow_mut().expire(now);
        self.count(Counter::CoalesceTimeouts, expired.len() as u64);
        for waiter in expired {
            host.resume_stream(waiter.stream);
        }
        let last = self.gauges_at_ms.get();
        if last.is_none_or(|at| now.saturating_sub(at) >= GAUGE_INTERVAL_MS) {
            self.gauges_at_ms.set(Some(now));
            self.record_gauges(host, now);
        }
        if !self.warm_checked.replace(true) {
            self.start_warming(host);
        }
        let reported = self.hits_reported_at_ms.get();
        if reported.is_none_or(|at| now.saturating_sub(at) >= hits::REPORT_EVERY_MS) {
            self.hits_reported_at_ms.set(Some(now));
            self.report_hits(host);
        }
    }

    /// The L1 hits counted since the last report, taken out of this worker: a host whose
    /// worker has no timer while it has no stream (the native module) hands them to a
    /// process-wide report instead of leaving them until the next request.
    pub fn take_hit_counts(&self) -> HitCounts {
        std::mem::take(&mut *self.hit_counts.borrow_mut())
    }

    /// Counts an L1 hit of `key` towards its hotness (worker memory only; reported in batches).
    pub(super) fn note_l1_hit(&self, key: &CacheKey) {
        if self.reports_hits {
            self.hit_counts.borrow_mut().note(&key.text);
        }
    }

    /// Asks the cache service for the hottest entries if this worker is the one to warm L1.
    fn start_warming(&self, host: &mut impl Host) {
        let Some(callout) = warm::load::start(&self.config, &self.l2_secrets, host.store()) else { return };
        if !host.dispatch_call(WorkerCall::Warm, &callout) {
            self.count(Counter::Warm("error"), 1);
        }
    }

    /// Sends the L1 hits counted since the last report, if any.
    fn report_hits(&self, host: &mut impl Host) {
        if self.hit_counts.borrow().is_empty() {
            return;
        }
        let (body, dropped) = self.hit_counts.borrow_mut().take_body();
        if dropped > 0 {
            self.count(Counter::HitsUnreported, dropped);
        }
        if body.is_empty() {
            return;
        }
        let callout = hits::report_callout(&self.config, &self.l2_secrets, body);
        if !host.dispatch_call(WorkerCall::HitReport, &callout) {
            self.count(Counter::HitReports("error"), 1);
        }
    }

    /// Event: the answer to a call this worker made with `dispatch_call`.
    pub fn on_call_answer(&self, call: WorkerCall, host: &mut impl Host, body_size: usize) {
        let status = host.callout_status();
        match call {
            WorkerCall::Warm => {
                let body = if status == Some(200) { host.callout_body(body_size) } else { None };
                let now = host.now_ms();
                let l1 = self.l1(host.store());
                let mut count = |counter, by| self.count(counter, by);
                let body = body.unwrap_or_default();
                warm::load::load(
                    &self.config,
                    &self.l2_secrets,
                    &l1,
                    self.layout.ttl_ms,
                    status,
                    &body,
                    now,
                    &mut count,
                );
            }
            WorkerCall::HitReport => {
                let ok = matches!(status, Some(s) if (200..300).contains(&s));
                self.count(Counter::HitReports(if ok { "ok" } else { "error" }), 1);
            }
        }
    }

    /// Event: the answer to an L2 store this worker sent.
    pub fn on_store_answer(&self, status: Option<u16>) {
        let ok = matches!(status, Some(s) if (200..300).contains(&s));
        self.count(Counter::L2Store(if ok { "ok" } else { "error" }), 1);
    }

    /// A remote leader's fill is in L1 (and no purge covers it; the model is unknown here, so
    /// any model rule counts as covering).
    fn live_in_l1<S: cache::SharedStore>(&self, l1: &L1Cache<'_, S>, key: &CacheKey, now: u64) -> bool {
        match l1.lookup(key, now) {
            Lookup::Hit { inserted_ms, .. } => {
                !self.purges.borrow().covers(inserted_ms, &key.text, &self.config.cache.key_prefix, None)
            }
            _ => false,
        }
    }

    fn record_gauges(&self, host: &mut impl Host, now: u64) {
        let occupancy = self.l1(host.store()).occupancy(now);
        let limits = &self.config.rate_limit;
        let identities = limits.enabled.then(|| self.limit_table(host.store()).tracked(&limits.limits, now));
        let mut tally = self.tally.borrow_mut();
        tally.gauge(Gauge::L1Entries, occupancy.entries);
        tally.gauge(Gauge::L1Bytes, occupancy.bytes);
        if let Some(identities) = identities {
            tally.gauge(Gauge::RatelimitIdentities, identities);
        }
    }

    /// Answers (from L1) or resumes the waiters of every finished flight.
    fn release_finished(&self, host: &mut impl Host) {
        let finished = self.flights.borrow_mut().take_finished();
        if finished.is_empty() {
            return;
        }
        let now = host.now_ms();
        for flight in finished {
            let model = flight.waiters.first().and_then(|w| w.context.model.clone());
            let found = if flight.stored { self.l1(host.store()).lookup(&flight.key, now) } else { Lookup::Miss };
            let found = match found {
                Lookup::Hit { inserted_ms, .. }
                    if self.purged(host.store(), &flight.key, inserted_ms, model.as_deref()) =>
                {
                    Lookup::Miss
                }
                other => other,
            };
            for waiter in flight.waiters {
                // Waiters may want another shape than their leader (the key names none).
                let shaped = match &found {
                    Lookup::Hit { entry, age_seconds, .. } => {
                        reply::reshape(self, entry.clone(), waiter.context.shape).map(|s| (s, *age_seconds))
                    }
                    _ => None,
                };
                let answered = match shaped {
                    Some(((entry, rewrite), age_seconds)) => {
                        // The waiter's own copy (made for `reshape`) moves into its reply.
                        let spend = reply::hit_spend(&self.config, &entry);
                        let tokens = reply::tokens_of(&entry);
                        let served = ServedLocally {
                            spend,
                            prompt_tokens: u64::from(entry.prompt_tokens),
                            completion_tokens: u64::from(entry.completion_tokens),
                        };
                        let hit = reply::hit_owned(entry, "L1", age_seconds, &waiter.context);
                        self.served_locally.borrow_mut().insert(waiter.stream, served);
                        let sent = host.send_reply_to(waiter.stream, &hit);
                        if sent {
                            self.note_l1_hit(&flight.key);
                            reply::count_hit(&mut self.tally.borrow_mut(), tokens, "L1", &waiter.context, now);
                            self.count(Counter::Coalesced, 1);
                            if let Some(kind) = rewrite {
                                self.count(Counter::Replayed(kind), 1);
                            }
                        } else {
                            self.served_locally.borrow_mut().remove(&waiter.stream);
                        }
                        sent
                    }
                    None => false,
                };
                if !answered {
                    host.resume_stream(waiter.stream);
                }
            }
        }
    }

    fn send_l2_stores(&self, host: &mut impl Host) {
        let stores = std::mem::take(&mut *self.l2_stores.borrow_mut());
        for store in stores {
            let sent = cache::l2::store_callout(&self.config.l2, &self.l2_secrets, store)
                .is_some_and(|callout| host.dispatch_from_worker(&callout));
            if !sent {
                self.count(Counter::L2Store("error"), 1);
            }
        }
        let records = std::mem::take(&mut *self.records.borrow_mut());
        for record in records {
            let sent = host.dispatch_from_worker(&record);
            self.count(Counter::Refresh(if sent { "recorded" } else { "record_error" }), 1);
        }
    }
}

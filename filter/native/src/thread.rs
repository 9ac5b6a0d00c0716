//! Per-worker state: the core `Worker` is single-threaded (`Rc`/`RefCell`), so each Envoy
//! worker thread keeps its own, in a thread-local table with one `Worker` per configuration it
//! serves (a replaced configuration's `Worker` stays until its last stream ends, like the Wasm
//! host's retired roots).
//!
//! Why thread-locals rather than a table indexed by `http_filter_get_worker_index`: every hook
//! of a stream runs on that stream's worker thread, so the thread *is* the worker; a
//! thread-local needs no lock and no index bookkeeping across configurations, and Envoy's main
//! thread (which runs no streams) never gets one.
//!
//! The worker's timer: the dynamic-module ABI has no per-worker timer, but a stream's scheduler
//! runs `on_http_filter_scheduled` on that stream's worker thread, from any thread that commits
//! to it. Each worker thread therefore lends the scheduler of one of its live streams (the
//! "anchor") to a module-owned ticker thread, which commits a tick every 50 ms; a wake-up
//! (`wake_worker`) commits to the same scheduler. When the anchor ends, another live stream
//! takes over; a worker without streams has nothing to expire or release. When its last stream
//! ends it does the timer's work once and parks its stats, which the ticker flushes within a
//! tick (batched: at low concurrency every request ends idle, and flushing each time cost more
//! than the request).
use crate::abi::{Filter, Scheduler};
use crate::factory::Factory;
use crate::host::NativeHost;
use crate::store::ProcessStore;
use aurelis_core::coalescing::StreamId;
use aurelis_core::flow::{workers, Worker};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

pub const TICK: u64 = 1;
pub const WAKE: u64 = 2;
/// Not a scheduled event: the thread's last stream ended.
const IDLE: u64 = 3;
const TICK_PERIOD: Duration = Duration::from_millis(50);
/// The ticker refreshes the store's gauges every this many ticks (2 s, as the core does).
const GAUGE_EVERY_TICKS: u32 = 40;

/// A worker thread's scheduler slot, shared with the ticker thread. The mutex orders a commit
/// against the scheduler's deletion (which happens before its stream is destroyed).
type Slot = Arc<Mutex<Option<Scheduler>>>;

/// Every worker thread's slot, for the ticker.
static SLOTS: Mutex<Vec<Weak<Mutex<Option<Scheduler>>>>> = Mutex::new(Vec::new());

/// The core worker for one configuration on this thread.
pub struct WorkerState {
    pub factory: Arc<Factory>,
    pub worker: Worker,
}

struct ThreadState {
    slot: Slot,
    anchor: Cell<Option<StreamId>>,
    workers: RefCell<Vec<Rc<WorkerState>>>,
    streams: RefCell<HashMap<StreamId, Filter>>,
    next_id: Cell<StreamId>,
    registered: Cell<bool>,
}

impl ThreadState {
    fn new() -> Self {
        let slot: Slot = Arc::default();
        lock(&SLOTS).push(Arc::downgrade(&slot));
        start_ticker();
        ThreadState {
            slot,
            anchor: Cell::new(None),
            workers: RefCell::default(),
            streams: RefCell::default(),
            next_id: Cell::new(1),
            registered: Cell::new(false),
        }
    }
}

thread_local! {
    static THREAD: ThreadState = ThreadState::new();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here leaves a half-written value behind a panic: keep going with it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One ticker thread per process commits a tick to every worker thread's anchor.
fn start_ticker() {
    static START: Once = Once::new();
    START.call_once(|| {
        let spawned = std::thread::Builder::new().name("aurelis-tick".into()).spawn(|| {
            for ticks in 1u32.. {
                std::thread::sleep(TICK_PERIOD);
                let slots: Vec<Slot> = lock(&SLOTS).iter().filter_map(Weak::upgrade).collect();
                for slot in slots {
                    if let Some(scheduler) = lock(&slot).as_ref() {
                        scheduler.commit(TICK);
                    }
                }
                // A panic here must not end the ticker (or unwind out of it).
                let _ = std::panic::catch_unwind(crate::factory::schedule_parked_stats_flushes);
                if ticks % crate::factory::PARKED_REPORT_EVERY_TICKS == 0 {
                    let _ = std::panic::catch_unwind(crate::factory::report_parked_hits);
                }
                if ticks % GAUGE_EVERY_TICKS == 0 {
                    // A panic here must not end the ticker (or unwind out of it).
                    let _ = std::panic::catch_unwind(crate::factory::refresh_gauges);
                }
            }
        });
        if spawned.is_err() {
            crate::abi::log(
                crate::abi::Level::Error,
                "aurelis: no ticker thread: coalescing waits end at stream end only",
            );
        }
    });
}

/// A new stream on this thread: its id and its configuration's worker.
pub fn attach(factory: &Arc<Factory>, filter: Filter) -> (StreamId, Rc<WorkerState>) {
    THREAD.with(|t| {
        let id = t.next_id.get();
        t.next_id.set(id.wrapping_add(1).max(1));
        t.streams.borrow_mut().insert(id, filter);
        if t.anchor.get().is_none() {
            if let Some(scheduler) = filter.scheduler() {
                *lock(&t.slot) = Some(scheduler);
                t.anchor.set(Some(id));
            }
        }
        let existing = t.workers.borrow().iter().find(|w| w.factory.generation == factory.generation).cloned();
        let state = existing.unwrap_or_else(|| new_worker(t, factory));
        (id, state)
    })
}

fn new_worker(t: &ThreadState, factory: &Arc<Factory>) -> Rc<WorkerState> {
    let previous = t.workers.borrow().last().cloned();
    let worker =
        Worker::continuing(factory.config.clone(), crate::secrets::from_env(), previous.as_ref().map(|p| &p.worker));
    let state = Rc::new(WorkerState { factory: Arc::clone(factory), worker });
    state.worker.on_configure(&mut NativeHost::for_worker(&state.factory));
    if !t.registered.get() {
        t.registered.set(true);
        let _ = workers::register(ProcessStore::global());
    }
    t.workers.borrow_mut().push(Rc::clone(&state));
    state
}

/// The stream ended (its filter is being destroyed).
pub fn detach(id: StreamId) {
    THREAD.with(|t| {
        t.streams.borrow_mut().remove(&id);
        if t.anchor.get() == Some(id) {
            // Deleted under the slot's lock: the ticker never commits to a deleted scheduler.
            lock(&t.slot).take();
            t.anchor.set(None);
            let next = t.streams.borrow().iter().next().map(|(id, filter)| (*id, *filter));
            if let Some((next_id, filter)) = next {
                if let Some(scheduler) = filter.scheduler() {
                    *lock(&t.slot) = Some(scheduler);
                    t.anchor.set(Some(next_id));
                }
            }
        }
        if t.streams.borrow().is_empty() {
            // No stream left to carry ticks: the timer's work now, and the stats and hit counts
            // parked for the ticker, so they do not wait for traffic.
            run(t, IDLE);
        }
    })
}

/// The live filter of a stream on this thread (a coalesced waiter).
pub fn filter_of(id: StreamId) -> Option<Filter> {
    THREAD.with(|t| t.streams.borrow().get(&id).copied())
}

/// Asks for `on_wake` on this thread soon, outside the current callback.
pub fn wake() {
    THREAD.with(|t| {
        if let Some(scheduler) = lock(&t.slot).as_ref() {
            scheduler.commit(WAKE);
        }
    })
}

/// A scheduled event on this thread (from the ticker, or a wake-up).
pub fn on_scheduled(event: u64) {
    THREAD.with(|t| run(t, event))
}

fn run(t: &ThreadState, event: u64) {
    // Drop the workers of destroyed configurations whose streams are all gone (the table's
    // reference is then the only one).
    t.workers.borrow_mut().retain(|w| !(w.factory.is_retired() && Rc::strong_count(w) == 1));
    let workers: Vec<Rc<WorkerState>> = t.workers.borrow().clone();
    for state in &workers {
        let mut host = NativeHost::for_worker(&state.factory);
        match event {
            TICK => {
                state.worker.on_tick(&mut host);
                host.flush_panics();
            }
            IDLE => {
                // No timer until the next stream: the ticker thread flushes and reports these.
                state.factory.park_stats(state.worker.on_idle(&mut host));
                host.flush_panics();
                state.factory.park_hits(state.worker.take_hit_counts());
            }
            _ => state.worker.on_wake(&mut host),
        }
    }
}

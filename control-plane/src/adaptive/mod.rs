//! The control plane acts: decisions that close a loop over what the telemetry observed.
//! Every decision here is a pure function of observed windows, the current setting and `now`;
//! the loop that feeds them and pushes their effects over xDS lives in `driver.rs`. Nothing
//! here balances load itself: Envoy does (weighted clusters, its LB policies, outlier
//! detection, the overload manager); we only choose its settings.
pub mod apply;
mod balancer;
mod balancing;
mod candidates;
mod controller;
pub mod driver;
pub mod evidence;
pub mod fleet;
pub mod memory;
mod metrics;
pub mod quota;
mod routing;
mod scaling;
mod settings;
mod tuning;

pub use balancer::{BalancingChange, BalancingController, ClusterBalancing, WEIGHT_DEADBAND};
pub use balancing::{
    next_policy, response_time_weights, verdict, Balancing, BalancingSettings, EndpointLoad, LbPolicy,
};
pub use memory::{MemoryEvent, MemoryGovernor, MemorySettings};
pub use routing::{next_weights, ProviderSignals, RoutingDecision, RoutingSettings, WeightReason};
pub use scaling::{desired_replicas, ScalingInputs, ScalingSettings};
pub use settings::AdaptiveSpec;
pub use tuning::{Candidate, Guard, Rollout, Tunable, Tuner, TuningEvent, TuningMode, TuningSettings};

pub use candidates::{candidates, CurrentSettings, TuningEvidence};
pub use controller::{ModelRouting, RoutingController, WeightChange};
pub use metrics::AdaptiveMetrics;

use std::sync::{Mutex, MutexGuard};

/// The adaptive loops' state, shared by the driver and the admin API.
pub struct Adaptive {
    routing: Mutex<RoutingController>,
    balancing: Mutex<BalancingController>,
    tuner: Mutex<Tuner>,
    tuning_log: Mutex<TuningLog>,
    memory: Mutex<MemoryState>,
    /// The fleet stats the last tuning cycle read: the next cycle's evidence is the growth
    /// since.
    stats_seen: Mutex<crate::fleetstats::Snapshot>,
    pub metrics: AdaptiveMetrics,
}

/// The memory-pressure loop's memory: its governor and recent events (`GET /v1/tuning`).
#[derive(Debug, Default)]
pub struct MemoryState {
    pub governor: MemoryGovernor,
    pub events: std::collections::VecDeque<TimedMemoryEvent>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TimedMemoryEvent {
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: MemoryEvent,
}

impl Adaptive {
    pub fn new(metrics: &crate::metrics::Metrics) -> Adaptive {
        Adaptive {
            routing: Mutex::new(RoutingController::default()),
            balancing: Mutex::new(BalancingController::default()),
            tuner: Mutex::new(Tuner::default()),
            tuning_log: Mutex::new(TuningLog::default()),
            memory: Mutex::new(MemoryState::default()),
            stats_seen: Mutex::new(crate::fleetstats::Snapshot::new()),
            metrics: AdaptiveMetrics::new(metrics),
        }
    }

    /// The routing memory. A panic elsewhere while it was held cannot leave it inconsistent
    /// in a way that matters (the next decision recomputes from windows), so poison is ignored.
    pub fn routing(&self) -> MutexGuard<'_, RoutingController> {
        self.routing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn balancing(&self) -> MutexGuard<'_, BalancingController> {
        self.balancing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_candidates(&self, candidates: Vec<Candidate>) {
        self.log().candidates = candidates;
    }

    pub fn record_tuning(&self, at_ms: i64, events: &[TuningEvent]) {
        let mut log = self.log();
        for event in events {
            log.events.push_back(TimedTuningEvent { at_ms, event: event.clone() });
        }
        while log.events.len() > TUNING_EVENTS_KEPT {
            log.events.pop_front();
        }
    }

    /// The last candidates and the recent events, for `GET /v1/tuning`.
    pub fn tuning_log(&self) -> TuningLog {
        self.log().clone()
    }

    fn log(&self) -> MutexGuard<'_, TuningLog> {
        self.tuning_log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn memory(&self) -> MutexGuard<'_, MemoryState> {
        self.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record_memory(&self, at_ms: i64, event: MemoryEvent) {
        let mut memory = self.memory();
        memory.events.push_back(TimedMemoryEvent { at_ms, event });
        while memory.events.len() > TUNING_EVENTS_KEPT {
            memory.events.pop_front();
        }
    }

    /// Replaces the snapshot the last cycle read with `now`'s, returning the old one.
    pub fn swap_stats_seen(&self, now: crate::fleetstats::Snapshot) -> crate::fleetstats::Snapshot {
        let mut seen = self.stats_seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *seen, now)
    }

    pub fn tuner(&self) -> MutexGuard<'_, Tuner> {
        self.tuner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How many tuning events `GET /v1/tuning` remembers.
const TUNING_EVENTS_KEPT: usize = 200;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TimedTuningEvent {
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: TuningEvent,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TuningLog {
    pub candidates: Vec<Candidate>,
    pub events: std::collections::VecDeque<TimedTuningEvent>,
}

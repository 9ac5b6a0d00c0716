//! The control plane acts: decisions that close a loop over what the telemetry observed.
//! Every decision here is a pure function of observed windows, the current setting and `now`;
//! the loop that feeds them and pushes their effects over xDS lives in `driver.rs`. Nothing
//! here balances load itself: Envoy does (weighted clusters, its LB policies, outlier
//! detection, the overload manager); we only choose its settings.
mod balancing;
mod routing;
mod scaling;
mod tuning;

pub use balancing::{next_policy, response_time_weights, verdict, BalancingSettings, EndpointLoad, LbPolicy};
pub use routing::{next_weights, ProviderSignals, RoutingDecision, RoutingSettings, WeightReason};
pub use scaling::{desired_replicas, ScalingInputs, ScalingSettings};
pub use tuning::{Candidate, Guard, Rollout, Tunable, Tuner, TuningEvent, TuningMode, TuningSettings};

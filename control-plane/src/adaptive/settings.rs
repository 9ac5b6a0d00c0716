//! The model file's `adaptive` section: what the control plane may change on its own, and how
//! fast. Everything is off or advisory by default; an operator turns each loop on.
use super::{BalancingSettings, MemorySettings, RoutingSettings, ScalingSettings, TuningSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveSpec {
    pub routing: RoutingSettings,
    pub balancing: BalancingSettings,
    pub tuning: TuningSettings,
    pub scaling: ScalingSettings,
    /// The L1 budget under heap pressure (`memory.rs`).
    pub memory: MemorySettings,
}

impl AdaptiveSpec {
    /// `(field, message)` of the first invalid setting, the field relative to `adaptive.`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let r = &self.routing;
        let bad = |field: &str, message: String| Err((field.to_string(), message));
        if r.total_weight == 0 || r.total_weight > 10_000 {
            return bad("routing.total_weight", format!("{} must be between 1 and 10000", r.total_weight));
        }
        if r.min_weight > r.total_weight / 2 {
            return bad("routing.min_weight", format!("{} must be at most half of total_weight", r.min_weight));
        }
        if r.max_step == 0 || r.max_step > r.total_weight {
            return bad("routing.max_step", format!("{} must be between 1 and total_weight", r.max_step));
        }
        if r.deadband > r.total_weight {
            return bad("routing.deadband", format!("{} must be at most total_weight", r.deadband));
        }
        if r.observe_windows == 0 || r.observe_windows > 360 {
            return bad("routing.observe_windows", format!("{} must be between 1 and 360", r.observe_windows));
        }
        if !(0.0..=4.0).contains(&r.cost_factor) {
            return bad("routing.cost_factor", format!("{} must be between 0 and 4", r.cost_factor));
        }
        let b = &self.balancing;
        if b.load_variance <= 0.0 || b.response_time_variance <= 0.0 {
            return bad("balancing", "variance thresholds must be above 0".into());
        }
        let t = &self.tuning;
        if t.steps == 0 || t.steps > 100 {
            return bad("tuning.steps", format!("{} must be between 1 and 100", t.steps));
        }
        if t.step_interval_s == 0 {
            return bad("tuning.step_interval_s", "must be at least 1".into());
        }
        self.memory.check()?;
        let s = &self.scaling;
        if s.min_replicas == 0 {
            return bad("scaling.min_replicas", "must be at least 1".into());
        }
        if s.scale_down_cpu >= s.scale_up_cpu {
            return bad("scaling.scale_down_cpu", format!("{} must be below scale_up_cpu", s.scale_down_cpu));
        }
        Ok(())
    }
}

//! Memory pressure: while an Envoy's heap runs near the overload manager's budget, the L1
//! budget (`filter.cache.max_bytes`) is lowered fleet-wide over ECDS, one step per interval,
//! down to a floor; once every Envoy is well below it again, it is raised back the same way
//! to where it started. Pure: the pressure and the current budget in, the step out.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    pub enabled: bool,
    /// Heap pressure (share of the budget) at or above which the L1 budget is lowered: the
    /// overload manager's `shrink_heap` threshold.
    pub lower_at: f64,
    /// Heap pressure below which a lowered budget is raised back.
    pub raise_below: f64,
    /// One step, as a share of the starting budget.
    pub step: f64,
    /// The lowest budget, as a share of the starting one.
    pub floor: f64,
    /// Time between two steps (and between two reads of the fleet's heap).
    pub interval_ms: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            enabled: true,
            lower_at: crate::xds::resources::SHRINK_HEAP_AT,
            raise_below: 0.75,
            step: 0.25,
            floor: 0.25,
            interval_ms: 10_000,
        }
    }
}

impl MemorySettings {
    /// `(field, message)` of the first invalid setting, relative to `adaptive.memory.`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let share = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
        let bad = |field: &str, message: String| Err((format!("memory.{field}"), message));
        if !(self.lower_at.is_finite() && self.lower_at > 0.0) {
            return bad("lower_at", format!("{} must be above 0", self.lower_at));
        }
        if !(self.raise_below.is_finite() && self.raise_below > 0.0 && self.raise_below < self.lower_at) {
            return bad("raise_below", format!("{} must be above 0 and below lower_at", self.raise_below));
        }
        if !share(self.step) {
            return bad("step", format!("{} must be in (0, 1]", self.step));
        }
        if !share(self.floor) {
            return bad("floor", format!("{} must be in (0, 1]", self.floor));
        }
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return bad("interval_ms", format!("{} must be between 100 and 3600000", self.interval_ms));
        }
        Ok(())
    }
}

/// One step of the L1 budget, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MemoryEvent {
    L1BudgetLowered { before: u64, after: u64, heap_pressure: f64, envoy: String },
    L1BudgetRaised { before: u64, after: u64, heap_pressure: f64 },
}

impl MemoryEvent {
    pub fn after(&self) -> u64 {
        match self {
            MemoryEvent::L1BudgetLowered { after, .. } | MemoryEvent::L1BudgetRaised { after, .. } => *after,
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryGovernor {
    /// The budget before the first lowering; `None` while nothing is lowered.
    pub baseline: Option<u64>,
}

impl MemoryGovernor {
    /// The step for the highest heap pressure `heap` (Envoy, share) with the budget at
    /// `current`; `None` holds (no Envoy reports its heap: nothing is known, nothing moves).
    pub fn decide(&mut self, s: &MemorySettings, heap: Option<(&str, f64)>, current: u64) -> Option<MemoryEvent> {
        let (envoy, pressure) = heap?;
        if !s.enabled {
            return None;
        }
        if pressure >= s.lower_at {
            let baseline = *self.baseline.get_or_insert(current);
            let floor = share_of(baseline, s.floor).max(1);
            let after = current.saturating_sub(share_of(baseline, s.step)).max(floor);
            return (after < current).then(|| MemoryEvent::L1BudgetLowered {
                before: current,
                after,
                heap_pressure: pressure,
                envoy: envoy.to_string(),
            });
        }
        let baseline = self.baseline?;
        if pressure >= s.raise_below {
            return None;
        }
        let after = current.saturating_add(share_of(baseline, s.step)).min(baseline);
        if after >= baseline {
            self.baseline = None;
        }
        (after > current).then_some(MemoryEvent::L1BudgetRaised { before: current, after, heap_pressure: pressure })
    }
}

fn share_of(bytes: u64, share: f64) -> u64 {
    (bytes as f64 * share).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn pressure_lowers_the_budget_in_steps_to_the_floor_and_relief_raises_it_back() {
        let s = MemorySettings::default();
        let mut g = MemoryGovernor::default();
        let mut budget = 64 * MIB;
        let mut lowered = Vec::new();
        while let Some(event) = g.decide(&s, Some(("envoy-0", 1.2)), budget) {
            budget = event.after();
            lowered.push(budget / MIB);
        }
        assert_eq!(lowered, [48, 32, 16], "25 % steps down to the 25 % floor");
        assert_eq!(g.decide(&s, Some(("envoy-0", 0.8)), budget), None, "between the thresholds: hold");
        let mut raised = Vec::new();
        while let Some(event) = g.decide(&s, Some(("envoy-0", 0.3)), budget) {
            budget = event.after();
            raised.push(budget / MIB);
        }
        assert_eq!(raised, [32, 48, 64]);
        assert_eq!(g.baseline, None, "back where it started: nothing to raise any more");
        assert_eq!(g.decide(&s, Some(("envoy-0", 0.3)), budget), None);
    }

    #[test]
    fn flapping_pressure_never_overshoots_the_start_and_unknown_heap_holds() {
        let s = MemorySettings::default();
        let mut g = MemoryGovernor::default();
        let mut budget = 100 * MIB;
        for pressure in [0.95, 0.5, 0.95, 0.5, 0.5, 0.5] {
            if let Some(event) = g.decide(&s, Some(("e", pressure)), budget) {
                budget = event.after();
            }
            assert!((25 * MIB..=100 * MIB).contains(&budget), "{budget}");
        }
        assert_eq!(budget, 100 * MIB);
        assert_eq!(g.decide(&s, None, budget), None);
        let off = MemorySettings { enabled: false, ..MemorySettings::default() };
        assert_eq!(g.decide(&off, Some(("e", 2.0)), budget), None);
    }

    #[test]
    fn settings_name_the_bad_field() {
        let bad = MemorySettings { raise_below: 0.95, ..MemorySettings::default() };
        assert_eq!(bad.check().map_err(|(f, _)| f), Err("memory.raise_below".to_string()));
        assert!(MemorySettings::default().check().is_ok());
    }
}

//! A scaling recommendation an autoscaler can read (exported as a gauge): the design
//! document's thresholds, at most a quarter of the fleet at a time, never below the minimum.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScalingInputs {
    pub replicas: u32,
    /// Mean CPU utilisation of the Envoys, 0..=1; `None` when no Envoy reports it.
    pub cpu: Option<f64>,
    /// Requests waiting for an upstream connection (Envoy's pending requests), fleet-wide.
    pub queued: Option<u64>,
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingSettings {
    pub min_replicas: u32,
    pub scale_up_cpu: f64,
    pub scale_up_queued: u64,
    pub scale_up_p95_ms: f64,
    pub scale_down_cpu: f64,
    pub scale_down_queued: u64,
    pub scale_down_p95_ms: f64,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        ScalingSettings {
            min_replicas: 2,
            scale_up_cpu: 0.70,
            scale_up_queued: 100,
            scale_up_p95_ms: 2000.0,
            scale_down_cpu: 0.30,
            scale_down_queued: 10,
            scale_down_p95_ms: 1000.0,
        }
    }
}

/// Up when any known pressure signal is over its threshold; down only when every signal is
/// known and under its threshold (an unknown signal never shrinks the fleet); steps of a
/// quarter of the fleet (at least one replica).
pub fn desired_replicas(inputs: &ScalingInputs, settings: &ScalingSettings) -> u32 {
    let current = inputs.replicas.max(1);
    let step = (current / 4).max(1);
    let pressed = inputs.cpu.is_some_and(|c| c > settings.scale_up_cpu)
        || inputs.queued.is_some_and(|q| q > settings.scale_up_queued)
        || inputs.p95_ms.is_some_and(|p| p > settings.scale_up_p95_ms);
    let idle = inputs.cpu.is_some_and(|c| c < settings.scale_down_cpu)
        && inputs.queued.is_some_and(|q| q < settings.scale_down_queued)
        && inputs.p95_ms.is_some_and(|p| p < settings.scale_down_p95_ms);
    let desired = if pressed {
        current + step
    } else if idle {
        current.saturating_sub(step)
    } else {
        current
    };
    desired.max(settings.min_replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(replicas: u32, cpu: f64, queued: u64, p95_ms: f64) -> u32 {
        let inputs = ScalingInputs { replicas, cpu: Some(cpu), queued: Some(queued), p95_ms: Some(p95_ms) };
        desired_replicas(&inputs, &ScalingSettings::default())
    }

    #[test]
    fn unknown_signals_can_raise_but_never_lower_the_fleet() {
        let only_p95 = |p95| ScalingInputs { replicas: 8, cpu: None, queued: None, p95_ms: Some(p95) };
        assert_eq!(desired_replicas(&only_p95(2500.0), &ScalingSettings::default()), 10);
        assert_eq!(desired_replicas(&only_p95(100.0), &ScalingSettings::default()), 8);
    }

    #[test]
    fn pressure_on_any_signal_scales_up_by_a_quarter() {
        assert_eq!(at(8, 0.75, 0, 500.0), 10);
        assert_eq!(at(8, 0.5, 150, 500.0), 10);
        assert_eq!(at(8, 0.5, 0, 2500.0), 10);
        assert_eq!(at(2, 0.9, 0, 500.0), 3, "at least one replica per step");
    }

    #[test]
    fn scale_down_needs_every_signal_quiet_and_stops_at_the_minimum() {
        assert_eq!(at(8, 0.2, 5, 500.0), 6);
        assert_eq!(at(8, 0.2, 50, 500.0), 8, "queueing holds the fleet");
        assert_eq!(at(2, 0.1, 0, 100.0), 2);
    }

    #[test]
    fn between_the_thresholds_nothing_moves() {
        assert_eq!(at(8, 0.5, 50, 1500.0), 8);
    }
}

//! Adaptive tuning: a candidate change with enough expected gain is applied in equal steps; after
//! each step the guard metrics are compared with the baseline taken before the first, and any
//! regression beyond tolerance rolls back to the starting value at once. One rollout at a time,
//! so a regression is attributable. The driver turns `Apply` into an ECDS/CDS push.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TuningMode {
    Off,
    /// Candidates are listed (`GET /v1/tuning`), nothing is applied.
    #[default]
    Recommend,
    Auto,
}

/// A setting the tuner may change, named as in the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tunable {
    /// `filter.cache.ttl_seconds`
    CacheTtlSeconds,
    /// `filter.cache.l1.max_entries`
    L1MaxEntries,
    /// `filter.cache.max_bytes`: moved only by the memory-pressure loop, never a candidate.
    L1MaxBytes,
    /// `filter.coalescing.timeout_ms`
    CoalescingTimeoutMs,
    /// `filter.l2.timeout_ms`
    L2TimeoutMs,
    /// `providers[].limits.max_pending_requests`
    MaxPendingRequests,
    /// `providers[].limits.retry_budget_percent`
    RetryBudgetPercent,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub setting: Tunable,
    pub from: f64,
    pub to: f64,
    /// Expected relative improvement of the metric the evidence is about (0.1 = 10 %).
    pub expected_gain: f64,
    /// The numbers behind it, for people.
    pub evidence: String,
}

/// What must not get worse while a change rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Guard {
    pub error_rate: f64,
    pub p95_ms: f64,
    pub hit_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuningSettings {
    pub mode: TuningMode,
    /// Candidates expected to gain less than this are only listed.
    pub min_expected_gain: f64,
    pub steps: u32,
    pub step_interval_s: u64,
    /// Allowed worsening before a rollback: error rate (absolute), p95 (relative), hit rate
    /// (absolute).
    pub max_error_rate_increase: f64,
    pub max_p95_increase: f64,
    pub max_hit_rate_decrease: f64,
}

impl Default for TuningSettings {
    fn default() -> Self {
        TuningSettings {
            mode: TuningMode::Recommend,
            min_expected_gain: 0.05,
            steps: 5,
            step_interval_s: 60,
            max_error_rate_increase: 0.01,
            max_p95_increase: 0.10,
            max_hit_rate_decrease: 0.05,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub candidate: Candidate,
    pub baseline: Guard,
    /// Steps applied so far (1..=steps).
    pub step: u32,
    pub last_step_ms: i64,
}

/// What happened in one tick; `Apply` is the effect the driver pushes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TuningEvent {
    Apply { setting: Tunable, before: f64, after: f64, step: u32, of: u32 },
    RolledBack { setting: Tunable, before: f64, after: f64, reason: String },
    Completed { setting: Tunable, from: f64, to: f64 },
}

#[derive(Debug, Default)]
pub struct Tuner {
    pub rollout: Option<Rollout>,
}

impl Tuner {
    /// One tick: continue, finish or roll back the current rollout, or start the best candidate.
    pub fn tick(
        &mut self,
        settings: &TuningSettings,
        guard: Guard,
        candidates: &[Candidate],
        now_ms: i64,
    ) -> Vec<TuningEvent> {
        if settings.mode != TuningMode::Auto {
            return Vec::new();
        }
        match self.rollout.take() {
            Some(rollout) => self.continue_rollout(settings, rollout, guard, now_ms),
            None => self.start(settings, guard, candidates, now_ms),
        }
    }

    fn start(
        &mut self,
        settings: &TuningSettings,
        guard: Guard,
        candidates: &[Candidate],
        now_ms: i64,
    ) -> Vec<TuningEvent> {
        let best = candidates
            .iter()
            .filter(|c| c.expected_gain > settings.min_expected_gain && c.from != c.to)
            .max_by(|a, b| a.expected_gain.total_cmp(&b.expected_gain));
        let Some(candidate) = best else { return Vec::new() };
        let steps = settings.steps.max(1);
        let after = value_at(candidate, 1, steps);
        self.rollout = Some(Rollout { candidate: candidate.clone(), baseline: guard, step: 1, last_step_ms: now_ms });
        vec![TuningEvent::Apply { setting: candidate.setting, before: candidate.from, after, step: 1, of: steps }]
    }

    fn continue_rollout(
        &mut self,
        settings: &TuningSettings,
        mut rollout: Rollout,
        guard: Guard,
        now_ms: i64,
    ) -> Vec<TuningEvent> {
        let steps = settings.steps.max(1);
        let c = rollout.candidate.clone();
        let applied = value_at(&c, rollout.step, steps);
        if let Some(reason) = regression(&rollout.baseline, &guard, settings) {
            return vec![TuningEvent::RolledBack { setting: c.setting, before: applied, after: c.from, reason }];
        }
        if now_ms - rollout.last_step_ms < (settings.step_interval_s as i64) * 1000 {
            self.rollout = Some(rollout);
            return Vec::new();
        }
        if rollout.step >= steps {
            return vec![TuningEvent::Completed { setting: c.setting, from: c.from, to: c.to }];
        }
        rollout.step += 1;
        rollout.last_step_ms = now_ms;
        let after = value_at(&c, rollout.step, steps);
        let step = rollout.step;
        self.rollout = Some(rollout);
        vec![TuningEvent::Apply { setting: c.setting, before: applied, after, step, of: steps }]
    }
}

/// The value after `step` of `steps` equal steps from `from` to `to`.
fn value_at(c: &Candidate, step: u32, steps: u32) -> f64 {
    c.from + (c.to - c.from) * f64::from(step) / f64::from(steps)
}

/// Why `now` is worse than `baseline` beyond tolerance, if it is.
fn regression(baseline: &Guard, now: &Guard, s: &TuningSettings) -> Option<String> {
    if now.error_rate > baseline.error_rate + s.max_error_rate_increase {
        return Some(format!(
            "error rate {:.3} > baseline {:.3} + {:.3}",
            now.error_rate, baseline.error_rate, s.max_error_rate_increase
        ));
    }
    if baseline.p95_ms > 0.0 && now.p95_ms > baseline.p95_ms * (1.0 + s.max_p95_increase) {
        return Some(format!(
            "p95 {:.0} ms > baseline {:.0} ms + {:.0} %",
            now.p95_ms,
            baseline.p95_ms,
            s.max_p95_increase * 100.0
        ));
    }
    if now.hit_rate < baseline.hit_rate - s.max_hit_rate_decrease {
        return Some(format!(
            "hit rate {:.3} < baseline {:.3} - {:.3}",
            now.hit_rate, baseline.hit_rate, s.max_hit_rate_decrease
        ));
    }
    None
}

#[cfg(test)]
#[path = "tuning_tests.rs"]
mod tests;

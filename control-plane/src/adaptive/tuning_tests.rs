use super::*;

const STEP_MS: i64 = 60_000;

fn auto() -> TuningSettings {
    TuningSettings { mode: TuningMode::Auto, ..Default::default() }
}
fn guard(p95_ms: f64) -> Guard {
    Guard { error_rate: 0.01, p95_ms, hit_rate: 0.5 }
}
fn ttl_candidate(gain: f64) -> Candidate {
    Candidate {
        setting: Tunable::CacheTtlSeconds,
        from: 300.0,
        to: 800.0,
        expected_gain: gain,
        evidence: "test".into(),
    }
}

#[test]
fn recommend_mode_applies_nothing() {
    let mut tuner = Tuner::default();
    let events = tuner.tick(&TuningSettings::default(), guard(900.0), &[ttl_candidate(0.3)], 0);
    assert!(events.is_empty());
    assert!(tuner.rollout.is_none());
}

#[test]
fn a_small_expected_gain_is_not_applied() {
    let mut tuner = Tuner::default();
    assert!(tuner.tick(&auto(), guard(900.0), &[ttl_candidate(0.04)], 0).is_empty());
}

#[test]
fn a_good_change_goes_out_in_five_equal_steps_one_per_interval() {
    let mut tuner = Tuner::default();
    let mut applied = vec![];
    let mut now = 0;
    let mut completed = false;
    for _ in 0..20 {
        for event in tuner.tick(&auto(), guard(900.0), &[ttl_candidate(0.3)], now) {
            match event {
                TuningEvent::Apply { after, .. } => applied.push(after),
                TuningEvent::Completed { to, .. } => {
                    assert_eq!(to, 800.0);
                    completed = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if completed {
            break;
        }
        now += STEP_MS / 2;
    }
    assert_eq!(applied, vec![400.0, 500.0, 600.0, 700.0, 800.0]);
    assert!(completed);
}

#[test]
fn a_step_that_degrades_p95_rolls_back_to_the_start_at_once_with_the_reason() {
    let mut tuner = Tuner::default();
    tuner.tick(&auto(), guard(900.0), &[ttl_candidate(0.3)], 0);
    tuner.tick(&auto(), guard(910.0), &[], STEP_MS);
    let events = tuner.tick(&auto(), guard(1500.0), &[], STEP_MS + 1);
    match events.as_slice() {
        [TuningEvent::RolledBack { before, after, reason, .. }] => {
            assert_eq!(*before, 500.0);
            assert_eq!(*after, 300.0, "back to the starting value, not one step");
            assert!(reason.contains("p95 1500 ms"), "{reason}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert!(tuner.rollout.is_none());
}

#[test]
fn error_rate_and_hit_rate_guard_too() {
    for bad in [Guard { error_rate: 0.05, ..guard(900.0) }, Guard { hit_rate: 0.3, ..guard(900.0) }] {
        let mut tuner = Tuner::default();
        tuner.tick(&auto(), guard(900.0), &[ttl_candidate(0.3)], 0);
        let events = tuner.tick(&auto(), bad, &[], 1);
        assert!(matches!(events.as_slice(), [TuningEvent::RolledBack { .. }]), "{bad:?}: {events:?}");
    }
}

#[test]
fn the_best_candidate_goes_first() {
    let mut tuner = Tuner::default();
    let l2 =
        Candidate { setting: Tunable::L2TimeoutMs, from: 50.0, to: 100.0, expected_gain: 0.5, evidence: "".into() };
    let events = tuner.tick(&auto(), guard(900.0), &[ttl_candidate(0.3), l2], 0);
    assert!(matches!(events.as_slice(), [TuningEvent::Apply { setting: Tunable::L2TimeoutMs, after: 60.0, .. }]));
}

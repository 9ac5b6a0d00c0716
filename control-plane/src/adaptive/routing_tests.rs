use super::*;

fn map(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn healthy(p95_ms: f64) -> ProviderSignals {
    ProviderSignals { requests: 100, p95_ms: Some(p95_ms), ..Default::default() }
}

fn settings() -> RoutingSettings {
    RoutingSettings { enabled: true, ..Default::default() }
}

fn signals(a: ProviderSignals, b: ProviderSignals) -> BTreeMap<String, ProviderSignals> {
    [("a".to_string(), a), ("b".to_string(), b)].into_iter().collect()
}

const NOW: i64 = 1_000_000;

#[test]
fn equal_providers_keep_the_file_weights() {
    let base = map(&[("a", 50), ("b", 50)]);
    let d = next_weights(&base, &base, &signals(healthy(800.0), healthy(820.0)), &BTreeMap::new(), &settings(), NOW);
    assert_eq!(d.weights, base);
    assert!(!d.changed);
}

#[test]
fn a_slow_provider_loses_weight_in_bounded_steps_down_to_the_probe_floor() {
    let base = map(&[("a", 50), ("b", 50)]);
    let sig = signals(healthy(500.0), healthy(5000.0));
    let mut current = base.clone();
    let mut seen = vec![];
    for _ in 0..10 {
        let d = next_weights(&base, &current, &sig, &BTreeMap::new(), &settings(), NOW);
        for (p, w) in &d.weights {
            assert!(current[p].abs_diff(*w) <= settings().max_step, "{p} moved more than a step");
        }
        current = d.weights;
        seen.push(current["b"]);
    }
    assert_eq!(seen[0], 40, "first step is bounded");
    // 5000 ms vs 500 ms: b's fair share is ~9, and it keeps at least the probe floor.
    assert!(current["b"] >= settings().min_weight && current["b"] < 15, "{current:?}");
    assert!(current["a"] > 85, "{current:?}");
}

#[test]
fn a_failing_provider_loses_weight_and_regains_it_after_recovery() {
    let base = map(&[("a", 50), ("b", 50)]);
    let failing = ProviderSignals { error_rate: 0.6, ..healthy(800.0) };
    let mut current = base.clone();
    for _ in 0..6 {
        current = next_weights(
            &base,
            &current,
            &signals(healthy(800.0), failing.clone()),
            &BTreeMap::new(),
            &settings(),
            NOW,
        )
        .weights;
    }
    assert!(current["b"] < 20, "{current:?}");
    for _ in 0..6 {
        current =
            next_weights(&base, &current, &signals(healthy(800.0), healthy(800.0)), &BTreeMap::new(), &settings(), NOW)
                .weights;
    }
    assert_eq!(current, base, "recovered provider is back to the file's weights");
}

#[test]
fn exhausted_quota_means_no_traffic_until_the_reset_then_probing_resumes() {
    let base = map(&[("a", 50), ("b", 50)]);
    let out = ProviderSignals { quota_exhausted_until_ms: Some(NOW + 30_000), ..healthy(800.0) };
    let d = next_weights(&base, &base, &signals(healthy(800.0), out.clone()), &BTreeMap::new(), &settings(), NOW);
    assert_eq!(d.weights["b"], 0, "at once, not in steps");
    assert_eq!(d.reasons["b"], WeightReason::QuotaExhausted);
    let later =
        next_weights(&base, &d.weights, &signals(healthy(800.0), out), &BTreeMap::new(), &settings(), NOW + 30_001);
    assert_eq!(later.reasons["b"], WeightReason::Adaptive);
    assert_eq!(later.weights["b"], settings().max_step, "after the reset it climbs back step by step");
}

#[test]
fn every_provider_out_of_quota_keeps_the_file_weights_rather_than_all_zero() {
    let base = map(&[("a", 50), ("b", 50)]);
    let out = ProviderSignals { quota_exhausted_until_ms: Some(NOW + 1), ..healthy(800.0) };
    let d = next_weights(&base, &base, &signals(out.clone(), out), &BTreeMap::new(), &settings(), NOW);
    assert_eq!(d.weights, base);
}

#[test]
fn pins_win_at_once_and_the_rest_share_what_is_left() {
    let base = map(&[("a", 50), ("b", 50)]);
    let pins = map(&[("b", 90)]);
    let d = next_weights(&base, &base, &signals(healthy(500.0), healthy(5000.0)), &pins, &settings(), NOW);
    assert_eq!(d.weights["b"], 90);
    assert_eq!(d.reasons["b"], WeightReason::Pinned);
    assert_eq!(d.targets["a"], 10);
}

#[test]
fn flapping_latency_within_the_deadband_changes_nothing() {
    let base = map(&[("a", 50), ("b", 50)]);
    let mut current = base.clone();
    let mut changes = 0;
    for i in 0..20 {
        let (pa, pb) = if i % 2 == 0 { (800.0, 860.0) } else { (860.0, 800.0) };
        let d = next_weights(&base, &current, &signals(healthy(pa), healthy(pb)), &BTreeMap::new(), &settings(), NOW);
        changes += usize::from(d.changed);
        current = d.weights;
    }
    assert_eq!(changes, 0);
}

#[test]
fn too_little_traffic_is_no_evidence() {
    let base = map(&[("a", 50), ("b", 50)]);
    let quiet = |p95| ProviderSignals { requests: 3, p95_ms: Some(p95), ..Default::default() };
    let d = next_weights(&base, &base, &signals(quiet(100.0), quiet(9000.0)), &BTreeMap::new(), &settings(), NOW);
    assert!(!d.changed);
    assert_eq!(d.reasons["b"], WeightReason::NoEvidence);
}

#[test]
fn price_counts_only_with_a_cost_factor() {
    let base = map(&[("a", 50), ("b", 50)]);
    let priced = |price| ProviderSignals { price_per_1k_tokens: Some(price), ..healthy(800.0) };
    let d = next_weights(&base, &base, &signals(priced(1.0), priced(4.0)), &BTreeMap::new(), &settings(), NOW);
    assert!(!d.changed);
    let costly = RoutingSettings { cost_factor: 1.0, ..settings() };
    let d = next_weights(&base, &base, &signals(priced(1.0), priced(4.0)), &BTreeMap::new(), &costly, NOW);
    assert_eq!(d.targets["b"], 20);
}

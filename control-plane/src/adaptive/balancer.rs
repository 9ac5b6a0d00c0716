//! The balancing loop's memory, per provider cluster: the last verdict (a switch needs the same
//! verdict twice in a row), the balancing in force with the inputs that produced it and when it
//! last changed, and the log of switches (`GET /v1/routing`, like the weight changes).
use super::balancing::{next_policy, response_time_weights, verdict};
use super::{Balancing, BalancingSettings, EndpointLoad, LbPolicy};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Response-time weights closer than this (of 100) to the pushed ones are not pushed again:
/// a sliding window moves a little every time it is read.
pub const WEIGHT_DEADBAND: u32 = 10;
/// How many switches `/v1/routing` remembers.
const CHANGES_KEPT: usize = 200;

/// One provider cluster's balancing as last decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterBalancing {
    pub policy: LbPolicy,
    /// What the latest window said before hysteresis (`None`: too little traffic to judge).
    pub verdict: Option<LbPolicy>,
    pub endpoint_weights: BTreeMap<String, u32>,
    /// The window's per-endpoint load and mean response time.
    pub inputs: BTreeMap<String, EndpointLoad>,
    pub decided_at_ms: i64,
    pub last_changed_ms: Option<i64>,
}

/// A switch of policy (or of response-time weights), as the routing log records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalancingChange {
    pub at_ms: i64,
    pub provider: String,
    pub before: LbPolicy,
    pub after: LbPolicy,
    pub endpoint_weights: BTreeMap<String, u32>,
    pub inputs: BTreeMap<String, EndpointLoad>,
}

#[derive(Debug, Default)]
pub struct BalancingController {
    previous_verdicts: BTreeMap<String, Option<LbPolicy>>,
    clusters: BTreeMap<String, ClusterBalancing>,
    changes: VecDeque<BalancingChange>,
}

impl BalancingController {
    /// The decision for one provider cluster from one window of its endpoints; `Some` when
    /// the pushed balancing must change (then it is also logged as a switch).
    pub fn decide(
        &mut self,
        provider: &str,
        current: LbPolicy,
        endpoints: &BTreeMap<String, EndpointLoad>,
        settings: &BalancingSettings,
        now_ms: i64,
    ) -> Option<Balancing> {
        let now = verdict(endpoints, settings);
        let previous = self.previous_verdicts.insert(provider.to_string(), now).flatten();
        let next = next_policy(current, previous, now);
        let pushed = self.clusters.get(provider).map(|c| c.endpoint_weights.clone()).unwrap_or_default();
        let endpoint_weights = match next {
            LbPolicy::ResponseTimeWeighted if now == Some(LbPolicy::ResponseTimeWeighted) || pushed.is_empty() => {
                response_time_weights(endpoints)
            }
            // Still weighted, but this window did not say so: keep the weights in force.
            LbPolicy::ResponseTimeWeighted => pushed.clone(),
            _ => BTreeMap::new(),
        };
        let changed = next != current || !within_deadband(&pushed, &endpoint_weights);
        let last_changed_ms =
            if changed { Some(now_ms) } else { self.clusters.get(provider).and_then(|c| c.last_changed_ms) };
        self.clusters.insert(
            provider.to_string(),
            ClusterBalancing {
                policy: next,
                verdict: now,
                endpoint_weights: if changed { endpoint_weights.clone() } else { pushed },
                inputs: endpoints.clone(),
                decided_at_ms: now_ms,
                last_changed_ms,
            },
        );
        if !changed {
            return None;
        }
        self.changes.push_back(BalancingChange {
            at_ms: now_ms,
            provider: provider.to_string(),
            before: current,
            after: next,
            endpoint_weights: endpoint_weights.clone(),
            inputs: endpoints.clone(),
        });
        while self.changes.len() > CHANGES_KEPT {
            self.changes.pop_front();
        }
        Some(Balancing { policy: next, endpoint_weights })
    }

    pub fn view(&self) -> (&BTreeMap<String, ClusterBalancing>, &VecDeque<BalancingChange>) {
        (&self.clusters, &self.changes)
    }
}

/// Whether `next` moves no endpoint's weight by `WEIGHT_DEADBAND` or more from `pushed`.
fn within_deadband(pushed: &BTreeMap<String, u32>, next: &BTreeMap<String, u32>) -> bool {
    pushed.len() == next.len()
        && next.iter().all(|(endpoint, w)| pushed.get(endpoint).is_some_and(|p| p.abs_diff(*w) < WEIGHT_DEADBAND))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: BalancingSettings = BalancingSettings {
        enabled: true,
        window_s: 300,
        load_variance: 0.5,
        response_time_variance: 0.5,
        min_requests: 100,
    };

    fn window(list: &[(u64, f64)]) -> BTreeMap<String, EndpointLoad> {
        list.iter()
            .enumerate()
            .map(|(i, (requests, ms))| {
                (format!("10.0.0.{i}:443"), EndpointLoad { requests: *requests, mean_response_ms: *ms })
            })
            .collect()
    }

    /// Drives the controller like the driver does: the policy in force is what it last pushed.
    fn run(windows: &[BTreeMap<String, EndpointLoad>]) -> (LbPolicy, usize, BalancingController) {
        let mut controller = BalancingController::default();
        let mut policy = LbPolicy::LeastRequest;
        let mut switches = 0;
        for (i, w) in windows.iter().enumerate() {
            if let Some(next) = controller.decide("p", policy, w, &S, i as i64 * 10_000) {
                policy = next.policy;
                switches += 1;
            }
        }
        (policy, switches, controller)
    }

    #[test]
    fn inputs_flapping_between_two_verdicts_never_switch() {
        let uneven_load = window(&[(900, 800.0), (50, 820.0)]);
        let uneven_times = window(&[(500, 300.0), (480, 2400.0)]);
        let flapping: Vec<_> =
            (0..20).map(|i| if i % 2 == 0 { &uneven_load } else { &uneven_times }).cloned().collect();
        let (policy, switches, controller) = run(&flapping);
        assert_eq!((policy, switches), (LbPolicy::LeastRequest, 0));
        let (clusters, changes) = controller.view();
        assert!(changes.is_empty());
        let p = &clusters["p"];
        assert_eq!(p.verdict, Some(LbPolicy::ResponseTimeWeighted), "the latest verdict is shown");
        assert_eq!(p.last_changed_ms, None);
        assert_eq!(p.inputs, uneven_times, "with the inputs that produced it");
    }

    #[test]
    fn inputs_flapping_around_a_threshold_switch_once_each_way_at_most() {
        // Load variation alternating just above and below 0.5 for a while, then settling.
        let above = window(&[(800, 500.0), (200, 500.0)]);
        let below = window(&[(600, 500.0), (400, 500.0)]);
        let mut windows: Vec<_> = (0..10).map(|i| if i % 2 == 0 { &above } else { &below }).cloned().collect();
        windows.extend(std::iter::repeat_n(above.clone(), 3));
        let (policy, switches, controller) = run(&windows);
        assert_eq!((policy, switches), (LbPolicy::RoundRobin, 1), "one switch, once the verdict held");
        let (clusters, changes) = controller.view();
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].before, changes[0].after), (LbPolicy::LeastRequest, LbPolicy::RoundRobin));
        assert_eq!(changes[0].inputs, above, "the switch records its inputs");
        assert_eq!(clusters["p"].last_changed_ms, Some(changes[0].at_ms));
    }

    #[test]
    fn response_time_weights_are_pushed_again_only_when_they_move_enough() {
        let slow_one = window(&[(500, 200.0), (480, 1000.0)]);
        let a_bit_slower = window(&[(500, 200.0), (480, 1100.0)]);
        let recovered_half = window(&[(500, 200.0), (480, 650.0)]);
        let (policy, switches, controller) = run(&[slow_one.clone(), slow_one, a_bit_slower, recovered_half]);
        assert_eq!((policy, switches), (LbPolicy::ResponseTimeWeighted, 2));
        let (clusters, changes) = controller.view();
        assert_eq!(changes[0].endpoint_weights.values().copied().collect::<Vec<_>>(), [100, 20]);
        assert_eq!(changes[1].endpoint_weights.values().copied().collect::<Vec<_>>(), [100, 31]);
        assert_eq!(clusters["p"].endpoint_weights, changes[1].endpoint_weights);
    }
}

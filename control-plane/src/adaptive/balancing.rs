//! The load-balancing policy of one provider cluster, chosen by the design document's rule over
//! a 300 s window of per-endpoint observations: uneven load across endpoints → round robin
//! (least-request would keep feeding the ones that drain fast); uneven response times →
//! weights by response time; otherwise least-request. A change needs the same verdict twice in
//! a row, so one odd window does not switch Envoy's policy back and forth.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    LeastRequest,
    RoundRobin,
    /// Round robin over endpoint weights inversely proportional to their response time.
    ResponseTimeWeighted,
}

/// One endpoint over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EndpointLoad {
    pub requests: u64,
    pub mean_response_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancingSettings {
    pub enabled: bool,
    pub window_s: u64,
    /// Coefficient of variation of requests per endpoint above which load is "high variance".
    pub load_variance: f64,
    /// Coefficient of variation of mean response time above which it is "high variance".
    pub response_time_variance: f64,
    /// Fewer requests than this across the cluster: keep the policy.
    pub min_requests: u64,
}

impl Default for BalancingSettings {
    fn default() -> Self {
        BalancingSettings {
            enabled: false,
            window_s: 300,
            load_variance: 0.5,
            response_time_variance: 0.5,
            min_requests: 100,
        }
    }
}

/// A provider cluster's balancing as decided: the policy and, for response-time weighting,
/// the endpoint weights by address (`ip:port`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balancing {
    pub policy: LbPolicy,
    pub endpoint_weights: BTreeMap<String, u32>,
}

impl Balancing {
    /// Writes the decision into the provider as the model file would spell it.
    pub fn apply(&self, provider: &mut crate::model::Provider) {
        provider.limits.lb_policy = self.policy;
        if self.policy != LbPolicy::ResponseTimeWeighted {
            return;
        }
        if provider.endpoints.is_empty() {
            // The base URL's own host is the only endpoint; one endpoint has no weights to set.
            return;
        }
        for endpoint in provider.endpoints.iter_mut() {
            if let Some(weight) = self.endpoint_weights.get(&endpoint.address) {
                endpoint.weight = *weight;
            }
        }
    }
}

/// What the window says, before hysteresis.
pub fn verdict(endpoints: &BTreeMap<String, EndpointLoad>, settings: &BalancingSettings) -> Option<LbPolicy> {
    let total: u64 = endpoints.values().map(|e| e.requests).sum();
    if endpoints.len() < 2 || total < settings.min_requests {
        return None;
    }
    let loads: Vec<f64> = endpoints.values().map(|e| e.requests as f64).collect();
    let times: Vec<f64> = endpoints.values().filter(|e| e.requests > 0).map(|e| e.mean_response_ms).collect();
    Some(if variation(&loads) > settings.load_variance {
        LbPolicy::RoundRobin
    } else if variation(&times) > settings.response_time_variance {
        LbPolicy::ResponseTimeWeighted
    } else {
        LbPolicy::LeastRequest
    })
}

/// The policy to push: a verdict different from the current policy must repeat once.
pub fn next_policy(current: LbPolicy, previous_verdict: Option<LbPolicy>, verdict: Option<LbPolicy>) -> LbPolicy {
    match verdict {
        Some(v) if v != current && previous_verdict == Some(v) => v,
        _ => current,
    }
}

/// Endpoint weights for `ResponseTimeWeighted`: inversely proportional to mean response time,
/// scaled so the fastest gets 100 and none gets less than 1.
pub fn response_time_weights(endpoints: &BTreeMap<String, EndpointLoad>) -> BTreeMap<String, u32> {
    let fastest = endpoints.values().map(|e| e.mean_response_ms).filter(|t| *t > 0.0).fold(f64::INFINITY, f64::min);
    endpoints
        .iter()
        .map(|(name, e)| {
            let weight = if fastest.is_finite() && e.mean_response_ms > 0.0 {
                (100.0 * fastest / e.mean_response_ms).round().max(1.0) as u32
            } else {
                100
            };
            (name.clone(), weight)
        })
        .collect()
}

/// Standard deviation over mean (0 for fewer than two values or a zero mean).
fn variation(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(list: &[(u64, f64)]) -> BTreeMap<String, EndpointLoad> {
        list.iter()
            .enumerate()
            .map(|(i, (requests, ms))| {
                (format!("10.0.0.{i}:443"), EndpointLoad { requests: *requests, mean_response_ms: *ms })
            })
            .collect()
    }
    const S: BalancingSettings = BalancingSettings {
        enabled: true,
        window_s: 300,
        load_variance: 0.5,
        response_time_variance: 0.5,
        min_requests: 100,
    };

    #[test]
    fn the_documents_rule() {
        assert_eq!(verdict(&endpoints(&[(500, 800.0), (480, 820.0), (510, 790.0)]), &S), Some(LbPolicy::LeastRequest));
        assert_eq!(verdict(&endpoints(&[(900, 800.0), (50, 820.0), (40, 790.0)]), &S), Some(LbPolicy::RoundRobin));
        assert_eq!(
            verdict(&endpoints(&[(500, 300.0), (480, 2400.0), (510, 310.0)]), &S),
            Some(LbPolicy::ResponseTimeWeighted)
        );
        assert_eq!(verdict(&endpoints(&[(5, 300.0), (4, 2400.0)]), &S), None, "too few requests");
        assert_eq!(verdict(&endpoints(&[(500, 300.0)]), &S), None, "one endpoint has nothing to balance");
    }

    #[test]
    fn a_switch_needs_the_same_verdict_twice() {
        let current = LbPolicy::LeastRequest;
        assert_eq!(next_policy(current, None, Some(LbPolicy::RoundRobin)), current);
        assert_eq!(next_policy(current, Some(LbPolicy::RoundRobin), Some(LbPolicy::RoundRobin)), LbPolicy::RoundRobin);
        // Alternating verdicts never switch.
        let mut policy = current;
        let mut previous = None;
        for i in 0..10 {
            let v = Some(if i % 2 == 0 { LbPolicy::RoundRobin } else { LbPolicy::ResponseTimeWeighted });
            policy = next_policy(policy, previous, v);
            previous = v;
        }
        assert_eq!(policy, current);
    }

    #[test]
    fn response_time_weights_favour_the_fast() {
        let w = response_time_weights(&endpoints(&[(1, 200.0), (1, 400.0), (1, 0.0)]));
        assert_eq!(w.values().copied().collect::<Vec<_>>(), vec![100, 50, 100]);
    }
}

//! Per provider endpoint: how many requests it answered and how long it took, in 10 s buckets,
//! read back over any window (the balancing rule's 300 s by default). Fed from the access log
//! records' upstream host; pure: `now` is an argument.
use crate::adaptive::EndpointLoad;
use std::collections::{BTreeMap, VecDeque};

/// Bucket width: the telemetry's own window.
const BUCKET_MS: i64 = 10_000;
/// Buckets kept per endpoint whatever the window asked for (one hour), so memory is bounded.
const MAX_BUCKETS: usize = 360;
/// Endpoints kept per provider: records name hosts Envoy resolved, which a provider's DNS may
/// rotate through; the least recently seen go first.
const MAX_ENDPOINTS_PER_PROVIDER: usize = 256;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    start_ms: i64,
    requests: u64,
    total_ms: f64,
}

#[derive(Debug, Default)]
pub struct EndpointTally {
    /// provider → endpoint (`ip:port`) → buckets, oldest first.
    buckets: BTreeMap<String, BTreeMap<String, VecDeque<Bucket>>>,
}

impl EndpointTally {
    /// One answer from `endpoint` of `provider`, started at `at_ms`, that took `response_ms`.
    pub fn add(&mut self, provider: &str, endpoint: &str, at_ms: i64, response_ms: f64) {
        let start_ms = at_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        let endpoints = self.buckets.entry(provider.to_string()).or_default();
        let ring = endpoints.entry(endpoint.to_string()).or_default();
        match ring.iter_mut().rev().find(|b| b.start_ms == start_ms) {
            Some(bucket) => {
                bucket.requests += 1;
                bucket.total_ms += response_ms.max(0.0);
            }
            None => {
                ring.push_back(Bucket { start_ms, requests: 1, total_ms: response_ms.max(0.0) });
                ring.make_contiguous().sort_by_key(|b| b.start_ms);
                while ring.len() > MAX_BUCKETS {
                    ring.pop_front();
                }
            }
        }
        if endpoints.len() > MAX_ENDPOINTS_PER_PROVIDER {
            let stalest = endpoints
                .iter()
                .min_by_key(|(_, ring)| ring.back().map_or(i64::MIN, |b| b.start_ms))
                .map(|(name, _)| name.clone());
            if let Some(name) = stalest {
                endpoints.remove(&name);
            }
        }
    }

    /// Per provider and endpoint: requests and mean response time over `[now - window, now]`.
    /// Buckets older than the longest window kept are dropped on the way.
    pub fn loads(&mut self, now_ms: i64, window_ms: i64) -> BTreeMap<String, BTreeMap<String, EndpointLoad>> {
        let from_ms = now_ms.saturating_sub(window_ms.max(BUCKET_MS));
        let mut out = BTreeMap::new();
        for (provider, endpoints) in &mut self.buckets {
            endpoints.retain(|_, ring| {
                while ring.front().is_some_and(|b| b.start_ms + BUCKET_MS * MAX_BUCKETS as i64 <= now_ms) {
                    ring.pop_front();
                }
                !ring.is_empty()
            });
            let loads: BTreeMap<String, EndpointLoad> = endpoints
                .iter()
                .filter_map(|(endpoint, ring)| {
                    let (requests, total_ms) = ring
                        .iter()
                        .filter(|b| b.start_ms + BUCKET_MS > from_ms && b.start_ms <= now_ms)
                        .fold((0u64, 0.0), |(n, t), b| (n + b.requests, t + b.total_ms));
                    (requests > 0).then(|| {
                        (endpoint.clone(), EndpointLoad { requests, mean_response_ms: total_ms / requests as f64 })
                    })
                })
                .collect();
            if !loads.is_empty() {
                out.insert(provider.clone(), loads);
            }
        }
        self.buckets.retain(|_, endpoints| !endpoints.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn loads_sum_requests_and_average_times_within_the_window_only() {
        let mut tally = EndpointTally::default();
        tally.add("p", "10.0.0.1:80", T0, 100.0);
        tally.add("p", "10.0.0.1:80", T0 + 1000, 300.0);
        tally.add("p", "10.0.0.2:80", T0 + 20_000, 50.0);
        tally.add("p", "10.0.0.1:80", T0 - 400_000, 9999.0);
        let loads = tally.loads(T0 + 30_000, 300_000);
        let p = &loads["p"];
        assert_eq!(p["10.0.0.1:80"], EndpointLoad { requests: 2, mean_response_ms: 200.0 }, "the old one is out");
        assert_eq!(p["10.0.0.2:80"], EndpointLoad { requests: 1, mean_response_ms: 50.0 });
        let short = tally.loads(T0 + 30_000, 15_000);
        assert_eq!(short["p"].keys().collect::<Vec<_>>(), ["10.0.0.2:80"], "a shorter window sees less");
    }

    #[test]
    fn memory_is_bounded_in_time_and_endpoints() {
        let mut tally = EndpointTally::default();
        for i in 0..(MAX_ENDPOINTS_PER_PROVIDER as i64 + 10) {
            tally.add("p", &format!("10.0.{}.{}:80", i / 256, i % 256), T0 + i, 1.0);
        }
        assert_eq!(tally.loads(T0 + 1000, 300_000)["p"].len(), MAX_ENDPOINTS_PER_PROVIDER);
        assert!(tally.loads(T0 + 2 * 3_600_000, 300_000).is_empty());
        assert!(tally.buckets.is_empty(), "nothing kept past the longest window");
    }
}

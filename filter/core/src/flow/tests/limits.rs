use super::*;

fn limited(extra: serde_json::Value) -> serde_json::Value {
    let mut config = json!({ "rate_limit": { "enabled": true, "identity": "route" } });
    if let (Some(r), Some(e)) = (config["rate_limit"].as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    config
}

#[test]
fn the_limit_admits_then_refuses_with_a_429() {
    let envoy = Envoy::new();
    let w = envoy.worker(limited(json!({ "requests": { "rate": 2, "per": "minute" } })));
    for i in 0..2 {
        let (host, upstream) = exchange(&envoy, &w, i, &chat(&format!("p{i}")));
        assert!(upstream);
        assert_eq!(host.response_header("x-ratelimit-remaining-requests"), Some(if i == 0 { "1" } else { "0" }));
    }
    let (refused, upstream) = exchange(&envoy, &w, 9, &chat("p9"));
    assert!(!upstream);
    let reply = refused.reply().unwrap();
    assert_eq!(reply.status, 429);
    assert!(header(reply, "retry-after").is_some());
    assert!(String::from_utf8_lossy(&reply.body).contains("rate_limit_exceeded"));
    assert_eq!(flushed(&envoy, &w).stat("aurelis_ratelimited_total.reason.requests"), 1);
}

#[test]
fn hits_count_as_requests_and_carry_the_headers() {
    let envoy = Envoy::new();
    let w = envoy.worker(limited(json!({ "requests": { "rate": 2, "per": "minute" } })));
    exchange(&envoy, &w, 1, &chat("hi"));
    let (hit, _) = exchange(&envoy, &w, 2, &chat("hi"));
    assert_eq!(header(hit.reply().unwrap(), "x-ratelimit-remaining-requests").as_deref(), Some("0"));
    assert_eq!(exchange(&envoy, &w, 3, &chat("hi")).0.reply().map(|r| r.status), Some(429));
}

#[test]
fn reservations_are_settled_against_usage() {
    let envoy = Envoy::new();
    let w = envoy.worker(limited(json!({ "tokens_per_minute": 10_000, "default_max_tokens": 100 })));
    exchange(&envoy, &w, 1, &chat("hi"));
    let stats = flushed(&envoy, &w);
    let reserved = stats.stat("aurelis_ratelimit_tokens_total.kind.reserved");
    assert!(reserved > 100, "prompt estimate + default max tokens: {reserved}");
    assert_eq!(stats.stat("aurelis_ratelimit_tokens_total.kind.settled"), 15, "the answer's usage");
    assert_eq!(stats.stat("aurelis_ratelimit_tokens_total.kind.refunded"), reserved - 15);
    let (next, _) = exchange(&envoy, &w, 2, &chat("ho"));
    let remaining: u64 = next.response_header("x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
    assert_eq!(remaining, 10_000 - 15 - reserved, "the refund is back in the bucket");
}

#[test]
fn a_reservation_larger_than_what_is_left_is_refused_up_front() {
    let envoy = Envoy::new();
    let w = envoy.worker(limited(json!({ "tokens_per_minute": 150, "default_max_tokens": 100 })));
    let (_host, _first, action) = start(&envoy, &w, 1, &chat("a"), &[]);
    assert_eq!(action, Action::Continue, "fits");
    let (refused, upstream) = exchange(&envoy, &w, 2, &chat("b"));
    assert!(!upstream);
    assert_eq!(refused.reply().map(|r| r.status), Some(429));
    assert_eq!(flushed(&envoy, &w).stat("aurelis_ratelimited_total.reason.tokens"), 1);
}

/// The bug this settles: a coalesced waiter was charged its whole reservation although it
/// was answered from the cache, where a direct hit spends nothing.
#[test]
fn a_coalesced_waiter_spends_what_a_hit_spends() {
    let envoy = Envoy::new();
    let w = envoy.worker(limited(json!({ "tokens_per_minute": 100_000, "default_max_tokens": 1000 })));
    let (mut leader_host, mut leader, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    let (mut waiter_host, mut waiter, action) = start(&envoy, &w, 2, &chat("hi"), &[]);
    assert_eq!(action, Action::Pause);
    answer(&w, &mut leader_host, &mut leader, 200, &completion("once"));
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    let replies = worker_host.replies_to();
    assert!(header(replies[0].1, "x-ratelimit-remaining-tokens").is_some(), "waiters carry the limit headers");
    // The waiter's local reply passes through its own response callbacks.
    waiter.on_response_headers(&w, &mut waiter_host, false);
    waiter.on_stream_end(&w, &mut waiter_host);
    let (after, _) = exchange(&envoy, &w, 3, &chat("ho"));
    let remaining: u64 = after.response_header("x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
    let stats = flushed(&envoy, &w);
    let reserved_each = stats.stat("aurelis_ratelimit_tokens_total.kind.reserved") / 3;
    assert_eq!(remaining, 100_000 - 15 - reserved_each, "only the leader's usage and this request's reservation");
}

#[test]
fn a_table_that_cannot_be_read_fails_open() {
    let envoy = Envoy::new();
    let w = envoy.worker(limited(json!({ "requests": { "rate": 1, "per": "minute" } })));
    envoy.store.fail_reads(true);
    assert!(exchange(&envoy, &w, 1, &chat("a")).1);
    assert!(exchange(&envoy, &w, 2, &chat("b")).1, "admitted although over the limit: fail open");
    envoy.store.fail_reads(false);
    assert_eq!(flushed(&envoy, &w).stat("aurelis_errors_total.kind.ratelimit_unavailable"), 2);
}

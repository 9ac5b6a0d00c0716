use super::*;

/// Three identical requests at once: the first leads, the others wait and are answered from
/// its fill by the worker's wake-up, with the same headers as any hit.
#[test]
fn local_waiters_are_answered_from_the_leaders_fill() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({ "debug_headers": true }));
    let (mut leader_host, mut leader, action) = start(&envoy, &w, 1, &chat("hi"), &[]);
    assert_eq!(action, Action::Continue);
    let mut waiters = Vec::new();
    for stream in [2, 3] {
        let mut host = envoy.host();
        let mut req = Request::new(stream);
        assert_eq!(send(&w, &mut host, &mut req, &chat("hi"), &[]), Action::Pause, "waits for the leader");
        waiters.push(req);
    }
    answer(&w, &mut leader_host, &mut leader, 200, &completion("once"));
    assert!(leader_host.effects.contains(&Effect::Wake), "the leader asks for a wake-up, never answers itself");
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    let replies = worker_host.replies_to();
    assert_eq!(replies.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2, 3]);
    for (_, reply) in &replies {
        assert_eq!(reply.body, completion("once"));
        assert_eq!(header(reply, "x-aurelis-cache").as_deref(), Some("HIT"));
        assert_eq!(header(reply, "age").as_deref(), Some("0"));
        assert!(header(reply, "x-aurelis-cache-key-info").is_some(), "waiters get key info like any hit");
    }
    for mut req in waiters {
        let mut host = envoy.host();
        req.on_response_headers(&w, &mut host, false);
        assert!(host.effects.is_empty(), "a waiter's own response callbacks store nothing");
    }
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_coalesced_requests_total"), 2);
    assert_eq!(stats.stat("aurelis_cache_hits_total.level.L1"), 2);
}

#[test]
fn a_waiter_on_another_worker_is_answered_by_its_timer() {
    let envoy = Envoy::new();
    let (w1, w2) = (envoy.worker(json!({})), envoy.worker(json!({})));
    let (mut leader_host, mut leader, action) = start(&envoy, &w1, 1, &chat("hi"), &[]);
    assert_eq!(action, Action::Continue);
    let (_host, _waiter, action) = start(&envoy, &w2, 7, &chat("hi"), &[]);
    assert_eq!(action, Action::Pause, "the claim is seen");
    let mut tick = envoy.host();
    w2.on_tick(&mut tick);
    assert!(tick.replies_to().is_empty() && tick.resumed_streams().is_empty(), "nothing yet");
    answer(&w1, &mut leader_host, &mut leader, 200, &completion("once"));
    let mut tick = envoy.host();
    w2.on_tick(&mut tick);
    assert_eq!(tick.replies_to().len(), 1);
    assert_eq!(tick.replies_to()[0].1.body, completion("once"));
}

#[test]
fn a_leader_that_abandons_releases_its_waiters_upstream() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (mut leader_host, mut leader, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    let (_host, mut waiter, action) = start(&envoy, &w, 2, &chat("hi"), &[]);
    assert_eq!(action, Action::Pause);
    leader.on_stream_end(&w, &mut leader_host); // reset before any answer
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    assert_eq!(worker_host.resumed_streams(), vec![2]);
    // The waiter goes upstream as a miss and its answer is stored.
    let mut host = envoy.host();
    answer(&w, &mut host, &mut waiter, 200, &completion("late"));
    assert_eq!(host.response_header("x-aurelis-cache"), Some("MISS"));
    assert!(!exchange(&envoy, &w, 3, &chat("hi")).1);
}

#[test]
fn a_waiter_past_its_deadline_goes_upstream() {
    let mut envoy = Envoy::new();
    let w = envoy.worker(json!({ "cache": { "coalesce_timeout_ms": 100 } }));
    let (_leader_host, _leader, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    let (_host, _waiter, _) = start(&envoy, &w, 2, &chat("hi"), &[]);
    envoy.now += 50;
    let mut tick = envoy.host();
    w.on_tick(&mut tick);
    assert!(tick.resumed_streams().is_empty());
    envoy.now += 60;
    let mut tick = envoy.host();
    w.on_tick(&mut tick);
    assert_eq!(tick.resumed_streams(), vec![2]);
    assert_eq!(tick.stat("aurelis_coalesce_timeouts_total"), 1);
}

#[test]
fn a_waiter_that_leaves_is_forgotten() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (mut leader_host, mut leader, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    let (mut host, mut waiter, _) = start(&envoy, &w, 2, &chat("hi"), &[]);
    waiter.on_stream_end(&w, &mut host);
    answer(&w, &mut leader_host, &mut leader, 200, &completion("once"));
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    assert!(worker_host.replies_to().is_empty(), "nobody to answer");
}

/// A waiter is routed by its body's model when it starts waiting: if it is released upstream
/// later (timeout, or a leader without a storable answer), it is resumed from a worker event and
/// must already carry its route.
#[test]
fn a_waiter_is_routed_before_it_waits() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (_leader_host, _leader, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    let (host, _waiter, action) = start(&envoy, &w, 2, &chat("hi"), &[("x-aurelis-model", "other")]);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        host.effects,
        vec![
            Effect::SetRequestHeader("x-aurelis-model".into(), None),
            Effect::SetRequestHeader("x-aurelis-model".into(), Some("gpt-4o-mini".into())),
        ]
    );
}

/// Streams that started under a replaced configuration still count: the new worker carries on
/// the old one's tally.
#[test]
fn a_new_configuration_keeps_counting_the_old_streams() {
    let envoy = Envoy::new();
    let old = envoy.worker(json!({}));
    let (mut host, mut req, _) = start(&envoy, &old, 1, &chat("hi"), &[]);
    let new = crate::flow::Worker::continuing(old.config.clone(), test_l2_secrets(), Some(&old));
    answer(&old, &mut host, &mut req, 200, &completion("x"));
    assert_eq!(flushed(&envoy, &new).stat("aurelis_cache_stores_total"), 1);
}

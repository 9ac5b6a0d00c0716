use super::*;
use crate::flow::workers;

#[test]
fn a_miss_goes_upstream_and_the_repeat_is_a_byte_identical_hit() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (first, upstream) = exchange(&envoy, &w, 1, &chat("hi"));
    assert!(upstream);
    assert_eq!(first.response_header("x-aurelis-cache"), Some("MISS"));
    assert!(
        first.effects.contains(&Effect::SetRequestHeader("x-aurelis-model".into(), Some("gpt-4o-mini".into()))),
        "a miss is routed by its model"
    );
    let (second, upstream) = exchange(&envoy, &w, 2, &chat("hi"));
    assert!(!upstream);
    let reply = second.reply().unwrap();
    assert_eq!(reply.body, completion("hello"));
    assert_eq!(header(reply, "x-aurelis-cache").as_deref(), Some("HIT"));
    assert_eq!(header(reply, "x-aurelis-cache-level").as_deref(), Some("L1"));
    assert_eq!(header(reply, "age").as_deref(), Some("0"));
    assert!(
        !second.effects.iter().any(|e| matches!(e, Effect::SetRequestHeader(..))),
        "a hit never reaches the router: no routing header"
    );
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_cache_hits_total.level.L1"), 1);
    assert_eq!(stats.stat("aurelis_cache_misses_total"), 1);
    assert_eq!(stats.stat("aurelis_requests_total.cache_status.HIT.model.gpt-4o-mini"), 1);
    assert_eq!(stats.stat("aurelis_tokens_saved_total"), 15);
}

#[test]
fn an_equivalent_body_hits_and_a_repeat_costs_one_store_read() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    exchange(&envoy, &w, 1, br#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"x"}]}"#);
    let spelled_otherwise =
        br#"{ "messages": [{"content":"x","role":"user"}], "temperature": 0.0, "model": "gpt-4o-mini", "user": "u1" }"#;
    assert!(!exchange(&envoy, &w, 2, spelled_otherwise).1, "same canonical form: a hit");
    let reads = envoy.store.reads();
    assert!(!exchange(&envoy, &w, 3, spelled_otherwise).1);
    assert_eq!(envoy.store.reads() - reads, 0, "a repeated hit is served from the worker's own copy");
    let other = envoy.worker(json!({}));
    let reads = envoy.store.reads();
    assert!(!exchange(&envoy, &other, 4, spelled_otherwise).1, "another worker finds it in the shared slots");
    assert_eq!(envoy.store.reads() - reads, 2, "metadata, then the slot");
}

#[test]
fn aged_entries_show_their_age_and_expire_with_the_ttl() {
    let mut envoy = Envoy::new();
    let w = envoy.worker(json!({ "cache": { "ttl_seconds": 60 } }));
    exchange(&envoy, &w, 1, &chat("hi"));
    envoy.now += 42_000;
    let (hit, upstream) = exchange(&envoy, &w, 2, &chat("hi"));
    assert!(!upstream);
    assert_eq!(header(hit.reply().unwrap(), "age").as_deref(), Some("42"));
    envoy.now += 20_000;
    assert!(exchange(&envoy, &w, 3, &chat("hi")).1, "past the TTL: upstream again");
    // The tuning loop's TTL evidence: the key was there, only too old.
    assert_eq!(flushed(&envoy, &w).stat("aurelis_l1_expired_total"), 1);
}

#[test]
fn every_refusal_is_a_bypass_with_its_reason() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (b"{not json".to_vec(), vec![], "invalid_json"),
        (br#"{"model":"m","messages":[]}"#.to_vec(), vec![], "non_deterministic"),
        (br#"{"model":"m","temperature":0,"n":2}"#.to_vec(), vec![], "n_greater_than_1"),
        (chat("hi"), vec![("cache-control", "no-store")], "no_store"),
    ];
    for (body, extra, reason) in cases {
        let mut host = envoy.host();
        let mut req = Request::new(1);
        host.request_headers = post_headers(&body, &extra);
        host.request_body = body.clone();
        let head = req.on_request_headers(&w, &mut host, false);
        let action = if head == Action::Pause { req.on_request_body(&w, &mut host, body.len(), true) } else { head };
        assert_eq!(action, Action::Continue, "{reason}: passes through");
        answer(&w, &mut host, &mut req, 200, &completion("x"));
        assert_eq!(host.response_header("x-aurelis-cache"), Some("BYPASS"), "{reason}");
        assert_eq!(host.response_header("x-aurelis-cache-reason"), Some(reason));
    }
    assert_eq!(flushed(&envoy, &w).stat("aurelis_bypass_total.reason.invalid_json"), 1);
}

#[test]
fn no_cache_skips_the_lookup_but_stores_the_fresh_answer() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    exchange(&envoy, &w, 1, &chat("hi"));
    let (mut host, mut req, action) = start(&envoy, &w, 2, &chat("hi"), &[("cache-control", "no-cache")]);
    assert_eq!(action, Action::Continue);
    answer(&w, &mut host, &mut req, 200, &completion("fresher"));
    let (hit, _) = exchange(&envoy, &w, 3, &chat("hi"));
    assert_eq!(hit.reply().unwrap().body, completion("fresher"));
}

#[test]
fn errors_and_unfinished_answers_are_not_stored() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (mut host, mut req, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    answer(&w, &mut host, &mut req, 500, br#"{"error":{"message":"boom"}}"#);
    let (mut host, mut req, _) = start(&envoy, &w, 2, &chat("hi"), &[]);
    let unfinished = br#"{"choices":[{"index":0,"message":{"content":"x"},"finish_reason":"content_filter"}]}"#;
    answer(&w, &mut host, &mut req, 200, unfinished);
    assert!(exchange(&envoy, &w, 3, &chat("hi")).1, "still a miss");
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_cache_store_skipped_total.reason.status"), 1);
    assert_eq!(stats.stat("aurelis_cache_store_skipped_total.reason.finish_reason"), 1);
}

/// The full-L1 bug: with every way of a set holding a fresh entry, each new key went upstream
/// twice before it could hit. Now: one upstream call per new key, even past capacity.
#[test]
fn past_capacity_every_new_key_goes_upstream_once() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({ "cache": { "max_entries": 8 } }));
    for i in 0..40 {
        let prompt = format!("prompt {i}");
        assert!(exchange(&envoy, &w, 2 * i, &chat(&prompt)).1, "{prompt}: first time upstream");
        assert!(!exchange(&envoy, &w, 2 * i + 1, &chat(&prompt)).1, "{prompt}: then a hit");
    }
    assert!(flushed(&envoy, &w).stat("aurelis_l1_evictions_total") >= 32);
}

#[test]
fn a_lone_worker_makes_no_cross_worker_claims() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    workers::register(&envoy.store);
    flushed(&envoy, &w); // the tick learns it is alone
    let writes = envoy.store.writes();
    exchange(&envoy, &w, 1, &chat("hi"));
    assert_eq!(envoy.store.writes() - writes, 2, "the miss writes its slot and the set's metadata, no claim");
}

#[test]
fn the_routing_header_can_be_left_alone() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({ "route_by_model": false }));
    let (miss, _) = exchange(&envoy, &w, 1, &chat("hi"));
    assert!(!miss.effects.iter().any(|e| matches!(e, Effect::SetRequestHeader(..))));
}

#[test]
fn a_client_cannot_pick_the_route() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (host, _req, _) = start(&envoy, &w, 1, &chat("hi"), &[("x-aurelis-model", "expensive")]);
    assert_eq!(host.effects.first(), Some(&Effect::SetRequestHeader("x-aurelis-model".into(), None)));
}

/// What a repeated hit asks of its host: the request headers (one map read), the body, the
/// local reply and, at its end, its facts in one call (plus one clock read, cached per callback
/// by the host). The entry comes from
/// the worker's own copy: no store read.
#[test]
fn a_repeated_hit_makes_four_host_calls_and_no_store_read() {
    let envoy = Envoy::new();
    let key = crate::auth::key_sha256("sk-1");
    // Anonymous access is on too: a request with a key still never reads the client address.
    let w = envoy.worker(json!({ "auth": { "consumers": [{ "name": "c", "key_sha256": [key] }], "anonymous": {} } }));
    let key = [("authorization", "Bearer sk-1")];
    let path = "/v1/chat/completions";
    exchange_at(&envoy, &w, 1, path, &chat("hi"), &key);
    exchange_at(&envoy, &w, 2, path, &chat("hi"), &key);
    let (reads, writes) = (envoy.store.reads(), envoy.store.writes());
    let (host, upstream) = exchange_at(&envoy, &w, 3, path, &chat("hi"), &key);
    assert!(!upstream);
    // An API-key consumer costs no host call (its key is in the headers, its digest
    // remembered); only a request without a key under anonymous access reads the address.
    assert_eq!(host.calls.get(), 4, "headers, body, reply, facts");
    assert_eq!((envoy.store.reads() - reads, envoy.store.writes() - writes), (0, 0));
}

/// An Istio `WasmPlugin` cannot let the filter hold request headers: the headers go on, only
/// the body is held, and a repeat is still a hit answered from the body phase.
#[test]
fn without_holding_headers_the_body_is_held_and_a_repeat_still_hits() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({ "hold_request_headers": false, "route_by_model": false }));
    let body = chat("hi");
    let mut host = envoy.host();
    let mut req = Request::new(1);
    host.request_headers = post_headers(&body, &[]);
    host.request_body = body.clone();
    assert_eq!(req.on_request_headers(&w, &mut host, false), Action::Continue, "headers go on to the router");
    assert_eq!(req.on_request_body(&w, &mut host, body.len() / 2, false), Action::Pause, "the body is held");
    exchange(&envoy, &w, 2, &body);
    let (hit, upstream) = exchange(&envoy, &w, 3, &body);
    assert!(!upstream);
    assert_eq!(header(hit.reply().unwrap_or_else(|| panic!("no reply")), "x-aurelis-cache").as_deref(), Some("HIT"));
}

#[test]
fn not_holding_headers_needs_routing_off_the_model_header() {
    let error = crate::config::FilterConfig::from_json(br#"{"hold_request_headers": false}"#).err();
    assert!(error.is_some_and(|e| e.to_string().contains("route_by_model")));
}

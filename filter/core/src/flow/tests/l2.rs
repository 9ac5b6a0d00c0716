use super::*;
use crate::cache::{Entry, PendingStore};
use crate::gate::BodyFormat;

fn l2_on() -> serde_json::Value {
    json!({ "l2": { "enabled": true, "timeout_ms": 25 } })
}

/// Sends a request to a worker with L2 on: it must pause for the L2 lookup it dispatched.
fn ask<'a>(envoy: &'a Envoy, w: &Worker, stream: u32) -> (Fake<'a>, Request, String) {
    let mut host = envoy.host();
    let mut req = Request::new(stream);
    assert_eq!(send(w, &mut host, &mut req, &chat("hi"), &[]), Action::Pause);
    let callout = host.dispatched().first().cloned().cloned().unwrap();
    assert_eq!(callout.cluster, "aurelis_l2");
    let path = callout.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.clone()).unwrap();
    let key = path.trim_start_matches("/v1/entries/").to_string();
    (host, req, key)
}

/// The value an Envoy of this fleet stores for `key`: its entry, sealed with the fleet's key.
fn stored(key: &str, stored_at_ms: u64) -> Vec<u8> {
    let signing_key = test_l2_secrets().signing_key.unwrap();
    crate::cache::sealed::seal(&signing_key, key, &unsealed(key, stored_at_ms))
}

fn unsealed(key: &str, stored_at_ms: u64) -> Vec<u8> {
    Entry {
        key: key.into(),
        stored_at_ms,
        status: 200,
        content_type: "application/json".into(),
        format: BodyFormat::Json,
        prompt_tokens: 10,
        completion_tokens: 5,
        body: completion("from l2"),
    }
    .encode()
}

#[test]
fn an_l2_hit_is_served_and_promoted_to_l1() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, key) = ask(&envoy, &w, 1);
    host.callout = (Some(200), Some(stored(&key, envoy.now - 5_000)));
    req.on_l2_answer(&w, &mut host, stored(&key, 0).len());
    let reply = host.reply().unwrap();
    assert_eq!(header(reply, "x-aurelis-cache-level").as_deref(), Some("L2"));
    assert_eq!(header(reply, "age").as_deref(), Some("5"));
    assert_eq!(reply.body, completion("from l2"));
    let (next, upstream) = exchange(&envoy, &w, 2, &chat("hi"));
    assert!(!upstream);
    assert_eq!(header(next.reply().unwrap(), "x-aurelis-cache-level").as_deref(), Some("L1"));
    assert_eq!(flushed(&envoy, &w).stat("aurelis_l2_lookups_total.result.hit"), 1);
}

#[test]
fn an_l3_answer_older_than_the_l2_ttl_is_served_as_l3_counted_and_promoted_to_l1() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, key) = ask(&envoy, &w, 1);
    // Two hours old: past the L2 TTL (1 h), inside L3's lifetime (24 h) the service vouches for.
    host.callout = (Some(200), Some(stored(&key, envoy.now - 7_200_000)));
    host.callout_level = Some("L3".into());
    req.on_l2_answer(&w, &mut host, stored(&key, 0).len());
    let reply = host.reply().unwrap();
    assert_eq!(header(reply, "x-aurelis-cache-level").as_deref(), Some("L3"));
    assert_eq!(header(reply, "age").as_deref(), Some("7200"));
    assert_eq!(reply.body, completion("from l2"));
    let (next, upstream) = exchange(&envoy, &w, 2, &chat("hi"));
    assert!(!upstream, "promoted to L1");
    assert_eq!(header(next.reply().unwrap(), "x-aurelis-cache-level").as_deref(), Some("L1"));
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_cache_hits_total.level.L3"), 1);
    assert_eq!(stats.stat("aurelis_cache_hits_total.level.L1"), 1);
    assert_eq!(stats.stat("aurelis_cache_hits_total.level.L2"), 0);

    // The same two-hour-old value from Redis (no L3 header) is past the L2 TTL: stale.
    let other = Envoy::new();
    let w = other.worker(l2_on());
    let (mut host, mut req, key) = ask(&other, &w, 1);
    host.callout = (Some(200), Some(stored(&key, other.now - 7_200_000)));
    req.on_l2_answer(&w, &mut host, stored(&key, 0).len());
    assert_eq!(host.effects.last(), Some(&Effect::Resume), "went upstream");
    assert_eq!(flushed(&other, &w).stat("aurelis_l2_lookups_total.result.stale"), 1);
}

#[test]
fn a_redis_entry_promoted_from_l3_is_an_l2_hit_judged_by_l3s_lifetime() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, key) = ask(&envoy, &w, 1);
    // Found in Redis (no level header) two hours after its first store: the service put it
    // there from L3 and says so.
    host.callout = (Some(200), Some(stored(&key, envoy.now - 7_200_000)));
    host.callout_origin = Some("L3".into());
    req.on_l2_answer(&w, &mut host, stored(&key, 0).len());
    let reply = host.reply().expect("served");
    assert_eq!(header(reply, "x-aurelis-cache-level").as_deref(), Some("L2"));
    assert_eq!(header(reply, "age").as_deref(), Some("7200"));
    let stats = flushed(&envoy, &w);
    assert_eq!(
        (stats.stat("aurelis_cache_hits_total.level.L2"), stats.stat("aurelis_l2_lookups_total.result.hit")),
        (1, 1)
    );
}

#[test]
fn a_miss_an_error_or_a_timeout_goes_upstream_and_the_fill_is_queued_for_l2() {
    for (status, body, result) in [
        (Some(404), None, "miss"),
        (Some(503), None, "error"),
        (Some(200), Some(b"garbage".to_vec()), "forged"),
        (None, None, "timeout"),
    ] {
        let mut envoy = Envoy::new();
        let w = envoy.worker(l2_on());
        let (_, mut req, _) = ask(&envoy, &w, 1);
        envoy.now += if result == "timeout" { 30 } else { 2 };
        let mut host = envoy.host();
        host.callout = (status, body.clone());
        req.on_l2_answer(&w, &mut host, body.as_ref().map_or(0, Vec::len));
        assert_eq!(host.effects.last(), Some(&Effect::Resume), "{result}: resumed upstream");
        answer(&w, &mut host, &mut req, 200, &completion("fresh"));
        assert_eq!(host.response_header("x-aurelis-cache"), Some("MISS"));
        let mut worker_host = envoy.host();
        w.on_tick(&mut worker_host);
        assert_eq!(worker_host.stat(&format!("aurelis_l2_lookups_total.result.{result}")), 1, "{result}");
        let stores: Vec<_> = worker_host
            .effects
            .iter()
            .filter_map(|e| if let Effect::DispatchFromWorker(c) = e { Some(c) } else { None })
            .collect();
        assert_eq!(stores.len(), 1, "{result}: the fill goes to L2 from the worker");
        assert!(stores.iter().all(|c| c.headers.iter().any(|(k, v)| k == ":method" && v == "PUT")));
    }
}

#[test]
fn a_lookup_that_cannot_be_sent_goes_upstream_at_once() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let mut host = envoy.host();
    host.dispatch_ok = false;
    let mut req = Request::new(1);
    assert_eq!(send(&w, &mut host, &mut req, &chat("hi"), &[]), Action::Continue);
    assert_eq!(flushed(&envoy, &w).stat("aurelis_l2_lookups_total.result.error"), 1);
}

#[test]
fn waiters_on_an_l2_lookup_get_the_promoted_answer() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut leader, key) = ask(&envoy, &w, 1);
    let (_waiter_host, _waiter, action) = start(&envoy, &w, 2, &chat("hi"), &[]);
    assert_eq!(action, Action::Pause);
    host.callout = (Some(200), Some(stored(&key, envoy.now)));
    leader.on_l2_answer(&w, &mut host, stored(&key, 0).len());
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    assert_eq!(worker_host.replies_to().len(), 1);
}

#[test]
fn a_client_leaving_during_the_lookup_frees_the_flight() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, _) = ask(&envoy, &w, 1);
    req.on_stream_end(&w, &mut host); // the host cancels the callout: no answer will come
    let (_, next, _) = ask(&envoy, &w, 2);
    drop(next); // it leads (dispatched its own lookup) instead of waiting on a dead flight
}

#[test]
fn stores_carry_the_purge_tags() {
    let config = crate::config::L2Config::default();
    let pending = PendingStore {
        key: "k".into(),
        value: vec![1],
        model: Some("gpt-4o".into()),
        tenant: Some("bad value".into()),
    };
    let secrets = crate::cache::L2Secrets { authorization: Some("Bearer t".into()), ..test_l2_secrets() };
    let callout = crate::cache::l2::store_callout(&config, &secrets, pending).unwrap();
    let has = |k: &str| callout.headers.iter().any(|(n, _)| n == k);
    assert!(has("x-aurelis-model") && has("authorization"));
    assert!(!has("x-aurelis-tenant"), "a value the service would refuse is left out");
}

/// A value that is not sealed with the fleet's key for this key is a miss: counted as forged,
/// never served, and the request goes upstream (whose answer is then stored, sealed).
#[test]
fn forged_unsigned_or_moved_entries_are_never_served() {
    let other_key = crate::cache::sealed::SigningKey::from_env_value(Some("an-attacker's-key-of-at-least-32-bytes"));
    let other_key = other_key.unwrap().unwrap();
    for (name, forge) in [
        ("unsigned", Box::new(|key: &str, now| unsealed(key, now)) as Box<dyn Fn(&str, u64) -> Vec<u8>>),
        ("wrong key", Box::new(move |key: &str, now| crate::cache::sealed::seal(&other_key, key, &unsealed(key, now)))),
        ("truncated", Box::new(|key: &str, now| stored(key, now)[..60].to_vec())),
        ("another key's value", Box::new(|_: &str, now| stored("model_request:v1:other", now))),
    ] {
        let envoy = Envoy::new();
        let w = envoy.worker(l2_on());
        let (mut host, mut req, key) = ask(&envoy, &w, 1);
        let value = forge(&key, envoy.now - 1_000);
        host.callout = (Some(200), Some(value.clone()));
        req.on_l2_answer(&w, &mut host, value.len());
        assert_eq!(host.reply(), None, "{name}: served");
        assert_eq!(host.effects.last(), Some(&Effect::Resume), "{name}: resumed upstream");
        answer(&w, &mut host, &mut req, 200, &completion("fresh"));
        assert_eq!(host.response_header("x-aurelis-cache"), Some("MISS"), "{name}");
        let mut worker_host = envoy.host();
        w.on_tick(&mut worker_host);
        assert_eq!(worker_host.stat("aurelis_l2_lookups_total.result.forged"), 1, "{name}");
        assert_eq!(worker_host.stat("aurelis_l2_lookups_total.result.hit"), 0, "{name}");
    }
}

#[test]
fn an_entry_dated_in_the_future_is_stale_not_fresh() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, key) = ask(&envoy, &w, 1);
    let value = stored(&key, envoy.now + 3_600_000);
    host.callout = (Some(200), Some(value.clone()));
    req.on_l2_answer(&w, &mut host, value.len());
    assert_eq!(host.reply(), None);
    assert_eq!(flushed(&envoy, &w).stat("aurelis_l2_lookups_total.result.stale"), 1);
    // A little skew is tolerated, and the age counts from now, not from the future.
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, key) = ask(&envoy, &w, 2);
    let value = stored(&key, envoy.now + 500);
    host.callout = (Some(200), Some(value.clone()));
    req.on_l2_answer(&w, &mut host, value.len());
    assert_eq!(header(host.reply().unwrap(), "age").as_deref(), Some("0"));
}

#[test]
fn the_stores_sent_to_l2_are_sealed() {
    let envoy = Envoy::new();
    let w = envoy.worker(l2_on());
    let (mut host, mut req, key) = ask(&envoy, &w, 1);
    host.callout = (Some(404), None);
    req.on_l2_answer(&w, &mut host, 0);
    answer(&w, &mut host, &mut req, 200, &completion("fresh"));
    let mut worker_host = envoy.host();
    w.on_tick(&mut worker_host);
    let body = worker_host
        .effects
        .iter()
        .find_map(|e| if let Effect::DispatchFromWorker(c) = e { c.body.clone() } else { None })
        .unwrap();
    let entry = crate::cache::sealed::open(&test_l2_secrets().signing_key.unwrap(), &key, &body).unwrap();
    assert_eq!(entry.body, completion("fresh"));
}

/// Without a signing key L2 is off, whatever the configuration says: no lookup, no store, the
/// request goes upstream, and the reason is counted and logged.
#[test]
fn without_a_signing_key_l2_is_off_and_says_why() {
    let envoy = Envoy::new();
    let config = crate::config::FilterConfig::from_json(
        json!({ "auth": { "anonymous": {} }, "l2": { "enabled": true } }).to_string().as_bytes(),
    )
    .unwrap();
    let w = Worker::new(
        config,
        crate::cache::L2Secrets { authorization: Some("Bearer t".into()), signing_key: None, refresh: None },
    );
    assert!(w.describe().contains("L2 off (no signing key"), "{}", w.describe());
    let (host, upstream) = exchange(&envoy, &w, 1, &chat("hi"));
    assert!(upstream);
    assert!(host.dispatched().is_empty(), "no L2 lookup without a signing key");
    let mut worker_host = envoy.host();
    w.on_tick(&mut worker_host);
    assert_eq!(worker_host.stat("aurelis_l2_disabled_total.reason.no_signing_key"), 1);
    assert!(!worker_host.effects.iter().any(|e| matches!(e, Effect::DispatchFromWorker(_))), "nothing stored");
}

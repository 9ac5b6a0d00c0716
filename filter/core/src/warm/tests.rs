//! Warming and hit reports driven through the worker with the fake host.
use super::WorkerCall;
use crate::cache::sealed::{self, SigningKey};
use crate::cache::Entry;
use crate::flow::testing::*;
use crate::flow::{Action, Request, Worker};
use crate::gate::BodyFormat;
use crate::http::Callout;
use serde_json::json;

fn config(extra: serde_json::Value) -> serde_json::Value {
    let mut base = json!({ "l2": { "enabled": true, "timeout_ms": 25 }, "warm": { "min_hits": 2 } });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

/// The key this fleet computes for `prompt` (read from the L2 lookup a request makes).
fn key_of(prompt: &str) -> String {
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({})));
    let mut host = envoy.host();
    let mut req = Request::new(1);
    assert_eq!(send(&w, &mut host, &mut req, &chat(prompt), &[]), Action::Pause);
    let callout = host.dispatched().first().cloned().cloned().unwrap();
    let path = callout.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.clone()).unwrap();
    path.trim_start_matches("/v1/entries/").to_string()
}

fn sealed_with(signing_key: &str, key: &str, listed_under: &str, stored_at_ms: u64) -> Vec<u8> {
    let entry = Entry {
        key: key.into(),
        stored_at_ms,
        status: 200,
        content_type: "application/json".into(),
        format: BodyFormat::Json,
        prompt_tokens: 10,
        completion_tokens: 5,
        body: completion("warmed"),
    };
    let signing_key = SigningKey::from_env_value(Some(signing_key)).unwrap().unwrap();
    sealed::seal(&signing_key, listed_under, &entry.encode())
}

fn frame(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// A miss filled from upstream (through the L2 lookup's 404): the entry is then in L1.
fn fill(envoy: &Envoy, w: &Worker, stream: u32, prompt: &str) {
    let (mut host, mut req, action) = start(envoy, w, stream, &chat(prompt), &[]);
    assert_eq!(action, Action::Pause, "asks L2 first");
    host.callout = (Some(404), None);
    req.on_l2_answer(w, &mut host, 0);
    answer(w, &mut host, &mut req, 200, &completion("fresh"));
}

/// Whether `prompt` is answered from L1 (else it waits for its L2 lookup).
fn from_l1(envoy: &Envoy, w: &Worker, stream: u32, prompt: &str) -> bool {
    let (host, _, _) = start(envoy, w, stream, &chat(prompt), &[]);
    assert!(calls(&host).is_empty(), "no call on the hit path");
    host.reply().is_some_and(|r| header(r, "x-aurelis-cache-level").as_deref() == Some("L1"))
}

fn calls(host: &Fake<'_>) -> Vec<(WorkerCall, Callout)> {
    host.effects.iter().filter_map(|e| if let Effect::Call(c, o) = e { Some((*c, o.clone())) } else { None }).collect()
}

/// The worker's first tick; returns the warming call it made, if any.
fn first_tick(envoy: &Envoy, w: &Worker) -> Option<Callout> {
    let mut host = envoy.host();
    w.on_tick(&mut host);
    calls(&host).into_iter().find(|(c, _)| *c == WorkerCall::Warm).map(|(_, o)| o)
}

fn answer_warm<'a>(envoy: &'a Envoy, w: &Worker, status: Option<u16>, body: Vec<u8>) -> Fake<'a> {
    let mut host = envoy.host();
    let size = body.len();
    host.callout = (status, Some(body));
    w.on_call_answer(WorkerCall::Warm, &mut host, size);
    w.on_tick(&mut host);
    host
}

#[test]
fn a_new_envoy_warms_once_per_layout_and_namespace() {
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({})));
    let callout = first_tick(&envoy, &w).expect("the first worker warms");
    let path = callout.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.as_str()).unwrap();
    assert_eq!(path, "/v1/hot?limit=100&max_bytes=4194304&min_hits=2&window_days=30");
    assert_eq!(callout.timeout_ms, 2000);
    assert!(callout.headers.contains(&("x-aurelis-namespace".into(), "aurelis".into())));
    let other_worker = envoy.worker(config(json!({})));
    assert_eq!(first_tick(&envoy, &other_worker), None, "another worker of the same Envoy");
    assert_eq!(first_tick(&envoy, &w), None, "only on the first tick");
    let new_layout = envoy.worker(config(json!({ "cache": { "max_entries": 64 } })));
    assert!(first_tick(&envoy, &new_layout).is_some(), "a new L1 layout is warmed");
    let off = Envoy::new();
    assert_eq!(first_tick(&off, &off.worker(config(json!({ "warm": { "enabled": false } })))), None);
    assert_eq!(first_tick(&off, &off.worker(json!({}))), None, "without L2 there is nothing to warm from");
}

#[test]
fn verified_entries_are_loaded_and_serve_the_first_request_from_l1() {
    let key = key_of("hi");
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({})));
    assert!(first_tick(&envoy, &w).is_some());
    let mut body = Vec::new();
    let ours = TEST_SIGNING_KEY;
    let theirs = "someone-else's-key-of-at-least-32-bytes";
    let other_key = key.replace("model_request:", "model_request:x");
    frame(&mut body, &key, &sealed_with(ours, &key, &key, envoy.now - 7_200_000));
    frame(
        &mut body,
        "model_request:v3:anon:x=a:forged",
        &sealed_with(theirs, "model_request:v3:anon:x=a:forged", "model_request:v3:anon:x=a:forged", envoy.now),
    );
    let moved = format!("{key}-moved");
    frame(&mut body, &moved, &sealed_with(ours, &key, &key, envoy.now));
    frame(
        &mut body,
        &format!("{key}-old"),
        &sealed_with(ours, &format!("{key}-old"), &format!("{key}-old"), envoy.now - 90_000_000),
    );
    frame(
        &mut body,
        "other_prefix:v3:anon:x=a:h",
        &sealed_with(ours, "other_prefix:v3:anon:x=a:h", "other_prefix:v3:anon:x=a:h", envoy.now),
    );
    assert_ne!(other_key, key);
    body.extend_from_slice(&[0, 0, 0, 9, b'c', b'u', b't']);
    let host = answer_warm(&envoy, &w, Some(200), body);
    for (result, n) in [("loaded", 1), ("forged", 3), ("stale", 1), ("foreign", 1)] {
        assert_eq!(host.stat(&format!("aurelis_l1_warm_entries_total.result.{result}")), n, "{result}");
    }
    assert_eq!(host.stat("aurelis_l1_warm_total.result.loaded"), 1);

    let (hit, upstream) = exchange(&envoy, &w, 7, &chat("hi"));
    assert!(!upstream, "the first request after the restart is served from the warmed L1");
    let reply = hit.reply().unwrap();
    assert_eq!(header(reply, "x-aurelis-cache-level").as_deref(), Some("L1"));
    assert_eq!(reply.body, completion("warmed"));
    assert_eq!(header(reply, "age").as_deref(), Some("7200"), "its age is the original one");
}

#[test]
fn a_failed_or_empty_warming_is_counted_and_changes_nothing() {
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({})));
    assert!(first_tick(&envoy, &w).is_some());
    let host = answer_warm(&envoy, &w, Some(503), Vec::new());
    assert_eq!(host.stat("aurelis_l1_warm_total.result.error"), 1);
    let host = answer_warm(&envoy, &w, None, Vec::new());
    assert_eq!(host.stat("aurelis_l1_warm_total.result.error"), 1, "no answer (timeout, reset)");
    let host = answer_warm(&envoy, &w, Some(200), Vec::new());
    assert_eq!(host.stat("aurelis_l1_warm_total.result.empty"), 1, "nothing hot yet");
    assert!(!from_l1(&envoy, &w, 3, "hi"));
}

#[test]
fn l1_hits_are_counted_in_memory_and_reported_in_one_batch() {
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({ "warm": { "enabled": false } })));
    fill(&envoy, &w, 1, "hi");
    let key = key_of("hi");
    let mut reported = Vec::new();
    for stream in 2..5 {
        assert!(from_l1(&envoy, &w, stream, "hi"));
    }
    // Ticks over one report interval: exactly one call, with the three hits.
    for tick in 0..40 {
        let mut host = envoy.host();
        host.now = envoy.now + tick * 50;
        w.on_tick(&mut host);
        reported.extend(calls(&host));
    }
    assert_eq!(reported.len(), 1, "{reported:?}");
    let (call, callout) = reported.remove(0);
    assert_eq!(call, WorkerCall::HitReport);
    assert!(callout.headers.contains(&(":path".into(), "/v1/hits".into())));
    assert_eq!(callout.body.unwrap(), format!("3 {key}\n").into_bytes());
    let mut host = envoy.host();
    host.callout = (Some(204), None);
    w.on_call_answer(WorkerCall::HitReport, &mut host, 0);
    w.on_tick(&mut host);
    assert_eq!(host.stat("aurelis_l1_hit_reports_total.result.ok"), 1);
    // Nothing new: no report, even once the next one is due.
    let mut quiet = Vec::new();
    for tick in 0..80 {
        let mut host = envoy.host();
        host.now = envoy.now + tick * 50;
        w.on_tick(&mut host);
        quiet.extend(calls(&host));
    }
    assert!(quiet.is_empty());
}

#[test]
fn a_worker_hands_over_its_counts() {
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({ "warm": { "enabled": false } })));
    fill(&envoy, &w, 1, "hi");
    assert!(from_l1(&envoy, &w, 2, "hi"));
    let (body, _) = w.take_hit_counts().take_body();
    assert_eq!(body, format!("1 {}\n", key_of("hi")).into_bytes());
    assert!(w.take_hit_counts().is_empty(), "taken out: not reported twice");
    assert!(from_l1(&envoy, &w, 3, "hi"));
    let config = w.config.clone();
    let next = Worker::continuing(config, test_l2_secrets(), Some(&w));
    let (body, _) = next.take_hit_counts().take_body();
    assert_eq!(body, format!("1 {}\n", key_of("hi")).into_bytes(), "a new configuration reports the old one's hits");
}

#[test]
fn without_reports_nothing_is_counted() {
    let envoy = Envoy::new();
    let w = envoy.worker(config(json!({ "warm": { "report_hits": false } })));
    fill(&envoy, &w, 1, "hi");
    assert!(from_l1(&envoy, &w, 2, "hi"));
    assert!(w.take_hit_counts().is_empty());
}

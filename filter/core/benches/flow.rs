//! The request flow's own CPU cost per request, natively with the fake host (`make bench`):
//! a repeated L1 hit, the same with rate limits on, and a miss that is stored. Under Envoy the
//! host calls come on top (see `aurelis-bench` for host calls per request).
use aurelis_core::flow::testing::{answer, completion, send, Envoy};
use aurelis_core::flow::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

const BODY: &[u8] =
    br#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
const BEARER: (&str, &str) = ("authorization", "Bearer sk-bench");

/// `config` with the one consumer whose key the bench presents (a verified API-key client: the
/// production path).
fn with_consumer(mut config: serde_json::Value) -> serde_json::Value {
    let digest = aurelis_core::auth::key_sha256("sk-bench");
    config["auth"] = json!({ "consumers": [{ "name": "bench", "key_sha256": [digest] }] });
    config
}

fn hit(c: &mut Criterion, name: &str, config: serde_json::Value) {
    let envoy = Envoy::new();
    let w = envoy.worker(with_consumer(config));
    let mut host = envoy.host();
    let mut prime = Request::new(0);
    send(&w, &mut host, &mut prime, BODY, &[BEARER]);
    if w.config.l2.enabled {
        // L2 has nothing yet: the prime goes upstream.
        host.callout = (Some(404), None);
        prime.on_l2_answer(&w, &mut host, 0);
    }
    answer(&w, &mut host, &mut prime, 200, &completion("Paris"));
    let mut stream = 1;
    c.bench_function(name, |b| {
        b.iter(|| {
            let mut host = envoy.host();
            let mut req = Request::new(stream);
            stream = stream.wrapping_add(1);
            send(&w, &mut host, &mut req, BODY, &[BEARER]);
            debug_assert!(host.reply().is_some_and(|r| r.status == 200), "a hit, not a refusal");
            req.on_response_headers(&w, &mut host, false);
            req.on_stream_end(&w, &mut host);
            host.effects.len()
        })
    });
}

fn miss(c: &mut Criterion) {
    let envoy = Envoy::new();
    let w = envoy.worker(with_consumer(json!({ "cache": { "max_entries": 1000 } })));
    let answer_body = completion("Paris");
    let mut n = 0u64;
    c.bench_function("flow/miss (unique prompts, stored)", |b| {
        b.iter(|| {
            n += 1;
            let body = format!(
                r#"{{"model":"gpt-4o-mini","temperature":0,"messages":[{{"role":"user","content":"Question {n}"}}]}}"#
            );
            let mut host = envoy.host();
            let mut req = Request::new(n as u32);
            send(&w, &mut host, &mut req, body.as_bytes(), &[BEARER]);
            answer(&w, &mut host, &mut req, 200, &answer_body);
            host.effects.len()
        })
    });
}

fn bench(c: &mut Criterion) {
    hit(c, "flow/L1 hit", json!({}));
    let limits =
        json!({ "rate_limit": { "enabled": true, "requests": { "rate": 1_000_000_000u64, "per": "second" } } });
    hit(c, "flow/L1 hit, rate limits on", limits);
    // What counting L1 hits for warming costs a hit (worker memory only; the batched report is
    // a tick's work): the same hit with L2 on, with and without the count.
    let l2 = |report_hits: bool| json!({ "l2": { "enabled": true }, "warm": { "report_hits": report_hits } });
    hit(c, "flow/L1 hit, L2 on, hits not counted", l2(false));
    hit(c, "flow/L1 hit, L2 on, hits counted for warming", l2(true));
    miss(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);

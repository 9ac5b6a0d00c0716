//! Refresh-ahead through the flow: an opted-in tenant's fill leaves a sealed record; a replay
//! under a grant made from it refreshes exactly that entry; a client cannot use the path.
use super::*;
use crate::auth::key_sha256;
use crate::cache::L2Secrets;
use crate::config::FilterConfig;
use crate::http::Callout;
use crate::refresh::grant::{issue, GrantFor};
use crate::refresh::{Record, RefreshSecret, GRANT_HEADER};

const SECRET: &str = "refresh-secret-of-at-least-32-bytes!";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";

fn config(tokens_per_hour: u64) -> serde_json::Value {
    json!({
        "auth": { "consumers": [
            { "name": "alice", "tenant": "team-a", "key_sha256": [key_sha256(ALICE)] },
            { "name": "bob", "tenant": "team-b", "key_sha256": [key_sha256(BOB)] }
        ] },
        "l2": { "enabled": true },
        "refresh": { "tenants": [{ "tenant": "team-a", "tokens_per_hour": tokens_per_hour }] }
    })
}

fn worker(envoy: &Envoy, config: serde_json::Value, secret: Option<&str>) -> Worker {
    let config = FilterConfig::from_json(config.to_string().as_bytes()).unwrap();
    let refresh = RefreshSecret::from_env_value(secret).unwrap();
    let w = Worker::new(config, L2Secrets { refresh, ..test_l2_secrets() });
    w.on_configure(&mut envoy.host());
    w
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// A client's request with L2 on: L2 misses, the upstream answers `text`; returns the callouts
/// its worker then sent (the L2 store, and the record for an opted-in tenant).
fn fill(envoy: &Envoy, w: &Worker, stream: u32, key: &str, prompt: &str, text: &str) -> Vec<Callout> {
    let auth = bearer(key);
    let (mut host, mut req, action) = start(envoy, w, stream, &chat(prompt), &[("authorization", &auth)]);
    assert_eq!(action, Action::Pause, "asks L2");
    host.callout = (Some(404), None);
    req.on_l2_answer(w, &mut host, 0);
    answer(w, &mut host, &mut req, 200, &completion(text));
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    worker_host
        .effects
        .iter()
        .filter_map(|e| if let Effect::DispatchFromWorker(c) = e { Some(c.clone()) } else { None })
        .collect()
}

fn path_of(callout: &Callout) -> String {
    callout.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.clone()).unwrap()
}

/// The record an opted-in fill sent, and the key it is for.
fn recorded(callouts: &[Callout]) -> (String, Record) {
    let record = callouts.iter().find(|c| path_of(c).starts_with("/v1/refresh/")).expect("a record was sent");
    let key = path_of(record).trim_start_matches("/v1/refresh/").to_string();
    (key, Record::decode(record.body.as_ref().unwrap()).unwrap())
}

/// What the refresher sends: a grant for `key` from `record`, under `secret`.
fn grant(envoy: &Envoy, secret: &str, key: &str, record: &Record, nonce: u8) -> String {
    let secret = RefreshSecret::from_env_value(Some(secret)).unwrap().unwrap();
    let about = GrantFor {
        namespace: "aurelis",
        key,
        kind: record.kind,
        label: &record.label,
        tenant: &record.tenant,
        expires_at_ms: envoy.now + 30_000,
        nonce: [nonce; 16],
        record_seal: record.seal,
    };
    issue(&secret, &about)
}

/// A replay of `body` with `extra` headers; the host and whether it went upstream (where it
/// is answered with `text`).
fn replay<'a>(
    envoy: &'a Envoy,
    w: &Worker,
    stream: u32,
    body: &[u8],
    extra: &[(&str, &str)],
    text: &str,
) -> (Fake<'a>, bool) {
    let mut host = envoy.host();
    let mut req = Request::new(stream);
    host.request_headers = post_headers(body, extra);
    host.request_body = body.to_vec();
    let mut action = req.on_request_headers(w, &mut host, false);
    if host.reply().is_none() {
        action = req.on_request_body(w, &mut host, body.len(), true);
    }
    let upstream = action == Action::Continue && host.reply().is_none();
    if upstream {
        assert!(host.dispatched().is_empty(), "a replay looks nothing up");
        answer(w, &mut host, &mut req, 200, &completion(text));
    } else {
        req.on_response_headers(w, &mut host, false);
        req.on_stream_end(w, &mut host);
    }
    (host, upstream)
}

fn refusal(host: &Fake<'_>) -> (u16, String) {
    let reply = host.reply().expect("refused locally");
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    (reply.status, body["error"]["code"].as_str().unwrap_or_default().to_string())
}

/// Alice's answer for `prompt` as her next request sees it (L1).
fn alice_sees(envoy: &Envoy, w: &Worker, stream: u32, prompt: &str) -> Vec<u8> {
    let auth = bearer(ALICE);
    let (host, upstream) =
        exchange_at(envoy, w, stream, "/v1/chat/completions", &chat(prompt), &[("authorization", &auth)]);
    assert!(!upstream, "a hit");
    host.reply().unwrap().body.clone()
}

#[test]
fn a_recorded_request_is_replayed_under_its_grant_and_replaces_the_entry() {
    let envoy = Envoy::new();
    let w = worker(&envoy, config(10_000), Some(SECRET));
    let (key, record) = recorded(&fill(&envoy, &w, 1, ALICE, "p", "first"));
    assert_eq!((record.label.as_str(), record.tenant.as_str()), ("alice", "team-a"));
    assert_eq!(record.body, chat("p"), "the request as sent");
    assert_eq!(alice_sees(&envoy, &w, 2, "p"), completion("first"));

    let header = grant(&envoy, SECRET, &key, &record, 1);
    let (host, upstream) = replay(&envoy, &w, 3, &record.body, &[(GRANT_HEADER, &header)], "fresh");
    assert!(upstream, "{:?}", host.reply());
    assert!(host.effects.contains(&Effect::SetRequestHeader(GRANT_HEADER.into(), None)), "never forwarded");
    assert_eq!(host.response_header("x-aurelis-cache"), Some("MISS"));
    assert_eq!(alice_sees(&envoy, &w, 4, "p"), completion("fresh"), "the entry was replaced");
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_refreshes_total.result.admitted"), 1);
    assert_eq!(stats.stat("aurelis_refresh_tokens_total"), 15, "what the answer cost");
}

/// What is tried, the body, the headers, and the expected (status, code).
type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, (u16, &'a str));

#[test]
fn forged_replayed_expired_or_misdirected_grants_are_refused_and_counted() {
    let envoy = Envoy::new();
    let w = worker(&envoy, config(10_000), Some(SECRET));
    let (key, record) = recorded(&fill(&envoy, &w, 1, ALICE, "p", "first"));
    let genuine = grant(&envoy, SECRET, &key, &record, 1);
    assert!(replay(&envoy, &w, 2, &record.body, &[(GRANT_HEADER, &genuine)], "fresh").1);

    let bob = bearer(BOB);
    let other_secret = grant(&envoy, "someone-else's-secret-of-32-bytes!!", &key, &record, 2);
    let forged_seal = grant(&envoy, SECRET, &key, &Record { seal: [0; 32], ..record.clone() }, 3);
    let as_bob =
        grant(&envoy, SECRET, &key, &Record { label: "bob".into(), tenant: "team-b".into(), ..record.clone() }, 4);
    let cases: Vec<Case> = vec![
        ("the same grant again", record.body.clone(), vec![(GRANT_HEADER, &genuine)], (401, "refresh_grant_replayed")),
        (
            "another prompt under the grant",
            chat("other"),
            vec![(GRANT_HEADER, &genuine)],
            (401, "refresh_grant_forged"),
        ),
        (
            "signed with another secret",
            record.body.clone(),
            vec![(GRANT_HEADER, &other_secret)],
            (401, "refresh_grant_forged"),
        ),
        (
            "a seal not made by a filter",
            record.body.clone(),
            vec![(GRANT_HEADER, &forged_seal)],
            (401, "refresh_grant_forged"),
        ),
        (
            "a client with its own key",
            record.body.clone(),
            vec![("authorization", &bob), (GRANT_HEADER, &other_secret)],
            (401, "refresh_grant_forged"),
        ),
        (
            "a tenant that did not opt in",
            record.body.clone(),
            vec![(GRANT_HEADER, &as_bob)],
            (403, "refresh_not_enabled"),
        ),
        ("junk", record.body.clone(), vec![(GRANT_HEADER, "v1.api_key.1")], (401, "refresh_grant_malformed")),
    ];
    for (stream, (what, body, extra, expected)) in cases.into_iter().enumerate() {
        let (host, upstream) = replay(&envoy, &w, 10 + stream as u32, &body, &extra, "evil");
        assert!(!upstream, "{what}");
        let (status, code) = refusal(&host);
        assert_eq!((status, code.as_str()), expected, "{what}");
    }
    let expired = {
        let mut late = Envoy::new();
        late.now = envoy.now - 60_000;
        grant(&late, SECRET, &key, &record, 5)
    };
    let (host, _) = replay(&envoy, &w, 30, &record.body, &[(GRANT_HEADER, &expired)], "evil");
    assert_eq!(refusal(&host), (401, "refresh_grant_expired".into()));
    let (host, _) = exchange_at(&envoy, &w, 31, "/v1/models", b"", &[(GRANT_HEADER, &genuine)]);
    assert_eq!(refusal(&host).1, "refresh_grant_unusable", "only cacheable model calls");
    assert_eq!(alice_sees(&envoy, &w, 32, "p"), completion("fresh"), "nothing the refusals sent was stored");
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_refused_total.reason.refresh_grant_forged"), 4);
    assert_eq!(stats.stat("aurelis_refused_total.reason.refresh_grant_replayed"), 1);
    assert_eq!(stats.stat("aurelis_refreshes_total.result.admitted"), 1);
}

#[test]
fn the_hourly_budget_stops_further_refreshes() {
    let envoy = Envoy::new();
    let w = worker(&envoy, config(1), Some(SECRET));
    let (key_p, record_p) = recorded(&fill(&envoy, &w, 1, ALICE, "p", "first"));
    let (key_q, record_q) = recorded(&fill(&envoy, &w, 2, ALICE, "q", "first"));
    let first = grant(&envoy, SECRET, &key_p, &record_p, 1);
    assert!(replay(&envoy, &w, 3, &record_p.body, &[(GRANT_HEADER, &first)], "fresh").1);
    let second = grant(&envoy, SECRET, &key_q, &record_q, 2);
    let (host, upstream) = replay(&envoy, &w, 4, &record_q.body, &[(GRANT_HEADER, &second)], "fresh");
    assert!(!upstream);
    assert_eq!(refusal(&host), (429, "refresh_budget_exhausted".into()));
    assert_eq!(flushed(&envoy, &w).stat("aurelis_refused_total.reason.refresh_budget_exhausted"), 1);
}

#[test]
fn only_opted_in_tenants_are_recorded_and_grants_need_the_feature() {
    let envoy = Envoy::new();
    let w = worker(&envoy, config(10_000), Some(SECRET));
    let bob = fill(&envoy, &w, 1, BOB, "p", "bob's");
    assert!(bob.iter().all(|c| path_of(c).starts_with("/v1/entries/")), "no record for team-b");
    let (key, record) = recorded(&fill(&envoy, &w, 2, ALICE, "p", "alice's"));
    let header = grant(&envoy, SECRET, &key, &record, 1);
    // An Envoy without the secret (or without opted-in tenants) records nothing, accepts no grant.
    let plain = worker(&envoy, config(10_000), None);
    assert!(fill(&envoy, &plain, 3, ALICE, "r", "x").iter().all(|c| path_of(c).starts_with("/v1/entries/")));
    let (host, upstream) = replay(&envoy, &plain, 4, &record.body, &[(GRANT_HEADER, &header)], "evil");
    assert!(!upstream);
    assert_eq!(refusal(&host), (403, "refresh_not_enabled".into()));
}

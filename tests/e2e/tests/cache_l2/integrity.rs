//! L2 entries cannot be forged: whatever reaches Redis without the fleet's signing key (written
//! straight into Redis, or PUT without the token) is never served, and a future stored_at does
//! not keep an entry fresh. Each refusal has a control: the same channel with the fleet's key
//! (and token) is served, so the refusals are the seal's and the token's doing.
use super::*;
use aurelis_core::cache::sealed::{self, SigningKey};
use aurelis_core::cache::Entry;
use aurelis_core::gate::BodyFormat;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// The namespace the fleet's filters and cache service use (the default).
const ENTRY_PREFIX: &str = "aurelis:e:";
/// In the forged answers' bodies, so a served one is found by a plain search.
const FORGED: &str = "forged-by-the-test";

fn redis_cli(fleet: &Fleet, args: &[&str], stdin: Option<&[u8]>) -> String {
    let port = fleet.redis_port.unwrap_or_default().to_string();
    let mut child = Command::new("redis-cli")
        .args(["-p", &port])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    if let (Some(bytes), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(bytes).unwrap_or_else(|e| panic!("redis-cli stdin: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("redis-cli: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `value` as the cache service would store it (format tag 0: raw), bypassing it.
fn write_into_redis(fleet: &Fleet, key: &str, value: &[u8]) {
    let mut stored = vec![0u8];
    stored.extend_from_slice(value);
    let reply = redis_cli(fleet, &["-x", "SET", &format!("{ENTRY_PREFIX}{key}")], Some(&stored));
    assert_eq!(reply, "OK");
}

fn entry_keys(fleet: &Fleet) -> BTreeSet<String> {
    let listed = redis_cli(fleet, &["--raw", "KEYS", &format!("{ENTRY_PREFIX}*")], None);
    listed.lines().filter_map(|l| l.strip_prefix(ENTRY_PREFIX)).map(str::to_string).collect()
}

/// Fills `prompt` through `gateway` and returns the L2 key its answer was stored under.
async fn fill(fleet: &Fleet, gateway: &str, prompt: &str) -> String {
    let before = entry_keys(fleet);
    assert_eq!(post_chat_to(gateway, &chat(prompt), &[]).await.cache(), "MISS");
    let started = Instant::now();
    loop {
        let new: Vec<String> = entry_keys(fleet).difference(&before).cloned().collect();
        if let [key] = new.as_slice() {
            return key.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no new L2 entry for {prompt:?}: {new:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// A well-formed entry for `key` whose answer is not the upstream's.
fn forged_entry(key: &str, stored_at_ms: u64) -> Entry {
    let body = serde_json::json!({
        "id": FORGED, "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": FORGED } }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 }
    });
    Entry {
        key: key.into(),
        stored_at_ms,
        status: 200,
        content_type: "application/json".into(),
        format: BodyFormat::Json,
        prompt_tokens: 1,
        completion_tokens: 1,
        body: body.to_string().into_bytes(),
    }
}

fn key_of(text: &str) -> SigningKey {
    match SigningKey::from_env_value(Some(text)) {
        Ok(Some(key)) => key,
        other => panic!("signing key: {other:?}"),
    }
}

fn served_forged(reply: &Reply) -> bool {
    String::from_utf8_lossy(&reply.body).contains(FORGED)
}

/// Waits until Envoy's counter reaches `count` (stats are flushed on the filter's tick).
fn wait_counter(fleet: &Fleet, envoy: usize, stat: &str, count: u64) {
    let stat = format!("wasmcustom.{stat}");
    let started = Instant::now();
    while fleet.envoys[envoy].counter(&stat) < count {
        assert!(started.elapsed() < Duration::from_secs(5), "{stat} < {count} on envoy {envoy}\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fleet.envoys[envoy].counter(&stat), count, "{stat} on envoy {envoy}");
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_written_straight_into_redis_are_served_only_when_signed_with_the_fleets_key() {
    let fleet = l2_fleet(2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    let ours = key_of(&fleet.l2.signing_key);
    let theirs = key_of("an-attackers-own-signing-key-0123456789abcdef");
    let now = now_ms();
    let sealed_by = |key: &SigningKey, k: &str| sealed::seal(key, k, &forged_entry(k, now).encode());
    type Forge<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, Forge)> = vec![
        ("unsigned (the entry format of an unsigning filter)", Box::new(|k| forged_entry(k, now).encode())),
        ("signed with another key", Box::new(|k| sealed_by(&theirs, k))),
        (
            "sealed, then altered",
            Box::new(|k| {
                let mut v = sealed_by(&ours, k);
                if let Some(last) = v.last_mut() {
                    *last ^= 0x20;
                }
                v
            }),
        ),
        ("truncated", Box::new(|k| sealed_by(&ours, k)[..sealed::HEADER_LEN + 20].to_vec())),
        ("a seal without its MAC", Box::new(|k| [&sealed::MAGIC[..], &forged_entry(k, now).encode()].concat())),
        ("another key's genuine value", Box::new(|_| sealed_by(&ours, "model_request:v1:another-key"))),
    ];
    for (i, (name, forge)) in cases.iter().enumerate() {
        let prompt = format!("forged into redis {i}");
        let key = fill(&fleet, &a, &prompt).await;
        write_into_redis(&fleet, &key, &forge(&key));
        let on_b = post_chat_to(&b, &chat(&prompt), &[]).await;
        assert_eq!((on_b.status, on_b.cache()), (200, "MISS"), "{name}: answered by the upstream");
        assert!(!served_forged(&on_b), "{name}: the forged answer was served");
        wait_counter(&fleet, 1, "aurelis_l2_lookups_total.result.forged", i as u64 + 1);
    }
    assert_eq!(fleet.envoys[1].counter("wasmcustom.aurelis_l2_lookups_total.result.hit"), 0);

    // Control: the same write, sealed with the fleet's key, is served from L2.
    let key = fill(&fleet, &a, "sealed with the fleet's key").await;
    write_into_redis(&fleet, &key, &sealed_by(&ours, &key));
    let on_b = post_chat_to(&b, &chat("sealed with the fleet's key"), &[]).await;
    assert_eq!(on_b.header("x-aurelis-cache-level"), Some("L2"));
    assert!(served_forged(&on_b), "the channel works: only the seal kept the others out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_without_the_token_is_refused_and_its_entry_never_served() {
    let fleet = l2_fleet(2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    let ours = key_of(&fleet.l2.signing_key);
    let service = format!("http://127.0.0.1:{}/v1/entries", fleet.cache_service_port.unwrap_or_default());
    let http = reqwest::Client::new();
    let key = fill(&fleet, &a, "put without the token").await;
    redis_cli(&fleet, &["DEL", &format!("{ENTRY_PREFIX}{key}")], None);
    // Even sealed with the right key: without the token the service stores nothing.
    let value = sealed::seal(&ours, &key, &forged_entry(&key, now_ms()).encode());
    for authorization in [None, Some("Bearer not-the-fleets-token-0123456789abcdef")] {
        let mut put = http.put(format!("{service}/{key}")).body(value.clone());
        if let Some(a) = authorization {
            put = put.header("authorization", a);
        }
        let status = put.send().await.map(|r| r.status().as_u16()).unwrap_or_else(|e| panic!("PUT: {e}"));
        assert_eq!(status, 401, "PUT with {authorization:?}");
    }
    assert_eq!(redis_cli(&fleet, &["EXISTS", &format!("{ENTRY_PREFIX}{key}")], None), "0", "nothing stored");
    let on_b = post_chat_to(&b, &chat("put without the token"), &[]).await;
    assert_eq!((on_b.status, on_b.cache()), (200, "MISS"));
    assert!(!served_forged(&on_b));
    wait_counter(&fleet, 1, "aurelis_l2_lookups_total.result.miss", 1);

    // Control: the same PUT with the token is stored and served.
    let key = fill(&fleet, &a, "put with the token").await;
    let value = sealed::seal(&ours, &key, &forged_entry(&key, now_ms()).encode());
    let put = http.put(format!("{service}/{key}")).bearer_auth(&fleet.l2.token).body(value).send().await;
    assert_eq!(put.map(|r| r.status().as_u16()).unwrap_or_default(), 204);
    let on_b = post_chat_to(&b, &chat("put with the token"), &[]).await;
    assert_eq!(on_b.header("x-aurelis-cache-level"), Some("L2"));
    assert!(served_forged(&on_b));

    // The fleet's Redis is a bounded cache: it evicts instead of growing without limit.
    assert_eq!(redis_cli(&fleet, &["CONFIG", "GET", "maxmemory-policy"], None), "maxmemory-policy\nallkeys-lru");
    assert_eq!(redis_cli(&fleet, &["CONFIG", "GET", "maxmemory"], None), "maxmemory\n268435456");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_future_stored_at_does_not_keep_an_entry_fresh() {
    let fleet = l2_fleet_with(&L2_MODEL.replace("timeout_ms: 250 }", "timeout_ms: 250, ttl_seconds: 60 }"), 2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    let ours = key_of(&fleet.l2.signing_key);
    let sealed_at = |key: &str, at: u64| sealed::seal(&ours, key, &forged_entry(key, at).encode());

    // Genuine (sealed with the fleet's key), written straight into Redis: dated an hour ahead,
    // or replayed past its TTL. Neither is served.
    for (i, (name, offset)) in [("an hour ahead", 3_600_000i64), ("past its 60 s TTL", -61_000)].iter().enumerate() {
        let prompt = format!("dated {name}");
        let key = fill(&fleet, &a, &prompt).await;
        write_into_redis(&fleet, &key, &sealed_at(&key, now_ms().saturating_add_signed(*offset)));
        let on_b = post_chat_to(&b, &chat(&prompt), &[]).await;
        assert_eq!((on_b.cache(), served_forged(&on_b)), ("MISS", false), "{name}");
        wait_counter(&fleet, 1, "aurelis_l2_lookups_total.result.stale", i as u64 + 1);
    }

    // Through the service (with the token): it clamps stored_at to now on PUT. It cannot
    // re-seal, so the value no longer verifies and no filter serves it.
    let service = format!("http://127.0.0.1:{}/v1/entries", fleet.cache_service_port.unwrap_or_default());
    let http = reqwest::Client::new();
    let key = fill(&fleet, &a, "put an hour ahead").await;
    let put_at = now_ms();
    let put = http
        .put(format!("{service}/{key}"))
        .bearer_auth(&fleet.l2.token)
        .body(sealed_at(&key, put_at + 3_600_000))
        .send()
        .await;
    assert_eq!(put.map(|r| r.status().as_u16()).unwrap_or_default(), 204);
    let got = http.get(format!("{service}/{key}")).bearer_auth(&fleet.l2.token).send().await;
    let stored = match got {
        Ok(r) => r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        Err(e) => panic!("GET: {e}"),
    };
    let stored_at = sealed::stored_at(&stored).unwrap_or(u64::MAX);
    assert!((put_at..=now_ms()).contains(&stored_at), "stored_at {stored_at} not clamped to the PUT's now {put_at}");
    let on_b = post_chat_to(&b, &chat("put an hour ahead"), &[]).await;
    assert_eq!((on_b.cache(), served_forged(&on_b)), ("MISS", false));
    wait_counter(&fleet, 1, "aurelis_l2_lookups_total.result.forged", 1);

    // Control: genuine and a second old, it is served, one second old.
    let key = fill(&fleet, &a, "a second old").await;
    write_into_redis(&fleet, &key, &sealed_at(&key, now_ms() - 1_000));
    let on_b = post_chat_to(&b, &chat("a second old"), &[]).await;
    assert_eq!((on_b.header("x-aurelis-cache-level"), served_forged(&on_b)), (Some("L2"), true));
    assert!(matches!(on_b.header("age"), Some("1") | Some("2")), "age {:?}", on_b.header("age"));
}

/// Without a signing key the filter keeps L2 off (fail open): every request is answered, no
/// L2 call is made, and the reason is counted and logged.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_signing_key_l2_is_off_and_says_why() {
    let fleet = start_fleet(FleetOptions {
        model: Some(L2_MODEL.into()),
        cache_service: true,
        envoy_env: vec![(sealed::SIGNING_KEY_ENV.into(), String::new())],
        envoy_log_level: "info".into(),
        ..FleetOptions::default()
    });
    let gw = fleet.envoys[0].gateway_url.clone();
    assert_eq!(post_chat_to(&gw, &chat("no signing key"), &[]).await.cache(), "MISS");
    assert_eq!(post_chat_to(&gw, &chat("no signing key"), &[]).await.header("x-aurelis-cache-level"), Some("L1"));
    // Counted once per configured VM (Envoy's main thread and each worker have one).
    let disabled = "wasmcustom.aurelis_l2_disabled_total.reason.no_signing_key";
    let started = Instant::now();
    while fleet.envoys[0].counter(disabled) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "{disabled} stays 0\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    for result in ["hit", "miss", "error", "timeout", "forged"] {
        let stat = format!("wasmcustom.aurelis_l2_lookups_total.result.{result}");
        assert_eq!(fleet.envoys[0].counter(&stat), 0, "{stat}");
    }
    assert_eq!(fleet.envoys[0].counter("wasmcustom.aurelis_l2_stores_total.result.ok"), 0);
    assert!(entry_keys(&fleet).is_empty(), "nothing unsigned reaches L2");
    assert!(fleet.logs().contains("L2 off (no signing key"), "{}", fleet.logs());
}

//! L3 behind Redis, with the real embedded store (a SQLite file) and a real Redis: what Redis
//! forgot or cannot answer comes from L3 (marked `x-aurelis-cache-level: L3`) and is promoted
//! back to Redis; values are unreadable at rest and bound to their key; a key that is not loaded
//! or is wrong is a counted miss; a slow or dead L3 (PostgreSQL, locked or stopped) is a fast
//! miss.
mod support;

use aurelis_cache_service::api::AppState;
use aurelis_cache_service::l3::seal::Sealer;
use aurelis_cache_service::l3::L3;
use aurelis_cache_service::store::Target;
use aurelis_store::{open, StoreSettings};
use axum::http::StatusCode;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const K1: &str = "k1:1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "k2:2222222222222222222222222222222222222222222222222222222222222222";
const PATH: &str = "/v1/entries/model_request:v1:t-1:abc:json";
const PROMPT: &str = "what-is-the-secret-recipe-of-the-house";
const ANSWER: &str = "flour-water-and-a-lot-of-patience";

async fn with_l3(redis: &RedisServer, db: &Path, keys: &str, timeout: Duration) -> AppState {
    with_l3_at(redis, &format!("sqlite:{}", db.display()), keys, timeout).await
}

async fn with_l3_at(redis: &RedisServer, location: &str, keys: &str, timeout: Duration) -> AppState {
    let mut state = app(&Target::Single { url: redis.url(), password: None });
    let settings = StoreSettings::parse(location).unwrap();
    let stores = open(&settings).await.unwrap();
    let sealer = Sealer::parse(keys, 1 << 20).unwrap();
    let day = Duration::from_secs(86_400);
    state.l3 = Some(Arc::new(L3::new(stores.entries, sealer, timeout, day, 1 << 30, state.metrics.clone())));
    state
}

fn l3_count(state: &AppState, op: &str, outcome: &str) -> u64 {
    state.metrics.l3.with_label_values(&[op, outcome]).get()
}

/// Waits for the counter the background work increments (no sleeps as synchronisation).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn value() -> Vec<u8> {
    format!("{{\"prompt\":\"{PROMPT}\",\"answer\":\"{ANSWER}\"}}").repeat(30).into_bytes()
}

async fn fill(state: &AppState) {
    let stored_before = l3_count(state, "put", "stored");
    let tags = [("x-aurelis-tenant", "t-1"), ("x-aurelis-model", "gpt-4o"), ("x-aurelis-schema", "v3")];
    assert_eq!(call(state, put(PATH, &tags, value())).await.status, StatusCode::NO_CONTENT);
    until("the L3 write", || l3_count(state, "put", "stored") > stored_before).await;
}

#[tokio::test]
async fn what_redis_forgot_comes_from_l3_then_from_redis_again() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    let from_l2 = call(&state, get(PATH, None)).await;
    assert_eq!((from_l2.status, from_l2.cache_level.as_deref()), (StatusCode::OK, None));
    assert_eq!(from_l2.origin, None, "stored by a filter: the L2 age rule");

    redis.cli(&["FLUSHALL"]);
    let from_l3 = call(&state, get(PATH, None)).await;
    assert_eq!((from_l3.status, from_l3.cache_level.as_deref()), (StatusCode::OK, Some("L3")));
    assert_eq!(from_l3.body, value());
    assert_eq!(l3_count(&state, "get", "hit"), 1);

    // Promoted to Redis, with its tags (a purge by tenant still reaches it there).
    let entry = "aurelis:e:model_request:v1:t-1:abc:json";
    until("the promotion to Redis", || redis.cli(&["EXISTS", entry]).trim() == "1").await;
    let again = call(&state, get(PATH, None)).await;
    assert_eq!((again.status, again.cache_level.as_deref(), again.body), (StatusCode::OK, None, value()));
    assert_eq!(again.origin.as_deref(), Some("L3"), "promoted: the filter judges its age by L3's lifetime");
    assert_eq!(redis.cli(&["ZCARD", "aurelis:i:tenant:t-1"]).trim(), "1");

    // A DELETE reaches both levels: L3 does not bring the entry back.
    assert_eq!(call(&state, delete(PATH, None)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&state, get(PATH, None)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(l3_count(&state, "delete", "deleted"), 1);
}

#[tokio::test]
async fn redis_down_l3_still_serves() {
    let mut redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    redis.stop();
    let reply = call(&state, get(PATH, None)).await;
    assert_eq!((reply.status, reply.cache_level.as_deref()), (StatusCode::OK, Some("L3")));
    assert_eq!(reply.body, value());
    // Not in L3 either: Redis' error stands (the filter fails open on it).
    let other = call(&state, get("/v1/entries/never-stored", None)).await;
    assert_eq!(other.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn nothing_readable_at_rest() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    // The database file and its write-ahead log: everything SQLite wrote.
    let mut bytes = Vec::new();
    for file in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(file.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 1000, "the store wrote something");
    for text in [PROMPT, ANSWER] {
        assert!(!bytes.windows(text.len()).any(|w| w == text.as_bytes()), "`{text}` readable in the database");
    }
}

#[tokio::test]
async fn unknown_or_wrong_keys_are_counted_misses_and_rotation_keeps_old_entries() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l3.db");
    fill(&with_l3(&redis, &db, K1, Duration::from_millis(500)).await).await;
    redis.cli(&["FLUSHALL"]);

    // Rotated: k2 seals, k1 still opens what it sealed.
    let rotated = with_l3(&redis, &db, &format!("{K2},{K1}"), Duration::from_millis(500)).await;
    assert_eq!(call(&rotated, get(PATH, None)).await.cache_level.as_deref(), Some("L3"));
    until("the promotion to Redis", || redis.cli(&["DBSIZE"]).trim() != "0").await;
    redis.cli(&["FLUSHALL"]);

    // k1 no longer loaded: a miss, counted.
    let without = with_l3(&redis, &db, K2, Duration::from_millis(500)).await;
    assert_eq!(call(&without, get(PATH, None)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(l3_count(&without, "get", "unknown_key"), 1);

    // Same id, other key material: a miss, counted.
    let wrong = with_l3(&redis, &db, &K2.replace("k2:", "k1:"), Duration::from_millis(500)).await;
    assert_eq!(call(&wrong, get(PATH, None)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(l3_count(&wrong, "get", "undecryptable"), 1);
}

#[tokio::test]
async fn a_slow_or_dead_l3_is_a_fast_counted_miss() {
    let redis = RedisServer::start(&[]);
    let mut postgres = aurelis_devstack::Postgres::start().unwrap();
    postgres.create_database("l3").unwrap();
    let url = postgres.url("l3");
    let state = with_l3_at(&redis, &url, K1, Duration::from_millis(30)).await;
    fill(&state).await;
    redis.cli(&["FLUSHALL"]);
    let reply = call(&state, get(PATH, None)).await;
    assert_eq!(reply.cache_level.as_deref(), Some("L3"), "the control: PostgreSQL serves L3");
    until("the promotion to Redis", || redis.cli(&["DBSIZE"]).trim() != "0").await;
    redis.cli(&["FLUSHALL"]);

    // Another session holds the table: the lookup would wait for it.
    let (mut blocker, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE aurelis_entries IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let started = Instant::now();
    let reply = call(&state, get(PATH, None)).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(l3_count(&state, "get", "timeout"), 1);
    assert!(waited < Duration::from_secs(1), "the lookup waited {waited:?}, not its 30 ms bound");
    lock.rollback().await.unwrap();

    // PostgreSQL gone: a miss, counted, and fast.
    postgres.stop();
    let started = Instant::now();
    let reply = call(&state, get(PATH, None)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(l3_count(&state, "get", "timeout") + l3_count(&state, "get", "error"), 2);
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn purge(body: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post("/v1/purge").body(axum::body::Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn a_purge_reaches_redis_and_l3_and_only_its_scope() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    let other = "/v1/entries/model_request:v1:t-1:def:json";
    let stored = l3_count(&state, "put", "stored");
    let tags = [("x-aurelis-tenant", "t-1"), ("x-aurelis-model", "gpt-4o-mini"), ("x-aurelis-schema", "v3")];
    assert_eq!(call(&state, put(other, &tags, value())).await.status, StatusCode::NO_CONTENT);
    until("the second L3 write", || l3_count(&state, "put", "stored") > stored).await;

    for bad in ["{}", r#"{"model":"gpt-4o","tenant":"t-1"}"#, r#"{"colour":"red"}"#, "not json"] {
        assert_eq!(call(&state, purge(bad)).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let purged = call(&state, purge(r#"{"model":"gpt-4o"}"#)).await;
    assert_eq!(purged.status, StatusCode::OK);
    let counts: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(counts, serde_json::json!({ "l2": 1, "l3": 1 }));
    assert_eq!(l3_count(&state, "purge", "purged"), 1);

    // Gone from both levels: with Redis emptied, L3 does not bring it back.
    redis.cli(&["FLUSHALL"]);
    assert_eq!(call(&state, get(PATH, None)).await.status, StatusCode::NOT_FOUND);
    // Another model's entry is untouched (and still in L3).
    let kept = call(&state, get(other, None)).await;
    assert_eq!((kept.status, kept.cache_level.as_deref()), (StatusCode::OK, Some("L3")));
}

/// The `/v1/hot` body: (key, value) pairs, each length a big-endian u32.
fn decode_hot(mut body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut entries = Vec::new();
    let take = |body: &mut &[u8]| {
        let (len, rest) = body.split_at(4);
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        let (item, rest) = rest.split_at(len);
        *body = rest;
        item.to_vec()
    };
    while !body.is_empty() {
        let key = String::from_utf8(take(&mut body)).unwrap();
        entries.push((key, take(&mut body)));
    }
    entries
}

#[tokio::test]
async fn the_hottest_entries_are_listed_for_warming() {
    let mut redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    let cold = "/v1/entries/model_request:v1:t-1:cold:json";
    let stored = l3_count(&state, "put", "stored");
    assert_eq!(call(&state, put(cold, &[], b"cold".to_vec())).await.status, StatusCode::NO_CONTENT);
    until("the second L3 write", || l3_count(&state, "put", "stored") > stored).await;
    // With Redis down every read is an L3 hit: 10 for the hot entry, 2 for the cold one.
    redis.stop();
    for _ in 0..10 {
        assert_eq!(call(&state, get(PATH, None)).await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(call(&state, get(cold, None)).await.status, StatusCode::OK);
    }
    let hot = |query: &str| {
        let state = state.clone();
        let path = format!("/v1/hot{query}");
        async move {
            let reply = call(&state, get(&path, None)).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
            decode_hot(&reply.body)
        }
    };
    let key = PATH.trim_start_matches("/v1/entries/").to_string();
    assert_eq!(hot("").await, vec![(key.clone(), value())], "at least 10 hits by default");
    let both = hot("?min_hits=1").await;
    assert_eq!(
        both.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [key.as_str(), "model_request:v1:t-1:cold:json"]
    );
    assert_eq!(hot("?min_hits=1&limit=1").await.len(), 1, "bounded by count");
    assert_eq!(hot("?min_hits=1&max_bytes=100").await.len(), 0, "bounded by bytes: the hot value is larger");
    assert_eq!(call(&state, get("/v1/hot?colour=red", None)).await.status, StatusCode::BAD_REQUEST);
}

fn hits_report(namespace: Option<&str>, body: &str) -> axum::http::Request<axum::body::Body> {
    let mut b = axum::http::Request::post("/v1/hits");
    if let Some(ns) = namespace {
        b = b.header("x-aurelis-namespace", ns);
    }
    b.body(axum::body::Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn hits_served_by_l1_and_redis_make_an_entry_hot() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    let key = PATH.trim_start_matches("/v1/entries/");
    let hot = |state: AppState| async move { decode_hot(&call(&state, get("/v1/hot", None)).await.body) };
    assert!(hot(state.clone()).await.is_empty(), "never hit: not hot");
    // Three Redis hits, and an Envoy reporting seven L1 hits in one batch (with lines the
    // service skips: malformed, or for a key L3 does not hold).
    for _ in 0..3 {
        assert_eq!(call(&state, get(PATH, None)).await.status, StatusCode::OK);
    }
    let report = format!("7 {key}\nnot a line\n5 model_request:v1:t-1:unknown:json\n");
    assert_eq!(call(&state, hits_report(None, &report)).await.status, StatusCode::NO_CONTENT);
    let listed = hot(state.clone()).await;
    assert_eq!(listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), [key], "10 hits: hot by default");
    let counted = |level: &str| state.metrics.hot_hits.with_label_values(&[level]).get();
    assert_eq!((counted("L1"), counted("L2")), (12, 3));
    assert_eq!(l3_count(&state, "get", "hit"), 0, "no L3 read was needed for any of it");
    let not_utf8 = axum::http::Request::post("/v1/hits").body(axum::body::Body::from(vec![0xff, 0xfe])).unwrap();
    assert_eq!(call(&state, not_utf8).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_emptied_redis_is_refilled_with_the_hottest_entries_marked_from_l3() {
    use aurelis_cache_service::l3::refill::{self, RefillSettings, SENTINEL_KEY};
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db"), K1, Duration::from_millis(500)).await;
    fill(&state).await;
    assert!(state.store.set_sentinel(SENTINEL_KEY).await.unwrap(), "first check: absent");
    assert!(!state.store.set_sentinel(SENTINEL_KEY).await.unwrap(), "still there: nothing lost");
    redis.cli(&["FLUSHALL"]);
    assert!(state.store.set_sentinel(SENTINEL_KEY).await.unwrap(), "emptied: the refill is due");

    let l3 = state.l3.clone().unwrap();
    let settings = RefillSettings { check_every: None, max_entries: 10, min_hits: 1 };
    refill::refill(&settings, &state.store, &l3, state.defaults, &state.metrics).await;
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "1", "the sentinel only: nothing was hot enough");
    let cold = RefillSettings { min_hits: 0, ..settings };
    refill::refill(&cold, &state.store, &l3, state.defaults, &state.metrics).await;
    assert_eq!(state.metrics.refill_entries.with_label_values(&["stored"]).get(), 1);
    assert_eq!(state.metrics.refills.with_label_values(&["done"]).get(), 2);
    let back = call(&state, get(PATH, None)).await;
    assert_eq!((back.status, back.cache_level.as_deref(), back.origin.as_deref()), (StatusCode::OK, None, Some("L3")));
    assert_eq!(back.body, value());
    assert_eq!(l3_count(&state, "get", "hit"), 0, "answered by Redis");
    assert_eq!(redis.cli(&["ZCARD", "aurelis:i:tenant:t-1"]).trim(), "1", "re-indexed for purges");
}

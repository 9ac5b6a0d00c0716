//! Refresh-ahead, the cache service's side, with a real Redis and the embedded L3: records are
//! kept encrypted in L3 next to their entries and purged with their tenant; the refresher
//! replays a due entry's recorded request to "Envoy" (a recording server here) with a grant
//! that verifies for exactly that key, namespace and identity; entries without a record (tenants
//! that did not opt in) are never replayed.
mod support;

use aurelis_cache_service::api::AppState;
use aurelis_cache_service::l3::seal::Sealer;
use aurelis_cache_service::l3::L3;
use aurelis_cache_service::refresh::Refresher;
use aurelis_cache_service::settings::refresh::RefreshSettings;
use aurelis_cache_service::store::Target;
use aurelis_core::auth::IdentityKind;
use aurelis_core::cache::sealed::SigningKey;
use aurelis_core::refresh::{record, Grant, Record, RefreshSecret, GRANT_HEADER};
use aurelis_store::{open, StoreSettings};
use axum::http::{HeaderMap, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const KEYS: &str = "k1:1111111111111111111111111111111111111111111111111111111111111111";
const SECRET: &str = "refresh-secret-of-at-least-32-bytes!";
const SIGNING: &str = "fleet-signing-key-of-at-least-32-bytes";
const KEY: &str = "model_request:v3:t=abc:ctx:hash";
const PROMPT: &str = "what-is-the-secret-recipe-of-the-house";

async fn with_l3(redis: &RedisServer, db: &std::path::Path) -> AppState {
    let mut state = app(&Target::Single { url: redis.url(), password: None });
    let stores = open(&StoreSettings::parse(&format!("sqlite:{}", db.display())).unwrap()).await.unwrap();
    let sealer = Sealer::parse(KEYS, 1 << 20).unwrap();
    let day = Duration::from_secs(86_400);
    let l3 = L3::new(stores.entries, sealer, Duration::from_millis(500), day, 1 << 30, state.metrics.clone());
    state.l3 = Some(Arc::new(l3));
    state
}

fn l3_count(state: &AppState, op: &str, outcome: &str) -> u64 {
    state.metrics.l3.with_label_values(&[op, outcome]).get()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn the_record() -> Record {
    let signing = SigningKey::from_env_value(Some(SIGNING)).unwrap().unwrap();
    Record {
        seal: record::seal(&signing, "aurelis", KEY, IdentityKind::ApiKey, "alice", "team-a"),
        kind: IdentityKind::ApiKey,
        label: "alice".into(),
        tenant: "team-a".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{PROMPT}"}}]}}"#).into_bytes(),
    }
}

const TAGS: [(&str, &str); 2] = [("x-aurelis-tenant", "t=abc"), ("x-aurelis-model", "m")];

/// Stores the entry and its record, and waits for both L3 writes.
async fn fill(state: &AppState, with_record: bool) {
    let before = l3_count(state, "put", "stored");
    let put_entry = put(&format!("/v1/entries/{KEY}"), &TAGS, b"sealed entry".to_vec());
    assert_eq!(call(state, put_entry).await.status, StatusCode::NO_CONTENT);
    let mut writes = 1;
    if with_record {
        let put_record = put(&format!("/v1/refresh/{KEY}"), &TAGS, the_record().encode());
        assert_eq!(call(state, put_record).await.status, StatusCode::NO_CONTENT);
        writes += 1;
    }
    until("the L3 writes", || l3_count(state, "put", "stored") >= before + writes).await;
}

#[tokio::test]
async fn records_are_encrypted_in_l3_refused_when_malformed_and_go_with_their_entry() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l3.db");
    let state = with_l3(&redis, &db).await;
    fill(&state, true).await;
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let l3 = state.l3.clone().unwrap();
    assert_eq!(l3.record("aurelis", KEY, now).await, Some(the_record().encode()));
    let at_rest = std::fs::read(&db).unwrap();
    assert!(!at_rest.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes()), "the prompt is not in the file");
    // Not a record: refused. Without L3: nothing could keep it.
    let junk = call(&state, put(&format!("/v1/refresh/{KEY}"), &TAGS, b"junk".to_vec())).await;
    assert_eq!(junk.status, StatusCode::BAD_REQUEST);
    let no_l3 = app(&Target::Single { url: redis.url(), password: None });
    let refused = call(&no_l3, put(&format!("/v1/refresh/{KEY}"), &TAGS, the_record().encode())).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    // A DELETE of the entry removes its record; a purge of the tenant removes them too.
    assert_eq!(call(&state, delete(&format!("/v1/entries/{KEY}"), None)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(l3.record("aurelis", KEY, now).await, None);
    fill(&state, true).await;
    assert!(l3.record("aurelis", KEY, now).await.is_some());
    let purge = axum::http::Request::post("/v1/purge").body(axum::body::Body::from(r#"{"tenant":"t=abc"}"#)).unwrap();
    assert_eq!(call(&state, purge).await.status, StatusCode::OK);
    assert_eq!(l3.record("aurelis", KEY, now).await, None);
}

/// What the stand-in Envoy was sent: path, headers, body.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

/// A stand-in for Envoy that records what it is sent and answers 200.
async fn recording_envoy() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let kept = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
        let kept = Arc::clone(&kept);
        async move {
            kept.lock().unwrap().push((uri.path().to_string(), headers, body.to_vec()));
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn refresher(state: &AppState, envoy_url: &str) -> Refresher {
    let settings = RefreshSettings {
        envoy_url: envoy_url.to_string(),
        secret: RefreshSecret::from_env_value(Some(SECRET)).unwrap().unwrap(),
        ahead: Duration::from_secs(86_400),
        min_hits: 0,
        every: Duration::from_secs(1),
        concurrency: 5,
        retry_after: Duration::from_secs(3600),
    };
    Refresher::new(state.l3.clone().unwrap(), settings, vec!["aurelis".into()], state.metrics.clone())
}

fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[tokio::test]
async fn a_due_entry_is_replayed_once_with_a_grant_for_exactly_its_key() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = with_l3(&redis, &dir.path().join("l3.db")).await;
    let (url, seen) = recording_envoy().await;
    let refresher = refresher(&state, &url);
    fill(&state, false).await;
    assert_eq!(refresher.round(now_ms()).await, 1, "due, but no record yet");
    assert!(seen.lock().unwrap().is_empty(), "an entry without a record is never replayed");
    fill(&state, true).await;
    refresher.round(now_ms()).await;
    let replays = seen.lock().unwrap().clone();
    assert_eq!(replays.len(), 1);
    let (path, headers, body) = &replays[0];
    assert_eq!((path.as_str(), body.clone()), ("/v1/chat/completions", the_record().body));
    assert_eq!(headers["content-type"], "application/json");
    let grant = Grant::parse(headers[GRANT_HEADER].to_str().unwrap()).unwrap();
    let secret = RefreshSecret::from_env_value(Some(SECRET)).unwrap().unwrap();
    assert_eq!(grant.verify(&secret, "aurelis", KEY), Ok(()));
    assert!(grant.verify(&secret, "aurelis", "another-key").is_err());
    assert!(grant.check_time(now_ms()).is_ok());
    assert_eq!(
        (grant.label.as_str(), grant.tenant.as_str(), grant.record_seal),
        ("alice", "team-a", the_record().seal)
    );
    assert_eq!(state.metrics.refreshes.with_label_values(&["refreshed"]).get(), 1);
    // Tried once per retry period.
    refresher.round(now_ms()).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
}

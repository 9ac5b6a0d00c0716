//! TLS against a real `redis-server` that listens only for TLS (`--port 0 --tls-port N`), with a
//! CA and certificates generated per run: a private CA makes `rediss://` work; without it (system
//! roots) or with another CA, or under the wrong name, the certificate is refused at once and
//! requests answer 503 fast; mutual TLS presents the client certificate. Finally the binary
//! itself, configured only by its flags.
mod support;

use aurelis_cache_service::store::{StoreError, Target, TlsOptions};
use axum::http::StatusCode;
use std::process::Command;
use std::time::{Duration, Instant};
use support::tls::TestPki;
use support::*;

/// The operation timeout `refused_fast` gives the store, and an answer well under it: one this
/// fast was a refusal, not a timeout (wide apart, so a loaded machine cannot blur them).
const OP_TIMEOUT: Duration = Duration::from_secs(5);
const FAST: Duration = Duration::from_secs(2);

fn single(url: String, password: Option<&str>) -> Target {
    Target::Single { url, password: password.map(str::to_string) }
}

/// PUT then GET through the router, both over TLS.
async fn roundtrip(state: &aurelis_cache_service::api::AppState, key: &str) {
    let path = format!("/v1/entries/{key}");
    let value = format!("value of {key} over TLS").into_bytes();
    let reply = call(state, put(&path, &[("x-aurelis-tenant", "t-1")], value.clone())).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "PUT {key}: {}", String::from_utf8_lossy(&reply.body));
    let reply = call(state, get(&path, None)).await;
    assert_eq!((reply.status, reply.body), (StatusCode::OK, value), "GET {key}");
}

/// Each request answers 503 fast, and the store's error is the given TLS refusal (a Redis
/// error, not a timeout).
async fn refused_fast(target: &Target, tls: &TlsOptions, expected: &str) {
    let mut state = app_with_tls(target, tls);
    state.store = store_with_tls(target, tls, OP_TIMEOUT);
    for i in 0..5 {
        let started = Instant::now();
        let reply = call(&state, get("/v1/entries/k", None)).await;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "request {i}");
        assert!(elapsed < FAST, "request {i} took {elapsed:?}");
    }
    assert_eq!(call(&state, get("/readyz", None)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let err = store_with_tls(target, tls, Duration::from_millis(500)).get("ns", "k").await.err();
    let Some(StoreError::Redis(err)) = err else { panic!("expected a Redis error, got {err:?}") };
    let message = err.to_string();
    assert!(message.contains(expected), "expected `{expected}` in: {message}");
}

#[tokio::test]
async fn private_ca_put_get_over_tls() {
    let pki = TestPki::generate();
    let mut redis = RedisServer::start_tls(&pki, "no", &[]);
    assert!(redis.url().starts_with("rediss://127.0.0.1:"));
    let tls = TestPki::trusting(&pki.ca);
    let state = app_with_tls(&single(redis.url(), None), &tls);
    roundtrip(&state, "model_request:v1:t-1:abc:json").await;
    assert_eq!(call(&state, get("/readyz", None)).await.status, StatusCode::OK);
    // The certificate's DNS name works as well as its IP address.
    let by_name = app_with_tls(&single(format!("rediss://localhost:{}", redis.port), None), &tls);
    roundtrip(&by_name, "by-name").await;

    // A client replaced after a failure keeps the CA: recovery works over TLS too. Past the
    // store's 1 s heal interval, the first failure does replace the client.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    redis.restart(); // same port, empty
    let deadline = Instant::now() + Duration::from_secs(3);
    while call(&state, put("/v1/entries/again", &[], b"v".to_vec())).await.status != StatusCode::NO_CONTENT {
        assert!(Instant::now() < deadline, "no recovery within 3 s of Redis coming back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(call(&state, get("/v1/entries/again", None)).await.body, b"v");
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_refused_fast() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, "no", &[]);
    let target = single(redis.url(), None);
    // Default: the system's roots, which do not include the private CA.
    refused_fast(&target, &TlsOptions::default(), "invalid peer certificate: UnknownIssuer").await;
    refused_fast(&target, &TestPki::trusting(&pki.other_ca), "invalid peer certificate: UnknownIssuer").await;
}

#[tokio::test]
async fn hostname_is_verified() {
    let pki = TestPki::generate();
    // Also reachable as 127.0.0.2, a name the certificate does not carry.
    let redis = RedisServer::start_tls(&pki, "no", &["--bind", "127.0.0.1", "127.0.0.2"]);
    let tls = TestPki::trusting(&pki.ca);
    roundtrip(&app_with_tls(&single(redis.url(), None), &tls), "k").await;
    let other_name = single(format!("rediss://127.0.0.2:{}", redis.port), None);
    refused_fast(&other_name, &tls, "invalid peer certificate: certificate not valid for name \"127.0.0.2\"").await;
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, "yes", &["--requirepass", "s3cret"]);
    let target = single(redis.url(), Some("s3cret"));
    roundtrip(&app_with_tls(&target, &pki.mutual()), "mtls").await;

    // Redis refuses the handshake without a client certificate, or with one from another CA;
    // the client learns it from the server's TLS alert.
    refused_fast(&target, &TestPki::trusting(&pki.ca), "received fatal alert: CertificateRequired").await;
    let foreign = TestPki::trusting(&pki.ca)
        .with_client_identity(
            std::fs::read(&pki.other_client_cert).unwrap(),
            std::fs::read(&pki.other_client_key).unwrap(),
        )
        .unwrap();
    refused_fast(&target, &foreign, "received fatal alert: UnknownCA").await;
}

#[tokio::test]
async fn binary_uses_the_tls_flags() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, "yes", &["--requirepass", "s3cret"]);
    let path = |p: &std::path::Path| p.display().to_string();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let (_service, settings, base) = start_service(&[
        "--redis-url",
        &redis.url(),
        "--redis-password",
        "s3cret",
        "--redis-tls-ca-file",
        &ca,
        "--redis-tls-cert-file",
        &cert,
        "--redis-tls-key-file",
        &key,
    ]);
    assert!(
        settings.contains(&format!("redis_tls=on redis_tls_roots=ca-file:{ca} redis_tls_client_cert={cert} ")),
        "{settings}"
    );
    assert!(!settings.contains("s3cret") && !settings.contains(&key), "{settings}");
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    // As a deployment would: wait for readiness. The first connection (TCP, TLS handshake both
    // ways, AUTH) may outlast the 50 ms operation timeout of a debug build; later ones reuse it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = client.get(format!("{base}/readyz")).send().await.unwrap();
        if resp.status() == StatusCode::OK {
            break;
        }
        let body = resp.text().await.unwrap_or_default();
        assert!(Instant::now() < deadline, "not ready within 5 s: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("{base}/v1/entries/from-the-binary");
    let resp = client.put(&url).body("over mutual TLS").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), "over mutual TLS");
}

#[test]
fn binary_refuses_unusable_tls_settings() {
    let pki = TestPki::generate();
    let missing = pki.dir.join("missing.pem").display().to_string();
    let ca = pki.ca.display().to_string();
    for (args, expected) in [
        (
            vec!["--redis-url", "rediss://127.0.0.1:1", "--redis-tls-ca-file", &missing],
            format!("--redis-tls-ca-file / AURELIS_REDIS_TLS_CA_FILE: cannot read {missing}: "),
        ),
        (
            vec!["--redis-url", "redis://127.0.0.1:1", "--redis-tls-ca-file", &ca],
            "--redis-tls-ca-file / AURELIS_REDIS_TLS_CA_FILE: is set, so --redis-url / AURELIS_REDIS_URL must use rediss://".to_string(),
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_aurelis-cache"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
}

//! The service over real sockets and through Redis trouble: HTTP/2 prior knowledge (h2c, as the
//! filter's Envoy cluster speaks it) and HTTP/1.1 on one listener; password auth; a Redis that
//! dies answers 503 within milliseconds and recovers on its own when Redis is back; entry
//! requests without the API token answer 401 (the binary too, started by its environment, and
//! refusing to start without one unless explicitly run open on loopback).
mod support;

use aurelis_cache_service::api::{self, Access};
use aurelis_cache_service::store::Target;
use axum::http::StatusCode;
use std::time::{Duration, Instant};
use support::*;

/// Serves the router as `main` does, on an ephemeral port.
async fn serve(state: api::AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn h2c_and_http1_on_one_listener() {
    let redis = RedisServer::start(&[]);
    let base = serve(app(&Target::Single { url: redis.url(), password: None })).await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let url = format!("{base}/v1/entries/model_request:v1:t-1:abc:json");
    let value = vec![7u8; 20_000];
    let resp = h2
        .put(&url)
        .header("x-aurelis-tenant", "t-1")
        .header("x-aurelis-ttl-seconds", "60")
        .body(value.clone())
        .send()
        .await
        .unwrap();
    assert_eq!((resp.version(), resp.status()), (reqwest::Version::HTTP_2, StatusCode::NO_CONTENT));
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!((resp.version(), resp.status()), (reqwest::Version::HTTP_2, StatusCode::OK));
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.bytes().await.unwrap(), value);

    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!((resp.version(), resp.status()), (reqwest::Version::HTTP_11, StatusCode::OK));
    assert_eq!(resp.bytes().await.unwrap(), value);
    let resp = h2.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(h1.get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // The body limit holds over the wire too, for a streamed body without content-length.
    let chunks = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024])));
    let resp = h2.put(&url).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn password_auth() {
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    let path = "/v1/entries/k";
    let with = app(&Target::Single { url: redis.url(), password: Some("s3cret".into()) });
    assert_eq!(call(&with, put(path, &[], b"v".to_vec())).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&with, get(path, None)).await.body, b"v");
    // A password in the URL works, and the setting overrides it.
    let in_url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let from_url = app(&Target::Single { url: in_url.clone(), password: None });
    assert_eq!(call(&from_url, get(path, None)).await.status, StatusCode::OK);
    let overridden = app(&Target::Single { url: in_url, password: Some("wrong".into()) });
    assert_eq!(call(&overridden, get(path, None)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let without = app(&Target::Single { url: redis.url(), password: None });
    let reply = call(&without, get(path, None)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.message().starts_with("L2 store unavailable"), "{}", reply.message());
    assert_eq!(call(&without, get("/readyz", None)).await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn dead_redis_fails_fast_and_recovers_without_restart() {
    let mut redis = RedisServer::start(&[]);
    let target = Target::Single { url: redis.url(), password: None };
    let mut state = app(&target);
    state.store = store(&target, Duration::from_millis(50)); // the production default
    let path = "/v1/entries/k";
    assert_eq!(call(&state, put(path, &[], b"v".to_vec())).await.status, StatusCode::NO_CONTENT);

    redis.stop();
    for i in 0..20 {
        let started = Instant::now();
        let reply = call(&state, get(path, None)).await;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "request {i}");
        assert!(elapsed < Duration::from_millis(200), "request {i} took {elapsed:?}");
        let started = Instant::now();
        assert_eq!(call(&state, put(path, &[], b"v".to_vec())).await.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_millis(200), "put {i} took {:?}", started.elapsed());
    }
    assert_eq!(call(&state, get("/readyz", None)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_l2_operations_total{op="get",outcome="error"} 20"#), "{text}");
    assert!(text.contains("aurelis_l2_errors_total{kind="), "{text}");

    redis.restart(); // same port, empty
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if call(&state, put(path, &[], b"again".to_vec())).await.status == StatusCode::NO_CONTENT {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery within 3 s of Redis coming back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(call(&state, get(path, None)).await.body, b"again");
    assert_eq!(call(&state, get("/readyz", None)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn redis_that_never_started_fails_fast() {
    // Nothing listens on this port: startup succeeds (lazy), requests fail fast.
    let target = Target::Single { url: format!("redis://127.0.0.1:{}", free_port()), password: None };
    let mut state = app(&target);
    state.store = store(&target, Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(call(&state, get("/v1/entries/k", None)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
}

#[tokio::test]
async fn refused_handshake_heals_once_redis_accepts_again() {
    // The client only reconnects by itself after I/O errors; a refused AUTH is not one. The
    // store replaces the client (at most once a second), so fixing Redis is enough.
    let redis = RedisServer::start(&["--requirepass", "old"]);
    let state = app(&Target::Single { url: redis.url(), password: Some("new".into()) });
    assert_eq!(call(&state, get("/v1/entries/k", None)).await.status, StatusCode::SERVICE_UNAVAILABLE);
    redis.cli(&["-a", "old", "--no-auth-warning", "config", "set", "requirepass", "new"]);
    let deadline = Instant::now() + Duration::from_secs(4);
    while call(&state, get("/v1/entries/k", None)).await.status != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "did not heal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TOKEN: &str = "l2-t0ken.with_symbols~!-0123456789abcdef";

/// Asserts a refusal: 401, the scheme asked for, the usual JSON error, no token echoed.
async fn assert_refused(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{what}");
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: not an error body: {body}"));
    assert!(message.contains("API token") && !message.contains(TOKEN), "{what}: {message}");
}

#[tokio::test]
async fn with_an_api_token_every_entry_request_needs_it() {
    let redis = RedisServer::start(&[]);
    let mut state = app(&Target::Single { url: redis.url(), password: None });
    state.access = Access::single("aurelis", TOKEN).unwrap();
    let metrics = state.metrics.clone();
    let base = serve(state).await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let url = format!("{base}/v1/entries/model_request:v1:t-1:abc:json");
    let bearer = format!("Bearer {TOKEN}");

    // With the token: as before.
    let resp = h2.put(&url).header("authorization", &bearer).body("value").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = h2.get(&url).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), "value");
    let resp = h2.get(format!("{base}/v1/entries/absent")).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Without it, or with anything else: 401 on every method, and nothing changes.
    let wrong = [None, Some("Bearer wrong".to_string()), Some(format!("Basic {TOKEN}")), Some(TOKEN.to_string())];
    for authorization in &wrong {
        let with = |b: reqwest::RequestBuilder| match authorization {
            Some(a) => b.header("authorization", a),
            None => b,
        };
        assert_refused(with(h2.get(&url)).send().await.unwrap(), &format!("GET {authorization:?}")).await;
        let put = with(h2.put(&url)).body("poisoned").send().await.unwrap();
        assert_refused(put, &format!("PUT {authorization:?}")).await;
        assert_refused(with(h2.delete(&url)).send().await.unwrap(), &format!("DELETE {authorization:?}")).await;
        let empty_key = with(h2.get(format!("{base}/v1/entries/"))).send().await.unwrap();
        assert_refused(empty_key, &format!("GET empty key {authorization:?}")).await;
        let purge = with(h2.post(format!("{base}/v1/purge"))).body(r#"{"tenant":"t-1"}"#).send().await.unwrap();
        assert_refused(purge, &format!("POST purge {authorization:?}")).await;
        assert_refused(with(h2.get(format!("{base}/v1/hot"))).send().await.unwrap(), "GET hot").await;
    }
    let resp = h2.get(&url).header("authorization", format!("bearer {TOKEN}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the scheme is case-insensitive");
    assert_eq!(resp.bytes().await.unwrap(), "value", "refused PUTs and DELETEs changed nothing");
    // HTTP/1.1 too.
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    assert_refused(h1.get(&url).send().await.unwrap(), "GET over HTTP/1.1").await;
    assert_eq!(h1.get(&url).header("authorization", &bearer).send().await.unwrap().status(), StatusCode::OK);
    let resp = h2.delete(&url).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Probes stay open.
    assert_eq!(h2.get(format!("{base}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(h2.get(format!("{base}/readyz")).send().await.unwrap().status(), StatusCode::OK);

    let text = metrics.render();
    for (op, count) in [("get", 9), ("put", 4), ("delete", 4)] {
        let line = format!("aurelis_l2_operations_total{{op=\"{op}\",outcome=\"unauthorized\"}} {count}");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    assert!(text.contains(r#"aurelis_l2_operations_total{op="put",outcome="stored"} 1"#), "{text}");
}

#[tokio::test]
async fn the_binary_takes_its_token_from_the_environment_and_never_prints_it() {
    let redis = RedisServer::start(&[]);
    let (mut service, settings, base) =
        start_service_with_env(&["--redis-url", &redis.url()], &[("AURELIS_CACHE_API_TOKEN", TOKEN)]);
    assert!(settings.ends_with(" api_tokens=1 namespaces=aurelis"), "{settings}");
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let url = format!("{base}/v1/entries/from-the-binary");
    assert_refused(client.put(&url).body("v").send().await.unwrap(), "PUT without the token").await;
    let resp = client.put(&url).header("authorization", format!("Bearer {TOKEN}")).body("v").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // `--help` shows the variable, never its value.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_aurelis-cache"))
        .arg("--help")
        .env("AURELIS_CACHE_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("AURELIS_CACHE_API_TOKEN") && !help.contains(TOKEN), "{help}");
    assert!(!service.log().contains(TOKEN), "{}", service.log());

    // Open only when asked, on loopback, and the start-up line says so.
    let (_open, settings, _) = start_service(&["--redis-url", &redis.url()]);
    assert!(settings.ends_with(" api_tokens=<none> (unauthenticated: loopback only)"), "{settings}");
    // Unset, too short, or unusable in a header: it does not start, naming the setting.
    let refused = |env: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aurelis-cache"))
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("AURELIS_CACHE_API_TOKEN")
            .envs(env.iter().copied())
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env:?} {args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused(&[], &["--listen", "127.0.0.1:0"]);
    assert!(stderr.contains("AURELIS_CACHE_API_TOKEN: is required"), "{stderr}");
    let stderr = refused(&[("AURELIS_CACHE_API_TOKEN", "short")], &["--listen", "127.0.0.1:0"]);
    assert!(stderr.contains("AURELIS_CACHE_API_TOKEN: is 5 bytes long, at least 32"), "{stderr}");
    let spaced = "has a space 0123456789abcdef0123456789abcdef";
    let stderr = refused(&[("AURELIS_CACHE_API_TOKEN", spaced)], &["--listen", "127.0.0.1:0"]);
    assert!(stderr.contains("AURELIS_CACHE_API_TOKEN: must be printable ASCII"), "{stderr}");
    assert!(!stderr.contains(spaced), "{stderr}");
    let stderr = refused(&[], &["--listen", "0.0.0.0:0", "--allow-unauthenticated"]);
    assert!(stderr.contains("--allow-unauthenticated / AURELIS_CACHE_ALLOW_UNAUTHENTICATED: needs a loopback"));
}

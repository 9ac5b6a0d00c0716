//! The service over real sockets and through Redis trouble: HTTP/2 prior knowledge (h2c, as the
//! filter's Envoy cluster speaks it) and HTTP/1.1 on one listener; password auth; a Redis that
//! dies answers 503 within milliseconds and recovers on its own when Redis is back.
mod support;

use aurelis_cache_service::api;
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

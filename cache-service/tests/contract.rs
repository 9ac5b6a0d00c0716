//! One contract, run against a single Redis and a 3-node Redis Cluster: the same cases, through
//! the HTTP router (`oneshot`, no sockets) and the library API, against real `redis-server`s.
//! Each case uses its own namespace, so cases share one server without interfering.
mod support;

use aurelis_cache_service::store::{Purge, PutOptions, Tags, Target, TAG_RAW, TAG_ZSTD};
use axum::http::StatusCode;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn contract_single_redis() {
    let redis = RedisServer::start(&[]);
    run_contract(&Target::Single { url: redis.url(), password: None }).await;
}

#[tokio::test]
async fn contract_redis_cluster() {
    let cluster = RedisCluster::start();
    run_contract(&Target::Cluster { nodes: cluster.urls(), password: None }).await;
}

async fn run_contract(target: &Target) {
    roundtrip(target).await;
    keys_with_slashes_and_namespaces(target).await;
    ttl_is_applied(target).await;
    compression_threshold(target).await;
    too_large_is_413(target).await;
    bad_input_is_400_naming_the_problem(target).await;
    purge_removes_exactly_the_tagged_entries(target).await;
    readiness(target).await;
    operations_are_counted(target).await;
}

async fn roundtrip(target: &Target) {
    let app = app(target);
    let path = "/v1/entries/model_request:v1:t-3f2a:0123abcd:json";
    let ns = [("x-aurelis-namespace", "c-roundtrip")];
    assert_eq!(call(&app, get(path, Some("c-roundtrip"))).await.status, StatusCode::NOT_FOUND);
    let put_reply = call(&app, put(path, &ns, b"\x00\xffopaque bytes".to_vec())).await;
    assert_eq!(put_reply.status, StatusCode::NO_CONTENT);
    assert!(put_reply.body.is_empty());
    let got = call(&app, get(path, Some("c-roundtrip"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(got.body, b"\x00\xffopaque bytes");
    assert_eq!(call(&app, put(path, &ns, b"replaced".to_vec())).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, get(path, Some("c-roundtrip"))).await.body, b"replaced");
    assert_eq!(call(&app, delete(path, Some("c-roundtrip"))).await.status, StatusCode::NO_CONTENT);
    let miss = call(&app, get(path, Some("c-roundtrip"))).await;
    assert_eq!((miss.status, miss.body.len()), (StatusCode::NOT_FOUND, 0));
    assert_eq!(call(&app, delete(path, Some("c-roundtrip"))).await.status, StatusCode::NO_CONTENT, "idempotent");
}

async fn keys_with_slashes_and_namespaces(target: &Target) {
    let app = app(target);
    let path = "/v1/entries/a/b+c=d.e-f_g";
    assert_eq!(call(&app, put(path, &[], b"default ns".to_vec())).await.status, StatusCode::NO_CONTENT);
    let other = [("x-aurelis-namespace", "c-other")];
    assert_eq!(call(&app, put(path, &other, b"other ns".to_vec())).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, get(path, None)).await.body, b"default ns");
    assert_eq!(call(&app, get(path, Some("c-other"))).await.body, b"other ns");
    let mut raw = Raw::connect(target).await;
    assert_eq!(raw.get("aurelis:e:a/b+c=d.e-f_g").await.unwrap(), b"\x00default ns", "key layout");
    call(&app, delete(path, None)).await;
    assert_eq!(call(&app, get(path, Some("c-other"))).await.status, StatusCode::OK, "other namespace untouched");
}

async fn ttl_is_applied(target: &Target) {
    let app = app(target);
    let mut raw = Raw::connect(target).await;
    let ns = ("x-aurelis-namespace", "c-ttl");
    call(&app, put("/v1/entries/short", &[ns, ("x-aurelis-ttl-seconds", "120")], b"v".to_vec())).await;
    let ttl = raw.ttl("c-ttl:e:short").await;
    assert!((110..=120).contains(&ttl), "ttl {ttl}");
    call(&app, put("/v1/entries/default", &[ns], b"v".to_vec())).await;
    let ttl = raw.ttl("c-ttl:e:default").await;
    assert!((3590..=3600).contains(&ttl), "default ttl {ttl}");
    call(
        &app,
        put("/v1/entries/tagged", &[ns, ("x-aurelis-ttl-seconds", "120"), ("x-aurelis-tenant", "t")], b"v".to_vec()),
    )
    .await;
    call(
        &app,
        put("/v1/entries/tagged2", &[ns, ("x-aurelis-ttl-seconds", "30"), ("x-aurelis-tenant", "t")], b"v".to_vec()),
    )
    .await;
    let index_ttl = raw.ttl("c-ttl:i:tenant:t").await;
    assert!((110..=120).contains(&index_ttl), "the index lives as long as its longest entry: {index_ttl}");
}

async fn compression_threshold(target: &Target) {
    let app = app(target);
    let mut raw = Raw::connect(target).await;
    let ns = ("x-aurelis-namespace", "c-zstd");
    let big = r#"{"choices":[{"message":{"content":"hello"}}]}"#.repeat(50).into_bytes();
    let small = big[..500].to_vec();
    assert!(big.len() >= 1024);
    call(&app, put("/v1/entries/big", &[ns], big.clone())).await;
    call(&app, put("/v1/entries/small", &[ns], small.clone())).await;
    call(&app, put("/v1/entries/forced", &[ns, ("x-aurelis-compress-min-bytes", "0")], small.clone())).await;
    let stored_big = raw.get("c-zstd:e:big").await.unwrap();
    assert_eq!(stored_big[0], TAG_ZSTD);
    assert!(stored_big.len() < big.len() / 4, "{} vs {}", stored_big.len(), big.len());
    assert_eq!(raw.get("c-zstd:e:small").await.unwrap()[0], TAG_RAW, "below the threshold");
    assert_eq!(raw.get("c-zstd:e:forced").await.unwrap()[0], TAG_ZSTD, "per-request threshold");
    assert_eq!(call(&app, get("/v1/entries/big", Some("c-zstd"))).await.body, big);
    assert_eq!(call(&app, get("/v1/entries/small", Some("c-zstd"))).await.body, small);
    assert_eq!(call(&app, get("/v1/entries/forced", Some("c-zstd"))).await.body, small);
}

async fn too_large_is_413(target: &Target) {
    let app = app(target);
    let ns = ("x-aurelis-namespace", "c-large");
    let reply = call(&app, put("/v1/entries/k", &[ns], vec![b'a'; MAX_VALUE_BYTES + 1])).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.message().contains(&MAX_VALUE_BYTES.to_string()), "{}", reply.message());
    assert_eq!(call(&app, get("/v1/entries/k", Some("c-large"))).await.status, StatusCode::NOT_FOUND);
    let reply = call(&app, put("/v1/entries/k", &[ns], vec![b'a'; MAX_VALUE_BYTES])).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "exactly the limit is fine");
    // The library refuses the same way, for callers other than the HTTP API.
    let options = PutOptions { ttl: Duration::from_secs(60), compress_min_bytes: 0, tags: Tags::default() };
    let err = app.store.put("c-large", "k", &vec![0; MAX_VALUE_BYTES + 1], &options).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

async fn bad_input_is_400_naming_the_problem(target: &Target) {
    let app = app(target);
    for (req, expected) in [
        (get("/v1/entries/bad%20key", None), "key: byte 0x25"),
        (get(&format!("/v1/entries/{}", "k".repeat(257)), None), "key: is 257 bytes long"),
        (get("/v1/entries/", None), "key: is empty"),
        (get("/v1/entries/k", Some("a{b}")), "namespace: byte 0x7b"),
        (put("/v1/entries/k", &[("x-aurelis-ttl-seconds", "0")], b"v".to_vec()), "ttl_seconds: 0 is outside"),
        (put("/v1/entries/k", &[("x-aurelis-ttl-seconds", "2592001")], b"v".to_vec()), "ttl_seconds"),
        (put("/v1/entries/k", &[("x-aurelis-ttl-seconds", "-1")], b"v".to_vec()), "x-aurelis-ttl-seconds"),
        (put("/v1/entries/k", &[("x-aurelis-model", &"m".repeat(129))], b"v".to_vec()), "model tag: is 129"),
        (put("/v1/entries/k", &[("x-aurelis-compress-min-bytes", "x")], b"v".to_vec()), "compress-min-bytes"),
        (delete("/v1/entries/%2e", None), "key: byte 0x25"),
    ] {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let reply = call(&app, req).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {uri}");
        assert!(reply.message().contains(expected), "{method} {uri}: {}", reply.message());
    }
    let reply = call(&app, get("/v1/nothing", None)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    reply.message();
}

async fn purge_removes_exactly_the_tagged_entries(target: &Target) {
    let app = app(target);
    let ns = "c-purge";
    // 90 keys over all three dimensions: spread across every node's slots in the cluster.
    let tags_of = |i: usize| Tags {
        tenant: Some(format!("t{}", i % 3)),
        model: i.is_multiple_of(2).then(|| format!("m{}", i % 4)),
        schema: Some(if i.is_multiple_of(5) { "s-old".to_string() } else { "s-new".to_string() }),
    };
    for i in 0..90 {
        let options = PutOptions { ttl: Duration::from_secs(600), compress_min_bytes: 1024, tags: tags_of(i) };
        app.store.put(ns, &format!("key:{i}"), format!("value {i}").as_bytes(), &options).await.unwrap();
    }
    // Same tenant name in another namespace: out of reach of this namespace's purge.
    let options = PutOptions { ttl: Duration::from_secs(600), compress_min_bytes: 1024, tags: tags_of(0) };
    app.store.put("c-purge-other", "key:0", b"kept", &options).await.unwrap();

    let selects = |purge: &Purge, t: &Tags| match purge {
        Purge::Tenant(v) => t.tenant.as_ref() == Some(v),
        Purge::Model(v) => t.model.as_ref() == Some(v),
        Purge::Schema(v) => t.schema.as_ref() == Some(v),
    };
    let mut survivors = [true; 90];
    for purge in [Purge::Tenant("t1".into()), Purge::Model("m2".into()), Purge::Schema("s-old".into())] {
        let expected = (0..90).filter(|&i| survivors[i] && selects(&purge, &tags_of(i))).count() as u64;
        assert!(expected > 0, "{purge:?} selects live entries");
        assert_eq!(app.store.purge(ns, &purge).await.unwrap(), expected, "{purge:?}");
        for (i, alive) in survivors.iter_mut().enumerate() {
            *alive &= !selects(&purge, &tags_of(i));
            let got = app.store.get(ns, &format!("key:{i}")).await.unwrap();
            assert_eq!(got.is_some(), *alive, "key:{i} after {purge:?}");
        }
    }
    assert!(survivors.iter().any(|a| *a), "some entries survive");
    assert_eq!(app.store.purge(ns, &Purge::Tenant("t1".into())).await.unwrap(), 0, "index deleted");
    let mut raw = Raw::connect(target).await;
    let exists: u64 = raw.query(redis::cmd("EXISTS").arg("c-purge:i:tenant:t1")).await;
    assert_eq!(exists, 0);
    assert!(app.store.get("c-purge-other", "key:0").await.unwrap().is_some());
    let err = app.store.purge(ns, &Purge::Tenant("has space".into())).await.unwrap_err();
    assert_eq!(err.to_string(), "tenant tag: byte 0x20 at offset 3 is not printable ASCII without spaces");
}

async fn readiness(target: &Target) {
    let app = app(target);
    assert_eq!(call(&app, get("/healthz", None)).await.status, StatusCode::OK);
    assert_eq!(call(&app, get("/readyz", None)).await.status, StatusCode::OK);
}

async fn operations_are_counted(target: &Target) {
    let app = app(target);
    let ns = ("x-aurelis-namespace", "c-metrics");
    call(&app, put("/v1/entries/k", &[ns], vec![b'x'; 4096])).await;
    call(&app, get("/v1/entries/k", Some("c-metrics"))).await;
    call(&app, get("/v1/entries/nope", Some("c-metrics"))).await;
    call(&app, delete("/v1/entries/k", Some("c-metrics"))).await;
    call(&app, get("/v1/entries/%", None)).await;
    let text = app.metrics.render();
    for line in [
        r#"aurelis_l2_operations_total{op="put",outcome="stored"} 1"#,
        r#"aurelis_l2_operations_total{op="get",outcome="hit"} 1"#,
        r#"aurelis_l2_operations_total{op="get",outcome="miss"} 1"#,
        r#"aurelis_l2_operations_total{op="get",outcome="bad_request"} 1"#,
        r#"aurelis_l2_operations_total{op="delete",outcome="deleted"} 1"#,
        r#"aurelis_l2_value_bytes_total{direction="in",form="raw"} 4096"#,
        r#"aurelis_l2_value_bytes_total{direction="out",form="raw"} 4096"#,
        r#"aurelis_l2_operation_duration_seconds_count{op="get"} 3"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let stored_in: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"aurelis_l2_value_bytes_total{direction="in",form="stored"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(stored_in < 100, "4 KiB of one byte compresses: {stored_in}");
}

#[tokio::test]
async fn cluster_down_fails_fast_and_recovers() {
    let mut cluster = RedisCluster::start();
    let target = Target::Cluster { nodes: cluster.urls(), password: None };
    let mut app = app(&target);
    app.store = store(&target, Duration::from_millis(50));
    let path = "/v1/entries/k";
    assert_eq!(call(&app, put(path, &[], b"v".to_vec())).await.status, StatusCode::NO_CONTENT);
    for node in &mut cluster.nodes {
        node.stop();
    }
    for i in 0..10 {
        let started = std::time::Instant::now();
        assert_eq!(call(&app, get(path, None)).await.status, StatusCode::SERVICE_UNAVAILABLE, "request {i}");
        assert!(started.elapsed() < Duration::from_millis(200), "request {i} took {:?}", started.elapsed());
    }
    // Same ports, same nodes.conf: the cluster re-forms, empty.
    for node in &mut cluster.nodes {
        node.restart();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while call(&app, put(path, &[], b"again".to_vec())).await.status != StatusCode::NO_CONTENT {
        assert!(std::time::Instant::now() < deadline, "no recovery within 8 s of the cluster coming back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(&app, get(path, None)).await.body, b"again");
}

/// One primary of three dies: every request still answers fast (its keys fail with 503, and
/// the others keep working until Redis itself declares the cluster down), nothing hangs, and
/// once the node is back every key answers again without restarting the service.
#[tokio::test]
async fn one_cluster_node_down_fails_fast_and_recovers() {
    let mut cluster = RedisCluster::start();
    let target = Target::Cluster { nodes: cluster.urls(), password: None };
    let mut app = app(&target);
    app.store = store(&target, Duration::from_millis(50));
    let paths: Vec<String> = (0..60).map(|i| format!("/v1/entries/node-down-{i}")).collect();
    for path in &paths {
        assert_eq!(call(&app, put(path, &[], b"v".to_vec())).await.status, StatusCode::NO_CONTENT);
    }
    cluster.nodes[0].stop();
    let (mut served, mut refused) = (0, 0);
    for path in &paths {
        let started = std::time::Instant::now();
        let status = call(&app, get(path, None)).await.status;
        assert!(started.elapsed() < Duration::from_millis(300), "{path} took {:?}", started.elapsed());
        match status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("{path}: {other}"),
        }
    }
    // 60 keys spread by slot over three primaries: the dead one held some of them.
    assert!(refused > 0, "no key lived on the stopped node ({served} served)");
    cluster.nodes[0].restart();
    // Generous: the node rejoins, then the client refreshes its slot map (seconds, not ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for path in &paths {
        // The restarted node is empty (no persistence): its keys are misses now, not errors.
        loop {
            let status = call(&app, get(path, None)).await.status;
            if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{path} still {status} 30 s after the node returned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(call(&app, put(&paths[0], &[], b"again".to_vec())).await.status, StatusCode::NO_CONTENT);
}

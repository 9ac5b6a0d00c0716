//! Refresh-ahead through real Envoy, Redis, the cache service with L3, and the mock provider:
//! the cache service's refresher replays an opted-in tenant's hot entry near expiry through the
//! Envoy listener with a grant; one upstream call refreshes it (still a HIT for the client,
//! with the new answer); the tenant's hourly budget stops the next refresh; another tenant's
//! entry is never refreshed nor served across scopes; and a client replaying a captured grant,
//! or presenting a forged one, is refused without reaching the provider.
//!
//! The refresher is pointed at a small recording proxy in front of the listener, so the test
//! holds genuine grants the way an eavesdropper on that hop would.
mod common;
use aurelis_devstack::process::free_port;
use aurelis_devstack::{Fleet, FleetOptions, L3Store};
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "e2e-refresh-secret-not-a-secret-0123456789";
const ALICE: &str = "sk-alice-0123456789";
const BOB: &str = "sk-bob-0123456789";

/// Raw HTTP/1.1 requests the refresher sent, with when they passed.
type Captured = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// Reads one HTTP/1.1 request (headers and a `content-length` body).
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some(data);
            }
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// Sends `request` to `port` on a connection it closes, and returns the raw answer.
fn send_raw(port: u16, request: &[u8]) -> Vec<u8> {
    let closing = String::from_utf8_lossy(request).replacen("\r\n", "\r\nconnection: close\r\n", 1);
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    upstream.write_all(closing.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = upstream.read_to_end(&mut answer);
    answer
}

/// A proxy on a free port that records each request and forwards it to `target`.
fn recording_proxy(target: u16) -> (u16, Captured) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured: Captured = Arc::default();
    let seen = Arc::clone(&captured);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let Some(request) = read_request(&mut stream) else { return };
                seen.lock().unwrap().push((Instant::now(), request.clone()));
                let _ = stream.write_all(&send_raw(target, &request));
            });
        }
    });
    (port, captured)
}

fn fleet(listen_port: u16, proxy_port: u16) -> Fleet {
    let auth = auth_with(&[("alice", "team-a", ALICE), ("bob", "team-b", BOB)], false);
    let filter = json!({
        "auth": auth,
        "l2": { "enabled": true, "timeout_ms": 1000 },
        // One token: the first refresh is admitted (the hour had budget left), the next is not.
        "refresh": { "tenants": [{ "tenant": "team-a", "tokens_per_hour": 1 }] }
    });
    let model = format!(
        "
listener: {{ address: 127.0.0.1, port: {{{{listen_port}}}} }}
providers:
  - {{ name: mock, base_url: 'http://127.0.0.1:{{{{mock0}}}}/v1', protocol: http2 }}
models:
  - {{ name: gpt-4o-mini, providers: [{{ provider: mock, weight: 1 }}] }}
cache_service: {{ endpoints: ['{{{{cache_service}}}}'] }}
filter: {filter}
"
    );
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    start_fleet(FleetOptions {
        model: Some(model),
        listen_port: Some(listen_port),
        cache_service: true,
        l3: Some(L3Store::Embedded),
        envoy_env: env(&[("AURELIS_REFRESH_SECRET", SECRET)]),
        cache_service_env: env(&[
            ("AURELIS_L3_TIMEOUT_MS", "500"),
            ("AURELIS_REFRESH_SECRET", SECRET),
            ("AURELIS_REFRESH_ENVOY_URL", &format!("http://127.0.0.1:{proxy_port}")),
            // Every entry is "near expiry" and "hot": the test is about who may refresh what.
            ("AURELIS_REFRESH_AHEAD_SECONDS", "86400"),
            ("AURELIS_REFRESH_MIN_HITS", "0"),
            ("AURELIS_REFRESH_EVERY_MS", "200"),
            ("AURELIS_REFRESH_CONCURRENCY", "1"),
            ("AURELIS_REFRESH_RETRY_SECONDS", "3600"),
        ]),
        ..FleetOptions::default()
    })
}

fn wait_for(fleet: &Fleet, what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} never happened\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replays(fleet: &Fleet, outcome: &str) -> f64 {
    fleet.cache_service_metric("aurelis_refresh_replays_total", &[&format!(r#"outcome="{outcome}""#)])
}

fn rounds(fleet: &Fleet) -> f64 {
    fleet.cache_service_metric("aurelis_l3_operations_total", &[r#"op="due""#])
}

fn id(reply: &Reply) -> String {
    reply.json()["id"].as_str().unwrap_or_default().to_string()
}

fn error_code(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_entries_are_refreshed_within_budget_in_their_own_scope_and_clients_cannot_use_grants() {
    let listen_port = free_port().unwrap();
    let (proxy_port, captured) = recording_proxy(listen_port);
    let fleet = fleet(listen_port, proxy_port);
    let gw = fleet.envoys[0].gateway_url.clone();
    let (alice, bob) = (format!("Bearer {ALICE}"), format!("Bearer {BOB}"));
    let (as_alice, as_bob) = ([("authorization", alice.as_str())], [("authorization", bob.as_str())]);

    // Fills: two prompts of the opted-in tenant, and the same first prompt in another tenant.
    let mut first = Vec::new();
    for (prompt, who) in [("p", &as_alice), ("q", &as_alice), ("p", &as_bob)] {
        let reply = post_chat_to(&gw, &chat(prompt), who).await;
        assert_eq!((reply.status, reply.cache()), (200, "MISS"), "{}", String::from_utf8_lossy(&reply.body));
        first.push(id(&reply));
    }
    // One refresh admitted, the next refused by the hour's budget (replays run one at a time).
    wait_for(&fleet, "two refresh attempts", || replays(&fleet, "refreshed") + replays(&fleet, "over_budget") >= 2.0);
    assert_eq!((replays(&fleet, "refreshed"), replays(&fleet, "over_budget")), (1.0, 1.0));
    // A few more rounds: team-b's entry (no record: it did not opt in) is never replayed.
    let seen = rounds(&fleet);
    wait_for(&fleet, "three more refresher rounds", || rounds(&fleet) >= seen + 3.0);
    assert_eq!(fleet.mocks[0].request_count(), 4, "three fills and one refresh");
    let envoy = &fleet.envoys[0];
    assert_eq!(envoy.counter("wasmcustom.aurelis_refreshes_total.result.admitted"), 1);
    assert_eq!(envoy.counter("wasmcustom.aurelis_refused_total.reason.refresh_budget_exhausted"), 1);

    // Still HITs; exactly one of team-a's answers is the refreshed one; team-b keeps its own.
    let mut refreshed = 0;
    let mut alice_now = Vec::new();
    for (i, prompt) in ["p", "q"].iter().enumerate() {
        let reply = post_chat_to(&gw, &chat(prompt), &as_alice).await;
        assert_eq!(reply.cache(), "HIT", "{prompt}");
        refreshed += usize::from(id(&reply) != first[i]);
        alice_now.push(id(&reply));
    }
    assert_eq!(refreshed, 1, "one entry replaced by its refresh");
    let bob_p = post_chat_to(&gw, &chat("p"), &as_bob).await;
    assert_eq!((bob_p.cache(), id(&bob_p)), ("HIT", first[2].clone()), "team-b's own answer, untouched");

    // A client holding a genuine grant it saw on the wire: spent, so refused (or expired).
    let grants = captured.lock().unwrap().clone();
    assert!(grants.len() >= 2, "the refresher went through the proxy");
    let (when, request) = &grants[0];
    let answer = send_raw(listen_port, request);
    let expected =
        if when.elapsed() < Duration::from_secs(25) { "refresh_grant_replayed" } else { "refresh_grant_expired" };
    assert_eq!(error_code(&answer), expected, "{}", String::from_utf8_lossy(&answer));
    // Forged from what was seen: the captured grant re-dated (so not merely expired), moved to
    // another prompt, with or without the client's own key, or with an altered MAC. The MAC
    // covers the expiry and binds the key the filter recomputes, so no entry and no scope can
    // be chosen with it.
    let header = String::from_utf8_lossy(request)
        .lines()
        .find_map(|l| l.strip_prefix("aurelis-refresh-grant: ").map(str::to_string))
        .expect("the replay carried a grant");
    let mut fields: Vec<String> = header.split('.').map(str::to_string).collect();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    fields[2] = (now_ms + 20_000).to_string();
    let redated = fields.join(".");
    let last = fields.len() - 1;
    fields[last] = "0".repeat(64);
    let zero_mac = fields.join(".");
    for (what, grant, prompt, key) in [
        ("re-dated, on its own prompt", redated.as_str(), "p", None),
        ("re-dated, on another prompt", redated.as_str(), "chosen by the client", None),
        ("re-dated, with bob's own key", redated.as_str(), "p", Some(bob.as_str())),
        ("an altered MAC", zero_mac.as_str(), "p", None),
    ] {
        let mut headers = vec![("aurelis-refresh-grant", grant)];
        headers.extend(key.map(|key| ("authorization", key)));
        let reply = post_chat_to(&gw, &chat(prompt), &headers).await;
        assert_eq!(
            (reply.status, reply.json()["error"]["code"].as_str()),
            (401, Some("refresh_grant_forged")),
            "{what}"
        );
    }
    assert_eq!(fleet.mocks[0].request_count(), 4, "no refused grant reached the provider");
    assert_eq!(envoy.counter("wasmcustom.aurelis_refused_total.reason.refresh_grant_forged"), 4);
    for (i, prompt) in ["p", "q"].iter().enumerate() {
        let reply = post_chat_to(&gw, &chat(prompt), &as_alice).await;
        assert_eq!((reply.cache(), id(&reply)), ("HIT", alice_now[i].clone()), "team-a's entries unchanged");
    }
}

//! The dashboard in a real browser: traffic through real Envoy, the control plane's windows
//! from Envoy's access log stream, then `/dashboard` loaded in headless Chromium (its scripts
//! fetch the token-protected JSON with the token handed over in the URL fragment). The rendered
//! page shows the requests the test sent, per series as the control plane counted them, and
//! the L1 hits; its screenshot is saved under `target/e2e-artifacts/`.
mod common;
use aurelis_devstack::browser;
use aurelis_devstack::fleet::ADMIN_TOKEN;
use aurelis_devstack::fleet::{default_model, ANONYMOUS};
use aurelis_devstack::FleetOptions;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PROMPTS: usize = 6;

/// The text of every `<td data-field="{field}">` in the DOM, in order.
fn cells(dom: &str, field: &str) -> Vec<String> {
    let marker = format!(r#"data-field="{field}">"#);
    dom.match_indices(&marker)
        .filter_map(|(at, _)| dom.get(at + marker.len()..))
        .map(|rest| rest.split('<').next().unwrap_or_default().to_string())
        .collect()
}

/// The text of the element with this id.
fn by_id(dom: &str, id: &str) -> String {
    let marker = format!(r#"id="{id}""#);
    let Some(at) = dom.find(&marker) else { return String::new() };
    let rest = dom.get(at..).unwrap_or_default();
    let text = rest.split_once('>').map_or("", |(_, t)| t);
    text.split('<').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_traffic_sent_through_envoy() {
    let fleet = start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), ..FleetOptions::default() });
    // Each prompt twice: a miss that fills L1, then an L1 hit.
    for round in 0..2 {
        for n in 0..PROMPTS {
            let body = json!({ "model": "gpt-4o-mini", "temperature": 0, "messages": [{ "role": "user", "content": format!("dashboard {n}") }] });
            let reply = post_chat_to(&fleet.url(""), &body, &[]).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.cache(), if round == 0 { "MISS" } else { "HIT" });
        }
    }
    // Synchronise on the control plane having closed the windows with all of it.
    let sent = 2 * PROMPTS as u64;
    let started = Instant::now();
    loop {
        let data = fleet.control_plane.get("/v1/dashboard").unwrap_or(Value::Null);
        let seen: u64 = data["points"].as_array().into_iter().flatten().filter_map(|p| p["requests"].as_u64()).sum();
        if seen == sent {
            break;
        }
        assert!(seen < sent, "more requests than sent: {data}");
        assert!(started.elapsed() < Duration::from_secs(40), "windows never showed {sent} requests: {data}");
        std::thread::sleep(Duration::from_millis(250));
    }

    let page = format!("{}/dashboard#token={ADMIN_TOKEN}", fleet.control_plane.admin_url);
    let dom = browser::dump_dom(&page, browser::DEFAULT_BUDGET_MS).unwrap();
    assert!(by_id(&dom, "status").starts_with("live"), "status: {:?}\n{dom}", by_id(&dom, "status"));
    assert_eq!(by_id(&dom, "tile-requests"), sent.to_string(), "{dom}");
    // The per-series table is the control plane's, row for row, and adds up to what was sent:
    // the telemetry files answers from the cache under the provider `cache`.
    let data = fleet.control_plane.get("/v1/dashboard").unwrap();
    let rows = data["series"].as_array().cloned().unwrap_or_default();
    let expected = |field: &str| -> Vec<String> {
        rows.iter().map(|r| r[field].as_str().map_or_else(|| r[field].to_string(), String::from)).collect()
    };
    assert_eq!(cells(&dom, "model"), expected("model"), "{dom}");
    assert_eq!(cells(&dom, "provider"), expected("provider"), "{dom}");
    assert_eq!(cells(&dom, "requests"), expected("requests"), "{dom}");
    let rows: Vec<(String, String, String)> = cells(&dom, "model")
        .into_iter()
        .zip(cells(&dom, "provider"))
        .zip(cells(&dom, "requests"))
        .map(|((m, p), r)| (m, p, r))
        .collect();
    let each = PROMPTS.to_string();
    for provider in ["cache", "mock"] {
        assert!(rows.contains(&("gpt-4o-mini".into(), provider.into(), each.clone())), "{rows:?}");
    }
    let shown: u64 = cells(&dom, "requests").iter().filter_map(|c| c.replace(',', "").parse::<u64>().ok()).sum();
    assert_eq!(shown, sent, "{dom}");
    // Hit rate by level comes from the telemetry's report over the last hour.
    let levels: Vec<(String, String)> = cells(&dom, "level").into_iter().zip(cells(&dom, "hits")).collect();
    assert!(levels.contains(&("L1".to_string(), PROMPTS.to_string())), "levels {levels:?}\n{dom}");
    assert!(!dom.contains(ADMIN_TOKEN), "the token is not left in the page");
    // Charts are drawn: one line per series.
    assert!(dom.contains(r#"class="series-0""#) && dom.contains(r#"class="series-2""#), "{dom}");

    let shot = browser::artifacts_dir().join("dashboard.png");
    browser::screenshot(&page, &shot, 1280, 1600, browser::DEFAULT_BUDGET_MS).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} is {} bytes", shot.display(), png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_page_asks_for_one_and_shows_no_data() {
    let fleet = start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), ..FleetOptions::default() });
    let page = format!("{}/dashboard", fleet.control_plane.admin_url);
    let dom = browser::dump_dom(&page, 2000).unwrap();
    assert_eq!(by_id(&dom, "status"), "enter the admin token", "{dom}");
    assert!(dom.contains(r#"<form id="login">"#), "the login form is shown: {dom}");
    assert_eq!(cells(&dom, "requests"), Vec::<String>::new());
    let wrong = format!("{page}#token=not-the-token");
    let dom = browser::dump_dom(&wrong, 4000).unwrap();
    assert_eq!(by_id(&dom, "status"), "the token was refused; enter it again", "{dom}");
}

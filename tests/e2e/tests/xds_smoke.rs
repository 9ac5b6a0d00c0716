mod common;
use common::*;
use aurelis_e2e::fleet::default_model;
use aurelis_e2e::FleetOptions;

#[tokio::test(flavor = "multi_thread")]
async fn envoy_configured_only_over_ads_serves_and_caches() {
    let fleet = start_fleet(FleetOptions { model: Some(default_model("{}")), ..FleetOptions::default() });
    let gw = &fleet.envoy().gateway_url;
    let first = post_chat_to(gw, &chat("hello over ads"), &[]).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(first.cache(), "MISS");
    let second = post_chat_to(gw, &chat("hello over ads"), &[]).await;
    assert_eq!(second.cache(), "HIT");
    println!("{}", serde_json::to_string_pretty(&fleet.control_plane.get("/v1/status").unwrap()).unwrap());
}

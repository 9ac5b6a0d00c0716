//! The filter in an Istio gateway, without our control plane: a real Envoy gets the filter the
//! way an Istio gateway receives it (`aurelis_devstack::istio`: an ECDS extension config, the
//! filter configuration as a JSON string, `vm_config` with `host_env_keys`, the module from the
//! file the istio-agent downloaded), behind a route table of the platform's own (nothing
//! matches `x-aurelis-model`), with the L2 cluster the shipped EnvoyFilter adds (its endpoint
//! moved to loopback) and the L2 token and signing key in the proxy's environment.
//!
//! - `deploy/istio/envoyfilter-wasm.yaml` (EXTENSION_CONFIG as written): MISS, then an L1 HIT;
//!   a second gateway gets an L2 HIT.
//! - `deploy/istio/wasmplugin.yaml`, rendered as Istio renders a WasmPlugin (no
//!   `allow_on_headers_stop_iteration`; the filter is told `hold_request_headers: false`):
//!   MISS, then an L1 HIT.
use aurelis_devstack::fleet::{start_cache_service, start_redis};
use aurelis_devstack::istio::{self, WasmPlugin};
use aurelis_devstack::process::{free_port, Managed};
use aurelis_devstack::stack::{start_envoy, stat, validate_envoy_config};
use aurelis_devstack::{paths, L2Credentials, StackOptions};
use aurelis_mock_upstream::{MockConfig, MockUpstream};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "sk-istio-e2e-client-key";
/// The placeholder digest the shipped files carry (matches no key).
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn shipped(file: &str) -> PathBuf {
    paths::repo_root().join("deploy/istio").join(file)
}

/// The shipped filter configuration with this test's key digest in place of the placeholder
/// (the one edit the files ask of their users).
fn with_test_key(config: &Value) -> Value {
    let text = config.to_string();
    assert!(text.contains(PLACEHOLDER), "the shipped config carries the placeholder digest");
    serde_json::from_str(&text.replace(PLACEHOLDER, &aurelis_core::auth::key_sha256(KEY))).unwrap()
}

/// The shipped EnvoyFilter's extension config, its configuration keyed for this test.
fn envoyfilter_extension_config() -> Value {
    let mut config = istio::envoy_filter_value(&shipped("envoyfilter-wasm.yaml"), "EXTENSION_CONFIG").unwrap();
    let value = &mut config["typed_config"]["config"]["configuration"]["value"];
    let filter: Value = serde_json::from_str(value.as_str().unwrap()).unwrap();
    *value = json!(with_test_key(&filter).to_string());
    config
}

struct Services {
    mock: MockUpstream,
    l2: L2Credentials,
    l2_port: u16,
    _redis: Managed,
    _cache: Managed,
    dir: tempfile::TempDir,
}

fn services() -> Services {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start(MockConfig::default()).unwrap();
    let l2 = L2Credentials::generate().unwrap();
    let redis_port = free_port().unwrap();
    let redis = start_redis(redis_port, dir.path()).unwrap();
    let l2_port = free_port().unwrap();
    let cache = start_cache_service((l2_port, free_port().unwrap()), redis_port, &l2, &[], dir.path()).unwrap();
    Services { mock, l2, l2_port, _redis: redis, _cache: cache, dir }
}

struct Gateway {
    envoy: Managed,
    admin: String,
    url: String,
}

/// An Envoy validated and started with `extension_config` (remote code already fetched).
fn start_gateway(s: &Services, extension_config: &Value, name: &str) -> Gateway {
    let dir: &Path = s.dir.path();
    let ecds = dir.join(format!("{name}-ecds.json"));
    std::fs::write(&ecds, serde_json::to_vec_pretty(&istio::ecds_file(extension_config)).unwrap()).unwrap();
    let l2_cluster = istio::envoy_filter_value(&shipped("cache-service.yaml"), "CLUSTER").unwrap();
    let filter_name = extension_config["name"].as_str().unwrap();
    let bootstrap = istio::gateway_bootstrap(
        filter_name,
        &ecds.display().to_string(),
        s.mock.port(),
        istio::on_loopback(&l2_cluster, s.l2_port),
    );
    let config = dir.join(format!("{name}.json"));
    std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
    validate_envoy_config(&config).unwrap();
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let (envoy, admin, url) = start_envoy(&config, &StackOptions::default(), &s.l2.envoy_env(), &sub).unwrap();
    Gateway { envoy, admin, url }
}

fn chat(gateway: &Gateway, prompt: &str, timeout: Duration) -> Result<(u16, Option<String>, Option<String>), String> {
    let body = json!({ "model": "any-model-the-provider-knows", "temperature": 0,
                       "messages": [{ "role": "user", "content": prompt }] });
    let response = ureq::post(&format!("{}/v1/chat/completions", gateway.url))
        .timeout(timeout)
        .set("authorization", &format!("Bearer {KEY}"))
        // A client's routing header changes nothing: routing is the gateway's own.
        .set("x-aurelis-model", "no-such-route")
        .send_json(body);
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let header = |name: &str| response.header(name).map(String::from);
    Ok((response.status(), header("x-aurelis-cache"), header("x-aurelis-cache-level")))
}

const ANSWER: Duration = Duration::from_secs(10);

#[test]
fn the_shipped_envoyfilter_serves_miss_then_hit_and_shares_l2() {
    let s = services();
    let config = istio::agent_fetched(&envoyfilter_extension_config(), &paths::wasm().unwrap().display().to_string());
    assert_eq!(config["typed_config"]["config"]["failure_policy"], "FAIL_OPEN");
    let a = start_gateway(&s, &config, "gateway-a");
    let first = chat(&a, "Istio delivers me", ANSWER);
    assert_eq!(first, Ok((200, Some("MISS".into()), None)), "{}", a.envoy.log());
    let second = chat(&a, "Istio delivers me", ANSWER);
    assert_eq!(second, Ok((200, Some("HIT".into()), Some("L1".into()))));
    assert_eq!(s.mock.request_count(), 1, "one answer from the provider");

    // A second gateway shares the answer through L2: the shipped cluster, and the token and
    // signing key read from the proxy's environment, work.
    let b = start_gateway(&s, &config, "gateway-b");
    let shared = chat(&b, "Istio delivers me", ANSWER);
    assert_eq!(shared, Ok((200, Some("HIT".into()), Some("L2".into()))), "{}", b.envoy.log());
    assert_eq!(s.mock.request_count(), 1);
}

#[test]
fn the_wasmplugin_and_the_envoyfilter_carry_one_configuration() {
    let plugin = WasmPlugin::load(&shipped("wasmplugin.yaml")).unwrap();
    let config = istio::envoy_filter_value(&shipped("envoyfilter-wasm.yaml"), "EXTENSION_CONFIG").unwrap();
    let inner = &config["typed_config"]["config"];
    let filter: Value = serde_json::from_str(inner["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(&filter, &plugin.spec()["pluginConfig"]);
    assert_eq!(config["name"].as_str(), Some(plugin.resource_name().as_str()));
    assert_eq!(inner["root_id"], plugin.spec()["pluginName"]);
    assert_eq!(inner["vm_config"]["code"]["remote"]["http_uri"]["uri"], plugin.spec()["url"]);
    let rendered = plugin.extension_config("/m.wasm").unwrap();
    let env = &rendered["typed_config"]["config"]["vm_config"]["environment_variables"]["host_env_keys"];
    assert_eq!(env, &inner["vm_config"]["environment_variables"]["host_env_keys"]);
}

#[test]
fn a_wasmplugin_as_istio_renders_it_serves_miss_then_hit() {
    let s = services();
    let mut plugin = WasmPlugin::load(&shipped("wasmplugin.yaml")).unwrap();
    plugin.0["spec"]["pluginConfig"] = with_test_key(&plugin.spec()["pluginConfig"]);
    let config = plugin.extension_config(&paths::wasm().unwrap().display().to_string()).unwrap();
    // Istio sets no allow_on_headers_stop_iteration: the filter must not hold the headers
    // (`hold_request_headers: false` in the shipped pluginConfig).
    assert!(config["typed_config"]["config"].get("allow_on_headers_stop_iteration").is_none());
    let gateway = start_gateway(&s, &config, "wasmplugin");
    let first = chat(&gateway, "Istio renders me", ANSWER);
    assert_eq!(first, Ok((200, Some("MISS".into()), None)), "{}", gateway.envoy.log());
    let second = chat(&gateway, "Istio renders me", ANSWER);
    assert_eq!(second, Ok((200, Some("HIT".into()), Some("L1".into()))), "{}", gateway.envoy.log());
    assert_eq!(s.mock.request_count(), 1, "the hit's upstream request was reset before its body was sent");
    assert_eq!(stat(&gateway.admin, "http.gateway.downstream_rq_2xx"), 2, "both answered by Envoy's account too");
}

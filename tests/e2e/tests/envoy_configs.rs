//! Every Envoy config the project ships or generates is accepted by `envoy --mode validate`.
use aurelis_devstack::envoy_config::{self, GatewayConfig, UpstreamTarget, GITHUB_MODELS_HOST};
use aurelis_devstack::{paths, stack::validate_envoy_config};
use serde_json::json;

fn write(dir: &std::path::Path, name: &str, value: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap_or_default()).unwrap_or_default();
    path
}

fn generated(upstream: UpstreamTarget) -> serde_json::Value {
    let wasm = paths::wasm().unwrap_or_else(|e| panic!("{e}"));
    envoy_config::gateway(&GatewayConfig {
        listen_port: 10000,
        admin_port: 9901,
        wasm_path: &wasm,
        filter_config: json!({}),
        upstream,
        with_filter: true,
        direct_response: None,
        extra_http_filters: Vec::new(),
    })
}

#[test]
fn generated_mock_config_validates() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = generated(UpstreamTarget::Mock { port: 8000 });
    let path = write(dir.path(), "mock.json", &config);
    validate_envoy_config(&path).unwrap_or_else(|e| panic!("{e:#}"));
    // The filter's VM may read the L2 token from Envoy's environment; the file names it only.
    let filters =
        &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
    let vm = &filters[0]["typed_config"]["config"]["vm_config"];
    assert_eq!(vm["environment_variables"], json!({ "host_env_keys": ["AURELIS_L2_TOKEN"] }), "{filters}");
}

#[test]
fn generated_github_models_config_validates_and_uses_tls_sni_h2() {
    let config = generated(UpstreamTarget::GitHubModels);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(dir.path(), "github.json", &config);
    validate_envoy_config(&path).unwrap_or_else(|e| panic!("{e:#}"));

    let cluster = &config["static_resources"]["clusters"][0];
    let tls = &cluster["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"], GITHUB_MODELS_HOST);
    assert_eq!(tls["common_tls_context"]["alpn_protocols"], json!(["h2", "http/1.1"]));
    let protocol =
        &cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(protocol["auto_config"]["http2_protocol_options"].is_object(), "HTTP/2 negotiated by ALPN");
    let route = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"][0];
    assert_eq!(route["route"]["prefix_rewrite"], "/inference/");
    assert_eq!(route["route"]["host_rewrite_literal"], GITHUB_MODELS_HOST);
    // The token is read by Envoy from its environment, never written into the file.
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(text.contains("%ENVIRONMENT(GITHUB_TOKEN)%"));
}

#[test]
fn shipped_configs_validate() {
    let envoy_dir = paths::repo_root().join("envoy");
    let wasm = paths::wasm().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&envoy_dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        // Shipped configs name the module by its repository path; point it at the built one.
        let text = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .replace("/etc/envoy/aurelis_filter.wasm", "target/aurelis_filter.wasm")
            .replace("target/aurelis_filter.wasm", &wasm.display().to_string());
        if text.contains("envoy.filters.http.wasm") {
            assert!(
                text.contains("environment_variables: { host_env_keys: [AURELIS_L2_TOKEN] }"),
                "{}: the filter's vm_config must let it read AURELIS_L2_TOKEN",
                path.display()
            );
        }
        let copy = dir.path().join(entry.file_name());
        std::fs::write(&copy, text).unwrap_or_default();
        validate_envoy_config(&copy).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        checked += 1;
    }
    assert!(checked >= 2, "shipped configs missing in {}", envoy_dir.display());
}

//! Every Envoy config the project ships or generates is accepted by `envoy --mode validate`:
//! the checked-in `envoy/*.yaml`, what `Stack` and `Fleet` run (product and benchmark baselines),
//! and a static rendering of the GitHub Models model file (TLS, SNI, ALPN, rewrite).
use aurelis_control_plane::model::Model;
use aurelis_control_plane::render;
use aurelis_control_plane::xds::resources::{
    ads_bootstrap, buffer_filter, static_bootstrap, AdsBootstrap, AdsTls, Answer, StaticBootstrap,
};
use aurelis_devstack::pki::Pki;
use aurelis_devstack::stack::{envoy_config, validate_envoy_config};
use aurelis_devstack::{paths, FilterHost, StackOptions};
use serde_json::{json, Value};

fn validate(name: &str, config: &Value) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap_or_default()).unwrap_or_default();
    validate_envoy_config(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
}

fn wasm() -> String {
    paths::wasm().unwrap_or_else(|e| panic!("{e}")).display().to_string()
}

fn http_filters(config: &Value) -> &Value {
    &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
}

fn filter_names(config: &Value) -> Vec<String> {
    http_filters(config).as_array().into_iter().flatten().filter_map(|f| f["name"].as_str()).map(String::from).collect()
}

#[test]
fn stack_configs_validate_with_and_without_the_filter() {
    let product =
        envoy_config(&StackOptions::default(), 8000, &wasm(), FilterHost::Wasm).unwrap_or_else(|e| panic!("{e:#}"));
    validate("stack.json", &product);
    assert_eq!(filter_names(&product), ["aurelis.filter", "envoy.filters.http.router"]);
    // The filter's VM may read the L2 token, the signing key and the refresh secret from Envoy's
    // environment; the file names them only.
    let vm = &http_filters(&product)[0]["typed_config"]["config"]["vm_config"];
    assert_eq!(
        vm["environment_variables"],
        json!({ "host_env_keys": ["AURELIS_L2_TOKEN", "AURELIS_L2_SIGNING_KEY", "AURELIS_REFRESH_SECRET"] }),
        "{vm}"
    );

    // The benchmark baselines, from the same generator.
    let direct = StackOptions {
        with_filter: false,
        direct_response: Some(r#"{"ok":true}"#.into()),
        extra_http_filters: vec![buffer_filter()],
        ..StackOptions::default()
    };
    let direct = envoy_config(&direct, 8000, &wasm(), FilterHost::Wasm).unwrap_or_else(|e| panic!("{e:#}"));
    validate("direct.json", &direct);
    assert_eq!(
        filter_names(&direct),
        ["envoy.filters.http.buffer", "envoy.filters.http.buffer", "envoy.filters.http.router"],
        "direct_response buffers first; extra filters follow"
    );
    let plain =
        envoy_config(&StackOptions { with_filter: false, ..StackOptions::default() }, 8000, &wasm(), FilterHost::Wasm)
            .unwrap_or_else(|e| panic!("{e:#}"));
    validate("plain.json", &plain);
    assert_eq!(filter_names(&plain), ["envoy.filters.http.router"]);
}

#[test]
fn the_native_stack_config_validates_and_loads_the_module() {
    let native =
        envoy_config(&StackOptions::default(), 8000, &wasm(), FilterHost::Native).unwrap_or_else(|e| panic!("{e:#}"));
    validate("native.json", &native);
    let filter = &http_filters(&native)[0]["typed_config"];
    assert_eq!(
        filter["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
    );
    assert_eq!(filter["dynamic_module_config"], json!({ "name": "aurelis_native", "do_not_close": true }));
    // The same JSON as the Wasm plugin's configuration.
    let config: Value = serde_json::from_str(filter["filter_config"]["value"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config["auth"], json!({ "anonymous": {} }), "{config}");
}

#[test]
fn fleet_ads_bootstraps_validate() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pki = Pki::create(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let node = pki.node("envoy-0").unwrap_or_else(|e| panic!("{e:#}"));
    let (cert, key, ca) =
        (node.cert.display().to_string(), node.key.display().to_string(), pki.ca_file.display().to_string());
    for (delta, tls) in [(false, false), (true, false), (false, true), (true, true)] {
        let bootstrap = ads_bootstrap(AdsBootstrap {
            node_id: "envoy-0",
            admin_address: "127.0.0.1",
            admin_port: 0,
            xds_host: "127.0.0.1",
            xds_port: 18002,
            delta,
            tls: tls.then(|| AdsTls { cert_file: &cert, key_file: &key, ca_file: &ca }),
            l1_max_bytes: 64 << 20,
            stats_flush_ms: 1000,
            // The tiny budget the memory-pressure test uses must be accepted too.
            max_heap_bytes: tls.then_some(16 << 20),
        });
        let config = render::to_json(&bootstrap).unwrap_or_else(|e| panic!("{e:#}"));
        let api_type = &config["dynamic_resources"]["ads_config"]["api_type"];
        assert_eq!(api_type, if delta { "DELTA_GRPC" } else { "GRPC" });
        let socket = &config["static_resources"]["clusters"][0]["transport_socket"];
        assert_eq!(socket.is_null(), !tls, "{socket}");
        if tls {
            let context = &socket["typed_config"]["common_tls_context"];
            assert_eq!(context["tls_certificates"][0]["certificate_chain"]["filename"], cert.as_str());
            let san = &context["validation_context"]["match_typed_subject_alt_names"][0];
            assert_eq!(san["matcher"]["exact"], "spiffe://aurelis/control-plane", "only the control plane: {san}");
        }
        validate("ads.json", &config);
    }
}

#[test]
fn github_models_static_rendering_validates_and_uses_tls_sni_h2() {
    let path = paths::repo_root().join("control-plane/models/github-models.yaml");
    let model = Model::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = static_bootstrap(StaticBootstrap {
        model: &model,
        filter_json: Some(model.filter.to_string()),
        wasm_path: &wasm(),
        admin_address: "127.0.0.1",
        admin_port: 0,
        answer: Answer::Providers,
        extra_http_filters: Vec::new(),
    });
    let config = render::to_json(&bootstrap).unwrap_or_else(|e| panic!("{e:#}"));
    validate("github.json", &config);

    let host = "models.github.ai";
    let cluster = &config["static_resources"]["clusters"][0];
    assert_eq!(cluster["type"], "STRICT_DNS", "{cluster}");
    let tls = &cluster["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"], host);
    assert_eq!(tls["common_tls_context"]["alpn_protocols"], json!(["h2", "http/1.1"]));
    let san = &tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0];
    assert_eq!(san["matcher"]["exact"], host, "the certificate is checked against the host name");
    let protocol =
        &cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(protocol["auto_config"]["http2_protocol_options"].is_object(), "HTTP/2 negotiated by ALPN: {protocol}");
    let routes = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"];
    let route = routes.as_array().into_iter().flatten().find(|r| r["name"] == "model:openai/gpt-4o-mini").unwrap();
    assert_eq!(route["route"]["regex_rewrite"]["substitution"], "/inference/");
    assert_eq!(route["route"]["auto_host_rewrite"], true);
    // The token is read by Envoy from its environment, never written into the file.
    let text = config.to_string();
    assert!(text.contains("Bearer %ENVIRONMENT(GITHUB_TOKEN)%"), "{route}");
}

/// A model with JWT verification, a catch-all model and its own API paths, rendered statically
/// and checked by Envoy: `jwt_authn` (inline JWKS) ahead of the filter, the early header
/// mutation and the path hardening are all accepted by the pinned Envoy.
#[test]
fn a_jwt_and_api_rendering_validates() {
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    let yaml = format!(
        "listener: {{ port: 0, xff_num_trusted_hops: 1 }}\n\
         providers:\n  - {{ name: paid, base_url: 'https://api.example.com/v1', headers: [{{ name: authorization, envoy_env: PAID_TOKEN, prefix: 'Bearer ' }}] }}\n\
         models:\n  - {{ name: gpt-4o-mini, providers: [{{ provider: paid, weight: 1 }}] }}\n\
         api: {{ paths: [/v1/chat/completions, /v1/responses], fallback_model: gpt-4o-mini }}\n\
         jwt: {{ issuer: https://issuer.example, audiences: [aurelis], jwks: '{jwks}' }}\n\
         filter: {{ auth: {{ jwt: {{ tenant_claim: org }} }} }}\n"
    );
    let model = Model::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = static_bootstrap(StaticBootstrap {
        model: &model,
        filter_json: Some(model.filter.to_string()),
        wasm_path: &wasm(),
        admin_address: "127.0.0.1",
        admin_port: 0,
        answer: Answer::Providers,
        extra_http_filters: Vec::new(),
    });
    let config = render::to_json(&bootstrap).unwrap_or_else(|e| panic!("{e:#}"));
    validate("jwt.json", &config);
    assert_eq!(
        filter_names(&config),
        [
            "envoy.filters.http.compressor.brotli",
            "envoy.filters.http.compressor.gzip",
            "envoy.filters.http.jwt_authn",
            "aurelis.filter",
            "envoy.filters.http.router"
        ]
    );
    let jwt = &http_filters(&config)[2]["typed_config"];
    assert_eq!(jwt["providers"]["aurelis"]["payload_in_metadata"], "aurelis_jwt", "{jwt}");
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["early_header_mutation_extensions"][0]["name"], "envoy.http.early_header_mutation.header_mutation");
    assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
    assert_eq!(hcm["use_remote_address"], true);
}

#[test]
fn shipped_configs_validate() {
    let envoy_dir = paths::repo_root().join("envoy");
    let wasm = wasm();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Envoy reads TLS files while validating: the compose bootstrap's PKI directory (mounted in
    // its container) is pointed at a throw-away PKI with the same file names.
    let pki_dir = dir.path().join("pki");
    let pki = Pki::create(&pki_dir).unwrap_or_else(|e| panic!("{e:#}"));
    let node = pki.node("gateway-1").unwrap_or_else(|e| panic!("{e:#}"));
    for (from, to) in [(&node.cert, "envoy.pem"), (&node.key, "envoy-key.pem")] {
        std::fs::copy(from, pki_dir.join(to)).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&envoy_dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        // Shipped configs name the module by its repository path; point it at the built one.
        let text = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .replace(render::SHIPPED_WASM_PATH, &wasm)
            .replace(render::SHIPPED_PKI_DIR, &pki_dir.display().to_string());
        let copy = dir.path().join(entry.file_name());
        std::fs::write(&copy, text).unwrap_or_default();
        validate_envoy_config(&copy).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        checked += 1;
    }
    assert!(checked >= 4, "shipped configs missing in {}", envoy_dir.display());
}

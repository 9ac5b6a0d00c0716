//! Envoy configuration as files: the compile step's bootstraps (`xds::resources::bootstrap`)
//! rendered as JSON or YAML through the descriptors of Envoy's own `.proto` files (compiled by
//! `build.rs`), so `Any` payloads appear as Envoy reads them (`"@type": ...`).
//! `render-envoy` writes the shipped `envoy/*.yaml` with `shipped_files`; a test compares the
//! checked-in copies with it.
use crate::model::{FilterHost, Model};
use crate::xds::resources::{ads_bootstrap, static_bootstrap, AdsBootstrap, AdsTls, Answer, StaticBootstrap};
use anyhow::{anyhow, Context, Result};
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use std::path::Path;
use std::sync::OnceLock;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

fn pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow!("Envoy descriptors: {e}"))
}

/// Any Envoy API message as JSON, with Envoy's field names (`snake_case`) and defaults left out.
pub fn to_json<T: Message + Name>(message: &T) -> Result<serde_json::Value> {
    let pool = pool()?;
    let name = T::full_name();
    let descriptor = pool.get_message_by_name(&name).ok_or_else(|| anyhow!("no descriptor for {name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("re-decoding {name}"))?;
    let options = SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    dynamic.serialize_with_options(&mut serializer, &options).with_context(|| format!("rendering {name}"))?;
    Ok(serde_json::from_slice(&out)?)
}

/// A bootstrap as YAML, after a header of `#` comment lines.
pub fn to_yaml(header: &str, bootstrap: &Bootstrap) -> Result<String> {
    let body = serde_yaml_ng::to_string(&to_json(bootstrap)?)?;
    let mut text = String::new();
    for line in header.lines() {
        text.push_str(if line.is_empty() { "#" } else { "# " });
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&body);
    Ok(text)
}

/// The command that regenerates the shipped files (in messages and file headers).
pub const REGENERATE: &str = "make envoy-configs";
/// The model the static drop-in is rendered from, relative to the repository root.
pub const STATIC_MODEL: &str = "control-plane/models/local.yaml";
/// The filter module as the shipped files name it (relative to the repository root).
pub const SHIPPED_WASM_PATH: &str = "target/aurelis_filter.wasm";
/// Where the compose bootstrap's Envoy finds its xDS client certificate, key and the CA
/// (mounted into the container; see docker-compose.yml).
pub const SHIPPED_PKI_DIR: &str = "/etc/envoy/pki";

/// The compose Envoy's TLS files under `SHIPPED_PKI_DIR`: its certificate must carry the URI
/// SAN `spiffe://aurelis/node/gateway-1`.
fn shipped_tls_files() -> [String; 3] {
    ["envoy.pem", "envoy-key.pem", "ca.pem"].map(|f| format!("{SHIPPED_PKI_DIR}/{f}"))
}

/// The shipped `envoy/*.yaml` files: (file name, contents).
pub fn shipped_files(static_model: &Model, wasm_path: &str) -> Result<Vec<(&'static str, String)>> {
    // Validated as the control plane would before pushing it; written as the model spells it.
    let l1_max_bytes = static_model.filter_config()?.cache.max_bytes;
    let filter_json = static_model.filter.to_string();
    let static_drop_in = static_bootstrap(StaticBootstrap {
        model: static_model,
        filter_json: Some(filter_json),
        wasm_path,
        admin_address: "127.0.0.1",
        admin_port: 9901,
        answer: Answer::Providers,
        extra_http_filters: Vec::new(),
    });
    // The same drop-in with the native dynamic module in the filter's place.
    let mut native_model = static_model.clone();
    native_model.listener.filter = FilterHost::Native;
    let static_native = static_bootstrap(StaticBootstrap {
        model: &native_model,
        filter_json: Some(static_model.filter.to_string()),
        wasm_path,
        admin_address: "127.0.0.1",
        admin_port: 9901,
        answer: Answer::Providers,
        extra_http_filters: Vec::new(),
    });
    let [cert_file, key_file, ca_file] = shipped_tls_files();
    let ads = |admin_address, xds_host, tls| {
        ads_bootstrap(AdsBootstrap {
            node_id: "gateway-1",
            admin_address,
            admin_port: 9901,
            xds_host,
            xds_port: 18002,
            delta: false,
            tls,
            l1_max_bytes,
            stats_flush_ms: static_model.telemetry.stats_flush_ms,
            max_heap_bytes: None,
        })
    };
    let compose_tls = AdsTls { cert_file: &cert_file, key_file: &key_file, ca_file: &ca_file };
    let generated = format!("Generated by `{REGENERATE}` (aurelis-control-plane render-envoy): do not edit.");
    Ok(vec![
        (
            "aurelis-static.yaml",
            to_yaml(
                &format!(
                    "Aurelis as a static drop-in: Envoy + the aurelis Wasm filter in front of the providers of\n\
                     {STATIC_MODEL} (the mock provider of `make run` on 127.0.0.1:8000, and the L2\n\
                     cache service on 127.0.0.1:18080), with the same clusters, routes and filter block the\n\
                     control plane pushes over xDS.\n\
                     \n\
                     \x20 make wasm && .venv/bin/envoy -c envoy/aurelis-static.yaml    # from the repository root\n\
                     \n\
                     The filter's configuration is the JSON in `configuration.value` (schema:\n\
                     filter/core/src/config.rs). The L2 API token and signing key come from Envoy's\n\
                     environment (AURELIS_L2_TOKEN, AURELIS_L2_SIGNING_KEY), never from this file. For your\n\
                     providers, write a model file and run\n\
                     \x20 aurelis-control-plane render-envoy --model <file> --out <dir>\n\
                     {generated}"
                ),
                &static_drop_in,
            )?,
        ),
        (
            "aurelis-static-native.yaml",
            to_yaml(
                &format!(
                    "aurelis-static.yaml with the native build of the filter: the same core, configuration,\n\
                     headers and stats, as an Envoy dynamic module (`filter/native`, libaurelis_native.so)\n\
                     instead of the Wasm plugin. Envoy finds the module in ENVOY_DYNAMIC_MODULES_SEARCH_PATH.\n\
                     \n\
                     \x20 make build && ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$PWD/target/release \\\n\
                     \x20     .venv/bin/envoy -c envoy/aurelis-static-native.yaml    # from the repository root\n\
                     \n\
                     Its stats are named `dynamicmodulescustom.aurelis_*` (Wasm: `wasmcustom.aurelis_*`).\n\
                     {generated}"
                ),
                &static_native,
            )?,
        ),
        (
            "aurelis-ads-bootstrap.yaml",
            to_yaml(
                &format!(
                    "An Envoy managed by the Aurelis control plane: this bootstrap knows only the control\n\
                     plane's xDS address. Listeners, routes, clusters, endpoints and the Aurelis filter's\n\
                     configuration (ECDS) all arrive over one ADS stream.\n\
                     \n\
                     \x20 aurelis-control-plane --model control-plane/models/default.yaml --xds-plaintext-loopback \\\n\
                     \x20     --wasm-path \"$PWD/target/aurelis_filter.wasm\" &\n\
                     \x20 .venv/bin/envoy -c envoy/aurelis-ads-bootstrap.yaml --service-node gateway-1\n\
                     \n\
                     Plaintext xDS, for a control plane on the same host only (--xds-plaintext-loopback);\n\
                     elsewhere use TLS with client certificates, as aurelis-ads-compose.yaml does.\n\
                     Envoy keeps serving its last configuration while the control plane is away, and\n\
                     reconnects with backoff (0.25 s doubling to 5 s).\n\
                     {generated}"
                ),
                &ads("127.0.0.1", "127.0.0.1", None),
            )?,
        ),
        (
            "aurelis-ads-compose.yaml",
            to_yaml(
                &format!(
                    "The Envoy bootstrap of docker-compose.yml: aurelis-ads-bootstrap.yaml with the control\n\
                     plane found by its service name. Envoy's admin stays on the container's loopback
\
                     (it can drain, quit and dump the configuration): reach it with
\
                     `docker compose exec envoy` rather than over the network. xDS runs over TLS:
\
                     Envoy presents {cert_file} (URI SAN spiffe://aurelis/node/gateway-1, key
\
                     {key_file}) and accepts only a control plane certificate from {ca_file} with
\
                     the URI SAN {cp_uri}.
\
                     {generated}",
                    cp_uri = crate::xds::tls::CONTROL_PLANE_URI,
                ),
                &ads("127.0.0.1", "control-plane", Some(compose_tls)),
            )?,
        ),
    ])
}

/// `render-envoy`: a model file (default: the shipped static drop-in's) rendered as the shipped
/// set of files into `out`.
pub fn render_envoy(model_path: &Path, wasm_path: &str, out: &Path) -> Result<()> {
    let model = Model::load(model_path).with_context(|| format!("--model {}", model_path.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in shipped_files(&model, wasm_path)? {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

//! Compiles the descriptors of the Envoy API messages the control plane renders as YAML/JSON
//! (`render`), from the `.proto` files the `envoy-types` crate ships with its generated code, so
//! the descriptors match the Rust types byte for byte. No `protoc`: `protox` is pure Rust.
use std::path::PathBuf;

/// The messages rendered, directly or inside an `Any`; their imports come along.
const FILES: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
    "envoy/extensions/filters/http/dynamic_modules/v3/dynamic_modules.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/buffer/v3/buffer.proto",
    "envoy/extensions/filters/http/compressor/v3/compressor.proto",
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/http/early_header_mutation/header_mutation/v3/header_mutation.proto",
    "envoy/extensions/compression/gzip/compressor/v3/gzip.proto",
    "envoy/extensions/compression/brotli/compressor/v3/brotli.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/resource_monitors/fixed_heap/v3/fixed_heap.proto",
    "envoy/extensions/resource_monitors/cpu_utilization/v3/cpu_utilization.proto",
    "envoy/config/metrics/v3/metrics_service.proto",
    "envoy/extensions/access_loggers/grpc/v3/als.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    // Failover between providers (`xds::resources::failover`).
    "envoy/extensions/clusters/aggregate/v3/cluster.proto",
    "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
    "envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto",
    "envoy/extensions/filters/http/upstream_codec/v3/upstream_codec.proto",
    "envoy/extensions/common/matching/v3/extension_matcher.proto",
    "envoy/extensions/filters/common/matcher/action/v3/skip_action.proto",
    "xds/type/matcher/v3/cel.proto",
    "google/protobuf/wrappers.proto",
];

fn envoy_types_protos() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("AURELIS_ENVOY_PROTOS") {
        return Ok(PathBuf::from(dir));
    }
    // The registry's unpacked sources: $CARGO_HOME/registry/src/<index>/envoy-types-<version>/proto.
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let version = envoy_types_version()?;
    let src = home.join("registry/src");
    for index in std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?.flatten() {
        let dir = index.path().join(format!("envoy-types-{version}/proto"));
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    Err(format!("envoy-types {version} sources not found under {} (set AURELIS_ENVOY_PROTOS)", src.display()))
}

/// The locked version, read from the workspace's Cargo.lock.
fn envoy_types_version() -> Result<String, String> {
    let lock = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"envoy-types\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    Err("envoy-types is not in Cargo.lock".into())
}

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=AURELIS_ENVOY_PROTOS");
    let root = envoy_types_protos()?;
    // Our own declarations of the few messages `envoy-types` lacks (`proto/`), first.
    let own = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?).join("proto");
    println!("cargo:rerun-if-changed={}", own.display());
    let mut includes: Vec<PathBuf> = vec![own];
    includes.extend(
        [
            "data-plane-api",
            "xds",
            "protoc-gen-validate",
            "googleapis",
            "cel-spec",
            "cel-spec/proto",
            "opentelemetry-proto",
            "client_model",
        ]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir()),
    );
    let set = protox::compile(FILES, &includes).map_err(|e| format!("compiling Envoy's protos: {e:?}"))?;
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?).join("envoy_descriptors.bin");
    // Written beside and renamed over: a new file, never an in-place rewrite of one that a
    // hard-linked copy of `target/` (another checkout's) shares.
    let fresh = out.with_extension("bin.new");
    std::fs::write(&fresh, prost::Message::encode_to_vec(&set)).map_err(|e| e.to_string())?;
    std::fs::rename(&fresh, &out).map_err(|e| e.to_string())?;
    Ok(())
}

//! The native filter is written against one version of Envoy's dynamic-module ABI
//! (`filter/native/src/abi`, `ABI_VERSION`). Envoy reports the version it implements when it
//! loads a module and only warns on a mismatch, so this test pins it: a new Envoy with another
//! ABI fails here, by name, before anything subtler breaks.
use aurelis_devstack::stack::{envoy_config, validate_envoy_config};
use aurelis_devstack::{paths, FilterHost, StackOptions};
use std::process::Command;

/// `aurelis_native::abi::ABI_VERSION` (kept in step by hand: the module cannot be linked into a
/// test binary, its Envoy symbols only exist inside Envoy).
const MODULE_ABI_VERSION: &str = "v0.2.0";

#[test]
fn envoy_reports_the_abi_version_the_native_filter_is_written_against() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = envoy_config(&StackOptions::default(), 8000, "unused.wasm", FilterHost::Native)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let path = dir.path().join("native.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap_or_default()).unwrap_or_default();
    validate_envoy_config(&path).unwrap_or_else(|e| panic!("{e:#}"));

    let module_dir = paths::native_module_dir().unwrap_or_else(|e| panic!("{e:#}"));
    let output = Command::new(paths::envoy().unwrap_or_else(|e| panic!("{e:#}")))
        .args(["--mode", "validate", "--disable-hot-restart", "--log-level", "info", "-c"])
        .arg(&path)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let reported: Vec<&str> = log.lines().filter(|l| l.contains("ABI version")).collect();
    let expected = format!("Dynamic module ABI version {MODULE_ABI_VERSION} matched");
    assert!(
        reported.iter().any(|l| l.contains(&expected)),
        "Envoy no longer reports dynamic-module ABI {MODULE_ABI_VERSION}, the version filter/native is \
         written against. Check the declarations in filter/native/src/abi/ffi.rs (and the hooks in \
         abi/hooks.rs) against the abi.h of this Envoy, then update ABI_VERSION there and here.\n\
         Envoy said: {reported:#?}"
    );
}

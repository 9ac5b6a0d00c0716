//! `aurelis-control-plane check-config <file>`, run as the real binary: every shipped model
//! passes, and each fixture in `tests/fixtures/` (one kind of mistake each) fails with exit
//! code 1 and a message naming the field and the offending value.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_aurelis-control-plane");

/// Each bad fixture and the fragments its error must contain: the field path, then the value.
const MISTAKES: &[(&str, &[&str])] = &[
    ("unknown-field.yaml", &["providers[0]", "unknown field `timeout_s`"]),
    ("unknown-provider.yaml", &["`models[0].providers[1].provider`", "`openai` is not a defined provider"]),
    ("duplicate-provider.yaml", &["`providers[1].name`", "`mock` is defined twice"]),
    ("zero-weights.yaml", &["`models[0].providers`", "the weights sum to 0"]),
    ("bad-base-url.yaml", &["`providers[0].base_url`", "`ftp://127.0.0.1:8000/v1`"]),
    ("mixed-base-paths.yaml", &["`models[0].providers`", r#"{"/inference", "/v1"}"#]),
    ("bad-filter-setting.yaml", &["`filter.cache.ttl_seconds`", "0 is invalid"]),
    ("bad-eviction-policy.yaml", &["`filter`", "`cache.eviction`: `mru` (must be lru or lfu)"]),
    ("bad-warm-setting.yaml", &["warm.max_entries", "5000"]),
    ("l2-without-cache-service.yaml", &["`filter.l2.enabled`", "true needs a `cache_service` section"]),
    ("bad-endpoint.yaml", &["`providers[0].endpoints[0].address`", "`99999` is not a port"]),
    ("bad-health-check.yaml", &["`providers[0].health_check.path`", "`v1/models` must start with /"]),
    ("weight-too-high.yaml", &["`models[0].providers[0].weight`", "20000 is above 10000"]),
    ("bad-listener-address.yaml", &["`listener.address`", "`localhost` is not an IP address"]),
    ("relative-access-log.yaml", &["listener.access_log.path", "logs/access.log"]),
    ("bad-header-env.yaml", &["`providers[0].headers[0].envoy_env`", "`TOKEN)%` is not an environment variable name"]),
    ("bad-cache-service-endpoint.yaml", &["`cache_service.endpoints[0]`", "`cache-service` must be host:port"]),
    ("open-relay.yaml", &["`filter.auth`", "provider `paid` injects a credential (authorization)"]),
    ("jwt-without-claims.yaml", &["`filter.auth.jwt`", "is needed with a `jwt` section"]),
    ("unknown-fallback-model.yaml", &["`api.fallback_model`", "`gpt-5` is not in `models`"]),
    ("bad-telemetry-sample-rate.yaml", &["`telemetry.sample_rate`", "2 must be in (0, 1]"]),
    ("unknown-priced-model.yaml", &["`telemetry.prices.gpt-4o-mni`", "`gpt-4o-mni` is not in `models`"]),
    ("bad-anomaly-threshold.yaml", &["`anomalies.p95_latency.deviations`", "-2 must be above 0"]),
    ("bad-refresh-budget.yaml", &["`filter.refresh.tenants.tokens_per_hour`", "0 is invalid"]),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_config(file: &Path) -> Output {
    Command::new(BIN)
        .arg("check-config")
        .arg(file)
        // check-config must not depend on the serving environment (tokens, secrets, addresses).
        .env_remove("GITHUB_TOKEN")
        .env("AURELIS_ADMIN_LISTEN", "not an address")
        .output()
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(file: &Path, kind: &str) {
    let out = check_config(file);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{}: stdout {stdout:?} stderr {stderr:?}", file.display());
    assert_eq!(stdout.trim(), format!("ok: {} ({kind})", file.display()), "stderr {stderr:?}");
}

fn assert_invalid(file: &Path, expected: &[&str]) {
    let out = check_config(file);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{}: stdout {stdout:?} stderr {stderr:?}", file.display());
    assert!(stdout.is_empty(), "nothing on stdout for an invalid file: {stdout:?}");
    assert!(stderr.starts_with("invalid: "), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "the error names the file: {stderr}");
    for fragment in expected {
        assert!(stderr.contains(fragment), "{}: expected {fragment:?} in {stderr:?}", file.display());
    }
}

#[test]
fn the_valid_fixture_passes() {
    assert_ok(&manifest_dir().join("tests/fixtures/valid.yaml"), "model");
}

#[test]
fn each_mistake_is_refused_naming_the_field_and_value() {
    for (file, expected) in MISTAKES {
        assert_invalid(&manifest_dir().join("tests/fixtures").join(file), expected);
    }
}

#[test]
fn every_fixture_is_in_the_table() {
    let mut on_disk: Vec<String> = std::fs::read_dir(manifest_dir().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "valid.yaml")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = MISTAKES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "a fixture without an expected message tests nothing");
}

#[test]
fn every_shipped_model_passes() {
    let dir = manifest_dir().join("models");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    models.sort();
    let names: Vec<_> = models.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in ["default.yaml", "local.yaml", "github-models.yaml"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    // github-models.yaml names GITHUB_TOKEN, removed from the environment above: the offline
    // check validates the file, not the secrets of the machine it runs on.
    for model in &models {
        assert_ok(model, "model");
    }
}

#[test]
fn filter_json_is_checked_by_the_filters_own_code() {
    let dir = std::env::temp_dir().join(format!("aurelis-cp-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("filter.json");
    std::fs::write(&good, r#"{"cache":{"ttl_seconds":60},"debug_headers":true}"#).unwrap();
    assert_ok(&good, "filter configuration");
    let bad_value = dir.join("bad-value.json");
    std::fs::write(&bad_value, r#"{"cache":{"max_entries":0}}"#).unwrap();
    assert_invalid(&bad_value, &["`cache.max_entries`: 0"]);
    let unknown = dir.join("unknown.json");
    std::fs::write(&unknown, r#"{"cache":{"ttl":60}}"#).unwrap();
    assert_invalid(&unknown, &["unknown field `ttl`"]);
    let missing = dir.join("missing.json");
    assert_invalid(&missing, &["reading"]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn repo_root() -> PathBuf {
    manifest_dir().join("..")
}

#[test]
fn shipped_manifests_are_checked_by_the_filters_own_code() {
    for (file, count) in [
        ("deploy/istio/wasmplugin.yaml", 1),
        ("deploy/istio/envoyfilter-wasm.yaml", 1),
        ("deploy/envoy-gateway/extension-policy.yaml", 1),
    ] {
        assert_ok(&repo_root().join(file), &format!("Kubernetes manifests, {count} filter configuration(s)"));
    }
    let dir = std::env::temp_dir().join(format!("aurelis-cp-check-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(repo_root().join("deploy/istio/wasmplugin.yaml")).unwrap();
    let bad = dir.join("wasmplugin.yaml");
    std::fs::write(&bad, shipped.replace("ttl_seconds: 300", "ttl_seconds: 0")).unwrap();
    assert_invalid(&bad, &["WasmPlugin/aurelis spec.pluginConfig", "`cache.ttl_seconds`: 0"]);
    let shipped = std::fs::read_to_string(repo_root().join("deploy/istio/envoyfilter-wasm.yaml")).unwrap();
    let bad = dir.join("envoyfilter.yaml");
    std::fs::write(&bad, shipped.replace(r#""cache": { "ttl_seconds": 300 }"#, r#""cache": { "ttl": 300 }"#)).unwrap();
    assert_invalid(&bad, &["EnvoyFilter/aurelis spec.configPatches[0] configuration.value", "unknown field `ttl`"]);
    let _ = std::fs::remove_dir_all(&dir);
}

//! The shipped `envoy/*.yaml` are the generator's output, byte for byte: the control plane's
//! compile step is the one source of Envoy configuration (`render::shipped_files`).
use aurelis_control_plane::model::Model;
use aurelis_control_plane::render::{shipped_files, REGENERATE, SHIPPED_WASM_PATH, STATIC_MODEL};
use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn checked_in_envoy_configs_match_the_generator() {
    let root = repo_root();
    let model = Model::load(&root.join(STATIC_MODEL)).unwrap_or_else(|e| panic!("{STATIC_MODEL}: {e}"));
    let files = shipped_files(&model, SHIPPED_WASM_PATH).unwrap_or_else(|e| panic!("{e:#}"));
    let mut stale = Vec::new();
    for (name, generated) in &files {
        let path = root.join("envoy").join(name);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if &checked_in != generated {
            stale.push(format!("envoy/{name}"));
        }
    }
    assert!(stale.is_empty(), "{} differ from the generator's output: run `{REGENERATE}`", stale.join(", "));
    // Every yaml in envoy/ is generated: a hand-written one would escape this check.
    let mut names: Vec<String> = std::fs::read_dir(root.join("envoy"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut generated: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    generated.sort();
    assert_eq!(names, generated, "envoy/ holds a yaml the generator does not write");
}

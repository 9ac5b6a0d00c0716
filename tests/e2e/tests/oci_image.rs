//! The filter module as OCI images, built by the shipped `aurelis-oci build` (what `make oci`
//! runs), pushed by `aurelis-oci push` to a real registry (Debian's `docker-registry` on
//! loopback, private config and storage) over its HTTP API, and pulled back by digest: both
//! variants Istio accepts give back the very bytes of the built module.
use aurelis_devstack::oci::{self, layout, registry, Variant};
use aurelis_devstack::paths;
use aurelis_devstack::registry::Registry;
use std::process::Command;

fn run(args: &[&str]) -> String {
    let output = Command::new(paths::oci_builder().unwrap()).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "aurelis-oci {args:?} failed:\n{stdout}{stderr}");
    stdout.into_owned()
}

#[test]
fn both_variants_round_trip_through_a_registry_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = paths::wasm().unwrap();
    let module = std::fs::read(&wasm).unwrap();
    let out = dir.path().join("oci");
    let printed = run(&["build", "--wasm", wasm.to_str().unwrap(), "--out", out.to_str().unwrap(), "--tag", "e2e"]);
    let registry = Registry::start(dir.path()).unwrap();
    for variant in Variant::ALL {
        let at = out.join(variant.dir_name());
        let digest = std::fs::read_to_string(at.join(layout::DIGEST_FILE)).unwrap().trim().to_string();
        assert!(printed.contains(&digest), "the digest is printed:\n{printed}");
        let name = format!("aurelis/filter-{}", variant.dir_name());
        let pushed =
            run(&["push", "--layout", at.to_str().unwrap(), "--registry", &registry.base_url, "--repository", &name]);
        let host = registry.base_url.trim_start_matches("http://");
        assert_eq!(pushed.trim(), format!("oci://{host}/{name}@{digest}"), "{variant:?}");

        let repo = registry::Repository { base_url: registry.base_url.clone(), name };
        let pulled = registry::pull(&repo, &digest).unwrap();
        assert_eq!(pulled.variant, variant);
        assert_eq!(oci::extract_module(variant, &pulled.blobs).unwrap(), module, "{variant:?}: the module's bytes");
        // By tag too, as `oci://…:e2e` would be fetched.
        let by_tag = ureq::get(&format!("{}/v2/{}/manifests/e2e", registry.base_url, repo.name))
            .set("accept", &pulled.manifest.media_type)
            .call()
            .unwrap();
        assert_eq!(by_tag.header("docker-content-digest"), Some(digest.as_str()));
    }
}

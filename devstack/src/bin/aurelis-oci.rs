//! `aurelis-oci`: the filter module as OCI images, without a container engine (`make oci`).
//!
//!   aurelis-oci build [--wasm target/aurelis_filter.wasm] [--out target/oci] [--tag dev]
//!   aurelis-oci push --layout target/oci/wasm --registry http://127.0.0.1:5000 --repository aurelis/filter
//!
//! `build` writes two OCI image layouts, `<out>/wasm` (Istio's Wasm artifact media types) and
//! `<out>/compat` (the Docker-compatible variant), each with its manifest digest in `digest`,
//! and prints the digests. `push` sends a layout to a registry over its HTTP API (plain HTTP:
//! for a registry on loopback or behind your own TLS proxy; `skopeo copy oci:<dir> docker://…`
//! does the same with credentials and TLS) and prints `oci://<registry>/<repository>@<digest>`.
use anyhow::{bail, Context, Result};
use aurelis_devstack::oci::{self, layout, registry, Variant};
use std::path::PathBuf;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else { bail!(usage()) };
    let flag =
        |name: &str| -> Option<String> { rest.iter().position(|a| a == name).and_then(|i| rest.get(i + 1)).cloned() };
    match command.as_str() {
        "build" => {
            let wasm = PathBuf::from(flag("--wasm").unwrap_or_else(|| "target/aurelis_filter.wasm".into()));
            let out = PathBuf::from(flag("--out").unwrap_or_else(|| "target/oci".into()));
            let tag = flag("--tag").unwrap_or_else(|| "dev".into());
            let module =
                std::fs::read(&wasm).with_context(|| format!("reading {} (run `make wasm`)", wasm.display()))?;
            for variant in Variant::ALL {
                let image = oci::image(variant, &module)?;
                let dir = out.join(variant.dir_name());
                layout::write(&image, &dir, &tag)?;
                println!(
                    "{} {}  ({}, {} bytes of module)",
                    dir.display(),
                    image.digest(),
                    variant_label(variant),
                    module.len()
                );
            }
            Ok(())
        }
        "push" => {
            let (Some(dir), Some(base_url), Some(name)) = (flag("--layout"), flag("--registry"), flag("--repository"))
            else {
                bail!(usage())
            };
            let (image, tag) = layout::read(&PathBuf::from(&dir))?;
            let repo = registry::Repository { base_url: base_url.clone(), name: name.clone() };
            let digest = registry::push(&repo, &image, &flag("--tag").unwrap_or(tag))?;
            let host = base_url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
            println!("oci://{host}/{name}@{digest}");
            Ok(())
        }
        _ => bail!(usage()),
    }
}

fn variant_label(variant: Variant) -> &'static str {
    match variant {
        Variant::Wasm => "Wasm artifact: application/vnd.module.wasm.content.layer.v1+wasm",
        Variant::Compat => "Docker-compatible: plugin.wasm in a tar+gzip layer",
    }
}

fn usage() -> &'static str {
    "usage: aurelis-oci build [--wasm FILE] [--out DIR] [--tag TAG]\n       \
     aurelis-oci push --layout DIR --registry http://HOST:PORT --repository NAME [--tag TAG]"
}

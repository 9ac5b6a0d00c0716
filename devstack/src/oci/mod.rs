//! The filter module as an OCI image, built without a container engine, in the two forms
//! Istio's Wasm image fetcher accepts (`pkg/wasm/imagefetcher.go`; the Wasm image spec of
//! solo-io/wasm):
//!
//! - `wasm`: the *oci* variant, an OCI artifact whose config and first layer are the runtime
//!   config (`application/vnd.module.wasm.config.v1+json`) and whose second layer is the module
//!   itself (`application/vnd.module.wasm.content.layer.v1+wasm`, uncompressed). Istio requires
//!   exactly these two layers.
//! - `compat`: the Docker-compatible variant, a Docker schema 2 image with one gzipped tar layer
//!   holding `plugin.wasm`, for registries that refuse custom media types. Envoy Gateway reads
//!   it too.
//!
//! Both are written as OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/…`), which
//! `skopeo`, `oras` and `crane` copy to a registry, or pushed by `registry::push`.
pub mod layout;
pub mod registry;
pub mod tar;

use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The file name Istio looks for in a compat image's layer.
pub const COMPAT_FILE: &str = "plugin.wasm";
/// The proxy-wasm root context the filter registers (the WasmPlugin's `pluginName`).
pub const ROOT_ID: &str = "aurelis";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("building the archive: {0}")]
    Archive(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("registry {url}: {message}")]
    Registry { url: String, message: String },
    #[error("the image layout in {dir}: {message}")]
    Layout { dir: String, message: String },
}

/// Which of the two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Wasm,
    Compat,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Wasm, Variant::Compat];

    /// The layout's directory name under the output directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::Wasm => "wasm",
            Variant::Compat => "compat",
        }
    }
}

/// Content-addressed bytes with their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob { media_type: media_type.to_string(), bytes }
    }

    /// `sha256:<64 hex>`.
    pub fn digest(&self) -> String {
        sha256_digest(&self.bytes)
    }

    fn descriptor(&self, title: Option<&str>) -> serde_json::Value {
        let mut d = json!({ "mediaType": self.media_type, "digest": self.digest(), "size": self.bytes.len() });
        if let Some(title) = title {
            d["annotations"] = json!({ "org.opencontainers.image.title": title });
        }
        d
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A manifest and the blobs it names (config first, then the layers).
#[derive(Debug, Clone)]
pub struct Image {
    pub variant: Variant,
    pub manifest: Blob,
    pub blobs: Vec<Blob>,
}

impl Image {
    /// What `url: oci://…@<digest>` pins: the manifest's digest.
    pub fn digest(&self) -> String {
        self.manifest.digest()
    }
}

/// The module in the given form; the same bytes always give the same digests.
pub fn image(variant: Variant, wasm: &[u8]) -> Result<Image, OciError> {
    match variant {
        Variant::Wasm => Ok(wasm_variant(wasm)),
        Variant::Compat => compat_variant(wasm),
    }
}

fn wasm_variant(wasm: &[u8]) -> Image {
    let runtime = json!({ "type": "envoy_proxy", "abiVersions": ["v0_2_1"], "config": { "root_ids": [ROOT_ID] } });
    let config = Blob::new(WASM_CONFIG, runtime.to_string().into_bytes());
    let module = Blob::new(WASM_LAYER, wasm.to_vec());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(None),
        "layers": [config.descriptor(Some("runtime-config.json")), module.descriptor(Some("plugin.wasm"))],
    });
    Image {
        variant: Variant::Wasm,
        manifest: Blob::new(OCI_MANIFEST, manifest.to_string().into_bytes()),
        blobs: vec![config, module],
    }
}

fn compat_variant(wasm: &[u8]) -> Result<Image, OciError> {
    let archive = tar::single_file(COMPAT_FILE, wasm)?;
    // mtime 0 and no file name in the gzip header: reproducible.
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(&archive)?;
    let layer = Blob::new(DOCKER_LAYER, gz.finish()?);
    let config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&archive)] },
    });
    let config = Blob::new(DOCKER_CONFIG, config.to_string().into_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(None),
        "layers": [layer.descriptor(None)],
    });
    Ok(Image {
        variant: Variant::Compat,
        manifest: Blob::new(DOCKER_MANIFEST, manifest.to_string().into_bytes()),
        blobs: vec![config, layer],
    })
}

/// The module inside an image, the way Istio's fetcher finds it: the `+wasm` layer of the oci
/// variant, `plugin.wasm` in the compat variant's gzipped tar layer.
pub fn extract_module(variant: Variant, layers: &[Blob]) -> Result<Vec<u8>, OciError> {
    let missing = |what: &str| OciError::Archive(format!("no {what} in the image"));
    match variant {
        Variant::Wasm => layers
            .iter()
            .find(|b| b.media_type == WASM_LAYER)
            .map(|b| b.bytes.clone())
            .ok_or_else(|| missing(WASM_LAYER)),
        Variant::Compat => {
            let layer = layers.iter().find(|b| b.media_type == DOCKER_LAYER).ok_or_else(|| missing(DOCKER_LAYER))?;
            let mut archive = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(layer.bytes.as_slice()), &mut archive)?;
            tar::read_file(&archive, COMPAT_FILE).ok_or_else(|| missing(COMPAT_FILE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a stand-in module";

    #[test]
    fn the_wasm_variant_has_the_two_layers_istio_requires() {
        let image = image(Variant::Wasm, MODULE).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1]["mediaType"], WASM_LAYER);
        assert_eq!(layers[1]["digest"], sha256_digest(MODULE));
        assert_eq!(extract_module(Variant::Wasm, &image.blobs).unwrap(), MODULE);
    }

    #[test]
    fn the_compat_variant_is_a_docker_image_with_plugin_wasm() {
        let image = image(Variant::Compat, MODULE).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
        assert_eq!(manifest["layers"][0]["mediaType"], DOCKER_LAYER);
        assert_eq!(extract_module(Variant::Compat, &image.blobs).unwrap(), MODULE);
    }

    #[test]
    fn digests_are_reproducible_and_follow_the_module() {
        for variant in Variant::ALL {
            let a = image(variant, MODULE).unwrap();
            assert_eq!(a.digest(), image(variant, MODULE).unwrap().digest(), "{variant:?}");
            assert_ne!(a.digest(), image(variant, b"\0asm other").unwrap().digest(), "{variant:?}");
        }
    }
}

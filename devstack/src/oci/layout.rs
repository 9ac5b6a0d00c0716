//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), with the
//! manifest digest written next to it in `digest` for scripts and manifests to pin.
use super::{Blob, Image, OciError, Variant};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The file beside `index.json` that holds the manifest digest (`sha256:…`).
pub const DIGEST_FILE: &str = "digest";

/// Writes `image` as a layout in `dir` (replacing one there) under the tag `tag`.
pub fn write(image: &Image, dir: &Path, tag: &str) -> Result<(), OciError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    for blob in image.blobs.iter().chain(std::iter::once(&image.manifest)) {
        std::fs::write(blob_path(dir, &blob.digest()), &blob.bytes)?;
    }
    std::fs::write(dir.join("oci-layout"), json!({ "imageLayoutVersion": "1.0.0" }).to_string())?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": image.manifest.media_type,
            "digest": image.digest(),
            "size": image.manifest.bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).map_err(|e| layout_error(dir, e))?)?;
    std::fs::write(dir.join(DIGEST_FILE), format!("{}\n", image.digest()))?;
    Ok(())
}

/// Reads back a layout `write` made: the manifest, the tag and the blobs it names.
pub fn read(dir: &Path) -> Result<(Image, String), OciError> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json"))?).map_err(|e| layout_error(dir, e))?;
    let entry = &index["manifests"][0];
    let digest = entry["digest"].as_str().ok_or_else(|| layout_error(dir, "index.json names no manifest"))?;
    let media_type = entry["mediaType"].as_str().unwrap_or(super::OCI_MANIFEST);
    let tag = entry["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or("latest").to_string();
    let manifest = Blob::new(media_type, std::fs::read(blob_path(dir, digest))?);
    let parsed: Value = serde_json::from_slice(&manifest.bytes).map_err(|e| layout_error(dir, e))?;
    let mut blobs = Vec::new();
    let layers = parsed["layers"].as_array().cloned().unwrap_or_default();
    for descriptor in std::iter::once(&parsed["config"]).chain(layers.iter()) {
        let (Some(digest), Some(media_type)) = (descriptor["digest"].as_str(), descriptor["mediaType"].as_str()) else {
            return Err(layout_error(dir, "a descriptor without digest or mediaType"));
        };
        if blobs.iter().any(|b: &Blob| b.digest() == digest) {
            continue; // the oci variant names its config twice (config and first layer)
        }
        blobs.push(Blob::new(media_type, std::fs::read(blob_path(dir, digest))?));
    }
    let variant = if media_type == super::DOCKER_MANIFEST { Variant::Compat } else { Variant::Wasm };
    Ok((Image { variant, manifest, blobs }, tag))
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn layout_error(dir: &Path, message: impl std::fmt::Display) -> OciError {
    OciError::Layout { dir: dir.display().to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        for variant in Variant::ALL {
            let image = super::super::image(variant, b"\0asm module bytes").unwrap();
            let at = dir.path().join(variant.dir_name());
            write(&image, &at, "v1").unwrap();
            let (back, tag) = read(&at).unwrap();
            assert_eq!((back.digest(), back.variant, tag.as_str()), (image.digest(), variant, "v1"));
            assert_eq!(back.blobs, image.blobs);
            let pinned = std::fs::read_to_string(at.join(DIGEST_FILE)).unwrap();
            assert_eq!(pinned.trim(), image.digest());
        }
    }
}

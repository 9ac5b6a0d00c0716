//! Push to and pull from a registry over the Distribution HTTP API (`/v2/`), the way `docker
//! push`/`pull` and Istio's fetcher talk to it: blobs first (monolithic upload), then the
//! manifest; pulls by digest, each blob checked against its digest.
use super::{sha256_digest, Blob, Image, OciError, Variant};
use std::io::Read;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest blob a pull accepts (the module is about 1 MiB).
const MAX_BLOB_BYTES: u64 = 64 << 20;

/// Where an image lives: `http://127.0.0.1:5000` and `aurelis/filter`.
#[derive(Debug, Clone)]
pub struct Repository {
    pub base_url: String,
    pub name: String,
}

impl Repository {
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base_url.trim_end_matches('/'), self.name)
    }

    fn error(&self, message: impl std::fmt::Display) -> OciError {
        OciError::Registry { url: self.base_url.clone(), message: message.to_string() }
    }
}

/// Uploads every blob the registry lacks, then the manifest under `tag`; returns the digest the
/// registry reports for the manifest (the one to pin).
pub fn push(repo: &Repository, image: &Image, tag: &str) -> Result<String, OciError> {
    for blob in &image.blobs {
        let digest = blob.digest();
        if ureq::head(&repo.url(&format!("blobs/{digest}"))).timeout(TIMEOUT).call().is_ok() {
            continue;
        }
        let started = ureq::post(&repo.url("blobs/uploads/"))
            .timeout(TIMEOUT)
            .call()
            .map_err(|e| repo.error(format!("starting the upload of {digest}: {e}")))?;
        let location = started.header("location").ok_or_else(|| repo.error("upload without a Location"))?;
        let location = if location.starts_with("http") {
            location.to_string()
        } else {
            format!("{}{location}", repo.base_url.trim_end_matches('/'))
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{location}{separator}digest={digest}"))
            .timeout(TIMEOUT)
            .set("content-type", "application/octet-stream")
            .send_bytes(&blob.bytes)
            .map_err(|e| repo.error(format!("uploading {digest}: {e}")))?;
    }
    let response = ureq::put(&repo.url(&format!("manifests/{tag}")))
        .timeout(TIMEOUT)
        .set("content-type", &image.manifest.media_type)
        .send_bytes(&image.manifest.bytes)
        .map_err(|e| repo.error(format!("putting the manifest: {}", describe(e))))?;
    let digest = response.header("docker-content-digest").map(str::to_string).unwrap_or_else(|| image.digest());
    if digest != image.digest() {
        return Err(repo.error(format!("stored the manifest as {digest}, expected {}", image.digest())));
    }
    Ok(digest)
}

/// The manifest `digest` names and its blobs, each checked against its digest.
pub fn pull(repo: &Repository, digest: &str) -> Result<Image, OciError> {
    let accept = format!("{},{}", super::OCI_MANIFEST, super::DOCKER_MANIFEST);
    let response = ureq::get(&repo.url(&format!("manifests/{digest}")))
        .timeout(TIMEOUT)
        .set("accept", &accept)
        .call()
        .map_err(|e| repo.error(format!("getting manifest {digest}: {}", describe(e))))?;
    let media_type = response.content_type().to_string();
    let manifest = Blob { media_type: media_type.clone(), bytes: read_body(repo, response)? };
    if manifest.digest() != digest {
        return Err(repo.error(format!("manifest {digest} came back as {}", manifest.digest())));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.bytes).map_err(|e| repo.error(e))?;
    let layers = parsed["layers"].as_array().cloned().unwrap_or_default();
    let mut blobs: Vec<Blob> = Vec::new();
    for descriptor in std::iter::once(&parsed["config"]).chain(layers.iter()) {
        let (Some(want), Some(blob_type)) = (descriptor["digest"].as_str(), descriptor["mediaType"].as_str()) else {
            return Err(repo.error("a descriptor without digest or mediaType"));
        };
        if blobs.iter().any(|b| b.digest() == want) {
            continue;
        }
        let response = ureq::get(&repo.url(&format!("blobs/{want}")))
            .timeout(TIMEOUT)
            .call()
            .map_err(|e| repo.error(format!("getting blob {want}: {}", describe(e))))?;
        let bytes = read_body(repo, response)?;
        if sha256_digest(&bytes) != want {
            return Err(repo.error(format!("blob {want} came back with digest {}", sha256_digest(&bytes))));
        }
        blobs.push(Blob { media_type: blob_type.to_string(), bytes });
    }
    let variant = if media_type == super::DOCKER_MANIFEST { Variant::Compat } else { Variant::Wasm };
    Ok(Image { variant, manifest, blobs })
}

fn read_body(repo: &Repository, response: ureq::Response) -> Result<Vec<u8>, OciError> {
    let mut bytes = Vec::new();
    response.into_reader().take(MAX_BLOB_BYTES).read_to_end(&mut bytes).map_err(|e| repo.error(e))?;
    Ok(bytes)
}

/// A registry's refusal with its JSON error body (which says what it did not like).
fn describe(error: ureq::Error) -> String {
    match error {
        ureq::Error::Status(code, response) => format!("{code} {}", response.into_string().unwrap_or_default()),
        other => other.to_string(),
    }
}

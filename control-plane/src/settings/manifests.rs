//! Filter configurations inside Kubernetes manifests, for `check-config`: an Istio
//! `WasmPlugin`'s `spec.pluginConfig`, the JSON string an `EnvoyFilter` extension config
//! carries (`configuration.value`), and an Envoy Gateway `EnvoyExtensionPolicy`'s
//! `spec.wasm[].config`. Each is validated by `FilterConfig::from_json`, the filter's own code.
use anyhow::{anyhow, Context, Result};
use aurelis_core::config::FilterConfig;
use serde_json::Value;

/// One embedded configuration: where it is (`WasmPlugin/aurelis spec.pluginConfig`) and its
/// JSON.
pub struct Embedded {
    pub place: String,
    pub json: Vec<u8>,
}

/// `Some` when `text` is Kubernetes manifests (every document has `apiVersion` and `kind`):
/// the filter configurations they embed, possibly none.
pub fn embedded_filter_configs(text: &str) -> Result<Option<Vec<Embedded>>> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let Ok(value) = <Value as serde::Deserialize>::deserialize(document) else { return Ok(None) };
        if value.is_null() {
            continue;
        }
        if value.get("apiVersion").is_none() || value.get("kind").is_none() {
            return Ok(None);
        }
        documents.push(value);
    }
    if documents.is_empty() {
        return Ok(None);
    }
    let mut found = Vec::new();
    for doc in &documents {
        let id = format!("{}/{}", doc["kind"].as_str().unwrap_or("?"), doc["metadata"]["name"].as_str().unwrap_or("?"));
        let mut add = |place: String, config: &Value| -> Result<()> {
            let json = match config {
                // An EnvoyFilter carries the filter's configuration as a JSON string.
                Value::String(text) => text.clone().into_bytes(),
                other => serde_json::to_vec(other)?,
            };
            found.push(Embedded { place: format!("{id} {place}"), json });
            Ok(())
        };
        match doc["kind"].as_str() {
            Some("WasmPlugin") => add("spec.pluginConfig".into(), &doc["spec"]["pluginConfig"])?,
            Some("EnvoyFilter") => {
                for (i, patch) in doc["spec"]["configPatches"].as_array().into_iter().flatten().enumerate() {
                    let config = &patch["patch"]["value"]["typed_config"]["config"];
                    let is_wasm = patch["patch"]["value"]["typed_config"]["@type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("filters.http.wasm.v3.Wasm"));
                    if patch["applyTo"] == "EXTENSION_CONFIG" && is_wasm {
                        let place = format!("spec.configPatches[{i}] configuration.value");
                        add(place, &config["configuration"]["value"])?;
                    }
                }
            }
            Some("EnvoyExtensionPolicy") => {
                for (i, wasm) in doc["spec"]["wasm"].as_array().into_iter().flatten().enumerate() {
                    add(format!("spec.wasm[{i}].config"), &wasm["config"])?;
                }
            }
            _ => {}
        }
    }
    Ok(Some(found))
}

/// Validates every embedded configuration; the error names the manifest and the field.
pub fn check(embedded: &[Embedded]) -> Result<()> {
    for e in embedded {
        FilterConfig::from_json(&e.json).map_err(|err| anyhow!("{err}")).with_context(|| e.place.clone())?;
    }
    Ok(())
}

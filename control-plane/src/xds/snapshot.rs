//! An immutable, versioned set of resources. Each type's version is a hash of its resources'
//! names and encoded bytes: stable across restarts and replicas, so an Envoy that reconnects
//! with the version it already has is sent nothing.
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeResources {
    pub version: String,
    /// By resource name.
    pub resources: BTreeMap<String, Any>,
    /// Each resource's own content hash, for incremental (delta) xDS.
    pub resource_versions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    types: BTreeMap<&'static str, TypeResources>,
}

impl Snapshot {
    pub fn builder() -> SnapshotBuilder {
        SnapshotBuilder { types: BTreeMap::new() }
    }

    /// Resources of a type; an empty set (version of nothing) for types we do not serve.
    pub fn get(&self, type_url: &str) -> Option<&TypeResources> {
        self.types.get(type_url)
    }

    pub fn version(&self, type_url: &str) -> String {
        self.get(type_url).map(|t| t.version.clone()).unwrap_or_else(empty_version)
    }

    /// Versions of every type, for the admin status and metrics.
    pub fn versions(&self) -> BTreeMap<&'static str, String> {
        self.types.iter().map(|(t, r)| (*t, r.version.clone())).collect()
    }

    /// Resource names of a type (what a wildcard subscription gets).
    pub fn names(&self, type_url: &str) -> Vec<String> {
        self.get(type_url).map(|t| t.resources.keys().cloned().collect()).unwrap_or_default()
    }
}

pub struct SnapshotBuilder {
    types: BTreeMap<&'static str, BTreeMap<String, Any>>,
}

impl SnapshotBuilder {
    pub fn add<T: Message + Name>(&mut self, type_url: &'static str, name: &str, resource: &T) {
        let any = Any { type_url: T::type_url(), value: resource.encode_to_vec() };
        debug_assert_eq!(any.type_url, type_url, "resource added under the wrong type");
        self.types.entry(type_url).or_default().insert(name.to_string(), any);
    }

    pub fn build(self) -> Snapshot {
        let types = self
            .types
            .into_iter()
            .map(|(type_url, resources)| {
                let resource_versions = resources
                    .iter()
                    .map(|(name, any)| (name.clone(), version_of(&BTreeMap::from([(name.clone(), any.clone())]))))
                    .collect();
                (type_url, TypeResources { version: version_of(&resources), resources, resource_versions })
            })
            .collect();
        Snapshot { types }
    }
}

fn version_of(resources: &BTreeMap<String, Any>) -> String {
    let mut hash = Sha256::new();
    for (name, any) in resources {
        // Length-prefixed, so no two different sets can hash the same concatenation.
        for part in [name.as_bytes(), any.value.as_slice()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    let digest = hash.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn empty_version() -> String {
    version_of(&BTreeMap::new())
}

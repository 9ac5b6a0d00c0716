//! Snapshots for the protocol unit tests (state of the world and delta).
use super::resources::{compile, EndpointId, Inputs};
use super::snapshot::Snapshot;
use crate::model::{Model, Secrets};
use aurelis_core::config::FilterConfig;
use std::collections::BTreeSet;

pub fn snapshot_with(model: &Model, filter: &FilterConfig) -> Snapshot {
    compile(&Inputs {
        model,
        filter,
        secrets: &Secrets::default(),
        unhealthy: &BTreeSet::<EndpointId>::new(),
        wasm_path: "/x.wasm",
    })
}

/// The embedded default model with default filter settings.
pub fn snapshot() -> Snapshot {
    snapshot_with(&Model::embedded_default(), &FilterConfig::default())
}

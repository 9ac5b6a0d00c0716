//! The Envoys connected over ADS, for the admin status: who, since when, which version of each
//! resource type they accepted, and the last thing they rejected (with Envoy's own message).
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    pub acked_version: Option<String>,
    pub last_nack: Option<NackStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NackStatus {
    pub version: String,
    pub message: String,
    pub at_unix_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStatus {
    pub stream_id: u64,
    pub node_id: String,
    pub node_cluster: String,
    pub peer: String,
    pub connected_at_unix_ms: u64,
    /// By short type name (`cds`, `eds`, `ecds`, `lds`, `rds`).
    pub types: BTreeMap<&'static str, TypeStatus>,
}

#[derive(Default)]
pub struct Clients {
    streams: Mutex<BTreeMap<u64, ClientStatus>>,
}

impl Clients {
    pub fn connect(&self, status: ClientStatus) {
        self.lock().insert(status.stream_id, status);
    }

    pub fn disconnect(&self, stream_id: u64) {
        self.lock().remove(&stream_id);
    }

    pub fn update(&self, stream_id: u64, change: impl FnOnce(&mut ClientStatus)) {
        if let Some(status) = self.lock().get_mut(&stream_id) {
            change(status);
        }
    }

    pub fn list(&self) -> Vec<ClientStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ClientStatus>> {
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

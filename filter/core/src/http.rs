//! Plain HTTP values the flow exchanges with its host: header maps, local replies, callouts.
//! No host types: the same values serve the proxy-wasm host, a native host and the tests.

/// A header map read from the host in one call (one host call instead of one per header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// First value of `name` (lowercase, as Envoy stores header names).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A local reply: the filter answers the client itself. Header names are the filter's own
/// (static), values are built per reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// An HTTP call from the filter to a cluster (the L2 cache service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// Response headers the filter sets.
pub const HEADER_CACHE: &str = "x-aurelis-cache";
pub const HEADER_REASON: &str = "x-aurelis-cache-reason";
pub const HEADER_LEVEL: &str = "x-aurelis-cache-level";
pub const HEADER_KEY_INFO: &str = "x-aurelis-cache-key-info";

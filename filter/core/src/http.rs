//! Plain HTTP values the flow exchanges with its host: header maps, local replies, callouts.
//! No host types: the same values serve the proxy-wasm host, a native host and the tests.

/// A header map read from the host in one call (one host call instead of one per header).
///
/// Names and values share one buffer, so reading a map costs a host one or two allocations
/// instead of two per header: a native L1 hit spent ~3% of its instructions turning ~12
/// request headers into 24 `String`s and freeing them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per header: where its name starts, where its value starts (the name's end), where the
    /// value ends, in `text`.
    spans: Vec<(usize, usize, usize)>,
}

impl Headers {
    /// An empty map with room for `count` headers of `bytes` bytes (names and values).
    pub fn with_capacity(count: usize, bytes: usize) -> Headers {
        Headers { text: String::with_capacity(bytes), spans: Vec::with_capacity(count) }
    }

    /// Adds a header (after those already there; names as the host gives them).
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let value_start = self.text.len();
        self.text.push_str(value);
        self.spans.push((start, value_start, self.text.len()));
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().filter_map(|&(start, value_start, end)| {
            Some((self.text.get(start..value_start)?, self.text.get(value_start..end)?))
        })
    }

    /// First value of `name` (lowercase, as Envoy stores header names).
    pub fn get(&self, name: &str) -> Option<&str> {
        // Names compared as bytes: the flow asks ~14 times per request, each a scan of the map.
        let bytes = self.text.as_bytes();
        let &(_, value_start, end) = self
            .spans
            .iter()
            .find(|&&(start, value_start, _)| bytes.get(start..value_start) == Some(name.as_bytes()))?;
        self.text.get(value_start..end)
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Headers {
        let mut headers = Headers::default();
        for (name, value) in pairs {
            headers.push(name.as_ref(), value.as_ref());
        }
        headers
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Headers {
        pairs.into_iter().collect()
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

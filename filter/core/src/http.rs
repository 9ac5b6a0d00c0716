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

    /// A map from a host's raw name and value bytes (`count` headers of `bytes` bytes in all),
    /// with one UTF-8 check over the whole buffer instead of two per header (a native hit spent
    /// ~2k instructions on 22 separate checks). A header whose name or value is not UTF-8 on
    /// its own is left out, as `push` callers do.
    pub fn from_bytes<'a, I>(count: usize, bytes: usize, pairs: I) -> Headers
    where
        I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        let mut text = Vec::with_capacity(bytes);
        let mut spans = Vec::with_capacity(count);
        for (name, value) in pairs.clone() {
            let start = text.len();
            text.extend_from_slice(name);
            let value_start = text.len();
            text.extend_from_slice(value);
            spans.push((start, value_start, text.len()));
        }
        if let Ok(text) = String::from_utf8(text) {
            // Valid as a whole, each part is valid too when every cut is a char boundary (a
            // character split across a name and its value is not).
            let cuts_whole = spans
                .iter()
                .all(|&(_, value_start, end)| text.is_char_boundary(value_start) && text.is_char_boundary(end));
            if cuts_whole {
                return Headers { text, spans };
            }
        }
        let mut headers = Headers::with_capacity(count, bytes);
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
                headers.push(name, value);
            }
        }
        headers
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

#[cfg(test)]
mod tests {
    use super::*;

    fn from_pairs(pairs: &[(&[u8], &[u8])]) -> Headers {
        let bytes = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        Headers::from_bytes(pairs.len(), bytes, pairs.iter().copied())
    }

    #[test]
    fn raw_bytes_make_the_same_map_as_pushes() {
        let map = from_pairs(&[(b":path", b"/v1/chat/completions"), (b"x-note", "caf\u{e9}".as_bytes())]);
        let pushed: Headers = vec![(":path", "/v1/chat/completions"), ("x-note", "caf\u{e9}")].into_iter().collect();
        assert_eq!(map, pushed);
        assert_eq!(map.get("x-note"), Some("caf\u{e9}"));
    }

    #[test]
    fn a_header_that_is_not_utf8_on_its_own_is_left_out() {
        let invalid = from_pairs(&[(b"a", b"1"), (b"bad", &[0xff, 0xfe]), (b"c", b"3")]);
        assert_eq!(invalid.iter().collect::<Vec<_>>(), vec![("a", "1"), ("c", "3")]);
        // "é" is 0xc3 0xa9: split between a name and its value, the whole buffer is valid UTF-8
        // but neither part is.
        let split = from_pairs(&[(b"n\xc3", b"\xa9v"), (b"ok", b"yes")]);
        assert_eq!(split.iter().collect::<Vec<_>>(), vec![("ok", "yes")]);
        assert_eq!(split.get("ok"), Some("yes"));
    }
}

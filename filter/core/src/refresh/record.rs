//! The refresh record: what the filter keeps (in the cache service's L3, encrypted there like
//! the answers) so that an entry can be refreshed by replaying its request. Written only for
//! tenants that opted in, only by the filter, and sealed with the fleet's L2 signing key over
//! the namespace, the cache key and the identity it was made for: the cache service (or anyone
//! who can write to L3) can hand a record back, but cannot make one for another identity.
//!
//! Encoding: `ARR1` | seal (32) | kind, label, tenant, path, body (each a big-endian u32 length
//! and the bytes) | header count (u32) | name, value pairs (same framing).
use super::grant::kind_from;
use super::update_parts;
use crate::auth::IdentityKind;
use crate::cache::sealed::SigningKey;
use hmac::Mac;

const MAGIC: [u8; 4] = *b"ARR1";
const DOMAIN: &[u8] = b"aurelis-refresh-record-v1\0";
/// More headers than a request's keyed ones means the record is not ours.
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seal: [u8; 32],
    pub kind: IdentityKind,
    /// The consumer (rate limits) the replay acts as.
    pub label: String,
    /// The tenant whose scope the entry is in.
    pub tenant: String,
    /// `:path` with its keyed query.
    pub path: String,
    /// The keyed headers the request had (they are part of the key) and its content type.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The seal of a record for `key` in `namespace`, made for this identity.
pub fn seal(
    signing_key: &SigningKey,
    namespace: &str,
    key: &str,
    kind: IdentityKind,
    label: &str,
    tenant: &str,
) -> [u8; 32] {
    mac(signing_key, namespace, key, kind, label, tenant).finalize().into_bytes().into()
}

fn mac(
    signing_key: &SigningKey,
    namespace: &str,
    key: &str,
    kind: IdentityKind,
    label: &str,
    tenant: &str,
) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = signing_key.keyed();
    let parts = [namespace.as_bytes(), key.as_bytes(), kind.as_str().as_bytes(), label.as_bytes(), tenant.as_bytes()];
    update_parts(&mut mac, DOMAIN, &parts);
    mac
}

/// Whether `seal` is the fleet's seal for this key and identity (constant-time comparison).
pub fn seal_checks(
    signing_key: &SigningKey,
    namespace: &str,
    key: &str,
    kind: IdentityKind,
    label: &str,
    tenant: &str,
    seal: &[u8; 32],
) -> bool {
    mac(signing_key, namespace, key, kind, label, tenant).verify_slice(seal).is_ok()
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    // Bodies are bounded by `max_body_bytes` (at most 64 MiB): the length always fits.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(n)
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.path.len() + self.body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.seal);
        for part in [self.kind.as_str().as_bytes(), self.label.as_bytes(), self.tenant.as_bytes(), self.path.as_bytes()]
        {
            put(&mut out, part);
        }
        put(&mut out, &self.body);
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            put(&mut out, name.as_bytes());
            put(&mut out, value.as_bytes());
        }
        out
    }

    /// `None` for anything that is not a whole record of this version.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return None;
        }
        let seal = r.take(32)?.try_into().ok()?;
        let kind = kind_from(&r.text()?)?;
        let (label, tenant, path) = (r.text()?, r.text()?, r.text()?);
        let body = r.bytes()?.to_vec();
        let count = r.u32()?;
        if count > MAX_HEADERS {
            return None;
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            headers.push((r.text()?, r.text()?));
        }
        if !r.0.is_empty() || !path.starts_with('/') {
            return None;
        }
        Some(Record { seal, kind, label, tenant, path, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SigningKey {
        SigningKey::from_env_value(Some(text)).unwrap().unwrap()
    }

    const FLEET: &str = "fleet-signing-key-of-at-least-32-bytes";

    fn record() -> Record {
        Record {
            seal: seal(&key(FLEET), "aurelis", "k1", IdentityKind::ApiKey, "alice", "team-a"),
            kind: IdentityKind::ApiKey,
            label: "alice".into(),
            tenant: "team-a".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"model":"m","messages":[]}"#.to_vec(),
        }
    }

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        let encoded = record().encode();
        assert_eq!(Record::decode(&encoded), Some(record()));
        for cut in 0..encoded.len() {
            assert_eq!(Record::decode(&encoded[..cut]), None, "cut at {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(Record::decode(&longer), None, "trailing bytes");
    }

    #[test]
    fn the_seal_binds_key_identity_and_namespace() {
        let s = record().seal;
        let checks = |ns, k, kind, label, tenant| seal_checks(&key(FLEET), ns, k, kind, label, tenant, &s);
        assert!(checks("aurelis", "k1", IdentityKind::ApiKey, "alice", "team-a"));
        assert!(!checks("aurelis", "k2", IdentityKind::ApiKey, "alice", "team-a"), "another key");
        assert!(!checks("aurelis", "k1", IdentityKind::ApiKey, "alice", "team-b"), "another tenant");
        assert!(!checks("aurelis", "k1", IdentityKind::ApiKey, "bob", "team-a"), "another consumer");
        assert!(!checks("aurelis", "k1", IdentityKind::Jwt, "alice", "team-a"), "another kind");
        assert!(!checks("other", "k1", IdentityKind::ApiKey, "alice", "team-a"), "another namespace");
        let other = key("another-signing-key-of-at-least-32-bytes");
        assert!(!seal_checks(&other, "aurelis", "k1", IdentityKind::ApiKey, "alice", "team-a", &s));
    }
}

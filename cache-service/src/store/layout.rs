//! Redis key layout and input validation: pure functions, no I/O, time passed in.
//!
//! - `<namespace>:e:<key>` holds an entry (see `codec` for the value format).
//! - `<namespace>:i:<dimension>:<value>` is a sorted set indexing the entries stored with that
//!   tag: members are entry keys (without the namespace prefix), scores their expiry in Unix ms.
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest key or namespace, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest tag value (tenant, model, schema), in bytes.
pub const MAX_TAG_BYTES: usize = 128;
/// TTL bounds, in seconds: at least one second, at most 30 days.
pub const MAX_TTL_SECONDS: u64 = 2_592_000;

/// A tag dimension entries can be purged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    Tenant,
    Model,
    Schema,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::Tenant, Dimension::Model, Dimension::Schema];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant",
            Dimension::Model => "model",
            Dimension::Schema => "schema",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was wrong with a caller-supplied name, tag or TTL. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidInput {
    pub field: String,
    pub problem: String,
}

fn invalid(field: &str, problem: String) -> InvalidInput {
    InvalidInput { field: field.to_string(), problem }
}

fn name_byte_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'+' | b'/' | b'=' | b'-')
}

/// Keys and namespaces: 1..=256 bytes of `[A-Za-z0-9:_.+/=-]`. No braces, so a key can never
/// carry a Redis Cluster hash tag of its own and slots stay spread by the whole key.
pub fn validate_name(field: &str, value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(invalid(field, "is empty".into()));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(field, format!("is {} bytes long, at most {MAX_NAME_BYTES} allowed", value.len())));
    }
    if let Some((at, b)) = value.bytes().enumerate().find(|(_, b)| !name_byte_allowed(*b)) {
        return Err(invalid(
            field,
            format!("byte 0x{b:02x} at offset {at} is not allowed (use A-Z a-z 0-9 and `:_.+/=-`)"),
        ));
    }
    Ok(())
}

/// Tag values: 1..=128 printable ASCII bytes, no spaces.
pub fn validate_tag(dimension: Dimension, value: &str) -> Result<(), InvalidInput> {
    let field = format!("{dimension} tag");
    if value.is_empty() {
        return Err(invalid(&field, "is empty".into()));
    }
    if value.len() > MAX_TAG_BYTES {
        return Err(invalid(&field, format!("is {} bytes long, at most {MAX_TAG_BYTES} allowed", value.len())));
    }
    if let Some((at, b)) = value.bytes().enumerate().find(|(_, b)| !b.is_ascii_graphic()) {
        return Err(invalid(&field, format!("byte 0x{b:02x} at offset {at} is not printable ASCII without spaces")));
    }
    Ok(())
}

pub fn validate_ttl(ttl_seconds: u64) -> Result<(), InvalidInput> {
    if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(invalid("ttl_seconds", format!("{ttl_seconds} is outside 1..={MAX_TTL_SECONDS}")));
    }
    Ok(())
}

pub fn entry_key(namespace: &str, key: &str) -> String {
    format!("{namespace}:e:{key}")
}

pub fn index_key(namespace: &str, dimension: Dimension, value: &str) -> String {
    format!("{namespace}:i:{dimension}:{value}")
}

/// Unix milliseconds of `now`; clocks before 1970 count as 0.
pub fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The index score of an entry stored at `now` for `ttl`: its expiry in Unix ms.
pub fn expiry_score(now: SystemTime, ttl: Duration) -> u64 {
    unix_ms(now).saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_filter_key_shape() {
        validate_name("key", "model_request:v1:t-3f2a:0123abcd:json").unwrap();
        validate_name("key", "a/b+c=d.e-f_g").unwrap();
        validate_name("key", &"k".repeat(256)).unwrap();
    }

    #[test]
    fn names_are_refused_naming_the_problem() {
        assert_eq!(validate_name("key", "").unwrap_err().to_string(), "key: is empty");
        let long = validate_name("key", &"k".repeat(257)).unwrap_err().to_string();
        assert!(long.contains("257 bytes"), "{long}");
        let bad = validate_name("namespace", "a b").unwrap_err().to_string();
        assert_eq!(bad, "namespace: byte 0x20 at offset 1 is not allowed (use A-Z a-z 0-9 and `:_.+/=-`)");
        assert!(validate_name("key", "a{tag}").is_err(), "braces would create hash tags");
        assert!(validate_name("key", "é").is_err());
    }

    #[test]
    fn tags_are_printable_ascii_without_spaces() {
        validate_tag(Dimension::Tenant, "t-1{x}!").unwrap();
        validate_tag(Dimension::Model, &"m".repeat(128)).unwrap();
        assert!(validate_tag(Dimension::Model, &"m".repeat(129)).is_err());
        let err = validate_tag(Dimension::Schema, "a b").unwrap_err().to_string();
        assert!(err.starts_with("schema tag: byte 0x20 at offset 1"), "{err}");
        assert!(validate_tag(Dimension::Tenant, "").is_err());
        assert!(validate_tag(Dimension::Tenant, "a\n").is_err());
    }

    #[test]
    fn ttl_bounds() {
        validate_ttl(1).unwrap();
        validate_ttl(MAX_TTL_SECONDS).unwrap();
        assert!(validate_ttl(0).is_err());
        assert!(validate_ttl(MAX_TTL_SECONDS + 1).unwrap_err().to_string().contains("ttl_seconds"));
    }

    #[test]
    fn key_layout_and_scores() {
        assert_eq!(entry_key("aurelis", "k:1"), "aurelis:e:k:1");
        assert_eq!(index_key("aurelis", Dimension::Tenant, "t1"), "aurelis:i:tenant:t1");
        let now = UNIX_EPOCH + Duration::from_millis(1_000);
        assert_eq!(unix_ms(now), 1_000);
        assert_eq!(expiry_score(now, Duration::from_secs(2)), 3_000);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}

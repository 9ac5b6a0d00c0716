//! Request headers of the cache API, parsed into store options. Absent headers take the
//! service defaults; present but malformed ones are refused (400), never silently ignored.
use super::error::ApiError;
use crate::store::{PutOptions, Tags};
use axum::http::HeaderMap;
use std::time::Duration;

pub const NAMESPACE: &str = "x-aurelis-namespace";
pub const TTL_SECONDS: &str = "x-aurelis-ttl-seconds";
pub const COMPRESS_MIN_BYTES: &str = "x-aurelis-compress-min-bytes";
pub const TENANT: &str = "x-aurelis-tenant";
pub const MODEL: &str = "x-aurelis-model";
pub const SCHEMA: &str = "x-aurelis-schema";
pub const DEFAULT_NAMESPACE: &str = "aurelis";

/// Defaults for headers a PUT leaves out, from the settings.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub ttl: Duration,
    pub compress_min_bytes: usize,
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| v.to_str().map_err(|_| ApiError::BadRequest(format!("header {name}: not visible ASCII"))))
        .transpose()
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, ApiError> {
    text(headers, name)?
        .map(|v| v.trim().parse().map_err(|_| ApiError::BadRequest(format!("header {name}: `{v}` is not a number"))))
        .transpose()
}

/// The namespace; validated by the store with the key.
pub fn namespace(headers: &HeaderMap) -> Result<&str, ApiError> {
    Ok(text(headers, NAMESPACE)?.unwrap_or(DEFAULT_NAMESPACE))
}

/// TTL, compression threshold and tags of a PUT. Tag values are validated by the store.
pub fn put_options(headers: &HeaderMap, defaults: Defaults) -> Result<PutOptions, ApiError> {
    let ttl = number::<u64>(headers, TTL_SECONDS)?.map_or(defaults.ttl, Duration::from_secs);
    let compress_min_bytes = number(headers, COMPRESS_MIN_BYTES)?.unwrap_or(defaults.compress_min_bytes);
    let tag = |name| text(headers, name).map(|v| v.map(str::to_string));
    let tags = Tags { tenant: tag(TENANT)?, model: tag(MODEL)?, schema: tag(SCHEMA)? };
    Ok(PutOptions { ttl, compress_min_bytes, tags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const DEFAULTS: Defaults = Defaults { ttl: Duration::from_secs(3600), compress_min_bytes: 1024 };

    #[test]
    fn absent_headers_take_the_defaults() {
        let headers = HeaderMap::new();
        assert_eq!(namespace(&headers).unwrap(), "aurelis");
        let options = put_options(&headers, DEFAULTS).unwrap();
        assert_eq!(
            options,
            PutOptions { ttl: Duration::from_secs(3600), compress_min_bytes: 1024, tags: Tags::default() }
        );
    }

    #[test]
    fn present_headers_override() {
        let mut headers = HeaderMap::new();
        for (name, value) in
            [(NAMESPACE, "ns"), (TTL_SECONDS, "60"), (COMPRESS_MIN_BYTES, "0"), (TENANT, "t1"), (SCHEMA, "s")]
        {
            headers.insert(name, HeaderValue::from_static(value));
        }
        assert_eq!(namespace(&headers).unwrap(), "ns");
        let options = put_options(&headers, DEFAULTS).unwrap();
        assert_eq!((options.ttl.as_secs(), options.compress_min_bytes), (60, 0));
        assert_eq!(options.tags, Tags { tenant: Some("t1".into()), model: None, schema: Some("s".into()) });
    }

    #[test]
    fn malformed_headers_are_refused_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(TTL_SECONDS, HeaderValue::from_static("soon"));
        let err = put_options(&headers, DEFAULTS).unwrap_err().to_string();
        assert_eq!(err, "header x-aurelis-ttl-seconds: `soon` is not a number");
        let mut headers = HeaderMap::new();
        headers.insert(TENANT, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(put_options(&headers, DEFAULTS).unwrap_err().to_string().contains("x-aurelis-tenant"));
    }
}

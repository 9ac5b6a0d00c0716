//! Calls to the L2 cache service through its Envoy cluster (`dispatch_http_call`): Envoy brings
//! pooling, HTTP/2, timeouts, circuit breaking and outlier detection. Every failure is an L2
//! miss (fail open), counted by kind. With an API token (from Envoy's environment, see
//! `authorization_from_env`) every call carries `authorization: Bearer <token>`.
use crate::host;
use aurelis_core::cache::l2::{self as core_l2, InvalidToken, TOKEN_ENV};
use aurelis_core::config::L2Config;
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// Stores are fire-and-forget from the root context; give them longer than lookups.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// A store queued by a request, dispatched by the root context (which outlives requests: a
/// call made from a finished request's context would be cancelled with it).
pub struct PendingStore {
    pub key: String,
    pub value: Vec<u8>,
    pub model: Option<String>,
    pub tenant: Option<String>,
}

fn path(key: &str) -> String {
    format!("/v1/entries/{key}")
}

/// The `authorization` header value for L2 calls, read once per configuration from the VM's
/// environment: Envoy exposes its own `AURELIS_L2_TOKEN` there when the Wasm `vm_config` lists
/// it in `environment_variables.host_env_keys` (WASI `environ_get`). Unset or empty: no header.
/// A value that cannot be a header is left out (the service then refuses the calls and L2
/// fails open); the log says so, without the value.
pub fn authorization_from_env() -> Option<String> {
    let raw = match std::env::var(TOKEN_ENV) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(InvalidToken),
    };
    match raw.and_then(|value| core_l2::authorization(value.as_deref())) {
        Ok(header) => header,
        Err(InvalidToken) => {
            host::log(
                LogLevel::Warn,
                &format!("aurelis: {TOKEN_ENV} is not printable ASCII without spaces: L2 calls are sent without it"),
            );
            None
        }
    }
}

/// Starts a lookup; the answer arrives in the calling context's `on_http_call_response`.
pub fn lookup(config: &L2Config, authorization: Option<&str>, key: &str) -> Option<u32> {
    let path = path(key);
    let mut headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", config.authority.as_str()),
        ("x-aurelis-namespace", config.namespace.as_str()),
    ];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    hostcalls::dispatch_http_call(&config.cluster, headers, None, vec![], Duration::from_millis(config.timeout_ms)).ok()
}

pub fn store(config: &L2Config, authorization: Option<&str>, pending: &PendingStore) -> Option<u32> {
    let path = path(&pending.key);
    let ttl = config.ttl_seconds.to_string();
    let compress = config.compress_min_bytes.to_string();
    let mut headers = vec![
        (":method", "PUT"),
        (":path", path.as_str()),
        (":authority", config.authority.as_str()),
        ("content-type", "application/octet-stream"),
        ("x-aurelis-namespace", config.namespace.as_str()),
        ("x-aurelis-ttl-seconds", ttl.as_str()),
        ("x-aurelis-compress-min-bytes", compress.as_str()),
        ("x-aurelis-schema", "v1"),
    ];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    // Tags let an operator purge by model or tenant; values the service would refuse are left out.
    let tag_ok = |v: &&String| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    if let Some(model) = pending.model.as_ref().filter(tag_ok) {
        headers.push(("x-aurelis-model", model.as_str()));
    }
    if let Some(tenant) = pending.tenant.as_ref().filter(tag_ok) {
        headers.push(("x-aurelis-tenant", tenant.as_str()));
    }
    hostcalls::dispatch_http_call(&config.cluster, headers, Some(&pending.value), vec![], STORE_TIMEOUT).ok()
}

/// The `:status` of the call answer being delivered, if any (none on timeout or reset).
pub fn response_status() -> Option<u16> {
    hostcalls::get_map_value(proxy_wasm::types::MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

pub fn response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, size).ok().flatten()
}

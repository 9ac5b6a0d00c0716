//! Result-returning wrappers over proxy-wasm host calls. Every failure becomes a value the
//! caller handles (usually: treat as a miss and carry on), never a panic.
use aurelis_core::cache::{SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::time::UNIX_EPOCH;

/// Envoy's process-wide shared data: one map for every worker of this VM id.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((value, cas)) => Ok((value, cas)),
            Err(Status::NotFound) => Ok((None, None)),
            Err(_) => Err(StoreError::Host),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Host),
        }
    }
}

/// Wall-clock milliseconds from the host; 0 if the host cannot tell (entries then look fresh
/// only to other readers with the same broken clock, which is harmless).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// A header map read from Envoy in one host call. Each host call that returns data costs a
/// round trip into the VM's allocator, so the filter reads a whole map once instead of asking
/// header by header (measured: fewer host calls is most of the filter's per-request cost).
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn request() -> Headers {
        Headers(hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default())
    }

    pub fn response() -> Headers {
        Headers(hostcalls::get_map(MapType::HttpResponseHeaders).unwrap_or_default())
    }

    /// First value of `name` (lowercase, as Envoy stores header names).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub fn set_response_header(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
}

/// Sets (or with `None` removes) a request header. Envoy clears the route cache when a filter
/// changes request headers, so the router matches on the new value.
pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

pub fn request_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten()
}

pub fn response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten()
}

pub fn log(level: proxy_wasm::types::LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

pub fn send_local_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)).is_ok()
}

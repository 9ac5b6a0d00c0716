//! The null native filter: every hook Envoy 1.40's dynamic-module ABI (v0.2.0) requires, none
//! of which calls back into Envoy. Request headers pause, the body is buffered until its end,
//! then the request goes on; everything else passes. `aurelis-bench` puts it where the Aurelis
//! module goes, so its rows show what the dynamic-module boundary alone costs (the null
//! proxy-wasm filter's role for Wasm).
use std::ffi::{c_char, c_void};

/// The ABI version Envoy checks at load (the filter's `native_abi` test pins the same one).
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's `envoy_dynamic_module_type_envoy_buffer`, passed by value.
#[repr(C)]
pub struct Buffer {
    pub ptr: *const c_char,
    pub length: usize,
}

const HEADERS_CONTINUE: u32 = 0;
const HEADERS_STOP: u32 = 1;
const BODY_CONTINUE: u32 = 0;
const BODY_STOP_AND_BUFFER: u32 = 1;

/// Something non-null to hand Envoy as the configuration and each filter (never read).
static TOKEN: u8 = 0;

fn token() -> *const c_void {
    std::ptr::addr_of!(TOKEN).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config: *mut c_void,
    _name: Buffer,
    _json: Buffer,
) -> *const c_void {
    token()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: Buffer,
    _config: Buffer,
) -> *const c_void {
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: *const c_void,
    _filter: *mut c_void,
) -> *const c_void {
    token()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter: *mut c_void,
    _module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if end_of_stream {
        HEADERS_CONTINUE
    } else {
        HEADERS_STOP
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter: *mut c_void,
    _module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if end_of_stream {
        BODY_CONTINUE
    } else {
        BODY_STOP_AND_BUFFER
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter: *mut c_void,
    _module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter: *mut c_void,
    _module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_filter: *mut c_void, _module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter: *mut c_void,
    _module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _chunks: *const c_void,
    _chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter: *mut c_void,
    _module: *const c_void,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config: *mut c_void,
    _module: *const c_void,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config: *mut c_void,
    _module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _chunks: *const c_void,
    _chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _headers: *const c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _data: *const c_void,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _trailers: *const c_void,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter: *mut c_void,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter: *mut c_void,
    _module: *const c_void,
) {
}

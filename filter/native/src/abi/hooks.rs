//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), one line of translation each.
//!
//! Every hook catches panics (`guard`): unwinding into Envoy's C++ would abort the process. A
//! caught panic is logged, counted (`aurelis_errors_total.kind.panic`) and the request is let
//! go on (`Continue`, or resumed when it was paused) — unless the filter authenticates clients:
//! then it is the gate, and the request is refused with a 503 instead (fail closed, as the
//! control plane's `failure_policy` makes the Wasm VM do).
//!
//! Re-entrancy: a local reply sent from one of a stream's own callbacks runs that stream's
//! response hooks before `send_response` returns. The stream is then already borrowed, so the
//! nested hook answers `Continue` without touching it — what the flow does for its own local
//! replies anyway (they carry their own headers and are never stored).
use super::ffi::{EnvoyBuffer, EnvoyHttpHeader};
use super::{CalloutAnswer, Config, Filter, ABI_VERSION_C};
use crate::factory::Factory;
use crate::stream::Stream;
use aurelis_core::flow::Action;
use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

const HEADERS_CONTINUE: u32 = 0;
/// `..._request_headers_status_StopIteration`: hold the headers, keep delivering the body.
const HEADERS_STOP: u32 = 1;
const BODY_CONTINUE: u32 = 0;
/// `..._body_status_StopIterationAndBuffer`: hold the body (Envoy keeps buffering it).
const BODY_STOP_AND_BUFFER: u32 = 1;

/// Runs `f`, turning a panic into `fallback` (logged and counted).
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        crate::panics::record(&panic);
        fallback
    })
}

/// The stream behind a filter's module pointer.
///
/// SAFETY (for callers): `module` is a pointer returned by `on_http_filter_new` and not yet
/// passed to `on_http_filter_destroy`; Envoy calls a stream's hooks on its worker thread only.
unsafe fn stream<'a>(module: *const c_void) -> &'a RefCell<Stream> {
    // SAFETY: per this function's contract, `module` is a live `Box<RefCell<Stream>>`.
    unsafe { &*(module as *const RefCell<Stream>) }
}

/// Runs a stream event unless the stream is already in one of its own callbacks (see the
/// module comment); after a panic, `recover` decides what happens to the stream.
fn stream_event<T>(
    filter: *mut c_void,
    module: *const c_void,
    nested: T,
    f: impl FnOnce(&mut Stream, Filter) -> T,
    recover: impl FnOnce(&mut Stream, Filter) -> T,
) -> T {
    let filter = Filter(filter);
    // SAFETY: Envoy passes the pointer `on_http_filter_new` returned, on the stream's thread.
    let cell = unsafe { stream(module) };
    let Ok(mut stream) = cell.try_borrow_mut() else { return nested };
    let result = catch_unwind(AssertUnwindSafe(|| f(&mut stream, filter)));
    result.unwrap_or_else(|panic| {
        crate::panics::record(&panic);
        catch_unwind(AssertUnwindSafe(|| recover(&mut stream, filter))).unwrap_or(nested)
    })
}

/// After a panic in a request callback: the action `Stream::after_panic` chose.
fn recover_request(s: &mut Stream, f: Filter) -> Action {
    s.after_panic(f)
}

/// After a panic outside Envoy's decode callbacks (the stream may be paused): resume it, or
/// leave it answered with a 503.
fn recover_paused(s: &mut Stream, f: Filter) {
    if s.after_panic(f) == Action::Continue {
        f.continue_decoding();
    }
}

fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => HEADERS_CONTINUE,
        Action::Pause => HEADERS_STOP,
    }
}

fn body_status(action: Action) -> u32 {
    match action {
        Action::Continue => BODY_CONTINUE,
        Action::Pause => BODY_STOP_AND_BUFFER,
    }
}

/// The factory behind a configuration's module pointer.
///
/// SAFETY (for callers): `module` was returned by `on_http_filter_config_new` and not yet
/// passed to `on_http_filter_config_destroy`.
unsafe fn factory<'a>(module: *const c_void) -> &'a Arc<Factory> {
    // SAFETY: per this function's contract, `module` is a live `Box<Arc<Factory>>`.
    unsafe { &*(module as *const Arc<Factory>) }
}

fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: Envoy passes arrays of `len` elements valid for the duration of the hook; the
    // slices never leave it.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION_C.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config: *mut c_void,
    name: EnvoyBuffer,
    json: EnvoyBuffer,
) -> *const c_void {
    guard(std::ptr::null(), || {
        let name = slice(name.ptr, name.length);
        let json = slice(json.ptr, json.length);
        match Factory::new(Config(config), name, json) {
            // Null refuses the configuration: Envoy keeps the previous one.
            None => std::ptr::null(),
            Some(factory) => Box::into_raw(Box::new(factory)) as *const c_void,
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(module: *const c_void) {
    guard((), || {
        // SAFETY: `module` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
        let factory = unsafe { Box::from_raw(module as *mut Arc<Factory>) };
        factory.retire();
    })
}

/// Per-route configuration is not used: refused.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: *const c_void, filter: *mut c_void) -> *const c_void {
    guard(std::ptr::null(), || {
        // SAFETY: Envoy passes the pointer `config_new` returned, still alive.
        let factory = unsafe { factory(config) };
        let stream = Stream::new(factory, Filter(filter));
        Box::into_raw(Box::new(RefCell::new(stream))) as *const c_void
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_event(
        filter,
        module,
        HEADERS_CONTINUE,
        |s, f| headers_status(s.on_request_headers(f, end_of_stream)),
        |s, f| headers_status(recover_request(s, f)),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_event(
        filter,
        module,
        BODY_CONTINUE,
        |s, f| body_status(s.on_request_body(f, end_of_stream)),
        |s, f| body_status(recover_request(s, f)),
    )
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
    filter: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // The request was admitted already: a panic here lets the answer through.
    stream_event(
        filter,
        module,
        HEADERS_CONTINUE,
        |s, f| headers_status(s.on_response_headers(f, end_of_stream)),
        |_, _| HEADERS_CONTINUE,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_event(
        filter,
        module,
        BODY_CONTINUE,
        |s, f| body_status(s.on_response_body(f, end_of_stream)),
        |_, _| BODY_CONTINUE,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(filter: *mut c_void, module: *const c_void) {
    stream_event(filter, module, (), |s, f| s.on_stream_complete(f), |_, _| ())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    guard((), || {
        // SAFETY: `module` came from `Box::into_raw` in `filter_new`; Envoy destroys it once,
        // after the stream's last hook.
        let stream = unsafe { Box::from_raw(module as *mut RefCell<Stream>) };
        stream.into_inner().destroy();
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter: *mut c_void,
    module: *const c_void,
    _callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    let answer = CalloutAnswer::read(result, slice(headers, headers_size), slice(chunks, chunks_size));
    stream_event(filter, module, (), |s, f| s.on_callout_done(f, &answer), recover_paused)
}

/// A worker event (tick or wake-up) delivered through whichever stream holds the worker's
/// scheduler: it acts on the worker, not on that stream.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter: *mut c_void,
    _module: *const c_void,
    event: u64,
) {
    guard((), || crate::thread::on_scheduled(event))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config: *mut c_void,
    module: *const c_void,
    event: u64,
) {
    guard((), || {
        // SAFETY: Envoy passes the pointer `config_new` returned, still alive.
        unsafe { factory(module) }.on_scheduled(event);
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config: *mut c_void,
    module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    guard((), || {
        let answer = CalloutAnswer::read(result, slice(headers, headers_size), slice(chunks, chunks_size));
        // SAFETY: Envoy passes the pointer `config_new` returned, still alive.
        unsafe { factory(module) }.on_callout_answer(callout_id, &answer);
    })
}

// Hooks Envoy requires but this filter has no use for (streamed callouts, watermarks).

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream: u64,
    _trailers: *const EnvoyHttpHeader,
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

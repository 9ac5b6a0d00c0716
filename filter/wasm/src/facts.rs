//! Where the Wasm filter publishes each request's facts. proxy-wasm cannot write Envoy's
//! dynamic metadata (Envoy issue 15148); what it can write is filter state, through
//! `set_property`, which Envoy stores under `wasm.<name>`. Declared once per configuration
//! (Envoy's `declare_property` foreign function) as a protobuf `google.protobuf.Struct`, the
//! object is one host call per request and the access log reads its fields with CEL:
//! `%CEL(filter_state['wasm.aurelis'].cache_status)%`, the same values the native module
//! writes into dynamic metadata (`control-plane/src/xds/resources/access_log.rs`).
use aurelis_core::flow::facts::NAMESPACE;
use proxy_wasm::hostcalls;

const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// `envoy.source.extensions.common.wasm.WasmType.Protobuf`.
const WASM_TYPE_PROTOBUF: u8 = 3;

/// Declares the `aurelis` property's type. `false` if Envoy refused (already declared by this
/// root context, which is fine, or a host without the foreign function: the facts then are
/// plain bytes the access log cannot read field by field).
pub fn declare_property() -> bool {
    let mut args = Vec::with_capacity(64);
    field(&mut args, 1, NAMESPACE.as_bytes());
    // type = 3 (varint); readonly = 2 and span = 5 stay at their defaults (writable, the
    // filter chain's life).
    args.extend_from_slice(&[3 << 3, WASM_TYPE_PROTOBUF]);
    field(&mut args, 4, STRUCT_TYPE_URL.as_bytes());
    hostcalls::call_foreign_function("declare_property", Some(&args)).is_ok()
}

/// A length-delimited protobuf field (short values only: lengths below 128).
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    out.push(u8::try_from(bytes.len()).unwrap_or(0x7f) & 0x7f);
    out.extend_from_slice(bytes);
}

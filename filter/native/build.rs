//! The module's Envoy callbacks are defined by Envoy itself when it loads the module, so this
//! crate's unit-test binary (which links the exported hooks) cannot resolve them: let the
//! linker leave them undefined (a shared library may anyway). The unit tests never call Envoy.
fn main() {
    println!("cargo:rustc-link-arg=-Wl,--unresolved-symbols=ignore-all");
}

//! ECDS: the Aurelis Wasm filter's configuration, as a named extension config the listener
//! refers to. Changing a filter setting re-sends only this resource; Envoy swaps the plugin
//! config in place, keeps the listener, and (same `vm_id`) keeps the L1 cache in shared data.
//! Static renderings inline the same plugin block (`wasm_plugin`).
use super::proto::any;
use aurelis_core::config::FilterConfig;
use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source::Specifier, AsyncDataSource, DataSource, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config::Vm, EnvironmentVariables, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue};

/// The name of the filter in the listener and of the ECDS resource.
pub const FILTER_NAME: &str = "aurelis.filter";

pub fn extension_config(filter: &FilterConfig, wasm_path: &str) -> TypedExtensionConfig {
    // FilterConfig serializes infallibly (plain data); an empty object would mean defaults.
    let configuration = serde_json::to_string(filter).unwrap_or_else(|_| "{}".into());
    let plugin = wasm_plugin(configuration, wasm_path, failure_policy(filter));
    TypedExtensionConfig { name: FILTER_NAME.into(), typed_config: Some(any(&plugin)) }
}

/// What Envoy does when the filter's VM fails. With client authentication configured, the
/// filter is the gate: failing open would let every request through unauthenticated (and with
/// the provider's credential), so a crashed VM is replaced for the next request and anything
/// else fails closed (503). Without authentication, serving uncached beats refusing.
pub fn failure_policy(filter: &FilterConfig) -> FailurePolicy {
    if filter.auth.authenticates_clients() {
        FailurePolicy::FailReload
    } else {
        FailurePolicy::FailOpen
    }
}

/// The Aurelis Wasm filter: the one definition of its plugin block, pushed over ECDS and inlined
/// in every static rendering (`bootstrap`). `configuration` is the filter's JSON, passed as is
/// (the filter itself refuses an invalid one); `failure` from `failure_policy`.
pub fn wasm_plugin(configuration: String, wasm_path: &str, failure: FailurePolicy) -> Wasm {
    Wasm {
        config: Some(PluginConfig {
            name: "aurelis".into(),
            root_id: "aurelis".into(),
            vm: Some(Vm::VmConfig(VmConfig {
                // The L1 cache lives in shared data keyed by vm_id: keep it stable so a config
                // change does not empty the cache.
                vm_id: "aurelis".into(),
                runtime: "envoy.wasm.runtime.v8".into(),
                code: Some(AsyncDataSource {
                    specifier: Some(async_data_source::Specifier::Local(DataSource {
                        specifier: Some(Specifier::Filename(wasm_path.to_string())),
                        ..Default::default()
                    })),
                }),
                // The L2 API token and signing key stay in each Envoy's own environment: the VM
                // may read those variables (Envoy skips unset ones). Only their names are pushed,
                // never a value, so they show neither here nor in Envoy's /config_dump.
                environment_variables: Some(EnvironmentVariables {
                    host_env_keys: vec![
                        aurelis_core::cache::l2::TOKEN_ENV.into(),
                        aurelis_core::cache::sealed::SIGNING_KEY_ENV.into(),
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            })),
            configuration: Some(any(&StringValue { value: configuration })),
            failure_policy: failure as i32,
            // Lets the filter hold the request headers while it reads the body (Envoy >= 1.35).
            allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
            ..Default::default()
        }),
    }
}

//! ECDS: the Aurelis filter's configuration, as a named extension config the listener
//! refers to. Changing a filter setting re-sends only this resource; Envoy swaps the plugin
//! config in place, keeps the listener, and keeps the L1 cache (Wasm: shared data of the same
//! `vm_id`; native: the module's process memory). Static renderings inline the same block
//! (`typed_filter`). The model chooses the host per listener (`listener.filter`): the Wasm
//! plugin or the native dynamic module, with the same JSON configuration.
use super::proto::any;
use crate::model::FilterHost;
use aurelis_core::config::FilterConfig;
use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source::Specifier, AsyncDataSource, DataSource, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config::Vm, EnvironmentVariables, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue, StringValue};
use prost::Name;

/// The name of the filter in the listener and of the ECDS resource.
pub const FILTER_NAME: &str = "aurelis.filter";

/// The native module's name: Envoy loads `lib<name>.so` from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const NATIVE_MODULE: &str = "aurelis_native";

pub fn extension_config(filter: &FilterConfig, host: FilterHost, wasm_path: &str) -> TypedExtensionConfig {
    // FilterConfig serializes infallibly (plain data); an empty object would mean defaults.
    let configuration = serde_json::to_string(filter).unwrap_or_else(|_| "{}".into());
    TypedExtensionConfig {
        name: FILTER_NAME.into(),
        typed_config: Some(typed_filter(host, configuration, wasm_path, failure_policy(filter))),
    }
}

/// What Envoy does when the filter's VM fails. With client authentication configured, the
/// filter is the gate: failing open would let every request through unauthenticated (and with
/// the provider's credential), so a crashed VM is replaced for the next request and anything
/// else fails closed (503). Without authentication, serving uncached beats refusing. (The
/// native filter makes the same choice itself when it catches a panic: `filter/native`.)
pub fn failure_policy(filter: &FilterConfig) -> FailurePolicy {
    if filter.auth.authenticates_clients() {
        FailurePolicy::FailReload
    } else {
        FailurePolicy::FailOpen
    }
}

/// The filter block for `host`, as Envoy's typed config (`failure` applies to the Wasm VM).
pub fn typed_filter(host: FilterHost, configuration: String, wasm_path: &str, failure: FailurePolicy) -> Any {
    match host {
        FilterHost::Wasm => any(&wasm_plugin(configuration, wasm_path, failure)),
        FilterHost::Native => any(&native_filter(configuration)),
    }
}

/// The type URL a listener's ECDS subscription accepts for `host`.
pub fn type_url(host: FilterHost) -> String {
    match host {
        FilterHost::Wasm => Wasm::type_url(),
        FilterHost::Native => DynamicModuleFilter::type_url(),
    }
}

/// The Aurelis native filter (`filter/native`): the same JSON as the Wasm plugin's
/// `configuration`, as the module's `filter_config`.
pub fn native_filter(configuration: String) -> DynamicModuleFilter {
    DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            name: NATIVE_MODULE.into(),
            // Never unloaded: the module runs a ticker thread and keeps per-thread state and
            // the L1 cache in process memory, which must outlive any one configuration.
            do_not_close: true,
            ..Default::default()
        }),
        filter_name: "aurelis".into(),
        filter_config: Some(any(&StringValue { value: configuration })),
        ..Default::default()
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
                        // Verifies refresh grants (refresh-ahead, opt-in per tenant).
                        aurelis_core::refresh::SECRET_ENV.into(),
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

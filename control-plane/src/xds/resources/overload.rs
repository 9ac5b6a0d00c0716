//! Envoy's overload manager in every shipped bootstrap: a fixed heap budget sized from the L1
//! cache budget, shrinking the heap when it runs high and refusing new requests before the
//! kernel would kill the process. The control plane reads the pressure back (Envoy's
//! `overload.*` stats) and lowers the fleet's L1 budget while it lasts.
use super::proto::{any, millis};
use envoy_types::pb::envoy::config::overload::v3::{
    resource_monitor, trigger::TriggerOneof, OverloadAction, OverloadManager, ResourceMonitor, ThresholdTrigger,
    Trigger,
};
use envoy_types::pb::envoy::extensions::resource_monitors::cpu_utilization::v3::CpuUtilizationConfig;
use envoy_types::pb::envoy::extensions::resource_monitors::fixed_heap::v3::FixedHeapConfig;

pub const HEAP_MONITOR: &str = "envoy.resource_monitors.fixed_heap";
/// Read only by the control plane (its `pressure` stat is the CPU input of the scaling
/// recommendation); no action is triggered by it.
pub const CPU_MONITOR: &str = "envoy.resource_monitors.cpu_utilization";
pub const SHRINK_HEAP: &str = "envoy.overload_actions.shrink_heap";
pub const STOP_ACCEPTING_REQUESTS: &str = "envoy.overload_actions.stop_accepting_requests";

/// Heap pressure at which Envoy returns free memory to the system.
pub const SHRINK_HEAP_AT: f64 = 0.90;
/// Heap pressure at which Envoy answers new requests with 503 instead of taking them.
pub const STOP_ACCEPTING_AT: f64 = 0.98;

/// What Envoy itself needs besides the cache (connections, buffers, the Wasm VMs' bookkeeping).
const ENVOY_BASE_HEAP: u64 = 256 * 1024 * 1024;

/// The heap budget for an L1 of `l1_max_bytes`: the cache may hold twice its payload size in
/// allocator terms (keys, entry headers, fragmentation), on top of Envoy's own base.
pub fn heap_budget(l1_max_bytes: u64) -> u64 {
    ENVOY_BASE_HEAP.saturating_add(l1_max_bytes.saturating_mul(2))
}

pub fn overload_manager(max_heap_bytes: u64) -> OverloadManager {
    let action = |name: &str, at: f64| OverloadAction {
        name: name.into(),
        triggers: vec![Trigger {
            name: HEAP_MONITOR.into(),
            trigger_oneof: Some(TriggerOneof::Threshold(ThresholdTrigger { value: at })),
        }],
        ..Default::default()
    };
    OverloadManager {
        refresh_interval: millis(250),
        resource_monitors: vec![
            ResourceMonitor {
                name: HEAP_MONITOR.into(),
                config_type: Some(resource_monitor::ConfigType::TypedConfig(any(&FixedHeapConfig {
                    max_heap_size_bytes: max_heap_bytes,
                    ..Default::default()
                }))),
            },
            ResourceMonitor {
                name: CPU_MONITOR.into(),
                // The host's CPU (`/proc/stat`): works in and out of containers; a container's
                // own share would need cgroup v2 files that not every runtime mounts.
                config_type: Some(resource_monitor::ConfigType::TypedConfig(any(&CpuUtilizationConfig::default()))),
            },
        ],
        actions: vec![action(SHRINK_HEAP, SHRINK_HEAP_AT), action(STOP_ACCEPTING_REQUESTS, STOP_ACCEPTING_AT)],
        ..Default::default()
    }
}

//! The compile step, checked on the decoded Envoy protos: what Envoy is told for a model.
use super::*;
use crate::model::FilterHost;
use crate::xds::{CLUSTER, ENDPOINT, ROUTE};
use envoy_types::pb::envoy::config::cluster::v3::{cluster::ClusterDiscoveryType, cluster::DiscoveryType, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, transport_socket::ConfigType, HealthStatus,
};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint::HostIdentifier, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier, RouteAction,
    RouteConfiguration,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use prost::Message;

const MODEL: &str = r#"
providers:
  - name: local
    base_url: http://10.0.0.1:8000/v1
    endpoints:
      - { address: 10.0.0.1:8000 }
      - { address: 10.0.0.2:8000, weight: 3 }
  - name: hosted
    base_url: https://api.example.com/v1
    headers:
      - { name: authorization, value_from_env: AURELIS_TEST_KEY, prefix: "Bearer " }
    limits: { consecutive_5xx: 7, max_connections: 64 }
models:
  - name: gpt-4o-mini
    providers:
      - { provider: local, weight: 70 }
      - { provider: hosted, weight: 30 }
  - name: gpt-4o
    providers:
      - { provider: hosted, weight: 100 }
filter:
  auth:
    consumers: [{ name: team, key_sha256: ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"] }]
"#;

fn model(yaml: &str) -> Model {
    Model::from_yaml(yaml).unwrap()
}

fn secrets(model: &Model) -> Secrets {
    match model.resolve_secrets(|name| (name == "AURELIS_TEST_KEY").then(|| "k-123".to_string())) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn snapshot(model: &Model, unhealthy: &BTreeSet<EndpointId>) -> Snapshot {
    let filter = model.filter_config().unwrap();
    compile(&Inputs { model, filter: &filter, secrets: &secrets(model), unhealthy, wasm_path: "/w.wasm" })
}

fn decode<T: Message + Default>(snapshot: &Snapshot, type_url: &str, name: &str) -> T {
    let resources = snapshot.get(type_url).unwrap_or_else(|| panic!("no {type_url} in the snapshot"));
    let any =
        resources.resources.get(name).unwrap_or_else(|| panic!("no {name} among {:?}", resources.resources.keys()));
    T::decode(any.value.as_slice()).unwrap()
}

fn route_action<'a>(config: &'a RouteConfiguration, route_name: &str) -> &'a RouteAction {
    let route = config.virtual_hosts[0].routes.iter().find(|r| r.name == route_name).unwrap();
    match &route.action {
        Some(Action::Route(action)) => action,
        other => panic!("{route_name}: not a route action: {other:?}"),
    }
}

#[test]
fn models_route_on_the_model_header_to_weighted_clusters() {
    let model = model(MODEL);
    let config: RouteConfiguration = decode(&snapshot(&model, &BTreeSet::new()), ROUTE, ROUTE_CONFIG_NAME);
    let names: Vec<_> = config.virtual_hosts[0].routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["models", "model:gpt-4o-mini", "model:gpt-4o", "model_not_found", "not_found"],
        "no catch-all model unless the file names one"
    );

    let route = &config.virtual_hosts[0].routes[1];
    let matcher = &route.r#match.as_ref().unwrap().headers[0];
    assert_eq!(matcher.name, MODEL_HEADER);
    assert_eq!(MODEL_HEADER, "x-aurelis-model");
    let Some(HeaderMatchSpecifier::StringMatch(m)) = &matcher.header_match_specifier else { panic!("{matcher:?}") };
    assert_eq!(m.match_pattern, Some(MatchPattern::Exact("gpt-4o-mini".into())));

    let Some(ClusterSpecifier::WeightedClusters(weighted)) =
        &route_action(&config, "model:gpt-4o-mini").cluster_specifier
    else {
        panic!("not weighted clusters")
    };
    let weights: Vec<_> = weighted.clusters.iter().map(|c| (c.name.as_str(), c.weight.unwrap().value)).collect();
    assert_eq!(weights, [("failover:gpt-4o-mini:local", 70), ("failover:gpt-4o-mini:hosted", 30)]);
    // Two providers: one retry, on the other provider, for the limits' conditions and a 429.
    let retry = route_action(&config, "model:gpt-4o-mini").retry_policy.as_ref().unwrap();
    assert_eq!(
        (retry.retry_on.as_str(), retry.num_retries.unwrap().value),
        ("5xx,reset,connect-failure,retriable-status-codes", 1)
    );
    assert_eq!(retry.retriable_status_codes, [429]);
    assert_eq!(
        retry.retry_priority.as_ref().map(|p| p.name.as_str()),
        Some("envoy.retry_priorities.previous_priorities")
    );
    // One provider: its own cluster, the limits' retries, no failover.
    let Some(ClusterSpecifier::WeightedClusters(single)) = &route_action(&config, "model:gpt-4o").cluster_specifier
    else {
        panic!("not weighted clusters")
    };
    assert_eq!(single.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["hosted"]);
    let retry = route_action(&config, "model:gpt-4o").retry_policy.as_ref().unwrap();
    assert_eq!((retry.retry_on.as_str(), retry.num_retries.unwrap().value), ("5xx,reset,connect-failure", 3));
    assert!(retry.retry_priority.is_none() && retry.retriable_status_codes.is_empty());
}

#[test]
fn failover_clusters_try_each_provider_once_and_send_each_its_own_credential() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    let model = model(MODEL);
    let snapshot = snapshot(&model, &BTreeSet::new());
    assert_eq!(
        snapshot.names(CLUSTER),
        ["failover:gpt-4o-mini:hosted", "failover:gpt-4o-mini:local", "hosted", "local"],
        "failover clusters for the two-provider model only"
    );
    for (name, order) in
        [("failover:gpt-4o-mini:local", ["local", "hosted"]), ("failover:gpt-4o-mini:hosted", ["hosted", "local"])]
    {
        let cluster: Cluster = decode(&snapshot, CLUSTER, name);
        assert_eq!(cluster.lb_policy, LbPolicy::ClusterProvided as i32);
        let Some(ClusterDiscoveryType::ClusterType(custom)) = &cluster.cluster_discovery_type else { panic!("{name}") };
        assert_eq!(custom.name, "envoy.clusters.aggregate");
        let config = ClusterConfig::decode(custom.typed_config.as_ref().unwrap().value.as_slice()).unwrap();
        assert_eq!(config.clusters, order, "its own provider first, then the other");
        let options = cluster.typed_extension_protocol_options.values().next().unwrap();
        let options = HttpProtocolOptions::decode(options.value.as_slice()).unwrap();
        let filters: Vec<&str> = options.http_filters.iter().map(|f| f.name.as_str()).collect();
        // Only `hosted` has a credential; the provider header, then the codec, come last.
        assert_eq!(
            filters,
            [
                "aurelis.credentials.clear",
                "aurelis.credentials.hosted",
                "aurelis.provider",
                "envoy.filters.http.upstream_codec"
            ]
        );
        let credential = options.http_filters[1].encode_to_vec();
        let credential = String::from_utf8_lossy(&credential);
        assert!(credential.contains("Bearer k-123") && credential.contains("upstream_host_metadata"), "{credential}");
        // The retry budget of the provider asked first (Envoy counts retries on this cluster).
        let limits = &model.provider(order[0]).unwrap().limits;
        let thresholds = &cluster.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(thresholds.max_connections.unwrap().value, limits.max_connections);
    }
    // Every provider endpoint names its provider, which the credential filters match on.
    let endpoints: ClusterLoadAssignment = decode(&snapshot, ENDPOINT, "local");
    let metadata = format!("{:?}", endpoints.endpoints[0].lb_endpoints[0].metadata);
    assert!(metadata.contains("aurelis") && metadata.contains("local"), "{metadata}");
}

#[test]
fn provider_headers_carry_the_resolved_secret_on_their_cluster_only() {
    let model = model(MODEL);
    let config: RouteConfiguration = decode(&snapshot(&model, &BTreeSet::new()), ROUTE, ROUTE_CONFIG_NAME);
    // A one-provider model: the route adds the credential on its weighted cluster.
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &route_action(&config, "model:gpt-4o").cluster_specifier
    else {
        panic!("not weighted clusters")
    };
    let hosted = weighted.clusters.iter().find(|c| c.name == "hosted").unwrap();
    let [option] = hosted.request_headers_to_add.as_slice() else { panic!("{hosted:?}") };
    let header = option.header.as_ref().unwrap();
    assert_eq!((header.key.as_str(), header.value.as_str()), ("authorization", "Bearer k-123"));
    assert_eq!(option.append_action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32);
    // A failover model: the route adds none (the failover cluster does, per attempt).
    let Some(ClusterSpecifier::WeightedClusters(weighted)) =
        &route_action(&config, "model:gpt-4o-mini").cluster_specifier
    else {
        panic!("not weighted clusters")
    };
    assert!(weighted.clusters.iter().all(|c| c.request_headers_to_add.is_empty()), "{weighted:?}");
    assert!(weighted.clusters.iter().all(|c| c.request_headers_to_remove.contains(&"authorization".to_string())));
}

#[test]
fn envoy_env_headers_are_left_for_envoy_to_resolve_and_percent_is_escaped() {
    let yaml = MODEL.replace(
        "      - { name: authorization, value_from_env: AURELIS_TEST_KEY, prefix: \"Bearer \" }\n",
        "      - { name: authorization, envoy_env: PROVIDER_KEY, prefix: \"Bearer 100% \" }\n      \
         - { name: x-org, value_from_env: AURELIS_TEST_KEY }\n",
    );
    let model = model(&yaml);
    assert_eq!(model.provider("hosted").unwrap().headers.len(), 2, "the replacement above applied");
    // Only `value_from_env` is read by the control plane; a literal `%` in it is escaped too.
    let secrets = match model.resolve_secrets(|n| (n == "AURELIS_TEST_KEY").then(|| "a%b".to_string())) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let filter = model.filter_config().unwrap();
    let unhealthy = BTreeSet::new();
    let inputs = Inputs { model: &model, filter: &filter, secrets: &secrets, unhealthy: &unhealthy, wasm_path: "/w" };
    let config: RouteConfiguration = decode(&compile(&inputs), ROUTE, ROUTE_CONFIG_NAME);
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &route_action(&config, "model:gpt-4o").cluster_specifier
    else {
        panic!("not weighted clusters")
    };
    let headers: Vec<_> = weighted.clusters[0]
        .request_headers_to_add
        .iter()
        .map(|o| o.header.as_ref().map(|h| (h.key.as_str(), h.value.as_str())).unwrap())
        .collect();
    assert_eq!(headers, [("authorization", "Bearer 100%% %ENVIRONMENT(PROVIDER_KEY)%"), ("x-org", "a%%b")]);
}

#[test]
fn https_providers_get_tls_with_sni_and_h2_alpn() {
    let model = model(MODEL);
    let snapshot = snapshot(&model, &BTreeSet::new());
    let hosted: Cluster = decode(&snapshot, CLUSTER, "hosted");
    let socket = hosted.transport_socket.as_ref().expect("TLS for https");
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(ConfigType::TypedConfig(any)) = &socket.config_type else { panic!("{socket:?}") };
    let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    assert_eq!(tls.sni, "api.example.com");
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.alpn_protocols.first().map(String::as_str), Some("h2"));
    assert!(common.alpn_protocols.contains(&"http/1.1".to_string()));
    // A host name: Envoy resolves it (DNS cluster), nothing over EDS.
    assert_eq!(hosted.cluster_discovery_type, Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)));
    assert!(!snapshot.get(ENDPOINT).unwrap().resources.contains_key("hosted"));

    let local: Cluster = decode(&snapshot, CLUSTER, "local");
    assert!(local.transport_socket.is_none(), "plain http stays plain");
    assert_eq!(local.cluster_discovery_type, Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)));
}

#[test]
fn clusters_carry_circuit_breakers_and_outlier_detection() {
    let model = model(MODEL);
    let snapshot = snapshot(&model, &BTreeSet::new());
    let local: Cluster = decode(&snapshot, CLUSTER, "local");
    let thresholds = &local.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(thresholds.max_connections.unwrap().value, 1024);
    assert_eq!(thresholds.max_pending_requests.unwrap().value, 1024);
    assert_eq!(thresholds.max_requests.unwrap().value, 1024);
    let budget = thresholds.retry_budget.unwrap();
    assert_eq!((budget.budget_percent.unwrap().value, budget.min_retry_concurrency.unwrap().value), (25.0, 32));
    let outlier = local.outlier_detection.as_ref().unwrap();
    assert_eq!(outlier.consecutive_5xx.unwrap().value, 5);
    assert_eq!(outlier.interval.unwrap().seconds, 30);
    assert_eq!(outlier.base_ejection_time.unwrap().seconds, 30);
    assert_eq!(outlier.max_ejection_percent.unwrap().value, 50);
    let panic = local.common_lb_config.as_ref().unwrap().healthy_panic_threshold.as_ref().unwrap();
    assert_eq!(panic.value, 50.0);
    let connect = local.connect_timeout.unwrap();
    assert_eq!((connect.seconds, connect.nanos), (5, 0));

    // A provider's own limits reach its cluster.
    let hosted: Cluster = decode(&snapshot, CLUSTER, "hosted");
    assert_eq!(hosted.outlier_detection.unwrap().consecutive_5xx.unwrap().value, 7);
    assert_eq!(hosted.circuit_breakers.unwrap().thresholds[0].max_connections.unwrap().value, 64);
}

fn health_by_address(assignment: &ClusterLoadAssignment) -> Vec<(String, u32, i32)> {
    assignment.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| {
            let Some(HostIdentifier::Endpoint(endpoint)) = &e.host_identifier else { panic!("{e:?}") };
            let address = format!("{:?}", endpoint.address);
            (address, e.load_balancing_weight.unwrap().value, e.health_status)
        })
        .collect()
}

#[test]
fn unhealthy_endpoints_are_sent_as_unhealthy() {
    let model = model(MODEL);
    let healthy = snapshot(&model, &BTreeSet::new());
    let all: ClusterLoadAssignment = decode(&healthy, ENDPOINT, "local");
    assert_eq!(all.cluster_name, "local");
    let health = health_by_address(&all);
    assert_eq!(health.len(), 2);
    assert!(health.iter().all(|(_, _, h)| *h == HealthStatus::Healthy as i32), "{health:?}");
    assert_eq!(health.iter().map(|(_, w, _)| *w).collect::<Vec<_>>(), [1, 3], "endpoint weights");

    let down = BTreeSet::from([EndpointId::new("local", "10.0.0.2", 8000)]);
    let snapshot = snapshot(&model, &down);
    let health = health_by_address(&decode(&snapshot, ENDPOINT, "local"));
    assert!(health[0].0.contains("10.0.0.1") && health[0].2 == HealthStatus::Healthy as i32, "{health:?}");
    assert!(health[1].0.contains("10.0.0.2") && health[1].2 == HealthStatus::Unhealthy as i32, "{health:?}");
    // Only EDS changes: Envoy is sent the new endpoints and nothing else.
    assert_ne!(snapshot.version(ENDPOINT), healthy.version(ENDPOINT));
    for other in [CLUSTER, ROUTE, crate::xds::LISTENER, crate::xds::EXTENSION_CONFIG] {
        assert_eq!(snapshot.version(other), healthy.version(other), "{other}");
    }
}

#[test]
fn the_l2_cache_service_gets_the_cluster_the_filter_calls() {
    let yaml = MODEL.replace(
        "filter:\n",
        "cache_service: { endpoints: ['10.0.0.9:18080'] }\nfilter:\n  l2: { enabled: true, cluster: my_l2 }\n",
    );
    let model = model(&yaml);
    let snapshot = snapshot(&model, &BTreeSet::new());
    let l2: Cluster = decode(&snapshot, CLUSTER, "my_l2");
    assert_eq!(l2.name, model.filter_config().unwrap().l2.cluster);
    assert_eq!(l2.cluster_discovery_type, Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)));
    assert_eq!(l2.common_lb_config.unwrap().healthy_panic_threshold.unwrap().value, 0.0);
    let endpoints: ClusterLoadAssignment = decode(&snapshot, ENDPOINT, "my_l2");
    assert!(format!("{:?}", health_by_address(&endpoints)).contains("10.0.0.9"));
    // Without a cache service there is no L2 cluster at all.
    let without = self::snapshot(&self::model(MODEL), &BTreeSet::new());
    assert!(!without.names(CLUSTER).iter().any(|n| n == "my_l2"));
}

#[test]
fn compiling_is_deterministic() {
    let model = model(MODEL);
    let (a, b) = (snapshot(&model, &BTreeSet::new()), snapshot(&model.clone(), &BTreeSet::new()));
    assert!(a == b, "same inputs, same resources");
    assert_eq!(a.versions(), b.versions());
    assert_eq!(a.versions().len(), 5, "cds, eds, ecds, lds, rds");
}

#[test]
fn the_filter_vm_may_read_the_l2_token_from_envoy_and_nothing_carries_its_value() {
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
    use envoy_types::pb::envoy::extensions::wasm::v3::plugin_config::Vm;
    let yaml = MODEL
        .replace("filter:\n", "cache_service: { endpoints: ['10.0.0.9:18080'] }\nfilter:\n  l2: { enabled: true }\n");
    let model = model(&yaml);
    let config: TypedExtensionConfig =
        decode(&snapshot(&model, &BTreeSet::new()), crate::xds::EXTENSION_CONFIG, FILTER_NAME);
    let wasm = Wasm::decode(config.typed_config.unwrap().value.as_slice()).unwrap();
    let plugin = wasm.config.unwrap();
    let Some(Vm::VmConfig(vm)) = plugin.vm else { panic!("no vm_config") };
    assert_eq!(vm.vm_id, "aurelis", "the L1 cache's shared data is keyed by it");
    let env = vm.environment_variables.unwrap();
    assert_eq!(env.host_env_keys, ["AURELIS_L2_TOKEN", "AURELIS_L2_SIGNING_KEY", "AURELIS_REFRESH_SECRET"]);
    assert_eq!(
        env.host_env_keys,
        [
            aurelis_core::cache::l2::TOKEN_ENV,
            aurelis_core::cache::sealed::SIGNING_KEY_ENV,
            aurelis_core::refresh::SECRET_ENV
        ]
    );
    assert!(env.key_values.is_empty(), "values are never pushed, only the name of Envoy's own variable");
    // The filter's JSON configuration has no place for it either.
    let configuration = plugin.configuration.unwrap();
    let json = envoy_types::pb::google::protobuf::StringValue::decode(configuration.value.as_slice()).unwrap().value;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let l2 = json["l2"].as_object().unwrap();
    assert!(l2.keys().all(|k| !k.contains("token")), "{l2:?}");
    assert!(!json.to_string().contains("AURELIS_L2_TOKEN"), "{json}");
    assert!(!json.to_string().contains("AURELIS_L2_SIGNING_KEY") && !json.to_string().contains("signing"), "{json}");
}

#[test]
fn a_native_listener_gets_the_dynamic_module_over_ecds_with_the_same_json() {
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_filter::ConfigType, HttpConnectionManager,
    };
    use prost::Name;
    let wasm = model(MODEL);
    let native = model(&format!("listener: {{ filter: native }}\n{MODEL}"));
    assert_eq!((wasm.listener.filter, native.listener.filter), (FilterHost::Wasm, FilterHost::Native));

    let snapshot = snapshot(&native, &BTreeSet::new());
    let config: TypedExtensionConfig = decode(&snapshot, crate::xds::EXTENSION_CONFIG, FILTER_NAME);
    let typed = config.typed_config.unwrap();
    assert_eq!(typed.type_url, DynamicModuleFilter::type_url());
    let filter = DynamicModuleFilter::decode(typed.value.as_slice()).unwrap();
    let module = filter.dynamic_module_config.unwrap();
    assert_eq!(module.name, NATIVE_MODULE);
    assert!(module.do_not_close, "the module keeps threads and the L1 cache: never unloaded");
    let json = envoy_types::pb::google::protobuf::StringValue::decode(filter.filter_config.unwrap().value.as_slice())
        .unwrap()
        .value;
    assert_eq!(json, serde_json::to_string(&native.filter_config().unwrap()).unwrap(), "the Wasm plugin's JSON");

    // The listener subscribes to the dynamic module's type over ECDS.
    let listener: Listener = decode(&snapshot, crate::xds::LISTENER, LISTENER_NAME);
    let manager = listener.filter_chains[0].filters[0].config_type.clone().unwrap();
    let envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any) = manager else {
        panic!("no typed config")
    };
    let manager = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let aurelis = manager.http_filters.iter().find(|f| f.name == FILTER_NAME).unwrap();
    let Some(ConfigType::ConfigDiscovery(source)) = &aurelis.config_type else { panic!("not ECDS") };
    assert_eq!(source.type_urls, [DynamicModuleFilter::type_url()]);
}

#[test]
fn every_bootstrap_carries_an_overload_manager_sized_from_the_l1_budget() {
    use envoy_types::pb::envoy::extensions::resource_monitors::fixed_heap::v3::FixedHeapConfig;
    let mut m = model(MODEL);
    m.filter["cache"] = serde_json::json!({ "max_bytes": 128 << 20 });
    let static_drop_in = static_bootstrap(StaticBootstrap {
        model: &m,
        filter_json: Some(m.filter.to_string()),
        wasm_path: "/x.wasm",
        admin_address: "127.0.0.1",
        admin_port: 0,
        answer: Answer::Providers,
        extra_http_filters: Vec::new(),
    });
    let ads = ads_bootstrap(AdsBootstrap {
        node_id: "n",
        admin_address: "127.0.0.1",
        admin_port: 0,
        xds_host: "127.0.0.1",
        xds_port: 1,
        delta: false,
        tls: None,
        l1_max_bytes: 128 << 20,
        stats_flush_ms: 5000,
        max_heap_bytes: None,
    });
    for bootstrap in [static_drop_in, ads] {
        let overload = bootstrap.overload_manager.unwrap_or_else(|| panic!("no overload manager"));
        let actions: Vec<&str> = overload.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(actions, [SHRINK_HEAP, STOP_ACCEPTING_REQUESTS]);
        let monitor = overload.resource_monitors.first().and_then(|m| m.config_type.clone());
        let Some(envoy_types::pb::envoy::config::overload::v3::resource_monitor::ConfigType::TypedConfig(any)) =
            monitor
        else {
            panic!("no heap monitor")
        };
        let heap = FixedHeapConfig::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(heap.max_heap_size_bytes, heap_budget(128 << 20));
        assert_eq!(heap.max_heap_size_bytes, (256 << 20) + (256 << 20), "Envoy's base plus twice the L1 budget");
    }
}

#[test]
fn the_ads_bootstrap_streams_a_bounded_set_of_stats_to_the_control_plane() {
    use envoy_types::pb::envoy::config::metrics::v3::{stats_matcher, stats_sink, MetricsServiceConfig};
    let ads = ads_bootstrap(AdsBootstrap {
        node_id: "n",
        admin_address: "127.0.0.1",
        admin_port: 0,
        xds_host: "127.0.0.1",
        xds_port: 1,
        delta: false,
        tls: None,
        l1_max_bytes: 64 << 20,
        stats_flush_ms: 1500,
        max_heap_bytes: Some(8 << 20),
    });
    let [sink] = ads.stats_sinks.as_slice() else { panic!("one sink: {:?}", ads.stats_sinks) };
    assert_eq!(sink.name, "envoy.stat_sinks.metrics_service");
    let Some(stats_sink::ConfigType::TypedConfig(any)) = &sink.config_type else { panic!("typed sink") };
    let config = MetricsServiceConfig::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
    let cluster = config.grpc_service.and_then(|g| g.target_specifier);
    assert!(
        matches!(cluster, Some(envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier::EnvoyGrpc(ref g)) if g.cluster_name == ADS_CLUSTER),
        "over the ADS cluster (its TLS and identity): {cluster:?}"
    );
    assert_eq!(ads.stats_flush_interval.map(|d| (d.seconds, d.nanos)), Some((1, 500_000_000)));
    let matcher = ads.stats_config.and_then(|c| c.stats_matcher).and_then(|m| m.stats_matcher);
    let Some(stats_matcher::StatsMatcher::InclusionList(list)) = matcher else { panic!("an inclusion list") };
    let prefixes: Vec<String> = list
        .patterns
        .iter()
        .filter_map(|p| match &p.match_pattern {
            Some(MatchPattern::Prefix(prefix)) => Some(prefix.clone()),
            _ => None,
        })
        .collect();
    for needed in ["cluster.", "overload.", "wasmcustom.aurelis_", "dynamicmodulescustom.aurelis_", "http."] {
        assert!(prefixes.iter().any(|p| p == needed), "{needed} missing from {prefixes:?}");
    }
    let overload = ads.overload_manager.unwrap_or_else(|| panic!("no overload manager"));
    let monitors: Vec<&str> = overload.resource_monitors.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(monitors, [HEAP_MONITOR, CPU_MONITOR]);
    let Some(envoy_types::pb::envoy::config::overload::v3::resource_monitor::ConfigType::TypedConfig(heap)) =
        overload.resource_monitors[0].config_type.clone()
    else {
        panic!("no heap monitor")
    };
    use envoy_types::pb::envoy::extensions::resource_monitors::fixed_heap::v3::FixedHeapConfig;
    let heap = FixedHeapConfig::decode(heap.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(heap.max_heap_size_bytes, 8 << 20, "a fixed budget overrides the one sized from L1");
}

//! Every shipped Kubernetes manifest (`deploy/kubernetes/*.yaml`) parses, has the kinds and
//! names we expect, and refers only to what our binaries have: each flag, environment variable
//! and listen port is read from the binaries' own clap definitions (plus the secrets each reads
//! from its environment), each probe path is answered (not 404) by the binary's own router on
//! the port the probe names, each file a flag names is under a mounted volume, and every
//! Service, PodDisruptionBudget and ConfigMap reference matches. docker-compose.yml's services
//! are held to the same flag and variable check.
use aurelis_control_plane::model::{Model, Secrets};
use aurelis_control_plane::state::{AppState as CpState, Desired};
use aurelis_core::config::FilterConfig;
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use clap::CommandFactory;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tower::ServiceExt;

fn repo() -> PathBuf {
    aurelis_devstack::paths::repo_root()
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn all_manifests() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| documents(f)).collect()
}

/// What one binary accepts: long flags (without `--`), environment variables, and which flags
/// are listen addresses served by which router.
struct Binary {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
    subcommand: Option<&'static str>,
}

fn binary_of(command: clap::Command, extra_env: &[&str], subcommand: Option<&'static str>) -> Binary {
    let mut flags = BTreeSet::new();
    let mut env = BTreeSet::new();
    let mut add = |cmd: &clap::Command| {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                flags.insert(long.to_string());
            }
            if let Some(var) = arg.get_env() {
                env.insert(var.to_string_lossy().into_owned());
            }
        }
    };
    add(&command);
    for sub in command.get_subcommands() {
        add(sub);
    }
    env.extend(extra_env.iter().map(|e| e.to_string()));
    Binary { flags, env, subcommand }
}

fn control_plane() -> Binary {
    let extra = [aurelis_control_plane::settings::ADMIN_TOKEN_ENV];
    binary_of(aurelis_control_plane::settings::Cli::command(), &extra, Some("serve"))
}

fn cache_service() -> Binary {
    let extra = [aurelis_cache_service::settings::access::TOKEN_ENV];
    binary_of(aurelis_cache_service::settings::Args::command(), &extra, None)
}

/// The router that serves a listen flag's port.
fn router_for(container: &str, flag: &str) -> Router {
    match (container, flag) {
        ("aurelis-control-plane", "admin-listen") => {
            let desired =
                Desired::new(Model::embedded_default(), FilterConfig::default(), Secrets::default(), "m".into());
            aurelis_control_plane::admin::router(CpState::new(desired, None))
        }
        ("aurelis-control-plane", "metrics-listen") => {
            let desired =
                Desired::new(Model::embedded_default(), FilterConfig::default(), Secrets::default(), "m".into());
            aurelis_control_plane::metrics::router(CpState::new(desired, None).metrics)
        }
        ("aurelis-cache", "listen") | ("aurelis-cache", "metrics-listen") => {
            let args = ["aurelis-cache", "--allow-unauthenticated", "--redis-url=redis://127.0.0.1:1"];
            let settings =
                <aurelis_cache_service::settings::Args as clap::Parser>::parse_from(args).validate().unwrap();
            let metrics = std::sync::Arc::new(aurelis_cache_service::metrics::Metrics::new());
            if flag == "metrics-listen" {
                return aurelis_cache_service::metrics::router(metrics);
            }
            let store = aurelis_cache_service::store::Store::connect_with_tls(
                &settings.redis.target,
                &settings.redis.tls,
                settings.store.clone(),
            )
            .unwrap();
            aurelis_cache_service::api::router(aurelis_cache_service::api::AppState {
                store,
                metrics,
                defaults: aurelis_cache_service::api::Defaults {
                    ttl: settings.default_ttl,
                    compress_min_bytes: settings.compress_min_bytes,
                },
                access: settings.access.clone(),
            })
        }
        other => panic!("no router known for {other:?}"),
    }
}

/// The status the binary's own router gives `GET path` on the port of `flag`.
fn answers(container: &str, flag: &str, path: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let request = Request::get(path).body(Body::empty()).unwrap();
        router_for(container, flag).oneshot(request).await.unwrap().status().as_u16()
    })
}

fn name(doc: &Value) -> String {
    format!("{}/{}", doc["kind"].as_str().unwrap_or("?"), doc["metadata"]["name"].as_str().unwrap_or("?"))
}

#[test]
fn kinds_and_names_are_the_ones_we_ship() {
    let found: BTreeSet<String> = all_manifests().iter().map(name).collect();
    let expected: BTreeSet<String> = [
        "Namespace/aurelis",
        "ConfigMap/aurelis-values",
        "Deployment/aurelis-cache",
        "Service/aurelis-cache",
        "PodDisruptionBudget/aurelis-cache",
        "Deployment/aurelis-control-plane",
        "Service/aurelis-control-plane",
        "PodDisruptionBudget/aurelis-control-plane",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
    for doc in all_manifests().iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(doc["metadata"]["namespace"], "aurelis", "{}", name(doc));
    }
}

#[test]
fn every_flag_variable_port_path_and_reference_exists() {
    let docs = all_manifests();
    let values = docs.iter().find(|d| name(d) == "ConfigMap/aurelis-values").unwrap();
    for external in ["redis-url", "postgres-url"] {
        assert!(values["data"][external].is_string(), "the values name {external}");
    }
    for deployment in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let pod = &deployment["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels, "{}", name(deployment));
        let containers = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let container = &containers[0];
        let container_name = container["name"].as_str().unwrap();
        let binary = match container_name {
            "aurelis-control-plane" => control_plane(),
            "aurelis-cache" => cache_service(),
            other => panic!("unknown container {other}"),
        };
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        let mut listen_ports: BTreeMap<u64, String> = BTreeMap::new();
        let args: Vec<&str> = container["args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for (i, arg) in args.iter().enumerate() {
            if i == 0 && binary.subcommand == Some(arg) {
                continue;
            }
            let flag = arg.strip_prefix("--").unwrap_or_else(|| panic!("{container_name}: `{arg}` is not a flag"));
            let (flag, value) = flag.split_once('=').unwrap_or((flag, ""));
            assert!(binary.flags.contains(flag), "{container_name}: --{flag} is not a flag of the binary");
            if flag.ends_with("listen") {
                let port = value.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
                listen_ports.insert(port, flag.to_string());
            }
            // Files the binary opens must be mounted (the module path is on the Envoy hosts).
            if value.starts_with('/') && flag != "wasm-path" {
                assert!(mounts.iter().any(|m| value.starts_with(m)), "{container_name}: {value} is not mounted");
            }
        }
        for env in container["env"].as_array().into_iter().flatten() {
            let var = env["name"].as_str().unwrap();
            assert!(binary.env.contains(var), "{container_name}: {var} is read by no setting of the binary");
            if let Some(key) = env["valueFrom"]["configMapKeyRef"]["key"].as_str() {
                assert_eq!(env["valueFrom"]["configMapKeyRef"]["name"], "aurelis-values");
                assert!(values["data"][key].is_string(), "{container_name}: {var} reads a missing value {key}");
            }
        }
        let mut ports: BTreeMap<String, String> = BTreeMap::new();
        for port in container["ports"].as_array().unwrap() {
            let number = port["containerPort"].as_u64().unwrap();
            let flag =
                listen_ports.get(&number).unwrap_or_else(|| panic!("{container_name}: nothing listens on {number}"));
            ports.insert(port["name"].as_str().unwrap().to_string(), flag.clone());
        }
        assert_eq!(ports.len(), listen_ports.len(), "{container_name}: every listener has a named port");
        for probe in ["readinessProbe", "livenessProbe"] {
            let http = &container[probe]["httpGet"];
            let (path, port) = (http["path"].as_str().unwrap(), http["port"].as_str().unwrap());
            let flag = ports.get(port).unwrap_or_else(|| panic!("{container_name}: {probe} names port {port}"));
            let status = answers(container_name, flag, path);
            assert_ne!(status, 404, "{container_name}: {probe} {path} on --{flag} is not served");
        }
        assert!(container["resources"]["requests"]["memory"].is_string(), "{container_name}: sized requests");
        // The Service and the PodDisruptionBudget of this Deployment select its pods and ports.
        let service =
            docs.iter().find(|d| d["kind"] == "Service" && d["metadata"]["name"] == deployment["metadata"]["name"]);
        let service = service.unwrap_or_else(|| panic!("no Service for {}", name(deployment)));
        assert_eq!(&service["spec"]["selector"], labels);
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = port["targetPort"].as_str().unwrap();
            assert!(ports.contains_key(target), "{}: targetPort {target} is no container port", name(service));
        }
        let pdb = docs
            .iter()
            .find(|d| d["kind"] == "PodDisruptionBudget" && d["metadata"]["name"] == deployment["metadata"]["name"]);
        let pdb = pdb.unwrap_or_else(|| panic!("no PodDisruptionBudget for {}", name(deployment)));
        assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
        assert!(deployment["spec"]["replicas"].as_u64().unwrap() > pdb["spec"]["minAvailable"].as_u64().unwrap());
    }
}

#[test]
fn docker_compose_sets_only_variables_the_binaries_read() {
    let compose = documents(&repo().join("docker-compose.yml")).remove(0);
    for (service, binary) in [("control-plane", control_plane()), ("cache-service", cache_service())] {
        let env = compose["services"][service]["environment"].as_object().unwrap();
        for var in env.keys() {
            assert!(binary.env.contains(var), "docker-compose.yml {service}: {var} is read by no setting");
        }
    }
}

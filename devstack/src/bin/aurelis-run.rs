//! `make run`: the whole stack on fixed ports with no configuration. Envoy starts from the ADS
//! bootstrap and gets everything else from the control plane, which serves its embedded
//! default model (the mock provider). With `GITHUB_TOKEN` set, it serves the GitHub Models
//! model file instead; its clients must authenticate, so a key for the file's first consumer is
//! generated through the admin API and printed. Ctrl-C stops everything. The L2 API token and
//! signing key, and the L3 key (L3 is the embedded SQLite file in the run's folder), are fresh
//! for every run and reach the cache service and Envoy through their environments only; Redis
//! runs bounded (`maxmemory`, LRU eviction). `AURELIS_FILTER=native` runs the native dynamic
//! module instead of the Wasm filter (same configuration, headers, stats).
use anyhow::Result;
use aurelis_control_plane::model::Model;
use aurelis_devstack::fleet::ADMIN_TOKEN;
use aurelis_devstack::{host, paths, Fleet, FleetOptions, L3Store};
use std::sync::mpsc;

/// The environment variable the GitHub Models model file reads the token from.
const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";

fn main() -> Result<()> {
    let github = std::env::var(GITHUB_TOKEN_ENV).is_ok_and(|t| !t.trim().is_empty());
    // Mock on 8000, gateway on 10000, L2 through the cache service on 18080 (or GitHub Models).
    let file = if github { "github-models.yaml" } else { "local.yaml" };
    let text = std::fs::read_to_string(paths::repo_root().join("control-plane/models").join(file))?;
    let consumer = first_consumer(&text)?;
    let model = Some(text);
    let filter_host = host::from_env()?;
    let options = FleetOptions {
        model,
        filter_host: Some(filter_host),
        mocks: if github { Vec::new() } else { vec![Default::default()] },
        redis: true,
        cache_service: !github,
        // L3 on the embedded file database in the run's folder, sealed with a key fresh for
        // this run (like the L2 secrets).
        l3: (!github).then_some(L3Store::Embedded),
        cache_service_port: Some(18080),
        listen_port: Some(10000),
        envoy_admin_port: Some(9901),
        mock_ports: vec![8000],
        redis_port: Some(6379),
        cp_admin_port: Some(18000),
        cp_metrics_port: Some(18001),
        xds_port: Some(18002),
        envoy_log_level: "info".into(),
        ..FleetOptions::default()
    };
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })?;
    let fleet = Fleet::start(options)?;
    let upstream = match fleet.mocks.first() {
        Some(m) => format!("mock OpenAI-compatible provider   http://{}", m.addr()),
        None => {
            "GitHub Models                     https://models.github.ai/inference (token from $GITHUB_TOKEN)".into()
        }
    };
    let model = if github { "openai/gpt-4o-mini" } else { "gpt-4o-mini" };
    let cp = &fleet.control_plane;
    // A file whose clients authenticate gets a fresh key for its first consumer (shown once).
    let key_header = match &consumer {
        Some(name) => {
            let path = format!("/v1/consumers/{name}/keys");
            let (status, issued) = cp.send("POST", &path, &serde_json::json!({}), Some(ADMIN_TOKEN))?;
            let key = issued["key"].as_str().filter(|_| status == 201);
            let key = key.ok_or_else(|| anyhow::anyhow!("generating a key for `{name}`: {status} {issued}"))?;
            format!(" -H 'authorization: Bearer {key}'")
        }
        None => String::new(),
    };
    println!(
        "\nAurelis is running:\n\
         \x20 gateway (Envoy + aurelis filter)  {gw}/v1/chat/completions  ({host} filter)\n\
         \x20 Envoy admin                       {admin}  (stats: {admin}/stats/prometheus)\n\
         \x20 upstream                          {upstream}\n\
         \x20 Redis                             127.0.0.1:{redis}  (L2 through the cache service on 127.0.0.1:18080)\n\
         \x20 L3 (persistent, encrypted)        SQLite file l3.db in the logs folder, key generated for this run\n\
         \x20 L2 token and signing key          generated for this run (in the processes' environments only)\n\
         \x20 control plane                     {cpa}/v1/status  (xDS on 127.0.0.1:{xds}, metrics {cpm})\n\
         \x20 admin token (every /v1 route)     {token}\n\
         \x20 logs                              {logs}\n\n\
         Try it (run twice: MISS, then HIT):\n\
         \x20 curl -si {gw}/v1/chat/completions -H 'content-type: application/json'{key_header} \\\n\
         \x20   -d '{{\"model\":\"{model}\",\"temperature\":0,\"messages\":[{{\"role\":\"user\",\"content\":\"Say hello\"}}]}}'\n\n\
         Ctrl-C stops everything.",
        gw = fleet.envoy().gateway_url,
        host = filter_host.as_str(),
        admin = fleet.envoy().admin_url,
        redis = fleet.redis_port.unwrap_or(0),
        cpa = cp.admin_url,
        xds = cp.xds_port,
        cpm = cp.metrics_url,
        token = ADMIN_TOKEN,
        logs = fleet.dir().display(),
    );
    let _ = rx.recv();
    println!("\nstopping...");
    drop(fleet);
    Ok(())
}

/// The first declared consumer of a model file whose clients must authenticate (API keys), if any.
fn first_consumer(text: &str) -> Result<Option<String>> {
    let model = Model::from_yaml(text)?;
    let auth = model.filter_config()?.auth;
    Ok(auth.consumers.first().filter(|_| auth.anonymous.is_none()).map(|c| c.name.clone()))
}

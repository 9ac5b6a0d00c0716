//! Settings → components → serve → drain on SIGINT/SIGTERM.
use anyhow::{Context, Result};
use aurelis_control_plane::settings::{self, Cli, Command};
use aurelis_control_plane::state::{AppState, Desired};
use aurelis_control_plane::{admin, anomaly, health, metrics, telemetry, xds};
use clap::Parser;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long open ADS streams and admin requests get to finish after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let serve = match Cli::parse().into_command() {
        Command::CheckConfig { file } => std::process::exit(settings::check_config(&file)),
        Command::RenderEnvoy { model, wasm_path, out } => {
            return aurelis_control_plane::render::render_envoy(&model, &wasm_path, &out);
        }
        Command::Report { period, admin_url, admin_token_file } => {
            let token = settings::client_admin_token(admin_token_file.as_deref())?;
            return aurelis_control_plane::telemetry::table::print(&admin_url, &period, token.as_deref()).await;
        }
        Command::Serve(serve) => *serve,
    };
    let settings = serve.validate()?;
    tracing::info!("settings: {}", settings.redacted());

    let desired = Desired::new(settings.model, settings.filter_config, settings.secrets, settings.wasm_path);
    // History fails open: without its store the control plane still serves xDS and keeps the
    // report's last minutes in memory.
    let history: std::sync::Arc<dyn aurelis_store::RollupStore> = match aurelis_store::open(&settings.history).await {
        Ok(stores) => stores.rollups,
        Err(e) => {
            tracing::error!("telemetry history ({}) unavailable, keeping it in memory only: {e}", settings.history);
            std::sync::Arc::new(aurelis_store::memory::MemoryStore::default())
        }
    };
    let mut state = AppState::with_history(desired, settings.admin_token.as_deref(), history);
    if let Some(redis) = &settings.l2_redis {
        // Lazy: connects on first use, so a Redis that is down does not stop the control plane.
        let options =
            aurelis_cache_service::StoreOptions { op_timeout: Duration::from_secs(2), max_value_bytes: 16 << 20 };
        state.l2 = Some(
            aurelis_cache_service::Store::connect_with_tls(&redis.target, &redis.tls, options)
                .context("configuring the L2 Redis client")?,
        );
    }
    // A secret: from the environment only (flags show in `ps`), like the cache service's own.
    state.cache_service_token = std::env::var("AURELIS_CACHE_API_TOKEN").ok().filter(|t| !t.is_empty());
    let admin = bind(settings.admin_listen, "admin").await?;
    let metrics = bind(settings.metrics_listen, "metrics").await?;
    let xds_listener = bind(settings.xds_listen, "xDS").await?;
    let (identity, transport) = match settings.xds_tls {
        Some(_) => (xds::admission::NodeIdentity::FromCertificate, "TLS, client certificates"),
        None => (xds::admission::NodeIdentity::AsSent, "plaintext, loopback"),
    };
    println!(
        "aurelis-control-plane: xDS (ADS, {transport}) on {}, admin on http://{}, metrics on http://{}/metrics",
        xds_listener.local_addr()?,
        admin.local_addr()?,
        metrics.local_addr()?
    );

    // One signal, seen by every server and background task.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received, draining");
        let _ = stop_tx.send(());
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    if let Some(target) = settings.anomaly_webhook {
        let deliveries = state.anomalies.metrics().webhook_deliveries.clone();
        let policy = anomaly::webhook::DeliveryPolicy::default();
        state.anomalies.attach_webhook(anomaly::webhook::Webhook::spawn(target, policy, deliveries, stop_rx.clone()));
    }
    health::spawn_probes(&state, stop_rx.clone());
    tokio::spawn(state.clone().track_versions(stop_rx.clone()));
    // Every closed window feeds the anomaly detector and the dashboard (subscribed before the
    // telemetry starts, so none is missed).
    let (anomalies, dashboard) = (state.anomalies.clone(), state.dashboard.clone());
    tokio::spawn(anomaly::feed_windows(
        state.telemetry.subscribe(),
        move |window, now_ms| {
            dashboard.record(window);
            anomalies.observe(window, now_ms);
        },
        stop_rx.clone(),
    ));
    // The adaptive loops act on the same windows (routing, tuning, the scaling signal).
    tokio::spawn(aurelis_control_plane::adaptive::driver::run(
        state.clone(),
        state.telemetry.subscribe(),
        state.telemetry.subscribe_quota(),
        stop_rx.clone(),
        telemetry::now_ms,
    ));
    // Heap pressure reported by the Envoys' stats moves the L1 budget (its own interval).
    tokio::spawn(aurelis_control_plane::adaptive::fleet::run_memory(state.clone(), stop_rx.clone(), telemetry::now_ms));
    let telemetry_task = tokio::spawn(state.telemetry.clone().run(stop_rx.clone()));
    let admission = xds::admission::Admission { identity, limits: settings.xds_limits };
    let xds_router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // An Envoy opens one ADS stream per connection; a few more leave room for tools, not
        // for one client to open thousands.
        .max_concurrent_streams(Some(8))
        .add_service(xds::server::service(
            state.config.subscribe(),
            state.clients.clone(),
            state.metrics.clone(),
            stop_rx.clone(),
            admission,
        ))
        // Fleet telemetry on the same port, TLS and client identity as ADS.
        .add_service(telemetry::ingest::service(state.telemetry.clone(), identity))
        // Envoy's own stats (metrics-service sink), likewise.
        .add_service(aurelis_control_plane::fleetstats::ingest::service(state.fleet_stats.clone(), identity));
    // TLS handshakes run in `tls_incoming` (counted when they fail); tonic gets verified streams.
    let xds_server: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &settings.xds_tls {
            Some(tls) => Box::pin(xds_router.serve_with_incoming_shutdown(
                xds::tls_incoming::incoming(xds_listener, tls.rustls_config(), state.metrics.clone()),
                stopped(stop_rx.clone()),
            )),
            None => Box::pin(xds_router.serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(xds_listener),
                stopped(stop_rx.clone()),
            )),
        };
    let admin_server =
        axum::serve(admin, admin::router(state.clone())).with_graceful_shutdown(stopped(stop_rx.clone()));
    let metrics_server =
        axum::serve(metrics, metrics::router(state.metrics.clone())).with_graceful_shutdown(stopped(stop_rx.clone()));
    let servers = async {
        tokio::try_join!(
            async { xds_server.await.context("xDS server") },
            async { admin_server.await.context("admin server") },
            async { metrics_server.await.context("metrics server") },
        )
    };
    tokio::pin!(servers);
    // Serve until stopped, then give the drain a deadline: a stuck client must not hold us.
    tokio::select! {
        result = &mut servers => { result?; }
        _ = async { stopped(stop_rx.clone()).await; tokio::time::sleep(DRAIN_DEADLINE).await } => {
            tracing::warn!("drain deadline passed; exiting");
        }
    }
    // The open windows are written on the way out, so a restart keeps them.
    let _ = tokio::time::timeout(DRAIN_DEADLINE, telemetry_task).await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the {what} listener on {addr}"))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

//! Settings → store → serve (cache API and metrics, each on its own port) → drain on SIGINT/SIGTERM.
use anyhow::{Context, Result};
use aurelis_cache_service::api::{self, AppState, Defaults};
use aurelis_cache_service::l3::L3;
use aurelis_cache_service::metrics::{self, Metrics};
use aurelis_cache_service::refresh::Refresher;
use aurelis_cache_service::settings::Args;
use aurelis_cache_service::store::Store;
use std::sync::Arc;
use tokio::net::TcpListener;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let settings = Args::from_env().validate()?;
    tracing::info!("settings: {}", settings.redacted());
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.worker_threads > 0 {
        runtime.worker_threads(settings.worker_threads);
    }
    runtime.enable_all().build().context("starting the async runtime")?.block_on(serve(settings))
}

async fn serve(settings: aurelis_cache_service::settings::Settings) -> Result<()> {
    // Lazy: starts while Redis is down; /readyz says when it answers.
    let store = Store::connect_with_tls(&settings.redis.target, &settings.redis.tls, settings.store.clone())
        .context("configuring the Redis client")?;
    let metrics = Arc::new(Metrics::new());
    // Fail open: without its database the service still serves L2, and says so.
    let l3 = match settings.l3 {
        Some(l3) => L3::start(l3, metrics.clone())
            .await
            .inspect_err(|e| tracing::error!(error = %e, "L3 store unavailable: serving without L3"))
            .ok(),
        None => None,
    };
    let defaults = Defaults { ttl: settings.default_ttl, compress_min_bytes: settings.compress_min_bytes };
    if let Some(l3) = &l3 {
        let refill = aurelis_cache_service::l3::refill::run(
            settings.refill,
            store.clone(),
            l3.clone(),
            defaults,
            metrics.clone(),
        );
        tokio::spawn(refill);
    }
    // Refresh-ahead needs L3 (settings refuse it otherwise; an L3 that did not open turns it off).
    match (settings.refresh, &l3) {
        (Some(refresh), Some(l3)) => {
            let namespaces = settings.access.namespaces();
            Arc::new(Refresher::new(l3.clone(), refresh, namespaces, metrics.clone())).start();
        }
        (Some(_), None) => tracing::error!("refresh-ahead is off: L3 is unavailable"),
        (None, _) => {}
    }
    let state = AppState { store, metrics: metrics.clone(), defaults, access: settings.access.clone(), l3: l3.clone() };
    let listener = bind(settings.listen, "cache API").await?;
    let metrics_listener = bind(settings.metrics_listen, "metrics").await?;
    println!(
        "aurelis-cache: API on http://{} (h2c and HTTP/1.1), metrics on http://{}/metrics",
        listener.local_addr()?,
        metrics_listener.local_addr()?
    );

    // One signal, seen by both servers: each stops accepting and drains its in-flight requests.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received, draining");
        let _ = stop_tx.send(());
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    // No Nagle: an answer's header and body frames must not wait for the peer's delayed ACK
    // (observed: lookups stalled ~40 ms, past the filter's L2 timeout).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let api_server = axum::serve(listener, api::router(state)).with_graceful_shutdown(stopped(stop_rx.clone()));
    let metrics_server =
        axum::serve(metrics_listener, metrics::router(metrics)).with_graceful_shutdown(stopped(stop_rx));
    tokio::try_join!(api_server, metrics_server)?;
    if let Some(l3) = l3 {
        l3.shutdown().await;
    }
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

//! Settings → components → serve → drain on SIGINT/SIGTERM.
mod admin;
mod metrics;
mod settings;
mod state;

use anyhow::{Context, Result};
use clap::Parser;
use settings::{Cli, Command};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let serve = match Cli::parse().into_command() {
        Command::CheckConfig { file } => std::process::exit(settings::check_config(&file)),
        Command::Serve(serve) => serve,
    };
    let settings = serve.validate()?;
    tracing::info!("settings: {}", settings.redacted());

    let state = state::AppState::new(settings.filter_config, settings.admin_token.as_deref());
    let admin = bind(settings.admin_listen, "admin").await?;
    let metrics = bind(settings.metrics_listen, "metrics").await?;
    println!(
        "aurelis-control-plane: admin on http://{}, metrics on http://{}/metrics",
        admin.local_addr()?,
        metrics.local_addr()?
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
    let admin_server =
        axum::serve(admin, admin::router(state.clone())).with_graceful_shutdown(stopped(stop_rx.clone()));
    let metrics_server = axum::serve(metrics, metrics::router(state)).with_graceful_shutdown(stopped(stop_rx));
    tokio::try_join!(admin_server, metrics_server)?;
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

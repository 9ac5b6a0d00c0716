//! Settings → components → serve → drain.
mod admin;
mod metrics;
mod settings;
mod state;

use anyhow::Result;
use clap::Parser;
use settings::{Cli, Command};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or_default() {
        Command::CheckConfig { file } => std::process::exit(settings::check_config(&file)),
        Command::Serve(serve) => {
            let settings = serve.validate()?;
            tracing::info!("settings: {}", settings.redacted());
            let state = state::AppState::new(settings.filter_config.clone(), settings.admin_token.clone());
            let admin = tokio::net::TcpListener::bind(settings.admin_listen).await?;
            let metrics = tokio::net::TcpListener::bind(settings.metrics_listen).await?;
            println!(
                "aurelis-control-plane: admin on http://{}, metrics on http://{}/metrics",
                admin.local_addr()?,
                metrics.local_addr()?
            );
            let admin_server =
                axum::serve(admin, admin::router(state.clone())).with_graceful_shutdown(shutdown_signal());
            let metrics_server = axum::serve(metrics, metrics::router(state)).with_graceful_shutdown(shutdown_signal());
            tokio::try_join!(admin_server, metrics_server)?;
            tracing::info!("stopped");
            Ok(())
        }
    }
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

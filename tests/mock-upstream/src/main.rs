//! `aurelis-mock-upstream`: the mock provider as a standalone process.
use aurelis_mock_upstream::{serve, MockConfig, MockState};
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "A realistic OpenAI-compatible mock model provider")]
struct Args {
    #[arg(long, env = "MOCK_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    #[arg(long, env = "MOCK_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, env = "MOCK_PER_TOKEN_LATENCY_MS", default_value_t = 0)]
    per_token_latency_ms: u64,
}

/// Ctrl-C, or SIGTERM from `docker stop` / `make run`'s cleanup.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("aurelis-mock-upstream: listening on http://{}", listener.local_addr()?);
    let state = Arc::new(MockState::new(MockConfig {
        latency_ms: args.latency_ms,
        per_token_latency_ms: args.per_token_latency_ms,
    }));
    tokio::select! {
        _ = serve(listener, state) => {}
        _ = shutdown_signal() => {}
    }
    Ok(())
}

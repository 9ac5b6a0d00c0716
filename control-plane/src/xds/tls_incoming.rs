//! The xDS listener's TLS handshakes, done here rather than inside tonic so a refused client is
//! visible: each handshake runs in its own task under a deadline (a slow client holds up no
//! one), at most `MAX_HANDSHAKES` at once, and each failure is logged and counted in
//! `aurelis_cp_xds_tls_handshake_failures_total{reason}`. The verified connections go to tonic,
//! whose `Connected` impl for `TlsStream` hands the peer's certificates to each request
//! (`Request::peer_certs`), where the node identity is checked.
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// A client that opens a TCP connection and never finishes the handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it new connections are closed (and counted).
const MAX_HANDSHAKES: usize = 256;

/// Why a handshake failed: the `reason` label (a fixed set).
fn reason(error: &std::io::Error) -> &'static str {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "invalid_certificate",
        _ => "other",
    }
}

/// Accepts on `listener` and yields the connections whose handshake (with client certificate
/// verification, as `config` says) succeeded. Stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    metrics: Arc<Metrics>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // E.g. out of file descriptors: wait a little instead of spinning.
                        tracing::warn!("xDS listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let failed = |reason: &'static str| metrics.xds_tls_handshake_failures.with_label_values(&[reason]).inc();
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                failed("overloaded");
                tracing::warn!(%peer, "xDS TLS handshake refused: {MAX_HANDSHAKES} already in progress");
                continue;
            };
            let (acceptor, tx, metrics) = (acceptor.clone(), tx.clone(), metrics.clone());
            tokio::spawn(async move {
                let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                let reason = match outcome {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        let reason = reason(&e);
                        tracing::warn!(%peer, reason, "xDS TLS handshake failed: {e}");
                        reason
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "xDS TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                        "timeout"
                    }
                };
                metrics.xds_tls_handshake_failures.with_label_values(&[reason]).inc();
            });
        }
    });
    ReceiverStream::new(rx)
}

//! A realistic stand-in for an OpenAI-compatible provider (OpenAI, GitHub Models, vLLM).
//!
//! `MockUpstream::start` runs it on its own thread and runtime, so sync and async tests alike
//! can start one per test and read its request counter ("the upstream saw exactly one request").
mod completion;
mod control;
mod server;

pub use control::{MockConfig, MockState, RecordedRequest};
pub use server::{router, serve};

use std::net::SocketAddr;
use std::sync::Arc;

pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<MockState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts on a free loopback port.
    pub fn start(config: MockConfig) -> std::io::Result<MockUpstream> {
        Self::start_on(([127, 0, 0, 1], 0).into(), config)
    }

    pub fn start_on(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockUpstream> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::new(config));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let served = state.clone();
        let thread = std::thread::Builder::new().name("mock-upstream".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                tokio::select! {
                    _ = serve(listener, served) => {}
                    _ = rx => {}
                }
            });
        })?;
        Ok(MockUpstream { addr, state, shutdown: Some(tx), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Model requests seen (chat, completions, embeddings), counted on arrival.
    pub fn request_count(&self) -> u64 {
        self.state.request_count()
    }

    pub fn reset(&self) {
        self.state.reset();
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.last_request()
    }

    /// The next `count` model requests answer with `status` (500, 503 or 429).
    pub fn fail_next(&self, status: u16, count: u32) {
        self.state.fail_next(status, count);
    }

    /// The `retry-after` (seconds) of injected 429s; 1 by default.
    pub fn set_retry_after_s(&self, seconds: u64) {
        self.state.set_retry_after_s(seconds);
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.state.set_latency_ms(ms);
    }

    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

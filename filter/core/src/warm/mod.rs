//! Warming: a new L1 (a new or restarted Envoy, a new L1 layout or L2 namespace) is filled from
//! the cache service's hottest entries of its namespace, so the first repeated request after a
//! restart is a HIT (`load`); and the L1 hits that decide what is hot are counted in worker
//! memory and reported in one batched call (`hits`). Configuration: `config` (the `warm`
//! section). Hosts only send the calls the worker asks for (`WorkerCall`) and hand back the
//! answers; every decision is here.
pub mod config;
pub mod hits;
pub mod load;

pub use config::WarmConfig;
pub use hits::HitCounts;

/// A call the worker (not a stream) makes, whose answer the host hands back with it
/// (`Worker::on_call_answer`), so each kind is accounted for apart from L2 stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerCall {
    /// `GET /v1/hot`: the entries to warm L1 with.
    Warm,
    /// `POST /v1/hits`: this worker's L1 hits since the last report.
    HitReport,
}

#[cfg(test)]
mod tests;

//! The control plane's eyes: per-request records and stats streamed by the fleet's Envoys over
//! Envoy's own gRPC services, folded into 10 s windows per model × provider × cache status,
//! persisted as rollups (`aurelis-store`), and read back by the report, the anomaly detector and
//! the dashboard.
//!
//! `WindowSummary` is the contract between the window keeper (which produces one per series
//! every 10 s) and its readers (anomaly detection, the live dashboard): plain numbers, already
//! merged across cache statuses and Envoys.
mod summary;

pub use summary::{SeriesKey, WindowSummary};

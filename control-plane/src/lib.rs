//! Aurelis control plane: the declarative model (`model`), compiled into xDS resources and
//! served over ADS (`xds`), endpoint health from active probes (`health`), the admin API
//! (`admin`) and metrics (`metrics`); the same compile step rendered as Envoy config files
//! (`render`); anomaly detection over the fleet's windows (`anomaly`) and the live page on the
//! admin port (`dashboard`). `main.rs` wires them together.
pub mod adaptive;
pub mod admin;
pub mod anomaly;
pub mod dashboard;
pub mod fleetstats;
pub mod health;
pub mod metrics;
pub mod model;
pub mod purges;
pub mod render;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod xds;

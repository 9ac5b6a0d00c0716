//! `POST /v1/hits`: an Envoy's L1 hits since its last report, one line per entry
//! (`<hits> <key>\n`, the filter's `warm::hits` format), counted towards the entries' hotness
//! in L3's batched ledger (no database write per report). Token-protected like the entries;
//! the namespace is the caller's. Malformed lines are skipped (a report is advisory), never an
//! error. Without L3 there is nothing to count into: the report is accepted and dropped.
use super::{ApiError, AppState, Namespace};
use aurelis_core::warm::hits::parse_line;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

/// Largest report accepted (the filter's bound is 4096 keys of at most ~300 bytes).
pub const MAX_REPORT_BYTES: usize = 2 << 20;

pub async fn hits(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("body: not UTF-8".into()))?;
    let mut counted = 0u64;
    if let Some(l3) = &s.l3 {
        for (hits, key) in text.lines().filter_map(parse_line) {
            l3.record_hits(&namespace, key, hits);
            counted += u64::from(hits.min(crate::l3::MAX_HITS_PER_REPORT));
        }
    }
    s.metrics.hot_hits.with_label_values(&["L1"]).inc_by(counted);
    Ok(StatusCode::NO_CONTENT.into_response())
}

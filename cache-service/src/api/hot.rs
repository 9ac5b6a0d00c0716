//! `GET /v1/hot`: the hottest entries of the caller's namespace from L3, for warming a new or
//! restarted Envoy's L1 (and Redis after a flush). "Hot" is the usage pattern of the design:
//! at least `min_hits` hits (default 10) and used within `window_days` (default 30). Bounded by
//! `limit` entries (default 100, at most 1000) and `max_bytes` (default 4 MiB, at most 64 MiB).
//! Token-protected like the entries. The body is binary, so a filter parses it without a JSON
//! or base64 decoder: per entry a big-endian u32 key length, the key, a u32 value length, the
//! value (as the filter stored it: sealed with its MAC, so it verifies every entry itself).
use super::{ApiError, AppState, Namespace};
use aurelis_store::HotQuery;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Extension;

const DAY_MS: i64 = 86_400_000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotParams {
    limit: Option<usize>,
    max_bytes: Option<usize>,
    min_hits: Option<u64>,
    window_days: Option<u32>,
}

/// Appends one entry in the wire format above; `None` if a length does not fit in u32.
pub fn encode_entry(out: &mut Vec<u8>, key: &str, value: &[u8]) -> Option<()> {
    out.extend_from_slice(&u32::try_from(key.len()).ok()?.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&u32::try_from(value.len()).ok()?.to_be_bytes());
    out.extend_from_slice(value);
    Some(())
}

pub async fn hot(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    Query(params): Query<HotParams>,
) -> Result<Response, ApiError> {
    let now_ms = super::signed_ms(super::unix_ms_now());
    let query = HotQuery {
        namespace,
        min_hits: params.min_hits.unwrap_or(10),
        since_ms: now_ms.saturating_sub(i64::from(params.window_days.unwrap_or(30)).saturating_mul(DAY_MS)),
        now_ms,
        limit: params.limit.unwrap_or(100).min(1000),
    };
    let max_bytes = params.max_bytes.unwrap_or(4 << 20).min(64 << 20);
    let mut body = Vec::new();
    if let Some(l3) = &s.l3 {
        for (key, value) in l3.hottest(&query, max_bytes).await.map_err(|_| ApiError::Unavailable("L3 hottest"))? {
            // A length beyond u32 cannot be framed: left out (values are far smaller).
            let _ = encode_entry(&mut body, &key, &value);
        }
    }
    Ok(([(CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

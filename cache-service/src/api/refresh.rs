//! `PUT /v1/refresh/{key}`: the filter's refresh record for an entry of an opted-in tenant (the
//! request to replay, sealed by the filter with the fleet's signing key). Kept in L3 only,
//! encrypted like the answers, tagged like the entry (so a purge of its tenant or model removes
//! it). Token-protected like the entries; 503 without L3 (nothing could keep it).
use super::{headers, signed_ms, unix_ms_now, ApiError, AppState, Namespace};
use aurelis_core::refresh::Record;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Extension;

pub const RECORDS: &str = "/v1/refresh/";

pub async fn put_record(
    State(s): State<AppState>,
    Extension(Namespace(namespace)): Extension<Namespace>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let key = uri.path().strip_prefix(RECORDS).unwrap_or_default();
    crate::store::layout::validate_name("key", key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let l3 = s.l3.as_ref().ok_or(ApiError::Unavailable("refresh records need L3"))?;
    // Opaque to the service, but only whole records are kept (the refresher must parse them).
    if Record::decode(&body).is_none() {
        return Err(ApiError::BadRequest("body: not a refresh record".into()));
    }
    let options = headers::put_options(&headers, s.defaults)?;
    l3.store_record_in_background(&namespace, key, body.to_vec(), &options.tags, signed_ms(unix_ms_now()));
    Ok(StatusCode::NO_CONTENT)
}

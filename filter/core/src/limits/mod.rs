//! Rate limiting by requests and LLM tokens: configuration, pure token buckets, the shared
//! identity table, and the `x-ratelimit-*` headers.
pub mod bucket;
pub mod config;
pub mod headers;
pub mod table;

pub use bucket::{BucketState, Decision, LimitReason, Quota};
pub use config::{validate_limits, FailurePolicy, IdentitySource, LimitOverride, Limits, RateLimitConfig};
pub use table::{LimitTable, TableError};

/// Estimated prompt tokens of a request body (about 4 bytes a token, as the providers' own
/// rule of thumb), used for the reservation before the provider reports real usage.
pub fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

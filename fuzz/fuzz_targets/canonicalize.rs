//! Arbitrary bytes under every rule combination: `canonicalize` must never panic, and whatever
//! it accepts must be a fixpoint and give a well-formed key and debug header.
#![no_main]

use aurelis_core::config::NormalizationConfig;
use aurelis_core::key::{cache_key, canonicalize, key_info, TenantScope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    for bits in 0u8..8 {
        let rules = NormalizationConfig {
            case_sensitive: bits & 1 == 0,
            whitespace_normalize: bits & 2 != 0,
            semantic_equivalence: bits & 4 != 0,
            ..NormalizationConfig::default()
        };
        let Ok(canonical) = canonicalize(body, &rules) else { continue };
        let again = canonicalize(&canonical.bytes, &rules).expect("canonical bytes re-canonicalize");
        assert_eq!(again.bytes, canonical.bytes, "canonical form is not a fixpoint");
        let key = cache_key("model_request:", &TenantScope::Anonymous, &canonical);
        assert!(key.is_ascii());
        let info = key_info(&TenantScope::Anonymous, &canonical);
        assert!(info.bytes().all(|b| b.is_ascii() && b != b'\r' && b != b'\n'));
    }
});

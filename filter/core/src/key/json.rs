//! JSON plumbing for the canonical form: a depth bound checked before parsing, one spelling per
//! number, and a writer whose output is defined here rather than by serde_json's formatter (so a
//! serde_json upgrade cannot silently change every key).
use serde_json::{Number, Value};

/// Deepest array/object nesting accepted. Kept below serde_json's own recursion limit (128) so a
/// deep body is always reported as `TooDeep` by the scan, never as a parse error. Real requests,
/// tool schemas included, stay far below it.
pub(crate) const MAX_DEPTH: usize = 100;

/// True when arrays/objects nest deeper than `max`. A linear byte scan that runs before the
/// parser, so a hostile `[[[[…` costs O(len) and never reaches recursive parsing or dropping.
/// Brackets inside strings are skipped; on invalid JSON the answer only needs to be bounded.
pub(crate) fn exceeds_depth(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// One value, one spelling: an integral float that fits u64/i64 becomes that integer (`1.0`,
/// `1e0`, `10e-1` are all `1`; `-0.0` is `0`). Integers parsed as integers stay exact.
fn canonical_number(n: &Number) -> Option<Number> {
    if n.is_u64() || n.is_i64() {
        return None;
    }
    let f = n.as_f64()?;
    if f.fract() != 0.0 {
        return None;
    }
    // The range checks make the casts exact (no saturation).
    if (0.0..TWO_POW_64).contains(&f) {
        Some(Number::from(f as u64))
    } else if (-TWO_POW_63..0.0).contains(&f) {
        Some(Number::from(f as i64))
    } else {
        None
    }
}

/// Rewrites every number in the tree to its canonical spelling. Recursion depth is bounded by
/// `MAX_DEPTH` (checked before parsing).
pub(crate) fn canonicalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(c) = canonical_number(n) {
                *n = c;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalize_numbers),
        Value::Object(map) => map.values_mut().for_each(canonicalize_numbers),
        _ => {}
    }
}

/// Compact canonical JSON: no whitespace, object keys sorted by UTF-8 bytes (sorted here, not
/// trusted to the map type: a `preserve_order` feature enabled by any other crate in a build
/// would otherwise change keys), numbers as in `write_number`, strings as in `write_string`.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Integers in decimal. Other floats (non-integral or beyond 64-bit range) use Rust's shortest
/// round-trip digits, as `Display` (`0.5`) or `LowerExp` (`1e-7`), whichever is shorter (ties go
/// to `Display`): the exponent form bounds a number to ~24 bytes, so `1e300` cannot blow a
/// small body up into a huge canonical form.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    let canonical = canonical_number(n);
    let n = canonical.as_ref().unwrap_or(n);
    let text = if let Some(u) = n.as_u64() {
        u.to_string()
    } else if let Some(i) = n.as_i64() {
        i.to_string()
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        let plain = format!("{f}");
        let exp = format!("{f:e}");
        if exp.len() < plain.len() {
            exp
        } else {
            plain
        }
    };
    out.extend_from_slice(text.as_bytes());
}

/// Minimal escaping (as RFC 8785): `"` and `\`, the short escapes `\b \f \n \r \t`, other
/// control characters as `\u00xx`; everything else (all non-ASCII included) as raw UTF-8. Byte
/// iteration is safe because every escaped byte is ASCII and UTF-8 continuation bytes are >= 0x80.
fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let mut v: Value = serde_json::from_str(text).unwrap();
        canonicalize_numbers(&mut v);
        let mut out = Vec::new();
        write_value(&mut out, &v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_have_one_spelling() {
        for s in ["1", "1.0", "1e0", "10e-1", "0.1e1"] {
            assert_eq!(canon(s), "1", "{s}");
        }
        assert_eq!(canon("-0.0"), "0");
        assert_eq!(canon("18446744073709551615"), "18446744073709551615");
        assert_eq!(canon("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(canon("0.5"), "0.5");
        assert_eq!(canon("5e-1"), "0.5");
        assert_eq!(canon("1e-7"), "1e-7");
        assert_eq!(canon("1e300"), "1e300");
        assert_eq!(canon("2.5e1"), "25");
    }

    #[test]
    fn strings_escape_minimally() {
        assert_eq!(canon(r#""a\u0041\/\u00e9\n\u0001\"""#), "\"aA/\u{e9}\\n\\u0001\\\"\"");
    }

    #[test]
    fn depth_scan_skips_strings() {
        assert!(!exceeds_depth(br#"{"a":"[[[[[[["}"#, 2));
        assert!(exceeds_depth(b"[[[", 2));
        assert!(!exceeds_depth(b"[[]]", 2));
        assert!(!exceeds_depth(br#"["\"[[[["]"#, 1));
    }
}

//! The opt-in prompt-text rules of `NormalizationConfig`. Each is lossy (it can merge prompts a
//! model would answer differently), which is why the defaults leave text byte-exact.
use crate::config::NormalizationConfig;

/// True when some rule would rewrite text, so the default configuration skips all work.
pub(crate) fn any_rule(rules: &NormalizationConfig) -> bool {
    !rules.case_sensitive || rules.whitespace_normalize || rules.semantic_equivalence
}

/// Applies the rules in a fixed order chosen so that applying them twice equals applying them
/// once (the canonical form must be a fixpoint):
/// 1. `semantic_equivalence`: fold characters (`fold_char`), before whitespace handling so a
///    removed zero-width character can't leave two spaces behind;
/// 2. `whitespace_normalize`: runs of Unicode whitespace become one space, ends trimmed;
/// 3. `semantic_equivalence`: trim both ends, collapse a trailing run of `!` or `?` to one;
/// 4. `case_sensitive: false`: Unicode lowercase (never creates whitespace or punctuation).
pub(crate) fn normalize(text: &str, rules: &NormalizationConfig) -> String {
    let mut s: String =
        if rules.semantic_equivalence { text.chars().filter_map(fold_char).collect() } else { text.to_owned() };
    if rules.whitespace_normalize {
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    if rules.semantic_equivalence {
        s = fold_ends(&s);
    }
    if !rules.case_sensitive {
        s = s.to_lowercase();
    }
    s
}

/// Curly single quotes become `'`, curly double quotes become `"`, and invisible characters that
/// only differ by copy-paste (zero-width space, word joiner, BOM) are removed.
fn fold_char(c: char) -> Option<char> {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => Some('\''),
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => Some('"'),
        '\u{200B}' | '\u{2060}' | '\u{FEFF}' => None,
        c => Some(c),
    }
}

/// Trims whitespace at both ends and collapses a trailing `!!!`/`???` to a single mark. `.` is
/// left alone: `...` (an ellipsis) says something `.` does not.
fn fold_ends(s: &str) -> String {
    let trimmed = s.trim();
    for mark in ['!', '?'] {
        let stem = trimmed.trim_end_matches(mark);
        if stem.len() + mark.len_utf8() < trimmed.len() {
            return format!("{stem}{mark}");
        }
    }
    trimmed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(case_sensitive: bool, whitespace_normalize: bool, semantic_equivalence: bool) -> NormalizationConfig {
        NormalizationConfig { case_sensitive, whitespace_normalize, semantic_equivalence, parameter_order: None }
    }

    #[test]
    fn defaults_keep_text_exact() {
        assert!(!any_rule(&NormalizationConfig::default()));
    }

    #[test]
    fn each_rule_does_what_it_says() {
        assert_eq!(normalize("Hello  World", &rules(false, false, false)), "hello  world");
        assert_eq!(normalize(" a \t\n b ", &rules(true, true, false)), "a b");
        assert_eq!(normalize(" \u{201C}Hi\u{201D}\u{200B} it\u{2019}s?? ", &rules(true, false, true)), "\"Hi\" it's?");
        assert_eq!(normalize("wait...", &rules(true, false, true)), "wait...");
        assert_eq!(normalize("a \u{200B} b", &rules(true, true, true)), "a b");
    }

    #[test]
    fn rules_are_idempotent() {
        let samples = ["  İSTANBUL!!! ", "a\u{a0}\u{a0}b ?? ", "ΣΑΣ  \u{FEFF}", "x!?!!"];
        for s in samples {
            for bits in 0..8u8 {
                let r = rules(bits & 1 == 0, bits & 2 != 0, bits & 4 != 0);
                let once = normalize(s, &r);
                assert_eq!(normalize(&once, &r), once, "{s:?} {bits}");
            }
        }
    }
}

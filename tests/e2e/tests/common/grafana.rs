//! The shipped Grafana dashboard (`deploy/grafana/aurelis.json`) against real scrapes: every
//! metric its queries name must be in what Envoy (`/stats/prometheus`) or the control plane
//! (`/metrics`) exported. Included by the suites that scrape (`#[path]`), not by `common`.
use serde_json::Value;
use std::collections::BTreeSet;

/// Metric names in a Prometheus text exposition (`# TYPE` lines and samples).
pub fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') || line.is_empty() => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_string)
        .collect()
}

/// Metric names in one PromQL expression: identifiers outside label matchers (`{..}`), ranges
/// (`[..]`) and label lists (`by (..)`, `without (..)`, `ignoring (..)`, `on (..)`,
/// `group_left (..)`), that are not followed by `(` or `by` (functions, aggregations).
pub fn query_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = ["by", "without", "ignoring", "on", "group_left", "group_right"];
    const KEYWORDS: [&str; 11] =
        ["by", "without", "ignoring", "on", "group_left", "group_right", "bool", "offset", "and", "or", "unless"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| {
        chars.iter().skip(from).position(|c| *c == close).map_or(chars.len(), |p| from + p + 1)
    };
    while let Some(&c) = chars.get(i) {
        match c {
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            '"' => i = skip_to(i + 1, '"'),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':') {
                    i += 1;
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                let mut next = i;
                while chars.get(next).is_some_and(|c| c.is_whitespace()) {
                    next += 1;
                }
                // A function call, or an aggregation whose `by (..)` comes first: not a metric.
                let after: String = chars.get(next..).unwrap_or_default().iter().take(8).collect();
                let called = after.starts_with('(')
                    || after.starts_with("by ")
                    || after.starts_with("by(")
                    || after.starts_with("without");
                if called && LABEL_LISTS.contains(&word.as_str()) {
                    i = skip_to(next, ')');
                } else if !called && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every query of the shipped dashboard with the metric names it uses.
pub fn dashboard_queries() -> Vec<(String, BTreeSet<String>)> {
    let path = aurelis_devstack::paths::repo_root().join("deploy/grafana/aurelis.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    assert!(!panels.is_empty(), "no panels in {}", path.display());
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            let expr = t["expr"].as_str().unwrap_or_default().to_string();
            let names = query_names(&expr);
            (expr, names)
        })
        .collect()
}

#[test]
fn query_names_skip_functions_labels_and_ranges() {
    let expr = r#"sum by (level) (rate(aurelis_cache_hits_total{level="L1"}[5m])) / ignoring(level) group_left sum(rate(aurelis_requests_total[$__rate_interval])) + aurelis_l1_entries"#;
    let names: Vec<String> = query_names(expr).into_iter().collect();
    assert_eq!(names, ["aurelis_cache_hits_total", "aurelis_l1_entries", "aurelis_requests_total"]);
}

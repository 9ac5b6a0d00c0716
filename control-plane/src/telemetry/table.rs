//! `aurelis-control-plane report --period 24h`: the admin API's report (`GET /v1/report`)
//! printed as a readable table. Rendering is a pure function of the JSON, so the command shows
//! exactly what the API answers.
use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::fmt::Write;

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        Some(n) => format!("{n:.2}"),
        None => "-".into(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |n| format!("{:.1} %", n * 100.0))
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |n| format!("{n:.0} ms"))
}

pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let exact = if report["counts_exact"] == true { "exact counts" } else { "counts scaled from samples" };
    let _ = writeln!(out, "Aurelis fleet report, last {} ({exact})", report["period"].as_str().unwrap_or("?"));
    let latency = &report["latency"];
    let rows = [
        ("requests", num(&report["requests"])),
        ("requests/s", num(&report["requests_per_second"])),
        ("tokens in / out", format!("{} / {}", num(&report["tokens_in"]), num(&report["tokens_out"]))),
        ("tokens/s", num(&report["tokens_per_second"])),
        (
            "latency avg / p50 / p95 / p99",
            format!(
                "{} / {} / {} / {}",
                ms(&latency["avg_ms"]),
                ms(&latency["p50_ms"]),
                ms(&latency["p95_ms"]),
                ms(&latency["p99_ms"])
            ),
        ),
        ("stream TTFB p50 / p95", format!("{} / {}", ms(&report["ttfb_p50_ms"]), ms(&report["ttfb_p95_ms"]))),
        ("hit rate", pct(&report["hit_rate"])),
        ("error rate", pct(&report["error_rate"])),
        ("tokens saved", num(&report["tokens_saved"])),
        ("money saved", num(&report["money_saved"])),
        ("performance score", format!("{} / 100", num(&report["score"]["overall"]))),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<30} {value}");
    }
    for level in report["hits_by_level"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<30} {} ({})",
            format!("hits {}", level["level"].as_str().unwrap_or("?")),
            num(&level["hits"]),
            pct(&level["hit_rate"])
        );
    }
    let _ = writeln!(
        out,
        "\n  {:<24} {:<16} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "model", "provider", "requests", "p50", "p95", "p99", "hits", "errors"
    );
    let rows =
        report["models"].as_array().into_iter().flatten().chain(report["series"].as_array().into_iter().flatten());
    for m in rows {
        let _ = writeln!(
            out,
            "  {:<24} {:<16} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            m["model"].as_str().unwrap_or("?"),
            m["provider"].as_str().unwrap_or("?"),
            num(&m["requests"]),
            ms(&m["latency"]["p50_ms"]),
            ms(&m["latency"]["p95_ms"]),
            ms(&m["latency"]["p99_ms"]),
            pct(&m["hit_rate"]),
            pct(&m["error_rate"])
        );
    }
    let tenants = report["top_tenants"].as_array().cloned().unwrap_or_default();
    if !tenants.is_empty() {
        let _ = writeln!(out, "\n  {:<24} {:>9} {:>8}", "tenant (scope id)", "requests", "hits");
        for t in &tenants {
            let _ = writeln!(
                out,
                "  {:<24} {:>9} {:>8}",
                t["tenant"].as_str().unwrap_or("?"),
                num(&t["requests"]),
                pct(&t["hit_rate"])
            );
        }
    }
    let _ = writeln!(out, "\n  score parts (target → actual):");
    for p in report["score"]["parts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    {:<22} {} → {} ({})",
            p["name"].as_str().unwrap_or("?"),
            num(&p["target"]),
            num(&p["actual"]),
            pct(&p["score"])
        );
    }
    let recommendations = report["recommendations"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\nRecommendations ({}):", recommendations.len());
    for r in &recommendations {
        let _ = writeln!(out, "  [{}] {}", r["rule"].as_str().unwrap_or("?"), r["message"].as_str().unwrap_or(""));
        let _ = writeln!(out, "      change: {}", r["setting"].as_str().unwrap_or(""));
    }
    out
}

/// Fetches the report from the admin API and prints it.
pub async fn print(admin_url: &str, period: &str, token: Option<&str>) -> Result<()> {
    let url = format!("{}/v1/report?period={period}", admin_url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().get(&url).timeout(std::time::Duration::from_secs(30));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("GET {url}: the answer is not JSON"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        return Err(anyhow!("GET {url}: {status}: {message}"));
    }
    print!("{}", render(&body));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_the_numbers_and_the_advice() {
        let report = json!({
            "period": "24h", "counts_exact": true, "requests": 60, "requests_per_second": 0.02,
            "latency": { "p95_ms": 410.2 }, "hit_rate": 0.333, "score": { "overall": 61.5, "parts": [] },
            "models": [{ "model": "gpt-4o-mini", "provider": "mock", "requests": 50, "latency": {} }],
            "recommendations": [{ "rule": "low_hit_rate", "message": "hit rate 33.3 %", "setting": "filter.cache.ttl_seconds (now 300)" }]
        });
        let text = render(&report);
        assert!(text.contains("last 24h (exact counts)"), "{text}");
        assert!(text.contains("requests                       60"), "{text}");
        assert!(text.contains("410 ms") && text.contains("33.3 %") && text.contains("61.50 / 100"), "{text}");
        assert!(text.contains("gpt-4o-mini") && text.contains("change: filter.cache.ttl_seconds (now 300)"), "{text}");
    }
}

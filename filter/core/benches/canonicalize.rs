//! Canonicalizer and key cost for 1 KB and 32 KB chat bodies (`make bench` runs it).
use aurelis_core::config::{NormalizationConfig, TenantConfig};
use aurelis_core::key;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;

fn body_of_size(target: usize) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    let mut i = 0;
    while serde_json::to_vec(&messages).map_or(0, |v| v.len()) < target {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(
            json!({"role": role, "content": format!("Turn {i}: explain the borrow checker with an example, briefly.")}),
        );
        i += 1;
    }
    serde_json::to_vec(
        &json!({"model": "gpt-4o-mini", "temperature": 0, "top_p": 1, "max_tokens": 256, "messages": messages}),
    )
    .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let rules = NormalizationConfig::default();
    let tenant = key::TenantIdentity::Tenant("bench".into()).under(&TenantConfig::default()).scope();
    let mut group = c.benchmark_group("canonicalize+key");
    for (name, size) in [("1KB", 1024), ("32KB", 32 * 1024)] {
        let body = body_of_size(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| {
                let canonical = key::canonicalize(body, &rules).map_err(|e| e.reason());
                canonical.map(|c| key::entry_key("model_request:", &tenant, &c, &rules))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

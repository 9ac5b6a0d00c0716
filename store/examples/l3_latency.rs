//! L3 lookup and store latency per backend: `cargo run -p aurelis-store --example l3_latency`
//! (add `--release` for figures that matter; the debug build runs SQLite's C code unoptimised).
//! 2 000 entries of 2 KiB (the size of a short chat completion after zstd + AES-GCM), then
//! 5 000 lookups of random keys, each timed on its own from the caller's side, runtime included.
use aurelis_store::{open, NewEntry, StoreSettings, Stores};
use std::time::{Duration, Instant};

const ENTRIES: usize = 2_000;
const LOOKUPS: usize = 5_000;
const VALUE_BYTES: usize = 2_048;
const NOW: i64 = 1_750_000_000_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite = StoreSettings::parse(&format!("sqlite:{}", dir.path().join("l3.db").display()))?;
    measure("sqlite", &open(&sqlite).await?).await?;
    let server = aurelis_devstack::Postgres::start()?;
    server.create_database("latency")?;
    let postgres = StoreSettings::parse(&server.url("latency"))?;
    measure("postgres (loopback)", &open(&postgres).await?).await?;
    Ok(())
}

async fn measure(name: &str, stores: &Stores) -> anyhow::Result<()> {
    let mut puts = Vec::with_capacity(ENTRIES);
    for i in 0..ENTRIES {
        let entry = NewEntry {
            namespace: "bench".into(),
            key: format!("{i:064x}"),
            value: vec![(i % 251) as u8; VALUE_BYTES],
            key_id: "k1".into(),
            tenant: "t".into(),
            model: "m".into(),
            schema: "v3".into(),
            stored_at_ms: NOW,
            expires_at_ms: NOW + 86_400_000,
        };
        let started = Instant::now();
        stores.entries.put(entry).await?;
        puts.push(started.elapsed());
    }
    let mut gets = Vec::with_capacity(LOOKUPS);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..LOOKUPS {
        // xorshift: a fixed, uniform key sequence without a dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = format!("{:064x}", state % ENTRIES as u64);
        let started = Instant::now();
        let found = stores.entries.get("bench", &key, NOW + n as i64).await?;
        gets.push(started.elapsed());
        anyhow::ensure!(found.is_some(), "lookup {n} missed");
    }
    let started = Instant::now();
    stores.entries.flush_hits().await?;
    let flush = started.elapsed();
    println!("{name:>20}: put {}; get {}; last hit flush {flush:.1?}", summary(puts), summary(gets));
    Ok(())
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples.get(((samples.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
    format!("p50 {:.0?} p99 {:.0?} max {:.0?}", at(0.5), at(0.99), at(1.0))
}

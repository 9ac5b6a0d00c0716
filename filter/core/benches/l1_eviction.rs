//! L1 hit rate under LRU and LFU on the same skewed key streams (`make bench` prints the table).
//!
//! Not a timing: the figure is the share of requests L1 answers. Each stream is drawn once from
//! a seeded generator and replayed against both policies, through the real `L1Cache` over the
//! in-memory store (one worker, a miss stores its answer, 1 ms between requests, a TTL longer
//! than the run so only eviction decides). Keys follow a Zipf law over `KEYS` prompts; the
//! mixed streams add one-off prompts that never come back, as real traffic has.
use aurelis_core::cache::{Entry, KeyNames, L1Cache, Layout, Lookup, MemoryStore, WayHints};
use aurelis_core::config::{CacheConfig, EvictionPolicy};
use aurelis_core::gate::BodyFormat;
use aurelis_core::key::CacheKey;

const KEYS: usize = 20_000;
const CAPACITY: u32 = 1_000;
const REQUESTS: usize = 200_000;

/// xorshift64*: reproducible, and spread enough for sampling.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ranks drawn from Zipf(`s`) over `KEYS`, with a share of one-off keys mixed in.
fn stream(s: f64, one_off_share: f64, seed: u64) -> Vec<String> {
    let mut cdf = Vec::with_capacity(KEYS);
    let mut total = 0.0;
    for rank in 1..=KEYS {
        total += 1.0 / (rank as f64).powf(s);
        cdf.push(total);
    }
    let mut rng = Rng(seed);
    (0..REQUESTS)
        .map(|i| {
            if rng.unit() < one_off_share {
                return format!("once-{i}");
            }
            let target = rng.unit() * total;
            let rank = cdf.partition_point(|c| *c < target);
            format!("zipf-{rank}")
        })
        .collect()
}

fn hit_rate(keys: &[String], eviction: EvictionPolicy) -> f64 {
    let config = CacheConfig { max_entries: CAPACITY, ttl_seconds: 7 * 24 * 3600, eviction, ..CacheConfig::default() };
    let layout = Layout::from_config(&config);
    let (names, hints, store) = (KeyNames::new(&layout), WayHints::new(layout.capacity()), MemoryStore::default());
    let l1 = L1Cache::new(&store, &layout, &names, &hints);
    let mut hits = 0usize;
    for (i, text) in keys.iter().enumerate() {
        let now = 1_000_000 + i as u64;
        let key = CacheKey::new(text.clone());
        match l1.lookup(&key, now) {
            Lookup::Hit { .. } => hits += 1,
            Lookup::Miss | Lookup::Expired => {
                let entry = Entry {
                    key: key.text.clone(),
                    stored_at_ms: now,
                    status: 200,
                    content_type: "application/json".into(),
                    format: BodyFormat::Json,
                    prompt_tokens: 10,
                    completion_tokens: 20,
                    body: vec![b'x'; 512],
                };
                let _ = l1.insert(&key, &entry, now);
            }
        }
    }
    hits as f64 / keys.len() as f64
}

fn main() {
    // `cargo bench` passes filter arguments; this table has none to filter.
    println!("L1 hit rate, LRU vs LFU: {CAPACITY} entries, {KEYS} Zipf keys, {REQUESTS} requests per stream");
    println!("| stream | LRU | LFU | LFU - LRU |");
    println!("|---|---|---|---|");
    let streams = [(0.8, 0.0), (1.0, 0.0), (1.2, 0.0), (1.0, 0.3)];
    for (i, (s, one_off)) in streams.into_iter().enumerate() {
        let keys = stream(s, one_off, 0x5eed_0000 + i as u64);
        let (lru, lfu) = (hit_rate(&keys, EvictionPolicy::Lru), hit_rate(&keys, EvictionPolicy::Lfu));
        let name = if one_off > 0.0 {
            format!("Zipf s={s:.1} + {:.0}% one-off prompts", one_off * 100.0)
        } else {
            format!("Zipf s={s:.1}")
        };
        println!("| {name} | {:.1}% | {:.1}% | {:+.1} pt |", lru * 100.0, lfu * 100.0, (lfu - lru) * 100.0);
    }
}

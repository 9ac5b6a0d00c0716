//! `make bench`: the end-to-end scenarios, measured as on the reference machine
//! (docs: README "Benchmarks"): the Envoy under test runs one worker (`--concurrency 1`) pinned
//! to CPU 0 with `taskset -c 0`, `wrk -t1 -c32` is pinned to CPU 1, and every group of scenarios
//! is measured in the same run, in interleaved rounds whose order alternates, and reported as
//! medians. At saturation the pinned core is busy all the time, so 1e6 / (req/s) is the Envoy
//! CPU time one request costs (µs).
//!
//! 1. C: Envoy answers the POST itself (`buffer` + `direct_response`), the baseline of 2-4;
//! 2. a null proxy-wasm filter that waits for the body (the floor of V8);
//! 3. L1 hit; 4. L1 hit with rate limits (never reached);
//! 5. miss path (unique prompts, stored) vs plain Envoy, both proxying to an upstream Envoy that
//!    answers itself (pinned to CPU 1 with the load generator, away from the Envoy under test);
//! 6. p99 of misses at a fixed rate (half of plain Envoy's saturation in 5), open loop;
//! 7. host calls per hit and per miss (the `count-host-calls` build, unpinned).
//!
//! Then the older scenarios in `extra.rs` and (h) the L3 hit in `l3.rs`. `aurelis-bench l2`
//! runs only the L2 scenario, `aurelis-bench l3` only the L3 one; `aurelis-bench hold` starts
//! the native scenarios' stacks and keeps them up for a profiler.
mod extra;
mod hold;
mod l3;

use anyhow::{anyhow, bail, Context, Result};
use aurelis_devstack::load::{
    open_loop, process_cpu_seconds, same_request_script, unique_request_script, wrk, OpenLoopResult,
};
use aurelis_devstack::{paths, FilterHost, Stack, StackOptions};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const CHAT: &str = "/v1/chat/completions";
/// The Envoy under test.
pub const ENVOY_CPU: &str = "0";
/// wrk, the open-loop generator and the upstream Envoy of the miss path.
pub const LOAD_CPU: &str = "1";
const ROUNDS: usize = 5;
const SECONDS: u32 = 5;
const CONNECTIONS: u32 = 32;
/// The cache scope and rate-limit identity of the hit scenarios.
const BEARER: &str = "Bearer sk-bench";

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The one request of the hit scenarios (111 bytes).
pub fn same_body() -> String {
    json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        .to_string()
}

fn post(url: &str, body: &str, authorization: Option<&str>) -> Result<(String, String)> {
    let mut request = ureq::post(url).set("content-type", "application/json");
    if let Some(a) = authorization {
        request = request.set("authorization", a);
    }
    let response = request.send_string(body).map_err(|e| anyhow!("POST {url}: {e}"))?;
    let cache = response.header("x-aurelis-cache").unwrap_or("-").to_string();
    Ok((cache, response.into_string()?))
}

/// Primes `stack`'s L1 with the hit request and checks the second answer is a HIT.
fn prime(stack: &Stack) -> Result<String> {
    let (_, body) = post(&stack.url(CHAT), &same_body(), Some(BEARER))?;
    let (cache, again) = post(&stack.url(CHAT), &same_body(), Some(BEARER))?;
    if cache != "HIT" || again != body {
        bail!("priming failed: second answer was {cache}");
    }
    Ok(body)
}

/// Pinned to the Envoy CPU, and with the bench's consumer: every scenario measures the
/// production path of a verified API-key client (`BEARER`).
fn pinned(options: StackOptions) -> StackOptions {
    let filter_config = with_bench_consumer(options.filter_config.clone());
    // The Wasm filter unless the scenario says otherwise (not `AURELIS_FILTER`).
    let filter_host = Some(options.filter_host.unwrap_or(FilterHost::Wasm));
    StackOptions { envoy_cpus: Some(ENVOY_CPU.into()), filter_config, filter_host, ..options }
}

/// The native filter's scenarios.
fn native(options: StackOptions) -> StackOptions {
    pinned(StackOptions { filter_host: Some(FilterHost::Native), ..options })
}

/// `config` with the consumer `bench` holding the key of `BEARER` (and anonymous access for
/// the requests that send no key).
pub fn with_bench_consumer(mut config: serde_json::Value) -> serde_json::Value {
    let key = BEARER.trim_start_matches("Bearer ");
    config["auth"] = json!({
        "consumers": [{ "name": "bench", "key_sha256": [aurelis_core::auth::key_sha256(key)] }],
        "anonymous": {}
    });
    config
}

/// The miss scenarios' upstream (an Envoy answering `answer` itself, on the load CPU) and the
/// plain-Envoy baseline proxying to it; the port is what the filter stacks proxy to as well.
fn upstream_and_plain(answer: &str) -> Result<(Stack, Stack, Option<u16>)> {
    let upstream = Stack::start(StackOptions {
        with_filter: false,
        direct_response: Some(answer.to_string()),
        envoy_cpus: Some(LOAD_CPU.into()),
        filter_host: Some(FilterHost::Wasm),
        ..StackOptions::default()
    })?;
    let upstream_port = Some(port_of(&upstream.gateway_url)?);
    let plain = Stack::start(pinned(StackOptions {
        with_filter: false,
        route_unknown_models: true,
        upstream_port,
        ..StackOptions::default()
    }))?;
    Ok((upstream, plain, upstream_port))
}

fn port_of(url: &str) -> Result<u16> {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| anyhow!("no port in {url}"))
}

/// Median req/s, and median Envoy CPU time per request measured from `/proc` (µs).
#[derive(Debug, Clone, Copy)]
struct Measured {
    rps: f64,
    cpu_us: f64,
}

/// `ROUNDS` rounds over `stacks`, order reversed every other round; `script(round, i)` gives
/// the wrk script. Returns the medians per stack.
fn rounds(stacks: &[&Stack], script: impl FnMut(usize, usize) -> Result<std::path::PathBuf>) -> Result<Vec<Measured>> {
    rounds_of(stacks, ROUNDS, SECONDS, script)
}

/// `rounds` with its own number of rounds and seconds per run (`aurelis-bench native`).
fn rounds_of(
    stacks: &[&Stack],
    count: usize,
    seconds: u32,
    mut script: impl FnMut(usize, usize) -> Result<std::path::PathBuf>,
) -> Result<Vec<Measured>> {
    let mut runs = vec![Vec::new(); stacks.len()];
    for round in 0..count {
        let mut order: Vec<usize> = (0..stacks.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (Some(stack), Some(v)) = (stacks.get(i), runs.get_mut(i)) else { continue };
            let script = script(round, i)?;
            let cpu = || stack.envoy.pid().and_then(process_cpu_seconds).unwrap_or(0.0);
            let before = cpu();
            let sample = wrk(&stack.url(CHAT), &script, CONNECTIONS, seconds, Some(LOAD_CPU))?;
            let cpu_us = (cpu() - before) * 1e6 / sample.requests.max(1) as f64;
            v.push((sample.rps, cpu_us));
        }
    }
    Ok(runs
        .into_iter()
        .map(|v| Measured {
            rps: median(v.iter().map(|s| s.0).collect()),
            cpu_us: median(v.iter().map(|s| s.1).collect()),
        })
        .collect())
}

struct Row {
    name: String,
    measured: Option<Measured>,
    versus: String,
    result: String,
    target: String,
    met: String,
}

fn row(name: &str, measured: Option<Measured>, versus: &str, result: String, target: &str, met: Option<bool>) -> Row {
    Row {
        name: name.into(),
        measured,
        versus: versus.into(),
        result,
        target: target.into(),
        met: match met {
            Some(true) => "met".into(),
            Some(false) => "NOT met".into(),
            None => "-".into(),
        },
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<46} {:>8} {:>9} {:>9} {:>4} {:>16} {:>10} {:>8}",
        "scenario", "req/s", "1e6/rps", "cpu µs", "vs", "result", "target", "met"
    );
    for r in rows {
        let (rps, us, cpu) = match r.measured {
            Some(m) => (format!("{:.0}", m.rps), format!("{:.1}", 1e6 / m.rps), format!("{:.1}", m.cpu_us)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<46} {:>8} {:>9} {:>9} {:>4} {:>16} {:>10} {:>8}",
            r.name, rps, us, cpu, r.versus, r.result, r.target, r.met
        );
    }
    println!(
        "(1e6/rps: µs of the pinned core per request if it was saturated; cpu µs: Envoy's CPU time per request \
         read from /proc, which shows whether it was)"
    );
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("l2") => return extra::l2_hit_cost(),
        Some("l3") => return l3::l3_hit_cost(),
        Some("host-calls") => return host_calls_only(),
        Some("open-loop") => return open_loop_child(args.get(1..).unwrap_or_default()),
        Some("native") => return native_only(),
        Some("hold") => return hold::hold(),
        Some(other) => bail!("unknown argument {other} (aurelis-bench [l2 | l3 | host-calls | native | hold])"),
        None => {}
    }
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    println!(
        "aurelis bench: Envoy --concurrency 1 on CPU {ENVOY_CPU} (taskset), wrk -t1 -c{CONNECTIONS} -d{SECONDS}s on CPU {LOAD_CPU}, \
         {ROUNDS} interleaved rounds (order alternating), medians"
    );
    let mut table = Vec::new();

    // 1-4: Envoy's own answer, the null filter, L1 hits without and with limits.
    let hit = Stack::start(pinned(StackOptions::default()))?;
    let answer = prime(&hit)?;
    println!("request {} bytes, answer {} bytes", same_body().len(), answer.len());
    let direct = |options: StackOptions| pinned(StackOptions { direct_response: Some(answer.clone()), ..options });
    let c = Stack::start(direct(StackOptions { with_filter: false, ..StackOptions::default() }))?;
    let null = Stack::start(direct(StackOptions { wasm: Some(paths::null_filter()?), ..StackOptions::default() }))?;
    let limits = json!({ "rate_limit": { "enabled": true, "requests": { "rate": 100_000_000u64, "per": "minute" } } });
    let hit_limited = Stack::start(pinned(StackOptions { filter_config: limits, ..StackOptions::default() }))?;
    prime(&hit_limited)?;
    let hit_native = Stack::start(native(StackOptions::default()))?;
    prime(&hit_native)?;
    let null_native = Stack::start(direct(with_null_module(StackOptions::default())?))?;
    let same = same_request_script(dir.path(), "same.lua", &same_body(), &[("authorization", BEARER)])?;
    let hits = rounds(&[&c, &null, &hit, &hit_limited, &hit_native, &null_native], |_, _| Ok(same.clone()))?;
    let [c_m, null_m, hit_m, limited_m, native_m, null_native_m] = hits[..] else { bail!("six medians expected") };
    table.push(row("1 C: Envoy buffer + direct_response", Some(c_m), "", "baseline".into(), "", None));
    let null_ratio = null_m.rps / c_m.rps;
    table.push(row(
        "2 null proxy-wasm filter (V8 floor)",
        Some(null_m),
        "1",
        format!("{null_ratio:.2}x"),
        "~0.82x",
        None,
    ));
    let hit_ratio = hit_m.rps / c_m.rps;
    table.push(row("3 L1 hit", Some(hit_m), "1", format!("{hit_ratio:.2}x"), ">= 0.62x", Some(hit_ratio >= 0.62)));
    let limit_cost = 1e6 / limited_m.rps - 1e6 / hit_m.rps;
    table.push(row(
        "4 L1 hit + rate limits (never refusing)",
        Some(limited_m),
        "3",
        format!("{limit_cost:+.1} µs/req"),
        "<= 3 µs",
        Some(limit_cost <= 3.0),
    ));
    table.push(null_native_row("2n null native module (ABI floor)", null_native_m, c_m, "1"));
    table.push(native_hit_row(native_m, c_m, null_native_m));
    drop((c, null, hit, hit_limited, hit_native, null_native));

    // 5: misses through the filter vs plain Envoy, both to an upstream Envoy on the load CPU.
    let (upstream, plain, upstream_port) = upstream_and_plain(&answer)?;
    let miss = Stack::start(pinned(StackOptions { upstream_port, ..StackOptions::default() }))?;
    let miss_native = Stack::start(native(StackOptions { upstream_port, ..StackOptions::default() }))?;
    let null_proxy = Stack::start(with_null_module(null_proxy_options(upstream_port))?)?;
    let (_, first) = post(
        &miss.url(CHAT),
        r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"check"}]}"#,
        None,
    )?;
    if first != answer {
        bail!("the upstream Envoy's answer differs from the primed one");
    }
    let misses = rounds(&[&plain, &miss, &miss_native, &null_proxy], |round, i| {
        let prefix = format!("bench miss r{round} s{i}");
        unique_request_script(dir.path(), &format!("unique-{round}-{i}.lua"), &prefix, BEARER)
    })?;
    let [plain_m, miss_m, miss_native_m, null_proxy_m] = misses[..] else { bail!("four medians expected") };
    let stored = miss.counter("wasmcustom.aurelis_cache_stores_total");
    let miss_ratio = miss_m.rps / plain_m.rps;
    table.push(row("5a plain Envoy proxy (unique POSTs)", Some(plain_m), "", "baseline".into(), "", None));
    table.push(row(
        "5b miss through the filter (stored)",
        Some(miss_m),
        "5a",
        format!("{miss_ratio:.2}x"),
        ">= 0.75x",
        Some(miss_ratio >= 0.75),
    ));
    table.push(null_native_row("5n null native module + proxy (ABI floor)", null_proxy_m, plain_m, "5a"));
    table.push(native_miss_row(
        miss_native_m,
        plain_m,
        null_proxy_m,
        miss_native.counter("wasmcustom.aurelis_cache_stores_total"),
    ));
    drop((miss_native, null_proxy));

    // 6: fixed rate, open loop, half of plain Envoy's saturation.
    let rate = (plain_m.rps / 2.0).floor();
    let mut p99 = [Vec::new(), Vec::new()];
    for round in 0..3 {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let stack = if i == 0 { &plain } else { &miss };
            let result = open_loop_pinned(&stack.url(CHAT), rate, SECONDS, &format!("fixed r{round} s{i}"))?;
            if result.errors > 0 {
                bail!("{} errors at {rate} req/s against {}", result.errors, stack.url(CHAT));
            }
            if let Some(v) = p99.get_mut(i) {
                v.push(result.p99_ms);
            }
        }
    }
    let [plain_p99, miss_p99] = p99.map(median);
    let added = miss_p99 - plain_p99;
    table.push(row(
        &format!("6 misses at {rate:.0} req/s: p99 {plain_p99:.2} -> {miss_p99:.2} ms"),
        None,
        "5a",
        format!("{added:+.2} ms p99"),
        "<= 0.3 ms",
        Some(added <= 0.3),
    ));
    drop((plain, miss));

    // 7: host calls per hit and per miss, with the counting build (unpinned, short).
    let counting = Stack::start(StackOptions {
        wasm: Some(paths::counting_filter()?),
        filter_config: with_bench_consumer(json!({})),
        upstream_port,
        ..StackOptions::default()
    })?;
    prime(&counting)?;
    let calls = host_calls(&counting, &same, dir.path())?;
    table.push(row("7 host calls per hit / per miss", None, "", calls, "", None));
    drop((counting, upstream));

    print_table(&table);
    println!(
        "(5b stored {stored} answers; 2 is the cost of any proxy-wasm filter that reads the body here; \
         the upstream Envoy of 5-6 shares CPU {LOAD_CPU} with the load generator)"
    );
    println!("pinned scenarios took {:.0} s", started.elapsed().as_secs_f64());

    extra::l2_hit_cost()?;
    l3::l3_hit_cost()?;
    extra::l1_memory_bound()?;
    extra::limiter_cost(dir.path())?;
    extra::limiter_memory_under_key_flood()?;
    println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `aurelis-bench host-calls`: scenario 7 alone (the counting build against an upstream Envoy).
fn host_calls_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let body = r#"{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}}"#;
    let upstream = Stack::start(StackOptions {
        with_filter: false,
        direct_response: Some(body.into()),
        ..StackOptions::default()
    })?;
    let counting = Stack::start(StackOptions {
        wasm: Some(paths::counting_filter()?),
        filter_config: with_bench_consumer(json!({})),
        upstream_port: Some(port_of(&upstream.gateway_url)?),
        ..StackOptions::default()
    })?;
    prime(&counting)?;
    let same = same_request_script(dir.path(), "same.lua", &same_body(), &[("authorization", BEARER)])?;
    println!("host calls per request: {}", host_calls(&counting, &same, dir.path())?);
    Ok(())
}

/// Runs the open-loop generator in a child process pinned to the load CPU.
fn open_loop_pinned(url: &str, rate: f64, seconds: u32, prefix: &str) -> Result<OpenLoopResult> {
    let out = Command::new("taskset")
        .args(["-c", LOAD_CPU])
        .arg(std::env::current_exe()?)
        .args(["open-loop", url, &rate.to_string(), &seconds.to_string(), prefix])
        .output()
        .context("running the open-loop generator")?;
    if !out.status.success() {
        bail!("open-loop generator failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `aurelis-bench open-loop URL RATE SECONDS PREFIX`: unique POSTs at RATE for SECONDS (after a
/// 1 s warm-up), JSON result on stdout.
fn open_loop_child(args: &[String]) -> Result<()> {
    let [url, rate, seconds, prefix] = args else { bail!("open-loop URL RATE SECONDS PREFIX") };
    let rate: f64 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    let body = |i: u64| {
        format!(r#"{{"model":"gpt-4o-mini","temperature":0,"messages":[{{"role":"user","content":"{prefix} {i}"}}]}}"#)
    };
    let result = open_loop(url, rate, Duration::from_secs(seconds), Duration::from_secs(1), 64, &body);
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// `wasmcustom.aurelis_host_calls_total`, or `None` when the module does not publish it.
fn host_call_counter(stack: &Stack) -> Option<u64> {
    let stats = stack.envoy_stats("aurelis_host_calls_total").ok()?;
    stats
        .lines()
        .find(|l| l.starts_with("wasmcustom.aurelis_host_calls_total:"))
        .and_then(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()))
}

/// The counter once it stops changing: two reads ~100 ms apart agree (at most 3 s). The
/// filter defines the stat at its first flush (a timer tick after the first counted call), so
/// `None` only once it has had a second to appear.
fn settled_counter(stack: &Stack) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = host_call_counter(stack);
    while last.is_none() && Instant::now() < deadline - Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        last = host_call_counter(stack);
    }
    let mut last = last?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = host_call_counter(stack)?;
        if now == last || Instant::now() > deadline {
            return Some(now);
        }
        last = now;
    }
}

fn host_calls(stack: &Stack, same: &Path, dir: &Path) -> Result<String> {
    let mut per = Vec::new();
    for (phase, script) in
        [("hit", same.to_path_buf()), ("miss", unique_request_script(dir, "count.lua", "count miss", BEARER)?)]
    {
        let Some(before) = settled_counter(stack) else {
            return Ok("n/a (counting build lacks the stat)".into());
        };
        let sample = wrk(&stack.url(CHAT), &script, 8, 2, None)?;
        let after = settled_counter(stack).unwrap_or(before);
        per.push(format!("{phase} {:.1}", (after - before) as f64 / sample.requests.max(1) as f64));
    }
    Ok(per.join(", "))
}

/// The null native module (`devstack/null-native`) in the filter's place: what the dynamic
/// module boundary alone costs a request that waits for its body.
fn with_null_module(options: StackOptions) -> Result<StackOptions> {
    Ok(native(StackOptions { native_dir: Some(paths::null_native_dir()?), ..options }))
}

/// Plain Envoy's proxy (the miss baseline) with the null native module in front.
fn null_proxy_options(upstream_port: Option<u16>) -> StackOptions {
    StackOptions { route_unknown_models: true, upstream_port, ..StackOptions::default() }
}

/// A null-module row: its ratio to the baseline `versus` (no target; the floor the native
/// filter's own rows are read against).
fn null_native_row(name: &str, null_m: Measured, baseline: Measured, versus: &str) -> Row {
    let ratio = null_m.rps / baseline.rps;
    row(name, Some(null_m), versus, format!("{ratio:.2}x"), "", None)
}

/// The native hit against C (the target), and against the null module of the same rounds in
/// brackets: on these shared cores whole runs drift by ±20%, the ratio to the floor much less.
fn native_hit_row(native_m: Measured, c_m: Measured, floor_m: Measured) -> Row {
    let ratio = native_m.rps / c_m.rps;
    let result = format!("{ratio:.2}x ({:.2}x 2n)", native_m.rps / floor_m.rps);
    row("3n L1 hit, native filter", Some(native_m), "1", result, ">= 0.85x", Some(ratio >= 0.85))
}

/// The native miss against plain Envoy (the target) and, in brackets, against the null module.
fn native_miss_row(native_m: Measured, plain_m: Measured, floor_m: Measured, stored: u64) -> Row {
    let ratio = native_m.rps / plain_m.rps;
    let name = format!("5c miss, native filter ({stored} stored)");
    let result = format!("{ratio:.2}x ({:.2}x 5n)", native_m.rps / floor_m.rps);
    row(&name, Some(native_m), "5a", result, ">= 0.92x", Some(ratio >= 0.92))
}

/// `aurelis-bench native`: only the native filter's rows and their baselines (C and the Wasm
/// hit; plain Envoy and the Wasm miss), 3 rounds of 3 s: a short, pinned check.
fn native_only() -> Result<()> {
    const SHORT_ROUNDS: usize = 3;
    const SHORT_SECONDS: u32 = 3;
    let dir = tempfile::tempdir()?;
    println!(
        "aurelis bench (native): Envoy --concurrency 1 on CPU {ENVOY_CPU}, wrk -t1 -c{CONNECTIONS} -d{SHORT_SECONDS}s on CPU \
         {LOAD_CPU}, {SHORT_ROUNDS} interleaved rounds, medians"
    );
    let mut table = Vec::new();
    let hit = Stack::start(pinned(StackOptions::default()))?;
    let answer = prime(&hit)?;
    let hit_native = Stack::start(native(StackOptions::default()))?;
    prime(&hit_native)?;
    let direct = |options: StackOptions| pinned(StackOptions { direct_response: Some(answer.clone()), ..options });
    let c = Stack::start(direct(StackOptions { with_filter: false, ..StackOptions::default() }))?;
    post(&c.url(CHAT), &same_body(), Some(BEARER)).context("the baseline answers the hit request")?;
    let null_native = Stack::start(direct(with_null_module(StackOptions::default())?))?;
    let same = same_request_script(dir.path(), "same.lua", &same_body(), &[("authorization", BEARER)])?;
    let stacks = [&c, &hit, &hit_native, &null_native];
    let hits = rounds_of(&stacks, SHORT_ROUNDS, SHORT_SECONDS, |_, _| Ok(same.clone()))?;
    let [c_m, hit_m, native_m, null_native_m] = hits[..] else { bail!("four medians expected") };
    table.push(row("1 C: Envoy buffer + direct_response", Some(c_m), "", "baseline".into(), "", None));
    let hit_ratio = hit_m.rps / c_m.rps;
    table.push(row(
        "3 L1 hit (Wasm)",
        Some(hit_m),
        "1",
        format!("{hit_ratio:.2}x"),
        ">= 0.62x",
        Some(hit_ratio >= 0.62),
    ));
    table.push(null_native_row("2n null native module (ABI floor)", null_native_m, c_m, "1"));
    table.push(native_hit_row(native_m, c_m, null_native_m));
    drop((c, hit, hit_native, null_native));

    let (_upstream, plain, upstream_port) = upstream_and_plain(&answer)?;
    let miss = Stack::start(pinned(StackOptions { upstream_port, ..StackOptions::default() }))?;
    let miss_native = Stack::start(native(StackOptions { upstream_port, ..StackOptions::default() }))?;
    let null_proxy = Stack::start(with_null_module(null_proxy_options(upstream_port))?)?;
    let stacks = [&plain, &miss, &miss_native, &null_proxy];
    let misses = rounds_of(&stacks, SHORT_ROUNDS, SHORT_SECONDS, |round, i| {
        let prefix = format!("bench native miss r{round} s{i}");
        unique_request_script(dir.path(), &format!("unique-{round}-{i}.lua"), &prefix, BEARER)
    })?;
    let [plain_m, miss_m, native_m, null_proxy_m] = misses[..] else { bail!("four medians expected") };
    table.push(row("5a plain Envoy proxy (unique POSTs)", Some(plain_m), "", "baseline".into(), "", None));
    let miss_ratio = miss_m.rps / plain_m.rps;
    table.push(row(
        "5b miss, Wasm filter (stored)",
        Some(miss_m),
        "5a",
        format!("{miss_ratio:.2}x"),
        ">= 0.75x",
        Some(miss_ratio >= 0.75),
    ));
    table.push(null_native_row("5n null native module + proxy (ABI floor)", null_proxy_m, plain_m, "5a"));
    table.push(native_miss_row(
        native_m,
        plain_m,
        null_proxy_m,
        miss_native.counter("wasmcustom.aurelis_cache_stores_total"),
    ));
    print_table(&table);
    Ok(())
}

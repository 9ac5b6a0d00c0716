//! `aurelis-bench hold`: the native scenarios' stacks (and the null module's), started and pinned exactly as the bench
//! starts them, then held until stdin closes, for a profiler (`perf record -p`, `perf stat -p`)
//! or a manual `wrk`. Prints one line per stack: name, pid, URL, admin URL and config file.
use anyhow::{bail, Result};
use aurelis_devstack::{Stack, StackOptions};
use std::io::Read;

use crate::{native, null_proxy_options, pinned, prime, upstream_and_plain, with_null_module, BEARER, CHAT};

pub fn hold() -> Result<()> {
    let hit_native = Stack::start(native(StackOptions::default()))?;
    let answer = prime(&hit_native)?;
    let c = Stack::start(pinned(StackOptions {
        with_filter: false,
        direct_response: Some(answer.clone()),
        ..StackOptions::default()
    }))?;
    let (_upstream, plain, upstream_port) = upstream_and_plain(&answer)?;
    let miss_native = Stack::start(native(StackOptions { upstream_port, ..StackOptions::default() }))?;
    let null_native = Stack::start(with_null_module(pinned(StackOptions {
        direct_response: Some(answer.clone()),
        ..StackOptions::default()
    }))?)?;
    let null_proxy = Stack::start(with_null_module(null_proxy_options(upstream_port))?)?;
    let stacks = [
        ("c", &c),
        ("hit_native", &hit_native),
        ("null_native", &null_native),
        ("plain", &plain),
        ("miss_native", &miss_native),
        ("null_proxy", &null_proxy),
    ];
    for (name, stack) in stacks {
        let Some(pid) = stack.envoy.pid() else { bail!("{name}: Envoy has no pid") };
        println!(
            "{name} pid={pid} url={} admin={} config={}",
            stack.url(CHAT),
            stack.admin_url,
            stack.envoy_config_path.display()
        );
    }
    println!("authorization: {BEARER}; close stdin to stop");
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

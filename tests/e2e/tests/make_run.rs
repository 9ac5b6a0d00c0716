//! `make run` as a newcomer uses it: the `aurelis-run` binary starts every process on the
//! documented ports, serves a MISS then a HIT (through L2's cache service, which holds this run's
//! token), and Ctrl-C stops everything it started.
//! (Uses the fixed ports 10000, 9901, 8000, 6379, 18000-18001: stop a running `make run` first.)
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn post(body: &str) -> (String, String) {
    match ureq::post("http://127.0.0.1:10000/v1/chat/completions")
        .set("content-type", "application/json")
        .send_string(body)
    {
        Ok(r) => (r.header("x-aurelis-cache").unwrap_or("").to_string(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("gateway: {e}"),
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[test]
fn make_run_serves_a_miss_then_a_hit_and_stops_on_ctrl_c() {
    let exe = aurelis_devstack::paths::launcher().unwrap_or_else(|e| panic!("{e:#}"));
    let mut child =
        Command::new(exe).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains("Ctrl-C stops everything");
                banner.push(line);
                if done {
                    break;
                }
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("aurelis-run exited early ({status}):\n{}", banner.join("\n"));
                }
            }
        }
    }
    let text = banner.join("\n");
    assert!(text.contains("http://127.0.0.1:10000/v1/chat/completions"), "{text}");
    assert!(text.contains("curl"), "{text}");

    let body = r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let (first, first_body) = post(body);
    let (second, second_body) = post(body);
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(first_body, second_body);
    for port in [9901, 8000, 6379, 18000, 18080] {
        assert!(port_open(port), "port {port} should be serving");
    }
    // L2 is closed to callers without this run's token (which only the processes hold), and
    // Redis is a bounded cache.
    match ureq::get("http://127.0.0.1:18080/v1/entries/some-key").call() {
        Err(ureq::Error::Status(status, _)) => assert_eq!(status, 401, "the cache service without its token"),
        other => panic!("the cache service answered a call without its token: {other:?}"),
    }
    assert!(!text.contains("Bearer"), "{text}");
    // The filter holds it (and the signing key): its fill reached L2.
    let stored = || {
        let stats = ureq::get("http://127.0.0.1:9901/stats?filter=aurelis_l2_stores_total.result.ok")
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        stats.rsplit(": ").next().and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while stored() == 0 {
        assert!(Instant::now() < deadline, "no L2 store confirmed: the filter lacks this run's token or key");
        std::thread::sleep(Duration::from_millis(50));
    }
    let redis = |key: &str| {
        let out = Command::new("redis-cli").args(["-p", "6379", "CONFIG", "GET", key]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
    };
    assert_eq!(redis("maxmemory-policy"), "maxmemory-policy\nallkeys-lru");
    assert_eq!(redis("maxmemory"), "maxmemory\n268435456");

    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let stopped = Instant::now() + Duration::from_secs(15);
    while Instant::now() < stopped && child.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().ok().flatten().is_some(), "aurelis-run did not stop on Ctrl-C");
    std::thread::sleep(Duration::from_millis(300));
    for port in [10000, 9901, 8000, 6379, 18000] {
        assert!(!port_open(port), "port {port} still open after Ctrl-C");
    }
}

//! Overload: hundreds of connections hammering orders at once; the front-end sheds with 503,
//! every accepted order is fast enough and logged, memory stays bounded, nothing is lost.
//!
//! Caveats: latency and RSS bounds are generous (two shared cores); the RSS is read from
//! `/proc`, so the test is Linux-only in what it measures.

use super::*;

/// How long the overload runs.
const OVERLOAD_FOR: Duration = Duration::from_secs(4);
/// Connections hammering orders at once.
const OVERLOAD_CONNECTIONS: usize = 512;
/// How long a flooder waits after a 503 before it sends again, as a client told "retry later"
/// would: without it the shed flooders spin and starve the accepted orders of CPU.
const OVERLOAD_BACKOFF: Duration = Duration::from_millis(20);
/// Longest an accepted (200) order may take under overload.
const OVERLOAD_MAX_LATENCY: Duration = Duration::from_secs(6);
/// Most an RSS may grow under overload.
const OVERLOAD_MAX_RSS_GROWTH_KB: u64 = 256 * 1024;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn overload_sheds_with_503_and_loses_nothing() {
    let c = quiet_cluster();
    let services = Process::ALL;
    let rss = |c: &Cluster| -> Vec<(String, u64)> {
        services
            .iter()
            .map(|&s| (s.name(), c.pid(s).map_or(0, rss_kb)))
            .collect()
    };
    let rss_before = rss(&c);
    let acknowledged = Mutex::new(Vec::<Order>::new());
    let statuses = Mutex::new(BTreeMap::<u16, u64>::new());
    let latencies = Mutex::new(Vec::<Duration>::new());
    let stop_at = Instant::now() + OVERLOAD_FOR;
    thread::scope(|s| {
        for t in 0..OVERLOAD_CONNECTIONS {
            let (c, acknowledged, statuses, latencies) = (&c, &acknowledged, &statuses, &latencies);
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn_scoped(s, move || {
                    let stocks = ["GameStart", "FishCo", "BoarCo", "MenhirCo"];
                    let mut i = 0u64;
                    let mut stream: Option<TcpStream> = None;
                    while Instant::now() < stop_at {
                        i += 1;
                        let name = stocks[(t + i as usize) % stocks.len()];
                        let kind = if i.is_multiple_of(2) { "buy" } else { "sell" };
                        let body = format!(
                            r#"{{"name":"{name}","quantity":1,"type":"{kind}","request_id":"ov-{t}-{i}"}}"#
                        );
                        let started = Instant::now();
                        // One keep-alive connection per flooder, so that all of them are in
                        // the front-end at once (reconnecting for every request would leave
                        // most waiting in the kernel's accept queue instead).
                        if stream.is_none() {
                            stream = TcpStream::connect(&c.frontend).ok();
                            if let Some(s) = &stream {
                                let _ = s.set_read_timeout(Some(CALL));
                            }
                        }
                        let Some(conn) = stream.as_mut() else {
                            *statuses.lock().unwrap().entry(0).or_default() += 1;
                            continue;
                        };
                        let request = format!(
                            "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let response = conn
                            .write_all(request.as_bytes())
                            .ok()
                            .and_then(|()| read_one_response(conn));
                        let ok = response.is_some();
                        if !ok {
                            stream = None;
                        }
                        let response = response.unwrap_or_default();
                        let got = ok.then(|| parse_response(&response)).flatten();
                        let status = got.as_ref().map_or(0, |g| g.0);
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                        if status == 503 {
                            thread::sleep(OVERLOAD_BACKOFF);
                        }
                        if let Some((200, body)) = got {
                            latencies.lock().unwrap().push(started.elapsed());
                            let number = body["data"]["transaction_number"].as_u64().unwrap();
                            acknowledged.lock().unwrap().push(Order {
                                number,
                                name: name.into(),
                                kind: if kind == "buy" { OrderType::Buy } else { OrderType::Sell },
                                quantity: 1,
                            });
                        }
                    }
                })
                .unwrap();
        }
    });
    let rss_after = rss(&c);
    let statuses = statuses.into_inner().unwrap();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    let acknowledged = acknowledged.into_inner().unwrap();
    let max = latencies.last().copied().unwrap_or_default();
    let p99 = latencies
        .get(latencies.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "overload: {OVERLOAD_CONNECTIONS} connections for {OVERLOAD_FOR:?}: statuses {statuses:?} \
         (0 = no answer), accepted latency p99 {p99:?} max {max:?}"
    );
    for ((name, before), (_, after)) in rss_before.iter().zip(&rss_after) {
        println!("overload: RSS of {name}: {before} kB before, {after} kB after");
        assert!(
            after.saturating_sub(*before) < OVERLOAD_MAX_RSS_GROWTH_KB,
            "{name} grew from {before} kB to {after} kB"
        );
    }
    assert!(!acknowledged.is_empty(), "some orders were accepted");
    assert!(
        statuses.get(&503).is_some_and(|n| *n > 0),
        "a flood of {OVERLOAD_CONNECTIONS} connections is shed with 503: {statuses:?}"
    );
    for status in statuses.keys() {
        assert!(
            matches!(status, 200 | 409 | 503),
            "overload answered {status}: {statuses:?}"
        );
    }
    assert!(max < OVERLOAD_MAX_LATENCY, "an accepted order took {max:?}");
    // Nothing acknowledged is lost: every invariant, over every acknowledged order.
    c.wait_logs_identical(CALL).unwrap();
    common::assert_invariants(&c, &acknowledged);
    assert_eq!(raw(&c.frontend, "GET", "/health", "").0, 200);
}

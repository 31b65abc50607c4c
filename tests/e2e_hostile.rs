//! Hostile input on real processes: intruders without the deployment secret, junk on
//! every HTTP and line port, bad values on every POST, overload, and broken state on start.
//! Each test prints how many cases it tried.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bazaar::api::{Order, OrderType};
use bazaar::selection;
use bazaar::testkit::cluster::Cluster;
use common::{raw, Options, Process};
use serde_json::{json, Value};

/// How long one junk case may take to be answered or closed (covers the server's 5 s request
/// timeout for a body that never arrives).
const JUNK_ANSWER_TIMEOUT: Duration = Duration::from_secs(8);
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
/// How long a binary started on broken state may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often [`run_to_exit`] looks whether the binary has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// One request's timeout in the overload and slow-reader tests.
const CALL: Duration = Duration::from_secs(10);

fn secret(c: &Cluster) -> String {
    let text = std::fs::read_to_string(&c.config_path).unwrap();
    let config = bazaar::config::Config::from_yaml(&text, &|_| None).unwrap();
    config.secret
}

/// One raw request with extra header lines: status and JSON body.
fn raw_with(addr: &str, method: &str, target: &str, headers: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(CALL)).unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_response(&response).unwrap_or_else(|| panic!("no response from {addr} {target}"))
}

fn parse_response(bytes: &[u8]) -> Option<(u16, Value)> {
    let text = String::from_utf8_lossy(bytes);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Some((status, body))
}

/// Reads one HTTP response (headers, then `Content-Length` bytes of body) from a keep-alive
/// connection; `None` when the connection ends or times out first.
fn read_one_response(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                bytes.truncate(end + 4 + length);
                return Some(bytes);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Every file of the data directory with its bytes.
fn files(c: &Cluster) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(c.data_dir()).unwrap().flatten() {
        if entry.path().is_file() {
            out.insert(entry.path(), std::fs::read(entry.path()).unwrap());
        }
    }
    out
}

/// What must not change: every data file, each replica's position, the catalog's stocks and
/// state, the front-end's cache.
fn snapshot(c: &Cluster) -> (BTreeMap<PathBuf, Vec<u8>>, Vec<Value>) {
    let mut views = Vec::new();
    for id in 1..=3 {
        let h = c.replica_health(id).unwrap();
        views.push(json!([
            id, h.role, h.epoch, h.leader, h.latest, h.commit, h.applied
        ]));
    }
    views.push(raw(&c.catalog, "GET", "/state", "").1);
    views.push(raw(&c.frontend, "GET", "/cache", "").1);
    (files(c), views)
}

fn assert_unchanged(what: &str, before: &(BTreeMap<PathBuf, Vec<u8>>, Vec<Value>), c: &Cluster) {
    let after = snapshot(c);
    assert_eq!(before.1, after.1, "{what}: a view changed");
    assert_eq!(
        before.0.keys().collect::<Vec<_>>(),
        after.0.keys().collect::<Vec<_>>(),
        "{what}: files"
    );
    for (path, bytes) in &before.0 {
        assert!(
            after.0[path] == *bytes,
            "{what}: {} changed",
            path.display()
        );
    }
}

fn line(addr: &str, text: &str) -> String {
    selection::exchange(addr, text, selection::YOU_WIN_TIMEOUT)
        .unwrap_or_else(|| panic!("no answer to {text:?} on {addr}"))
}

/// A quiet cluster: a leader, every replica applied what it holds, cache warm for one stock.
fn quiet_cluster() -> Cluster {
    let c = common::start(Options {
        log_level: "info".into(),
        ..Options::default()
    });
    let (status, _) = raw(
        &c.frontend,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(status, 200);
    common::wait_for("logs identical", CALL, || c.wait_logs_identical(CALL).ok());
    // Followers learn the commit with the next heartbeat; only the leader hears the catalog.
    common::wait_for("every replica knows order 0 committed", CALL, || {
        (1..=3)
            .all(|id| c.replica_health(id).is_ok_and(|h| h.commit == 0))
            .then_some(())
    });
    assert_eq!(raw(&c.frontend, "GET", "/stocks/GameStart", "").0, 200);
    c
}

#[test]
fn intruders_get_401_or_err_and_change_nothing() {
    let c = quiet_cluster();
    let secret = secret(&c);
    let before = snapshot(&c);
    let leader = c.wait_leader().unwrap();
    let entry = json!({"number":1,"name":"GameStart","type":"sell","quantity":1000,"epoch":99,"request_id":"evil"});
    let propagate = json!({"epoch":99,"leader":1,"prev":{"number":0,"epoch":1},"entries":[entry],"base":0,"commit":1}).to_string();
    let vote = json!({"epoch":99,"candidate":1,"pre":false}).to_string();
    let hello = json!({"epoch":99,"leader":1}).to_string();
    let apply = json!({"epoch":99,"leader":1,"entries":[entry]}).to_string();
    let mut endpoints: Vec<(String, &str, String)> = Vec::new();
    for id in 1..=3 {
        let addr = c.http_addr(Process::Order(id));
        endpoints.push((addr.clone(), "/propagate", propagate.clone()));
        endpoints.push((addr, "/vote", vote.clone()));
    }
    endpoints.push((c.catalog.clone(), "/leader", hello));
    endpoints.push((c.catalog.clone(), "/apply", apply));
    endpoints.push((
        c.frontend.clone(),
        "/invalidation",
        json!({"names":["GameStart"]}).to_string(),
    ));
    endpoints.push((c.frontend.clone(), "/invalidation/GameStart", String::new()));
    let wrong = [
        String::new(),
        "Authorization: Bearer \r\n".to_string(),
        "Authorization: Bearer wrong\r\n".to_string(),
        format!("Authorization: Bearer {}x\r\n", secret),
        format!("Authorization: Basic {secret}\r\n"),
        format!("Authorization: bearer {secret}\r\n"),
        format!("Authorization: Bearer {}\r\n", &secret[..secret.len() - 1]),
    ];
    let mut cases = 0;
    for (addr, path, body) in &endpoints {
        for headers in &wrong {
            let got = raw_with(addr, "POST", path, headers, body);
            common::assert_error(&format!("{addr}{path} with {headers:?}"), &got, 401);
            cases += 1;
        }
    }
    // The line protocol: the lines that change who leads need the secret.
    for id in 1..=3 {
        let (_, broadcast, health) = &c.replicas[&id];
        let other = if id == leader { 1 + id % 3 } else { id };
        for text in [
            "You win".to_string(),
            "You win 99".to_string(),
            "You win 99 wrong".to_string(),
            format!("You win 99 {secret}x"),
            format!("{other}"),
            format!("{other} 99"),
            format!("{other} 99 wrong"),
            format!("{other} 99 {}", &secret[1..]),
        ] {
            assert_eq!(line(broadcast, &text), "ERR unauthorized", "{text:?}");
            cases += 1;
        }
        for text in [
            format!("You win 99 {secret}"),
            format!("{other} 99 {secret}"),
        ] {
            assert_eq!(line(health, &text), "ERR unknown command", "{text:?}");
            cases += 1;
        }
        assert_eq!(line(broadcast, "Ping"), "OK");
    }
    assert_unchanged("intruders", &before, &c);
    // The service still works, and the rightful selection line is taken.
    assert_eq!(
        line(&c.replicas[&leader].1, &format!("You win 0 {secret}")),
        format!("OK {}", c.replica_health(leader).unwrap().epoch)
    );
    let (status, _) = raw(
        &c.frontend,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(status, 200);
    println!("intruders: {cases} cases, every one refused, nothing changed");
}

/// What a junk case got: a status line, or the connection closed without one.
#[derive(Debug)]
enum Outcome {
    Status(u16),
    Closed,
}

/// Sends `bytes` (write errors are fine: the server may close first), optionally half-closes,
/// and reads until the answer's status line or a close.
fn junk(addr: &str, bytes: &[u8], half_close: bool) -> Outcome {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(JUNK_ANSWER_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(JUNK_ANSWER_TIMEOUT)).unwrap();
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            started.elapsed() < JUNK_ANSWER_TIMEOUT * 2,
            "{addr}: neither an answer nor a close"
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("{addr}: no answer and no close within {JUNK_ANSWER_TIMEOUT:?}")
            }
            Err(_) => break,
        }
    }
    match parse_response(&got) {
        Some((status, _)) => Outcome::Status(status),
        None => Outcome::Closed,
    }
}

fn assert_refused(what: &str, outcome: Outcome) {
    match outcome {
        Outcome::Status(s) if (400..500).contains(&s) => {}
        Outcome::Closed => {}
        other => panic!("{what}: {other:?}, want a 4xx or a close"),
    }
}

fn http_junk_cases(addr: &str) -> usize {
    let health = |addr: &str| assert_eq!(raw(addr, "GET", "/health", "").0, 200, "{addr}");
    let mut garbage: Vec<u8> = (0..4096).map(|_| fastrand::u8(..)).collect();
    garbage.extend_from_slice(b"\r\n\r\n");
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-Junk: 1\r\n".repeat(20_000)
    );
    let huge_length =
        "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000000000\r\n\r\n{}";
    let short_body = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"name\":";
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("binary garbage", garbage, false),
        ("100 KB request line", long_line.into_bytes(), false),
        ("20,000 headers", many_headers.into_bytes(), false),
        (
            "Content-Length 10^20",
            huge_length.as_bytes().to_vec(),
            false,
        ),
        ("short body, then EOF", short_body.as_bytes().to_vec(), true),
        (
            "short body, then silence",
            short_body.as_bytes().to_vec(),
            false,
        ),
        ("NUL bytes", vec![0u8; 1024], false),
        ("bare newlines", b"\n\n\n\n".to_vec(), true),
    ];
    let n = cases.len();
    for (what, bytes, half_close) in cases {
        assert_refused(&format!("{addr}: {what}"), junk(addr, &bytes, half_close));
        health(addr);
    }
    // HTTP/1.0 is served, and closed after the answer.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(CALL)).unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(
        parse_response(&out).map(|r| r.0),
        Some(200),
        "{addr}: HTTP/1.0"
    );
    // Two pipelined requests get two answers, in order.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(CALL)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nosuch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404"], "{addr}: pipelined");
    // A client that reads its answer one byte a second holds only its own connection.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(CALL)).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        let mut one = [0u8; 1];
        assert_eq!(slow.read(&mut one).unwrap(), 1);
        health(addr);
        thread::sleep(Duration::from_secs(1));
    }
    n + 3
}

fn line_junk_cases(addr: &str) -> usize {
    let ping = |addr: &str| assert_eq!(line(addr, "Ping"), "OK", "{addr}");
    let garbage: Vec<u8> = (0..4096).map(|_| fastrand::u8(..)).collect();
    let mut megabyte = vec![b'7'; 1024 * 1024];
    megabyte.push(b'\n');
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("binary garbage", garbage, false),
        ("1 MB line", megabyte, false),
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("no line end, then EOF", b"Pin".to_vec(), true),
        ("no line end, then silence", b"You win 3".to_vec(), false),
        ("NUL bytes", vec![0u8; 300], true),
    ];
    let n = cases.len();
    for (what, bytes, half_close) in cases {
        // The line protocol answers `ERR ...` or closes: never `OK`.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(JUNK_ANSWER_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(JUNK_ANSWER_TIMEOUT)).unwrap();
        let _ = stream.write_all(&bytes);
        if half_close {
            let _ = stream.shutdown(Shutdown::Write);
        }
        let mut answer = Vec::new();
        let _ = (&stream).take(1024).read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("ERR"),
            "{addr}: {what}: {answer:?}"
        );
        ping(addr);
    }
    // A client that reads one byte a second.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(CALL)).unwrap();
    slow.write_all(b"Ping\n").unwrap();
    for _ in 0..2 {
        let mut one = [0u8; 1];
        let _ = slow.read(&mut one);
        ping(addr);
        thread::sleep(Duration::from_secs(1));
    }
    n + 2
}

#[test]
fn junk_on_every_http_and_line_port() {
    let c = quiet_cluster();
    let before = snapshot(&c);
    let mut http: Vec<String> = vec![c.frontend.clone(), c.catalog.clone()];
    let mut lines = Vec::new();
    for id in 1..=3 {
        http.push(c.replicas[&id].0.clone());
        lines.push(c.replicas[&id].1.clone());
        lines.push(c.replicas[&id].2.clone());
    }
    let cases = Arc::new(AtomicU64::new(0));
    thread::scope(|s| {
        for addr in &http {
            let cases = cases.clone();
            s.spawn(move || cases.fetch_add(http_junk_cases(addr) as u64, Ordering::SeqCst));
        }
        for addr in &lines {
            let cases = cases.clone();
            s.spawn(move || cases.fetch_add(line_junk_cases(addr) as u64, Ordering::SeqCst));
        }
    });
    assert_unchanged("junk", &before, &c);
    println!(
        "junk: {} cases on {} HTTP and {} line ports, each refused or closed, the next request served",
        cases.load(Ordering::SeqCst),
        http.len(),
        lines.len()
    );
}

/// Every client-facing order body that must be refused, whoever receives it.
fn bad_orders() -> Vec<String> {
    let long = "x".repeat(10 * 1024);
    let mut bodies: Vec<String> = [
        "",
        "{",
        "null",
        "[]",
        "\"order\"",
        "{}",
        r#"{"name":"GameStart","quantity":1,"type":"buy""#,
        r#"{"name":"GameStart","quantity":1}"#,
        r#"{"name":"GameStart","type":"buy"}"#,
        r#"{"quantity":1,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":0,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":-1,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1.5,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1.0,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1e3,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":9223372036854775808,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":18446744073709551616,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":100000000000000000000000000,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":"1","type":"buy"}"#,
        r#"{"name":"GameStart","quantity":null,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":true,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1,"type":"hold"}"#,
        r#"{"name":"GameStart","quantity":1,"type":"BUY"}"#,
        r#"{"name":"GameStart","quantity":1,"type":1}"#,
        r#"{"name":"GameStart","quantity":1,"type":null}"#,
        r#"{"name":1,"quantity":1,"type":"buy"}"#,
        r#"{"name":["GameStart"],"quantity":1,"type":"buy"}"#,
        r#"{"name":"","quantity":1,"type":"buy"}"#,
        r#"{"name":"Gämé","quantity":1,"type":"buy"}"#,
        r#"{"name":"GameStart/..","quantity":1,"type":"buy"}"#,
        r#"{"name":"../catalog.json","quantity":1,"type":"buy"}"#,
        r#"{"name":"..","quantity":1,"type":"buy"}"#,
        r#"{"name":"Game%00Start","quantity":1,"type":"buy"}"#,
        r#"{"name":"Game\u0000Start","quantity":1,"type":"buy"}"#,
        r#"{"name":"Game%2FStart","quantity":1,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1,"type":"buy","request_id":""}"#,
        r#"{"name":"GameStart","quantity":1,"type":"buy","request_id":7}"#,
        r#"{"name":"GameStart","quantity":1,"type":"sell","extra":1,"quantity":0}"#,
        r#"{"name":"GameStart","quantity":1000000,"type":"buy"}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    bodies.push(format!(r#"{{"name":"{long}","quantity":1,"type":"buy"}}"#));
    bodies.push(format!(
        r#"{{"name":"GameStart","quantity":1,"type":"buy","request_id":"{long}"}}"#
    ));
    bodies.push(format!(
        r#"{{"name":"GameStart","quantity":1,"type":"buy","pad":"{}"}}"#,
        "y".repeat(70 * 1024)
    ));
    bodies
}

fn assert_json_4xx(what: &str, got: &(u16, Value)) {
    assert!(
        (400..500).contains(&got.0),
        "{what}: status {} (body {})",
        got.0,
        got.1
    );
    if got.0 != 413 || got.1 != Value::Null {
        assert_eq!(got.1["error"]["code"], got.0, "{what}: body {}", got.1);
    }
}

#[test]
fn bad_values_on_every_post_are_json_4xx() {
    let c = quiet_cluster();
    let secret = secret(&c);
    let auth = format!("Authorization: Bearer {secret}\r\n");
    let leader = c.wait_leader().unwrap();
    let follower = 1 + leader % 3;
    let before = snapshot(&c);
    let epoch = c.replica_health(leader).unwrap().epoch;
    let mut cases = 0;
    // Client orders, on the front-end and straight to the leading replica.
    for body in bad_orders() {
        for addr in [c.frontend.clone(), c.http_addr(Process::Order(leader))] {
            let got = raw(&addr, "POST", "/orders", &body);
            assert_json_4xx(&format!("{addr} /orders {:.80}", body), &got);
            cases += 1;
        }
    }
    // The reference client's POST /order with query parameters.
    for query in [
        "",
        "?stock=GameStart&quantity=-1&type=buy",
        "?stock=GameStart&quantity=0&type=buy",
        "?stock=GameStart&quantity=1.5&type=buy",
        "?stock=GameStart&quantity=99999999999999999999&type=buy",
        "?stock=GameStart&quantity=1&type=hold",
        "?stock=GameStart&quantity=1",
        "?stock=&quantity=1&type=buy",
        "?stock=..%2Fcatalog.json&quantity=1&type=buy",
        "?stock=Game%00Start&quantity=1&type=buy",
        "?stock=GameStart&amp;quantity=x&amp;type=buy",
    ] {
        let got = raw(&c.frontend, "POST", &format!("/order{query}"), "");
        assert_json_4xx(&format!("POST /order{query}"), &got);
        cases += 1;
    }
    // Names in paths.
    for name in [
        "..",
        "%2e%2e",
        "a%2Fb",
        "a%00b",
        "%FF",
        "G%C3%A4m%C3%A9",
        "GameStart%20",
    ] {
        let got = raw(&c.frontend, "GET", &format!("/stocks/{name}"), "");
        assert_json_4xx(&format!("/stocks/{name}"), &got);
        let got = raw(&c.catalog, "GET", &format!("/stocks/{name}"), "");
        assert_json_4xx(&format!("catalog /stocks/{name}"), &got);
        cases += 2;
    }
    let long = "x".repeat(10 * 1024);
    let got = raw(&c.frontend, "GET", &format!("/stocks/{long}"), "");
    assert_json_4xx("10 KB name in a path", &got);
    cases += 1;
    // Internal messages: malformed, wrong types, and valid JSON that lies.
    let entry = |number: u64, name: &str, epoch: u64| json!({"number":number,"name":name,"type":"buy","quantity":1,"epoch":epoch,"request_id":format!("lie-{number}")});
    let malformed = [
        "".to_string(),
        "{".into(),
        "[]".into(),
        "{}".into(),
        r#"{"epoch":"1","leader":1}"#.into(),
        r#"{"epoch":-1,"leader":1,"entries":[]}"#.into(),
        r#"{"epoch":1.5,"leader":1,"entries":[]}"#.into(),
        r#"{"epoch":18446744073709551616,"leader":1,"entries":[]}"#.into(),
    ];
    let mut internal: Vec<(String, &str, String)> = Vec::new();
    for body in &malformed {
        for path in ["/propagate", "/vote"] {
            internal.push((c.http_addr(Process::Order(follower)), path, body.clone()));
        }
        for path in ["/leader", "/apply"] {
            internal.push((c.catalog.clone(), path, body.clone()));
        }
        internal.push((c.frontend.clone(), "/invalidation", body.clone()));
    }
    let lies_to_follower = [
        // Entries whose numbers skip, from the current leader.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(1,"GameStart",epoch),entry(3,"GameStart",epoch)],"base":0,"commit":0}),
        // Numbers out of order.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(2,"GameStart",epoch),entry(1,"GameStart",epoch)],"base":0,"commit":0}),
        // An entry that no leader numbers: quantity 0.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":0,"epoch":epoch,"request_id":"zero"}],"base":0,"commit":0}),
        // An entry from an epoch above the message's.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(1,"GameStart",epoch + 5)],"base":0,"commit":0}),
        // From a replica that does not exist.
        json!({"epoch":epoch,"leader":9,"prev":null,"entries":[],"base":-1,"commit":0}),
    ];
    for lie in &lies_to_follower {
        internal.push((
            c.http_addr(Process::Order(follower)),
            "/propagate",
            lie.to_string(),
        ));
    }
    let lies_to_catalog = [
        json!({"epoch":epoch,"leader":leader,"entries":[entry(1,"GameStart",epoch),entry(3,"GameStart",epoch)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[entry(2,"GameStart",epoch),entry(1,"GameStart",epoch)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[entry(1,"NoSuchStock",epoch)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[entry(1,"GameStart",epoch + 5)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":1000000,"epoch":epoch,"request_id":"too-many"}]}),
        json!({"epoch":epoch,"leader":leader,"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":0,"epoch":epoch,"request_id":"zero"}]}),
        json!({"epoch":epoch,"leader":leader,"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":1,"epoch":epoch,"request_id":long}]}),
        json!({"epoch":epoch - 1,"leader":leader,"entries":[entry(1,"GameStart",epoch - 1)]}),
    ];
    for lie in &lies_to_catalog {
        internal.push((c.catalog.clone(), "/apply", lie.to_string()));
    }
    internal.push((
        c.catalog.clone(),
        "/leader",
        json!({"epoch":epoch - 1,"leader":leader}).to_string(),
    ));
    internal.push((
        c.frontend.clone(),
        "/invalidation",
        json!({"names":"GameStart"}).to_string(),
    ));
    for (addr, path, body) in &internal {
        let got = raw_with(addr, "POST", path, &auth, body);
        assert_json_4xx(&format!("{addr}{path} {:.200}", body), &got);
        cases += 1;
    }
    // A heartbeat whose commit point is beyond the entries the follower holds cannot be told
    // from a leader's page of a long catch-up (commit above the page): it is taken, and the
    // follower shows no commit beyond what it holds (checked with the rest below).
    let far_commit = json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[],"base":0,"commit":50});
    let got = raw_with(
        &c.http_addr(Process::Order(follower)),
        "POST",
        "/propagate",
        &auth,
        &far_commit.to_string(),
    );
    assert!(got.0 == 200 || (400..500).contains(&got.0), "{got:?}");
    cases += 1;
    assert_unchanged("bad values", &before, &c);
    // An entry for a stock that does not exist, from the authenticated leader: a follower
    // cannot tell (it does not know the catalog's stocks) and may store it, but it never
    // commits (the leader does not hold it) and the catalog is untouched.
    let unknown = json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(1,"NoSuchStock",epoch)],"base":0,"commit":0});
    let got = raw_with(
        &c.http_addr(Process::Order(follower)),
        "POST",
        "/propagate",
        &auth,
        &unknown.to_string(),
    );
    assert!(got.0 == 200 || (400..500).contains(&got.0), "{got:?}");
    assert_eq!(before.1[3], raw(&c.catalog, "GET", "/state", "").1);
    cases += 1;
    let (status, _) = raw(
        &c.frontend,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(status, 200, "a good order after the bad ones");
    println!("bad values: {cases} cases, each a JSON 4xx, nothing changed");
}

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

/// Starts one binary with its stderr piped (stdout dropped).
fn spawn_piped(exe: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts one binary on `config` and waits for it to exit: (exit code, stderr).
fn run_to_exit(exe: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = spawn_piped(exe, args);
    let Some(status) = common::poll(EXIT_TIMEOUT, EXIT_POLL, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{} {args:?} still runs on broken state", exe.display());
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// Starts one binary on `config`, waits until a line of its stderr names `file` while it keeps
/// running, and kills it: the line, or `None` if it exited or never said so.
fn run_until_named(exe: &Path, args: &[&str], file: &str) -> Option<String> {
    use std::io::BufRead;
    let mut child = spawn_piped(exe, args);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let named = common::poll(EXIT_TIMEOUT, EXIT_POLL, || {
        rx.try_iter().find(|line| line.contains(file))
    });
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    named.filter(|_| running)
}

#[test]
fn damaged_state_on_start_is_named_kept_and_recovered_from() {
    // A real history: a cluster that traded, then stopped.
    let c = quiet_cluster();
    let dir = c.dir.clone();
    let config = c.config_path.display().to_string();
    let data = c.data_dir();
    let good: BTreeMap<PathBuf, Vec<u8>> = files(&c);
    let binaries = common::binaries();
    let mut c = c;
    for s in Process::ALL {
        c.kill(s);
    }
    let log1 = data.join("orders-1.csv");
    let good_log = good[&log1].clone();
    assert!(!good_log.is_empty());
    let log_text = String::from_utf8(good_log.clone()).unwrap();
    let mut log_lines = log_text.lines();
    let header = log_lines.next().unwrap().to_string();
    let first = log_lines.next().unwrap().to_string();
    assert!(first.starts_with("0,"), "{first}");
    // Entry 0 renumbered (the checksum no longer matches either); damage always has a good
    // line after it (a torn last line is what a crash leaves, and is cut away quietly).
    let renumber = |n: u64| first.replacen("0,", &format!("{n},"), 1);
    let log = |lines: &[String]| format!("{header}\n{}\n", lines.join("\n")).into_bytes();
    // (file, what is wrong, which binary, its bytes, extra flags)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "catalog.json",
            "corrupt",
            "catalog",
            b"{not json".to_vec(),
            vec![],
        ),
        (
            "catalog.json",
            "truncated",
            "catalog",
            good[&data.join("catalog.json")][..40].to_vec(),
            vec![],
        ),
        ("catalog.json", "empty", "catalog", Vec::new(), vec![]),
        (
            "orders-1.state.json",
            "corrupt",
            "order",
            b"\x00\x01garbage".to_vec(),
            vec!["--id", "1"],
        ),
        (
            "orders-1.state.json",
            "truncated",
            "order",
            good[&data.join("orders-1.state.json")][..5].to_vec(),
            vec!["--id", "1"],
        ),
        (
            "orders-1.csv",
            "damaged middle line",
            "order",
            log(&[first.clone(), renumber(1).replace(',', ";"), renumber(2)]),
            vec!["--id", "1"],
        ),
        (
            "orders-1.csv",
            "numbers skip",
            "order",
            log(&[first.clone(), renumber(5), renumber(6)]),
            vec!["--id", "1"],
        ),
        (
            "orders-1.csv",
            "numbers repeat",
            "order",
            log(&[first.clone(), first.clone(), renumber(1)]),
            vec!["--id", "1"],
        ),
    ];
    let mut n = 0;
    for (file, what, service, bytes, extra) in cases {
        let path = data.join(file);
        std::fs::write(&path, &bytes).unwrap();
        let exe = if service == "catalog" {
            &binaries.catalog
        } else {
            &binaries.order
        };
        let mut args = vec!["--config", config.as_str()];
        args.extend(extra);
        let line = run_until_named(exe, &args, file);
        assert!(
            line.is_some(),
            "{file} {what}: the {service} kept running and named the file"
        );
        let kept = data.join(format!("{file}.damaged"));
        assert_eq!(
            std::fs::read(&kept).ok(),
            Some(bytes),
            "{file} {what}: the damaged bytes are kept in {}",
            kept.display()
        );
        // Put every good file back for the next case (recovery may have rewritten others).
        for entry in std::fs::read_dir(&data).unwrap() {
            let p = entry.unwrap().path();
            if !good.contains_key(&p) {
                std::fs::remove_file(&p).unwrap();
            }
        }
        for (p, good_bytes) in &good {
            std::fs::write(p, good_bytes).unwrap();
        }
        n += 1;
    }
    // A data directory that is a file, not a directory: every service that keeps state.
    let moved = dir.join("data.moved");
    std::fs::rename(&data, &moved).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    for (exe, extra) in [
        (&binaries.catalog, vec![]),
        (&binaries.order, vec!["--id", "2"]),
    ] {
        let mut args = vec!["--config", config.as_str()];
        args.extend(extra);
        let (code, err) = run_to_exit(exe, &args);
        assert_eq!(
            code,
            Some(bazaar::startup::EXIT_STATE),
            "data dir is a file: {err}"
        );
        assert!(err.contains("data"), "names the directory: {err}");
        n += 1;
    }
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&moved, &data).unwrap();
    for (path, bytes) in &good {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    println!(
        "broken state: {n} cases, damage named and kept, an unusable data directory exits {}",
        bazaar::startup::EXIT_STATE
    );
}

/// Size of the tmpfs the full-disk test mounts as the data directory: room for a few hundred
/// orders in three logs.
const SMALL_DISK: &str = "48k";
/// How long the full-disk test keeps ordering into a full disk.
const FULL_DISK_FOR: Duration = Duration::from_secs(4);
/// Most orders the full-disk test sends before the disk must have filled.
const FULL_DISK_MAX_ORDERS: usize = 3000;

/// A cluster whose data directory is a small tmpfs; unmounted after the services are stopped.
struct SmallDisk {
    cluster: Option<Cluster>,
    mount: PathBuf,
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let dir = self.cluster.as_ref().map(|c| c.dir.clone());
        drop(self.cluster.take());
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
        if let Some(dir) = dir.filter(|_| !thread::panicking()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).unwrap();
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A full disk on append (a real ENOSPC, on a small tmpfs; skipped where `mount` is not
/// allowed): orders fail rather than being acknowledged, nothing acknowledged is lost, no
/// file is damaged, and once the disk has room again the bazaar serves orders.
#[test]
fn full_disk_on_append_loses_nothing_and_recovers() {
    let mut c = Cluster::configure(
        common::binaries(),
        Options {
            log_level: "info".into(),
            ..Options::default()
        },
    )
    .unwrap();
    let data = c.data_dir();
    if !mount_tmpfs(&data, SMALL_DISK) {
        println!("full disk: skipped, cannot mount a tmpfs here (needs root)");
        return;
    }
    c.keep_dir = false;
    c.start_service(Process::Catalog).unwrap();
    for id in 1..=3 {
        c.start_service(Process::Order(id)).unwrap();
    }
    for id in 1..=3 {
        c.wait_ready(id).unwrap();
    }
    c.start_service(Process::FRONTEND).unwrap();
    c.wait_leader().unwrap();
    let disk = SmallDisk {
        cluster: Some(c),
        mount: data.clone(),
    };
    let c = disk.cluster.as_ref().unwrap();
    let mut acknowledged = Vec::new();
    let mut statuses = BTreeMap::<u16, u64>::new();
    let mut full_since: Option<Instant> = None;
    for i in 0..FULL_DISK_MAX_ORDERS {
        let kind = if i.is_multiple_of(2) { "buy" } else { "sell" };
        let body =
            format!(r#"{{"name":"FishCo","quantity":1,"type":"{kind}","request_id":"disk-{i}"}}"#);
        let (status, answer) = raw(&c.frontend, "POST", "/orders", &body);
        *statuses.entry(status).or_default() += 1;
        if status == 200 {
            acknowledged.push(Order {
                number: answer["data"]["transaction_number"].as_u64().unwrap(),
                name: "FishCo".into(),
                kind: if kind == "buy" {
                    OrderType::Buy
                } else {
                    OrderType::Sell
                },
                quantity: 1,
            });
        } else {
            assert!(
                (400..600).contains(&status) && answer["error"]["code"] == status,
                "a failed order is a JSON error: {status} {answer}"
            );
            full_since.get_or_insert_with(Instant::now);
        }
        if full_since.is_some_and(|t| t.elapsed() > FULL_DISK_FOR) {
            break;
        }
    }
    println!(
        "full disk: {} orders on a {SMALL_DISK} tmpfs: statuses {statuses:?}",
        statuses.values().sum::<u64>()
    );
    assert!(full_since.is_some(), "the disk never filled: {statuses:?}");
    let logs = std::fs::read_dir(c.dir.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    let named = logs
        .lines()
        .find(|l| l.contains("No space left on device") || l.contains("os error 28"));
    println!("full disk: the services said: {named:?}");
    assert!(named.is_some(), "no log line says the disk is full");
    // Room again: the bazaar serves orders, and nothing acknowledged was lost.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(grown.success());
    common::wait_for(
        "an order accepted after the disk has room",
        CALL * 3,
        || {
            let (status, answer) = raw(
                &c.frontend,
                "POST",
                "/orders",
                r#"{"name":"FishCo","quantity":1,"type":"sell","request_id":"disk-after"}"#,
            );
            (status == 200).then(|| {
                acknowledged.push(Order {
                    number: answer["data"]["transaction_number"].as_u64().unwrap(),
                    name: "FishCo".into(),
                    kind: OrderType::Sell,
                    quantity: 1,
                })
            })
        },
    );
    c.wait_logs_identical(CALL * 2).unwrap();
    common::assert_invariants(c, &acknowledged);
}

//! Junk on every HTTP and line port: random bytes, broken framing, half-sent and slow
//! requests; each gets a 4xx or a close, and the service still answers afterwards.
//!
//! Caveats: the junk is random per run (not seeded), so a failure prints the case it was.

use super::*;

/// How long one junk case may take to be answered or closed (covers the server's 5 s request
/// timeout for a body that never arrives).
const JUNK_ANSWER_TIMEOUT: Duration = Duration::from_secs(8);

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

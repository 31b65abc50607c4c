//! The three checks the HTTP server layer had to pass before anything is built on it, plus
//! the failure modes every service relies on it for.
//!
//! - *burst*: 64 keep-alive connections opened at once against a freshly started server, 50
//!   GETs each, on 20 fresh servers: every request answered within 1 s. The client side is
//!   `bazaar::testkit::raw`, shared with `benches/starvation.rs`, which shows that this very
//!   check fails against bare tiny_http 0.12.0.
//! - *idle*: 300 idle plus 100 half-sent connections open, a real `bazaar::http::Client` lookup
//!   still answers within 200 ms; the server closes the idle ones after its (short, here)
//!   idle timeout and answers the half-sent ones 408 after its request timeout.
//! - *framing*: `Transfer-Encoding` together with `Content-Length`, or an unknown transfer
//!   coding, gets 400 and the connection is closed, so nothing can be smuggled behind it.
//! - a panicking handler gives 500 and the server keeps serving; a body over 64 KiB gets 413.
//!
//! Every server binds `127.0.0.1:0`. Waits poll with a deadline; nothing sleeps to synchronise.
//!
//! Caveats: the burst and idle tests hold many sockets (the idle test about 1,200 descriptors:
//! 400 client ends, 400 server ends and the server's 400 clones of them), so they take one lock
//! and run one at a time, and the
//! idle test raises the soft open-file limit when it is below what it needs (with the `rlimit`
//! crate, on any Unix).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use bazaar::error::{Error, Result};
use bazaar::http::{Client, Handler, Request, Response, Server, ServerOptions, MAX_BODY_BYTES};
use bazaar::testkit::raw::{self, burst, RawConn};
use serde_json::{json, Value};

/// Read timeout of raw test clients where no specific bound is being tested.
const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// The panic message of the deliberately panicking handler; the panic hook keeps it quiet.
const DELIBERATE_PANIC: &str = "deliberate handler panic";

/// Serialises the tests that hold hundreds of sockets and threads.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn options(threads: usize, idle_timeout: Duration, request_timeout: Duration) -> ServerOptions {
    ServerOptions {
        name: "test".into(),
        threads,
        max_connections: 1024,
        idle_timeout,
        request_timeout,
    }
}

fn default_options() -> ServerOptions {
    options(4, Duration::from_secs(10), Duration::from_secs(5))
}

/// A tiny service: `GET /stocks/<name>`, `POST /echo` (answers the body's length), `/panic`.
fn service(req: &Request) -> Result<Response> {
    match (req.method.as_str(), req.segments().as_slice()) {
        ("GET", ["stocks", name]) => Ok(Response::ok(
            json!({"name": name, "price": 15.99, "quantity": 100}),
        )),
        ("POST", ["echo"]) => Ok(Response::ok(json!({"bytes": req.body.len()}))),
        (_, ["panic"]) => panic!("{DELIBERATE_PANIC}"),
        _ => Err(Error::NotFound(format!("no route {}", req.path))),
    }
}

fn start(options: ServerOptions, handler: impl Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Server::start(listener, options, Arc::new(handler)).unwrap()
}

/// How often [`wait_until`] looks again: short, since connections are counted one at a time.
const WAIT_POLL: Duration = Duration::from_millis(5);

/// Polls `done` until it holds or `deadline` passes; returns whether it held.
fn wait_until(deadline: Instant, done: impl FnMut() -> bool) -> bool {
    common::eventually(
        deadline.saturating_duration_since(Instant::now()),
        WAIT_POLL,
        done,
    )
}

/// Whether the server has closed `stream`: a read gives end of stream or an error (a reset)
/// before `deadline`. Bytes that come first (an error response) are returned in `Ok`.
fn closed_by_server(
    stream: &mut TcpStream,
    deadline: Instant,
) -> std::result::Result<Vec<u8>, String> {
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still open at the deadline after {} bytes",
                seen.len()
            ));
        }
        stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(seen),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if raw::is_timeout(&e) => {}
            Err(_) => return Ok(seen),
        }
    }
}

/// Quiets only the deliberate handler panics; every other panic reaches the default hook.
fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if message != DELIBERATE_PANIC {
                default(info);
            }
        }));
    });
}

/// Makes sure the process may open `need` descriptors, raising the soft limit when it is lower.
fn ensure_open_files(need: u64) {
    use rlimit::Resource;
    let (current, max) = Resource::NOFILE.get().expect("getrlimit");
    if current >= need {
        return;
    }
    assert!(
        max >= need,
        "this test needs {need} open files; the hard limit is {max}"
    );
    Resource::NOFILE.set(need, max).expect("setrlimit");
}

// --- (1) burst ---------------------------------------------------------------------------

/// Fresh servers in the burst test.
const BURST_ROUNDS: usize = 20;
/// Connections opened at once.
const BURST_CONNECTIONS: usize = 64;
/// Keep-alive requests per connection.
const BURST_REQUESTS: usize = 50;
/// Every request must be answered within this.
const BURST_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

#[test]
fn burst_of_keep_alive_connections_is_served_on_fresh_servers() {
    let _heavy = heavy();
    ensure_open_files(3 * BURST_CONNECTIONS as u64 + 64);
    for round in 0..BURST_ROUNDS {
        // Half the rounds find every connection already queued when the server starts (a
        // service restarting under its clients), half connect to a running server; tiny_http
        // 0.12.0 loses connections both ways (benches/starvation.rs).
        let queued = round % 2 == 0;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = |_: &Request| Ok(Response::ok(json!({"name": "GameStart"})));
        let (outcome, server) = if queued {
            let mut server = None;
            let outcome = burst(
                addr,
                BURST_CONNECTIONS,
                BURST_REQUESTS,
                BURST_ANSWER_TIMEOUT,
                || {
                    server = Some(Server::start(
                        listener,
                        default_options(),
                        Arc::new(handler),
                    ))
                },
            );
            (outcome, server.unwrap().unwrap())
        } else {
            let server = Server::start(listener, default_options(), Arc::new(handler)).unwrap();
            let outcome = burst(
                addr,
                BURST_CONNECTIONS,
                BURST_REQUESTS,
                BURST_ANSWER_TIMEOUT,
                || (),
            );
            (outcome, server)
        };
        server.shutdown();
        assert_eq!(
            outcome.unanswered,
            0,
            "round {round} ({}): {} requests unanswered within {BURST_ANSWER_TIMEOUT:?}:\n{}",
            if queued { "queued" } else { "live" },
            outcome.unanswered,
            outcome.failures.join("\n"),
        );
        assert_eq!(outcome.answered, BURST_CONNECTIONS * BURST_REQUESTS);
    }
}

// --- (2) idle and half-sent connections ----------------------------------------------------

/// Connections that send nothing.
const IDLE_CONNECTIONS: usize = 300;
/// Connections that send part of a request head and stop.
const HALF_SENT_CONNECTIONS: usize = 100;
/// A real client's lookup must answer within this while they are open.
const LOOKUP_BOUND: Duration = Duration::from_millis(200);
/// The server's idle and request timeouts in this test: short, so that the test is quick, and
/// long enough that opening 400 connections in a debug build fits well inside it.
const SHORT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Most connections the test opens ahead of the server's accepts, well inside the listen backlog.
const ACCEPT_LAG: usize = 64;
/// How long past its timeout the server may take to close a connection.
const CLOSE_SLACK: Duration = Duration::from_secs(3);

#[test]
fn idle_and_half_sent_connections_neither_block_nor_linger() {
    let _heavy = heavy();
    let sockets = IDLE_CONNECTIONS + HALF_SENT_CONNECTIONS;
    // Three descriptors a connection (the client's end, the server's and the server's clone of
    // it, kept so that shutdown can close it), plus the lookup's, the listener and slack.
    ensure_open_files(3 * sockets as u64 + 128);
    let server = start(options(4, SHORT_TIMEOUT, SHORT_TIMEOUT), service);
    let addr = server.local_addr();

    // Connects no faster than the server accepts: past the listen backlog (128 with std) the
    // kernel drops SYNs and the client retries only after a second, which would test the
    // kernel rather than the server.
    let opening = Instant::now();
    let connect = |opened: usize| {
        let caught_up = wait_until(opening + SHORT_TIMEOUT / 2, || {
            opened < server.open_connections() + ACCEPT_LAG
        });
        assert!(
            caught_up,
            "the server accepted {} of {opened}",
            server.open_connections()
        );
        TcpStream::connect(addr).unwrap()
    };
    let mut idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS).map(connect).collect();
    let mut half_sent: Vec<TcpStream> = (0..HALF_SENT_CONNECTIONS)
        .map(|i| {
            let mut stream = connect(IDLE_CONNECTIONS + i);
            stream
                .write_all(b"GET /stocks/GameStart HTTP/1.1\r\nHost: test\r\nAccept: ")
                .unwrap();
            stream
        })
        .collect();
    assert!(
        wait_until(opening + SHORT_TIMEOUT / 2, || server.open_connections()
            >= sockets),
        "the server holds {} of {sockets} connections {:?} after the first connect",
        server.open_connections(),
        opening.elapsed()
    );

    let client = Client::new();
    let asked = Instant::now();
    let stock: Value = client
        .get(&addr.to_string(), "/stocks/GameStart", LOOKUP_BOUND)
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(stock["name"], "GameStart");
    assert!(
        took <= LOOKUP_BOUND,
        "lookup took {took:?} with {sockets} connections open"
    );
    // The lower bound of the timeouts: nothing was closed before its time.
    assert!(
        opening.elapsed() < SHORT_TIMEOUT && server.open_connections() > sockets,
        "connections closed early: {} open after {:?}",
        server.open_connections(),
        opening.elapsed()
    );

    let deadline = opening + SHORT_TIMEOUT + CLOSE_SLACK;
    for (i, stream) in idle.iter_mut().enumerate() {
        let got = closed_by_server(stream, deadline)
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        assert!(
            got.is_empty(),
            "idle connection {i} got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    for (i, stream) in half_sent.iter_mut().enumerate() {
        let got = closed_by_server(stream, deadline)
            .unwrap_or_else(|e| panic!("half-sent connection {i}: {e}"));
        assert!(
            got.starts_with(b"HTTP/1.1 408 "),
            "half-sent connection {i} got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // The lookup's pooled connection idles out too.
    assert!(
        wait_until(deadline, || server.open_connections() == 0),
        "{} connections still open",
        server.open_connections()
    );
    drop((idle, half_sent));
    server.shutdown();
}

// --- (3) framing -------------------------------------------------------------------------

#[test]
fn ambiguous_or_unknown_framing_is_refused_and_the_connection_closed() {
    let smuggled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let smuggled = smuggled.clone();
        move |req: &Request| {
            if req.path == "/smuggled" {
                smuggled.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Response::ok(json!({"path": req.path})))
        }
    };
    let server = start(default_options(), handler);
    let behind = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases: &[(&str, String, u16)] = &[
        (
            "Transfer-Encoding and Content-Length",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{behind}"),
            400,
        ),
        (
            "Content-Length before Transfer-Encoding",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{behind}"),
            400,
        ),
        (
            "unknown transfer coding",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n{behind}"),
            400,
        ),
        (
            "transfer coding list",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n{behind}"),
            400,
        ),
        (
            "second Transfer-Encoding header",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{behind}"),
            400,
        ),
        (
            "lower-case name, odd spacing",
            format!("POST /a HTTP/1.1\r\nHost: t\r\ntransfer-encoding:  xchunked\r\n\r\n{behind}"),
            400,
        ),
        (
            "conflicting Content-Lengths",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n{behind}"),
            400,
        ),
        (
            "signed Content-Length",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: +0\r\n\r\n{behind}"),
            400,
        ),
        (
            "chunked alone (not supported: no length)",
            format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{behind}"),
            411,
        ),
    ];
    for (what, raw, status) in cases {
        let mut conn = RawConn::connect(server.local_addr(), RAW_TIMEOUT).unwrap();
        conn.send(raw.as_bytes()).unwrap();
        // Done sending, as a client that reads `Connection: close` is: the server stops
        // discarding input (its linger after an error) when it sees this end of stream.
        conn.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(
            resp.status,
            *status,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let error: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(error["error"]["code"], *status, "{what}");
        assert_eq!(resp.header("connection"), Some("close"), "{what}");
        let rest = conn.read_to_close().unwrap_or_default();
        assert!(
            rest.is_empty(),
            "{what}: more after the error: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert_eq!(
        smuggled.load(Ordering::SeqCst),
        0,
        "a request behind a refused one was served"
    );

    // The same connection still serves well-framed requests, pipelined in one write.
    let mut conn = RawConn::connect(server.local_addr(), RAW_TIMEOUT).unwrap();
    let body = r#"{"name":"GameStart"}"#;
    conn.send(
        format!(
            "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}GET /b HTTP/1.1\r\nHost: t\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    for path in ["/a", "/b"] {
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.status, 200);
        let data: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(data["data"]["path"], path);
    }
    server.shutdown();
}

// --- handler panics, body limit, connection limit --------------------------------------------

#[test]
fn a_panicking_handler_gives_500_and_the_server_keeps_serving() {
    quiet_deliberate_panics();
    // More panics than pool threads: a worker lost to a panic would show here.
    let threads = 2;
    let server = start(
        options(threads, Duration::from_secs(10), Duration::from_secs(5)),
        service,
    );
    let mut conn = RawConn::connect(server.local_addr(), RAW_TIMEOUT).unwrap();
    for _ in 0..3 * threads {
        let resp = conn.get("/panic").unwrap();
        assert_eq!(resp.status, 500);
        let error: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(error["error"]["code"], 500);
        assert!(
            !String::from_utf8_lossy(&resp.body).contains(DELIBERATE_PANIC),
            "panic text leaked"
        );
    }
    // Same connection, then a real client on a new one.
    assert_eq!(conn.get("/stocks/GameStart").unwrap().status, 200);
    let stock: Value = Client::new()
        .get(
            &server.local_addr().to_string(),
            "/stocks/FishCo",
            RAW_TIMEOUT,
        )
        .unwrap();
    assert_eq!(stock["name"], "FishCo");
    server.shutdown();
}

#[test]
fn bodies_over_64_kib_get_413_and_64_kib_is_accepted() {
    let server = start(default_options(), service);
    let addr = server.local_addr();
    let client = Client::new();

    // Exactly the limit: accepted and read whole.
    let mut conn = RawConn::connect(addr, RAW_TIMEOUT).unwrap();
    let mut request =
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n")
            .into_bytes();
    request.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES));
    conn.send(&request).unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(resp.status, 200);
    let echoed: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(echoed["data"]["bytes"], MAX_BODY_BYTES);

    // One byte over, announced but not sent: refused on the head alone.
    let mut conn = RawConn::connect(addr, RAW_TIMEOUT).unwrap();
    conn.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        )
        .as_bytes(),
    )
    .unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));

    // A real client that sends the whole oversized body must see the 413, not a reset. The
    // server discards up to 1 MiB after the 413 for this; 768 KiB is more than the socket
    // buffers hold, so without that the client would mostly see a reset or a broken pipe.
    let filler = "x".repeat(12 * MAX_BODY_BYTES);
    for _ in 0..3 {
        let err = client
            .post::<_, Value>(
                &addr.to_string(),
                "/echo",
                &json!({"pad": filler}),
                RAW_TIMEOUT,
            )
            .unwrap_err();
        assert_eq!(err, Error::PayloadTooLarge);
    }
    server.shutdown();
}

#[test]
fn connections_over_the_cap_get_503_and_shutdown_closes_the_rest() {
    let mut opts = default_options();
    opts.max_connections = 2;
    let server = start(opts, service);
    let addr = server.local_addr();
    let mut held: Vec<RawConn> = (0..2)
        .map(|_| RawConn::connect(addr, RAW_TIMEOUT).unwrap())
        .collect();
    for conn in &mut held {
        assert_eq!(conn.get("/stocks/GameStart").unwrap().status, 200);
    }
    let mut extra = RawConn::connect(addr, RAW_TIMEOUT).unwrap();
    let resp = extra.read_response().unwrap();
    assert_eq!(resp.status, 503);
    assert!(extra.read_to_close().unwrap_or_default().is_empty());

    assert_eq!(server.open_connections(), 2);
    server.shutdown();
    let deadline = Instant::now() + RAW_TIMEOUT;
    for conn in &mut held {
        closed_by_server(&mut conn.stream, deadline).unwrap();
    }
}

/// The 44 ms Nagle/delayed-ACK stall (docs/http-server.md, "The decision"): a keep-alive response over 1 KB must not wait
/// for the client's delayed ACK.
#[test]
fn responses_over_1_kb_do_not_stall() {
    let big = "y".repeat(4 * 1024);
    let handler = move |_: &Request| Ok(Response::ok(json!({"pad": big})));
    let server = start(default_options(), handler);
    let addr: SocketAddr = server.local_addr();
    let mut conn = RawConn::connect(addr, RAW_TIMEOUT).unwrap();
    let rounds = 20;
    let began = Instant::now();
    for _ in 0..rounds {
        let resp = conn.get("/big").unwrap();
        assert_eq!(resp.status, 200);
        assert!(resp.body.len() > 4 * 1024);
    }
    let each = began.elapsed() / rounds;
    // A stall costs ~40 ms per response; a debug build on a busy machine stays far below 20.
    assert!(
        each < Duration::from_millis(20),
        "{each:?} per 4 KiB response"
    );
    server.shutdown();
}

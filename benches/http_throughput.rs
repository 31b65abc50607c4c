//! Throughput and latency of `bazaar::http::Server` against bare tiny_http 0.12.0, both
//! answering a fixed 60-byte JSON body with a handler pool of 8 (`bazaar::testkit::servers`).
//!
//! What it prints:
//!
//! 1. requests/s with N keep-alive client connections (raw `TcpStream` clients, one thread
//!    each, a fixed total of requests split evenly). The clients connect one at a time and each
//!    gets one answer before the next connects, so that tiny_http's burst starvation (see
//!    `benches/starvation.rs`) does not stall the run: this measures steady-state speed only.
//!    Each cell is the median of several runs, servers interleaved, with the range.
//! 2. tiny_http with a new connection per request (`Connection: close`), the only client-side
//!    way found to avoid its starvation (docs/http-server.md), against the keep-alive row.
//! 3. sequential round trips on one connection: raw client, the project's `Client` (one shared
//!    keep-alive pool), and a raw client fetching a 2 KiB body, which shows the 44 ms
//!    Nagle/delayed-ACK stall (docs/http-server.md) where it happens.
//!
//! ```text
//! cargo bench --bench http_throughput              # 20000 requests per cell
//! cargo bench --bench http_throughput -- 50000     # more per cell
//! ```
//!
//! Caveats: clients and server share the machine's cores, so absolute numbers say little
//! beyond this machine; compare rows of one run. The machine may be busy with other work:
//! look at the ranges.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bazaar::http::Client;
use bazaar::testkit::raw::{get_request, RawConn, BODY_60};
use bazaar::testkit::servers::{self, Kind};

/// Requests per throughput cell unless a number is given on the command line.
const DEFAULT_REQUESTS: usize = 20_000;
/// Client connections per throughput column.
const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
/// Runs per cell; the median is printed.
const RUNS: usize = 3;
/// Requests of the connection-per-request row (each leaves a TIME_WAIT socket behind).
const CLOSE_REQUESTS: usize = 4_000;
/// Concurrency of the connection-per-request row.
const CLOSE_CONCURRENCY: usize = 16;
/// Sequential round trips per latency row.
const SEQUENTIAL: usize = 3_000;
/// Sequential round trips with the 2 KiB body (a stalled one costs ~44 ms).
const SEQUENTIAL_BIG: usize = 40;
/// No answer within this is a failure of the run, not a slow request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let requests = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let kinds = [Kind::TinyHttp, Kind::Bazaar];

    println!("keep-alive throughput, requests/s: median of {RUNS} (min-max), {requests} requests per run, 60-byte JSON");
    print!("{:<34}", "server \\ connections");
    for c in CONCURRENCY {
        print!("{c:>24}");
    }
    println!();
    let mut cells = vec![vec![Vec::new(); CONCURRENCY.len()]; kinds.len()];
    for _ in 0..RUNS {
        for (col, &c) in CONCURRENCY.iter().enumerate() {
            for (row, kind) in kinds.iter().enumerate() {
                cells[row][col].push(keep_alive_rate(*kind, c, requests));
            }
        }
    }
    for (row, kind) in kinds.iter().enumerate() {
        print!("{:<34}", kind.name());
        for runs in &cells[row] {
            print!("{:>24}", summarize(runs));
        }
        println!();
    }

    println!("\nconnection per request (Connection: close), {CLOSE_CONCURRENCY} client threads, {CLOSE_REQUESTS} requests, requests/s");
    for kind in kinds {
        println!(
            "{:<34}{:>10.0}",
            kind.name(),
            close_rate(kind, CLOSE_CONCURRENCY, CLOSE_REQUESTS)
        );
    }

    println!("\nsequential round trips on one keep-alive connection, microseconds");
    println!(
        "{:<34}{:<30}{:>10}{:>10}{:>10}{:>10}",
        "server", "client", "mean", "p50", "p99", "max"
    );
    let big_body = format!(r#"{{"data":{{"pad":"{}"}}}}"#, "x".repeat(2048));
    for kind in kinds {
        let rows: [(&str, Vec<Duration>); 3] = [
            (
                "raw, 60-byte body",
                sequential_raw(kind, BODY_60, SEQUENTIAL),
            ),
            (
                "bazaar Client (keep-alive pool)",
                sequential_client(kind, SEQUENTIAL),
            ),
            (
                "raw, 2 KiB body",
                sequential_raw(kind, &big_body, SEQUENTIAL_BIG),
            ),
        ];
        for (client, mut samples) in rows {
            samples.sort();
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
            println!(
                "{:<34}{:<30}{:>10}{:>10}{:>10}{:>10}",
                kind.name(),
                client,
                mean.as_micros(),
                at(0.5).as_micros(),
                at(0.99).as_micros(),
                at(1.0).as_micros()
            );
        }
    }
}

/// "median (min-max)" of some rates.
fn summarize(runs: &[f64]) -> String {
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{:.0} ({:.0}-{:.0})",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1]
    )
}

fn start(kind: Kind, body: &str) -> (SocketAddr, servers::Running) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (addr, kind.start(listener, body).expect("start the server"))
}

/// Requests/s of `connections` keep-alive clients sending `requests` GETs in all.
fn keep_alive_rate(kind: Kind, connections: usize, requests: usize) -> f64 {
    let (addr, server) = start(kind, BODY_60);
    // Connected one at a time, each answered once: see the module doc.
    let conns: Vec<RawConn> = (0..connections)
        .map(|_| {
            let mut conn = RawConn::connect(addr, READ_TIMEOUT).expect("connect");
            assert_eq!(conn.get("/warm-up").expect("warm-up").status, 200);
            conn
        })
        .collect();
    let each = requests / connections;
    let mut conns = conns.into_iter();
    let rate = timed_clients(connections, each, move || {
        let mut conn = conns.next().expect("one connection per client");
        let request = get_request("/stocks/GameStart");
        move || {
            conn.send(request.as_bytes()).expect("send");
            assert_eq!(conn.read_response().expect("answer").status, 200);
        }
    });
    (server.stop)();
    rate
}

/// Runs `connections` client threads, each calling its request closure `each` times once all
/// are ready; returns requests per second.
fn timed_clients<F, R>(connections: usize, each: usize, mut make: F) -> f64
where
    F: FnMut() -> R,
    R: FnMut() + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(connections + 1));
    let clients: Vec<_> = (0..connections)
        .map(|i| {
            let (barrier, mut request) = (barrier.clone(), make());
            thread::Builder::new()
                .name(format!("client-{i}"))
                .spawn(move || {
                    barrier.wait();
                    for _ in 0..each {
                        request();
                    }
                })
                .expect("spawn client")
        })
        .collect();
    barrier.wait();
    let began = Instant::now();
    for client in clients {
        client.join().expect("client");
    }
    (each * connections) as f64 / began.elapsed().as_secs_f64()
}

/// Requests/s of `connections` clients opening a new connection for each request.
fn close_rate(kind: Kind, connections: usize, requests: usize) -> f64 {
    let (addr, server) = start(kind, BODY_60);
    let each = requests / connections;
    let request = "GET /stocks/GameStart HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    let rate = timed_clients(connections, each, || {
        move || {
            let mut conn = RawConn::connect(addr, READ_TIMEOUT).expect("connect");
            conn.send(request.as_bytes()).expect("send");
            assert_eq!(conn.read_response().expect("answer").status, 200);
        }
    });
    (server.stop)();
    rate
}

/// Round-trip times of `count` GETs in sequence on one raw keep-alive connection.
fn sequential_raw(kind: Kind, body: &str, count: usize) -> Vec<Duration> {
    let (addr, server) = start(kind, body);
    let mut conn = RawConn::connect(addr, READ_TIMEOUT).expect("connect");
    let request = get_request("/stocks/GameStart");
    let samples = (0..count)
        .map(|_| {
            let began = Instant::now();
            conn.send(request.as_bytes()).expect("send");
            let resp = conn.read_response().expect("answer");
            assert_eq!(resp.body.len(), body.len());
            began.elapsed()
        })
        .collect();
    drop(conn);
    (server.stop)();
    samples
}

/// Round-trip times of `count` GETs in sequence through the project's `Client`.
fn sequential_client(kind: Kind, count: usize) -> Vec<Duration> {
    let (addr, server) = start(kind, BODY_60);
    let client = Client::new();
    let addr = addr.to_string();
    let samples = (0..count)
        .map(|_| {
            let began = Instant::now();
            let _: serde_json::Value = client
                .get(&addr, "/stocks/GameStart", READ_TIMEOUT)
                .expect("answer");
            began.elapsed()
        })
        .collect();
    drop(client);
    (server.stop)();
    samples
}

//! Evidence that the burst test catches tiny_http 0.12.0's connection starvation.
//!
//! Runs the exact burst check of `tests/http_server.rs` (see `bazaar::testkit::raw::burst`: 64 keep-alive
//! connections opened at once against a freshly started server, 50 GETs each, every answer
//! within 1 s) against two servers answering the same 60-byte JSON body:
//!
//! - bare tiny_http 0.12.0, its `recv()` loop feeding a `threadpool::ThreadPool` of 8;
//! - `bazaar::http::Server` with a handler pool of 8.
//!
//! Each round binds a fresh listener and runs one burst in one of two ways, then stops the
//! server:
//!
//! - `queued`: the 64 clients connect to the bound listener, then the server is started on it,
//!   so it finds every connection already waiting (a service restarting under its clients; this
//!   is what `tests/http_server.rs` does);
//! - `live`: the server is started first and the clients connect when released by a barrier.
//!
//! It prints one line per round and the unanswered requests per server and way.
//!
//! ```text
//! cargo bench --bench starvation            # 8 rounds each
//! cargo bench --bench starvation -- 20      # 20 rounds each
//! ```
//!
//! Caveats: tiny_http's stuck connections are only released when the burst's clients give up
//! and close, so every failing tiny_http round takes at least the 1 s timeout.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bazaar::testkit::raw::{burst, BurstOutcome, BODY_60};
use bazaar::testkit::servers::Kind;

/// Connections opened at once: the burst of the starvation check (docs/http-server.md).
const CONNECTIONS: usize = 64;
/// Keep-alive requests per connection.
const REQUESTS: usize = 50;
/// Each request must be answered within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Fresh servers per kind unless a count is given on the command line.
const DEFAULT_ROUNDS: usize = 8;

fn main() {
    // `cargo bench` passes `--bench`; the first bare number is the round count.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    println!(
        "burst: {CONNECTIONS} connections at once x {REQUESTS} keep-alive GETs, \
         answer within {ANSWER_TIMEOUT:?}, {rounds} fresh servers each\n"
    );
    let mut summary = Vec::new();
    for queued in [true, false] {
        for kind in [Kind::TinyHttp, Kind::Bazaar] {
            let way = if queued { "queued" } else { "live" };
            let totals = run_rounds(kind, way, rounds, queued);
            summary.push((kind.name(), way, totals));
        }
    }
    println!(
        "\nsummary (unanswered requests of {} per server and way)",
        rounds * CONNECTIONS * REQUESTS
    );
    for (name, way, totals) in summary {
        println!(
            "  {name:<34} {way:<6} unanswered {:>6}  stuck connections {:>4}  failed rounds {:>2}/{rounds}  slowest answer {:.1?}",
            totals.total.unanswered, totals.total.stuck_connections, totals.failed_rounds,
            totals.total.slowest,
        );
    }
}

struct Totals {
    total: BurstOutcome,
    failed_rounds: usize,
}

fn run_rounds(kind: Kind, way: &str, rounds: usize, queued: bool) -> Totals {
    println!("{}, {way}", kind.name());
    let mut totals = Totals {
        total: BurstOutcome::default(),
        failed_rounds: 0,
    };
    for round in 1..=rounds {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let began = Instant::now();
        let (outcome, server) = if queued {
            let mut server = None;
            let outcome = burst(addr, CONNECTIONS, REQUESTS, ANSWER_TIMEOUT, || {
                server = Some(kind.start(listener, BODY_60).expect("start the server"))
            });
            (outcome, server.expect("released"))
        } else {
            let server = kind.start(listener, BODY_60).expect("start the server");
            (
                burst(addr, CONNECTIONS, REQUESTS, ANSWER_TIMEOUT, || ()),
                server,
            )
        };
        let took = began.elapsed();
        (server.stop)();
        println!(
            "  round {round:>2}: answered {:>5}, unanswered {:>5}, stuck connections {:>2}, slowest {:>9.3?}, took {took:.2?}",
            outcome.answered, outcome.unanswered, outcome.stuck_connections, outcome.slowest,
        );
        if outcome.unanswered > 0 {
            totals.failed_rounds += 1;
        }
        totals.total.answered += outcome.answered;
        totals.total.unanswered += outcome.unanswered;
        totals.total.stuck_connections += outcome.stuck_connections;
        totals.total.slowest = totals.total.slowest.max(outcome.slowest);
    }
    totals
}

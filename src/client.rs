//! The load-generating client of the course (SPEC §6), and the verifier of every order it
//! placed.
//!
//! Each of `--clients N` sessions runs on its own thread (`client_session`) with its own
//! keep-alive connection and its own seeded RNG (`seed + session index`), so a run is
//! reproducible in what it asks, though not in what the bazaar answers under concurrency. A
//! session repeats `n_request` times: look a random stock up, then with probability `prob` buy
//! or sell 1 to [`MAX_TRADE`] shares of it. Every acknowledged order is kept; at the end each is
//! read back with `GET /orders/<n>` and compared.
//!
//! Retries: an order carries a request id no other run can mint (`api::new_request_id`), so
//! re-sending it after a transport error or a 5xx can never trade twice; the bazaar answers a
//! repeat with the first transaction number. Lookups and reads are retried the same way. Retries
//! are counted; what still fails after [`RETRY_DEADLINE`] is an error. A 409 (not enough stock)
//! is a correct refusal, counted as `rejected`. A session that still cannot reach the bazaar
//! after a whole retry deadline stops there: the rest of its orders count as not verified
//! (mismatches) rather than each waiting out its own deadline.
//!
//! Caveats: latency is measured per successful request including its retries, so a fail-over
//! shows up as one slow request, which is what a user would see.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::{new_request_id, Order, OrderAck, OrderRequest, OrderType, Stock, StockRecord};
use crate::error::{Error, Result};
use crate::http::Client;

/// Largest quantity a client trades at once.
pub const MAX_TRADE: u64 = 5;

/// How long one request is retried before it counts as an error.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(15);

/// Pause between retries of one request.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long to wait for one answer from the front-end (an order may wait for a fail-over).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Stocks used when the front-end cannot list them: the reference client's tickers and the
/// course's.
pub const DEFAULT_STOCKS: &[&str] = &[
    "AAPL",
    "GOOG",
    "MSFT",
    "SPX",
    "OEX",
    "DJX",
    "NDX",
    "CPQ",
    "INTC",
    "IBM",
    "GameStart",
    "FishCo",
    "BoarCo",
    "MenhirCo",
];

/// What to run.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub host: String,
    pub port: u16,
    pub prob: f64,
    pub seed: u64,
    pub n_request: usize,
    pub clients: usize,
    /// Stop early at this instant (chaos runs for a time, not a count).
    pub deadline: Option<Instant>,
    /// Stop early once this is set (chaos interrupted).
    pub stop: Option<Arc<AtomicBool>>,
    /// Trade only these stocks instead of every stock the front-end lists.
    pub stocks: Option<Vec<String>>,
}

impl ClientOptions {
    /// The course's defaults against `host:port`.
    pub fn new(host: &str, port: u16) -> ClientOptions {
        ClientOptions {
            host: host.to_string(),
            port,
            prob: 0.5,
            seed: 0,
            n_request: 20,
            clients: 1,
            deadline: None,
            stop: None,
            stocks: None,
        }
    }
}

/// Latency figures of one kind of request, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(samples: &mut [f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            p50: pick(0.5),
            p99: pick(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

/// The run's summary; `--json` prints it as one object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub clients: usize,
    pub lookups: u64,
    pub orders: u64,
    pub order_queries: u64,
    pub rejected: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub retries: u64,
    pub lookup_ms: Latency,
    pub order_ms: Latency,
    pub query_ms: Latency,
    /// Wall time of the lookups-and-orders phase (the longest session's), without the
    /// read-back.
    pub trading_s: f64,
    /// Acknowledged orders per second of `trading_s`.
    pub orders_per_s: f64,
    /// Every acknowledged order, for tests and the chaos checker.
    #[serde(skip)]
    pub acknowledged: Vec<Order>,
}

impl Summary {
    /// True when every order verified and nothing failed.
    pub fn ok(&self) -> bool {
        self.errors == 0 && self.mismatches == 0
    }

    /// The longest any one request took, retries included: what a user saw as a pause.
    pub fn longest_ms(&self) -> f64 {
        self.lookup_ms
            .max
            .max(self.order_ms.max)
            .max(self.query_ms.max)
    }

    /// The human-readable report.
    pub fn report(&self) -> String {
        let line = |what: &str, l: &Latency| {
            format!(
                "{what:<7} mean {:>8.3} ms   p50 {:>8.3} ms   p99 {:>8.3} ms\n",
                l.mean, l.p50, l.p99
            )
        };
        format!(
            "clients {}: {} lookups, {} orders ({} rejected), {} order queries; \
             {} errors, {} retries, {} mismatches\n\
             trading took {:.2} s: {:.0} acknowledged orders/s\n{}{}{}",
            self.clients,
            self.lookups,
            self.orders,
            self.rejected,
            self.order_queries,
            self.errors,
            self.retries,
            self.mismatches,
            self.trading_s,
            self.orders_per_s,
            line("lookup", &self.lookup_ms),
            line("order", &self.order_ms),
            line("query", &self.query_ms),
        )
    }
}

/// What one session measured.
#[derive(Default)]
struct SessionResult {
    summary: Summary,
    lookup: Vec<f64>,
    order: Vec<f64>,
    query: Vec<f64>,
}

/// Runs every session to the end and merges their results.
pub fn run(options: &ClientOptions) -> Summary {
    let addr = format!("{}:{}", options.host, options.port);
    let stocks = match &options.stocks {
        Some(stocks) if !stocks.is_empty() => stocks.clone(),
        _ => list_stocks(&Client::new(), &addr),
    };
    let sessions: Vec<_> = (0..options.clients.max(1))
        .map(|index| {
            let (options, addr, stocks) = (options.clone(), addr.clone(), stocks.clone());
            thread::Builder::new()
                .name(format!("client-{index}"))
                .spawn(move || client_session(index, &options, &addr, &stocks))
        })
        .collect();
    let mut total = SessionResult::default();
    for session in sessions {
        let result = session.ok().and_then(|handle| handle.join().ok());
        let Some(mut r) = result else {
            total.summary.errors += 1;
            continue;
        };
        let (t, s) = (&mut total.summary, &r.summary);
        t.lookups += s.lookups;
        t.orders += s.orders;
        t.order_queries += s.order_queries;
        t.rejected += s.rejected;
        t.errors += s.errors;
        t.mismatches += s.mismatches;
        t.retries += s.retries;
        t.trading_s = t.trading_s.max(s.trading_s);
        t.acknowledged.append(&mut r.summary.acknowledged);
        total.lookup.append(&mut r.lookup);
        total.order.append(&mut r.order);
        total.query.append(&mut r.query);
    }
    let mut summary = total.summary;
    summary.clients = options.clients.max(1);
    if summary.trading_s > 0.0 {
        summary.orders_per_s = summary.acknowledged.len() as f64 / summary.trading_s;
    }
    summary.lookup_ms = Latency::of(&mut total.lookup);
    summary.order_ms = Latency::of(&mut total.order);
    summary.query_ms = Latency::of(&mut total.query);
    summary.acknowledged.sort_by_key(|o| o.number);
    summary
}

/// One client thread: lookups and orders, then the read-back of every acknowledged order.
fn client_session(
    index: usize,
    options: &ClientOptions,
    addr: &str,
    stocks: &[String],
) -> SessionResult {
    let client = Client::new();
    let mut rng = fastrand::Rng::with_seed(options.seed.wrapping_add(index as u64));
    let mut out = SessionResult::default();
    let mut placed: BTreeMap<u64, Order> = BTreeMap::new();
    let trading = Instant::now();
    for _ in 0..options.n_request {
        let stopped = options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        if stopped || options.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let name = &stocks[rng.usize(..stocks.len())];
        let started = Instant::now();
        let lookup = retrying(&mut out.summary.retries, || {
            client.get::<Stock>(addr, &format!("/stocks/{name}"), REQUEST_TIMEOUT)
        });
        out.summary.lookups += 1;
        match lookup {
            Ok(_) => out.lookup.push(ms_since(started)),
            Err(e) => {
                log::warn!("lookup of {name} failed: {e}");
                out.summary.errors += 1;
                if is_retryable(&e) {
                    break; // unreachable for a whole retry deadline: stop asking
                }
                continue;
            }
        }
        if rng.f64() >= options.prob {
            continue;
        }
        let order = OrderRequest {
            name: name.clone(),
            quantity: rng.u64(1..=MAX_TRADE),
            kind: if rng.bool() {
                OrderType::Buy
            } else {
                OrderType::Sell
            },
            request_id: Some(new_request_id("c")),
        };
        let started = Instant::now();
        let ack = retrying(&mut out.summary.retries, || {
            client.post::<_, OrderAck>(addr, "/orders", &order, REQUEST_TIMEOUT)
        });
        out.summary.orders += 1;
        match ack {
            Ok(ack) => {
                out.order.push(ms_since(started));
                let number = ack.transaction_number;
                let mine = Order {
                    number,
                    name: order.name,
                    kind: order.kind,
                    quantity: order.quantity,
                };
                if let Some(previous) = placed.insert(number, mine) {
                    log::error!("transaction number {number} acknowledged twice: {previous:?}");
                    out.summary.mismatches += 1;
                }
            }
            Err(Error::Conflict(_)) => out.summary.rejected += 1,
            Err(e) => {
                log::warn!("order {order:?} failed: {e}");
                out.summary.errors += 1;
                if is_retryable(&e) {
                    break;
                }
            }
        }
    }
    out.summary.trading_s = trading.elapsed().as_secs_f64();
    let mut unreachable = false;
    for (number, mine) in &placed {
        if unreachable {
            // Counted as not verified, without another retry deadline each.
            out.summary.mismatches += 1;
            continue;
        }
        let started = Instant::now();
        let got = retrying(&mut out.summary.retries, || {
            client.get::<Order>(addr, &format!("/orders/{number}"), REQUEST_TIMEOUT)
        });
        out.summary.order_queries += 1;
        match got {
            Ok(theirs) => {
                out.query.push(ms_since(started));
                if &theirs != mine {
                    log::error!("order {number} mismatch: placed {mine:?}, bazaar has {theirs:?}");
                    out.summary.mismatches += 1;
                }
            }
            Err(e) => {
                log::error!("order {number} cannot be read back: {e}");
                out.summary.mismatches += 1;
                unreachable = is_retryable(&e);
            }
        }
    }
    out.summary.acknowledged = placed.into_values().collect();
    out
}

/// Calls `f` until it succeeds, fails for good, or [`RETRY_DEADLINE`] passes. Transport failures
/// and 5xx answers are retried; other answers are final.
pub fn retrying<T>(retries: &mut u64, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + RETRY_DEADLINE;
    loop {
        match f() {
            Err(e) if is_retryable(&e) && Instant::now() < deadline => {
                *retries += 1;
                thread::sleep(RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

fn is_retryable(err: &Error) -> bool {
    matches!(
        err,
        Error::Unreachable(_) | Error::Unavailable(_) | Error::NotLeader(_) | Error::Internal(_)
    )
}

/// The stock names to trade: the front-end's list, or the defaults when it cannot list them.
fn list_stocks(client: &Client, addr: &str) -> Vec<String> {
    match client.get::<Vec<StockRecord>>(addr, "/stocks", REQUEST_TIMEOUT) {
        Ok(list) if !list.is_empty() => list.into_iter().map(|s| s.name).collect(),
        _ => DEFAULT_STOCKS.iter().map(|s| s.to_string()).collect(),
    }
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let cases: &[(&[f64], Latency)] = &[
            (&[], Latency::default()),
            (
                &[2.0],
                Latency {
                    mean: 2.0,
                    p50: 2.0,
                    p99: 2.0,
                    max: 2.0,
                },
            ),
            (
                &[3.0, 1.0, 2.0],
                Latency {
                    mean: 2.0,
                    p50: 2.0,
                    p99: 3.0,
                    max: 3.0,
                },
            ),
        ];
        for (samples, want) in cases {
            assert_eq!(Latency::of(&mut samples.to_vec()), *want, "{samples:?}");
        }
        let mut hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&mut hundred);
        assert_eq!((l.p50, l.p99), (51.0, 99.0));
    }

    #[test]
    fn retry_classification() {
        let cases = [
            (Error::Unreachable("x".into()), true),
            (Error::Unavailable("x".into()), true),
            (Error::Conflict("x".into()), false),
            (Error::NotFound("x".into()), false),
            (Error::BadRequest("x".into()), false),
        ];
        for (err, want) in cases {
            assert_eq!(is_retryable(&err), want, "{err:?}");
        }
    }
}

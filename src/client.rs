//! The load-generating client of the course (docs/spec.md §6), and the verifier of every order it
//! placed.
//!
//! Each of `--clients N` sessions runs on its own thread (`client_session`) with its own
//! keep-alive connection and its own seeded RNG (`seed + session index`), so a run is
//! reproducible in what it asks, though not in what the bazaar answers under concurrency. A
//! session repeats `n_request` times: look a random stock up (of those the front-end lists at
//! `GET /stocks` when the run starts), then with probability `prob` buy
//! or sell 1 to `MAX_TRADE` shares of it. Every acknowledged order is kept; at the end each is
//! read back with `GET /orders/<n>` and compared.
//!
//! Retries: an order carries a request id no other run can mint (`api::new_request_id`), so
//! re-sending it after a transport error or a 5xx can never trade twice; the bazaar answers a
//! repeat with the first transaction number. A 503 "re-send" names the id to re-send under,
//! and the retry uses it. Lookups and reads are retried the same way. Retries
//! are counted; what still fails after `CLIENT_RETRY_DEADLINE` is an error. A 409 (not enough stock)
//! is a correct refusal, counted as `rejected`. A session that still cannot reach the bazaar
//! after a whole retry deadline stops there: the rest of its orders count as not verified
//! (mismatches) rather than each waiting out its own deadline.
//!
//! Failing fast: the first request of a run (`GET /stocks`) is not retried when the connection
//! is refused, since then nothing listens at the address (a wrong port, a bazaar not started):
//! the run ends at once with [`Summary::failure`] saying so. Any later refusal is a fault during
//! the run (a front-end restarting) and is retried like the rest.
//!
//! Caveats: latency is measured per successful request including its retries, so a fail-over
//! shows up as one slow request, which is what a user would see. A refused first request
//! fails the run even if the front-end was about to start; start the client after it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use serde::Serialize;

use crate::api::{new_request_id, Order, OrderAck, OrderRequest, OrderType, Stock, StockRecord};
use crate::error::{Error, Result};
use crate::http::client::is_refused;
use crate::http::Client;
use crate::timing::{CLIENT_REQUEST_TIMEOUT, CLIENT_RETRY_DEADLINE, CLIENT_RETRY_PAUSE};

/// Largest quantity a client trades at once.
pub(crate) const MAX_TRADE: u64 = 5;

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
    pub(crate) mean: f64,
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
    pub(crate) clients: usize,
    pub lookups: u64,
    pub orders: u64,
    pub(crate) order_queries: u64,
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
    /// Why the run could not start at all (nothing listening, no stocks listed); the
    /// counters are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Summary {
    /// True when every order verified and nothing failed.
    pub fn ok(&self) -> bool {
        self.errors == 0 && self.mismatches == 0
    }

    /// The longest any one request took, retries included: what a user saw as a pause.
    #[cfg(feature = "testkit")]
    pub(crate) fn longest_ms(&self) -> f64 {
        self.lookup_ms
            .max
            .max(self.order_ms.max)
            .max(self.query_ms.max)
    }

    /// The human-readable report.
    pub fn report(&self) -> String {
        let line = |what: &str, l: &Latency| {
            format!(
                "{what:<7} mean {:>8.3} ms   p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms\n",
                l.mean, l.p50, l.p99, l.max
            )
        };
        if let Some(why) = &self.failure {
            return format!("the run could not start: {why}\n");
        }
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
    let mut listing_retries = 0;
    let stocks = match &options.stocks {
        Some(stocks) if !stocks.is_empty() => stocks.clone(),
        _ => match list_stocks(&Client::new(), &addr, &mut listing_retries) {
            Ok(stocks) => stocks,
            Err(e) => {
                let why = if is_refused(&e) {
                    format!(
                        "nothing listens at {addr} (connection refused): is the bazaar running, \
                         and is this its front-end's host and port?"
                    )
                } else {
                    format!("cannot list the stocks at {addr}: {}", e.message())
                };
                return Summary {
                    clients: options.clients.max(1),
                    errors: 1,
                    retries: listing_retries,
                    failure: Some(why),
                    ..Summary::default()
                };
            }
        },
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
    summary.retries += listing_retries;
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
    let mut session = Session {
        options,
        addr,
        client: Client::new(),
        rng: fastrand::Rng::with_seed(options.seed.wrapping_add(index as u64)),
        out: SessionResult::default(),
    };
    let trading = Instant::now();
    let placed = session.trade(stocks);
    session.out.summary.trading_s = trading.elapsed().as_secs_f64();
    session.read_back(&placed);
    session.out.summary.acknowledged = placed.into_values().collect();
    session.out
}

/// What one session works with, and what it has measured so far.
struct Session<'a> {
    options: &'a ClientOptions,
    addr: &'a str,
    client: Client,
    rng: fastrand::Rng,
    out: SessionResult,
}

impl Session<'_> {
    /// The trading phase: `n_request` lookups, each followed by an order with probability
    /// `prob`. Returns the acknowledged orders by transaction number.
    fn trade(&mut self, stocks: &[String]) -> BTreeMap<u64, Order> {
        let mut placed = BTreeMap::new();
        for _ in 0..self.options.n_request {
            if self.told_to_stop() {
                break;
            }
            // The RNG is drawn in the same order as ever (stock, then whether to order, then
            // quantity and side), so a seed keeps asking what it asked before.
            let name = &stocks[self.rng.usize(..stocks.len())];
            match self.look_up(name) {
                Step::Next => {}
                Step::Skip => continue,
                Step::Stop => break,
            }
            if self.rng.f64() >= self.options.prob {
                continue;
            }
            let order = OrderRequest {
                name: name.clone(),
                quantity: self.rng.u64(1..=MAX_TRADE),
                kind: if self.rng.bool() {
                    OrderType::Buy
                } else {
                    OrderType::Sell
                },
                request_id: Some(new_request_id("c")),
            };
            if let Step::Stop = self.place(order, &mut placed) {
                break;
            }
        }
        placed
    }

    /// Whether the run's deadline passed or its owner (chaos) asked it to stop.
    fn told_to_stop(&self) -> bool {
        let stopped = self
            .options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        stopped || self.options.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// One lookup, retried.
    fn look_up(&mut self, name: &str) -> Step {
        let started = Instant::now();
        let (client, addr) = (&self.client, self.addr);
        let lookup = retrying(&mut self.out.summary.retries, || {
            client.get::<Stock>(addr, &format!("/stocks/{name}"), CLIENT_REQUEST_TIMEOUT)
        });
        self.out.summary.lookups += 1;
        match lookup {
            Ok(_) => {
                self.out.lookup.push(ms_since(started));
                Step::Next
            }
            Err(e) => {
                log::warn!("lookup of {name} failed: {e}");
                self.out.summary.errors += 1;
                // Still retryable after a whole retry deadline means the bazaar is out of
                // reach: every further request would wait out its own deadline too.
                if is_retryable(&e) {
                    Step::Stop
                } else {
                    Step::Skip
                }
            }
        }
    }

    /// One order, retried under its request id; an acknowledged one joins `placed`.
    fn place(&mut self, mut order: OrderRequest, placed: &mut BTreeMap<u64, Order>) -> Step {
        let started = Instant::now();
        let (client, addr) = (&self.client, self.addr);
        let ack = retrying(&mut self.out.summary.retries, || {
            let got = client.post::<_, OrderAck>(addr, "/orders", &order, CLIENT_REQUEST_TIMEOUT);
            adopt_request_id(&mut order, &got);
            got
        });
        self.out.summary.orders += 1;
        match ack {
            Ok(ack) => {
                self.out.order.push(ms_since(started));
                let number = ack.transaction_number;
                let mine = Order {
                    number,
                    name: order.name,
                    kind: order.kind,
                    quantity: order.quantity,
                };
                // Two orders of this session under one number: the bazaar traded one of
                // them twice or lost one, which the read-back alone could not tell.
                if let Some(previous) = placed.insert(number, mine) {
                    log::error!("transaction number {number} acknowledged twice: {previous:?}");
                    self.out.summary.mismatches += 1;
                }
            }
            // Not enough stock is a correct refusal, not a failure.
            Err(Error::Conflict(_)) => self.out.summary.rejected += 1,
            Err(e) => {
                log::warn!("order {order:?} failed: {e}");
                self.out.summary.errors += 1;
                if is_retryable(&e) {
                    return Step::Stop;
                }
            }
        }
        Step::Next
    }

    /// The read-back phase: every acknowledged order is asked for and compared.
    fn read_back(&mut self, placed: &BTreeMap<u64, Order>) {
        let mut unreachable = false;
        for (number, mine) in placed {
            if unreachable {
                // Counted as not verified, without another retry deadline each.
                self.out.summary.mismatches += 1;
                continue;
            }
            let started = Instant::now();
            let (client, addr) = (&self.client, self.addr);
            let got = retrying(&mut self.out.summary.retries, || {
                client.get::<Order>(addr, &format!("/orders/{number}"), CLIENT_REQUEST_TIMEOUT)
            });
            self.out.summary.order_queries += 1;
            match got {
                Ok(theirs) => {
                    self.out.query.push(ms_since(started));
                    if &theirs != mine {
                        log::error!(
                            "order {number} mismatch: placed {mine:?}, bazaar has {theirs:?}"
                        );
                        self.out.summary.mismatches += 1;
                    }
                }
                Err(e) => {
                    log::error!("order {number} cannot be read back: {e}");
                    self.out.summary.mismatches += 1;
                    unreachable = is_retryable(&e);
                }
            }
        }
    }
}

/// What the trading loop does after a step.
enum Step {
    /// Go on with this request.
    Next,
    /// Give up on this request and go on with the next one.
    Skip,
    /// The bazaar is out of reach: end the trading phase.
    Stop,
}

/// Calls `f` until it succeeds, fails for good, or [`CLIENT_RETRY_DEADLINE`] passes. Transport failures
/// and 5xx answers are retried; other answers are final.
pub(crate) fn retrying<T>(retries: &mut u64, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + CLIENT_RETRY_DEADLINE;
    loop {
        match f() {
            Err(e) if is_retryable(&e) && Instant::now() < deadline => {
                *retries += 1;
                thread::sleep(CLIENT_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

/// Whether a failed call may succeed when sent again: a transport failure or a 5xx. (The
/// test harness's load and probe retry by the same rule.)
pub(crate) fn is_retryable(err: &Error) -> bool {
    matches!(
        err,
        Error::Unreachable(_)
            | Error::Unavailable(_)
            | Error::Resend { .. }
            | Error::NotLeader(_)
            | Error::Internal(_)
    )
}

/// After a 503 "re-send", the order is re-sent under the id that answer names: the id the
/// bazaar may have logged it under. (This client always sends its own id, which the answer
/// repeats; taking the answer's id also covers an order sent without one.)
fn adopt_request_id<T>(order: &mut OrderRequest, got: &Result<T>) {
    if let Err(err) = got {
        if let Some(id) = err.request_id() {
            order.request_id = Some(id.to_string());
        }
    }
}

/// The stock names to trade: the front-end's list (the catalog's config), retried like any
/// request, so that the bazaar's config is the only list of stocks the client knows.
fn list_stocks(client: &Client, addr: &str, retries: &mut u64) -> Result<Vec<String>> {
    let list = match client.get::<Vec<StockRecord>>(addr, "/stocks", CLIENT_REQUEST_TIMEOUT) {
        Err(e) if is_refused(&e) => return Err(e),
        Err(e) if is_retryable(&e) => {
            *retries += 1;
            retrying(retries, || {
                client.get::<Vec<StockRecord>>(addr, "/stocks", CLIENT_REQUEST_TIMEOUT)
            })?
        }
        other => other?,
    };
    if list.is_empty() {
        return Err(Error::NotFound("the bazaar lists no stocks".into()));
    }
    Ok(list.into_iter().map(|s| s.name).collect())
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
            (
                Error::Resend {
                    message: "x".into(),
                    request_id: "r".into(),
                },
                true,
            ),
            (Error::Conflict("x".into()), false),
            (Error::NotFound("x".into()), false),
            (Error::BadRequest("x".into()), false),
        ];
        for (err, want) in cases {
            assert_eq!(is_retryable(&err), want, "{err:?}");
        }
    }

    #[test]
    fn a_resend_answer_sets_the_id_of_the_retry() {
        let mut order = OrderRequest {
            name: "A".into(),
            quantity: 1,
            kind: OrderType::Buy,
            request_id: None,
        };
        adopt_request_id::<()>(&mut order, &Err(Error::Unavailable("x".into())));
        assert_eq!(order.request_id, None);
        let resend = Error::Resend {
            message: "x".into(),
            request_id: "fe-3".into(),
        };
        adopt_request_id::<()>(&mut order, &Err(resend));
        assert_eq!(order.request_id.as_deref(), Some("fe-3"));
        adopt_request_id(&mut order, &Ok(()));
        assert_eq!(order.request_id.as_deref(), Some("fe-3"));
    }
}

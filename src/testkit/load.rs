//! The load generator of the tests and `chaos`: threads placing orders through one front-end
//! while faults happen, and what they saw. One [`Load`] runs either of two kinds of worker:
//!
//! - [`Load::sessions`]: [`client::run`], the shipped client (lookups, then an order with
//!   probability `prob`, every order read back and verified at the end), for a count of
//!   requests, until a deadline, or until stopped. Used by `chaos` and the fault tests
//!   (`tests/e2e_faults.rs`, [`crate::testkit::harness::load`]).
//! - [`Load::orders`]: bare order threads, for the fault sequences (`tests/e2e_sequences`):
//!   each acknowledgement is counted the moment it arrives ([`Load::wait_more`],
//!   [`Load::acked_since`]), and an order is sent with a request id and re-sent with it on a
//!   5xx or a transport error until [`RETRY_DEADLINE`], or without one and sent once, like curl.
//!
//! Either way the result is a [`Tally`]: every acknowledged order and a [`Summary`].
//!
//! Caveats: sessions report their acknowledgements only once they end, so
//! [`Load::acked`], [`Load::wait_more`] and [`Load::acked_since`] see order threads only; the
//! order threads trade every stock but [`PROBE_STOCK`] (left to [`crate::testkit::probe`]) and
//! do not verify what they placed: the oracle does, against the files.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::api::{Order, OrderAck, OrderType};
use crate::client::{self, ClientOptions, Summary};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::local::{poll_every, POLL_INTERVAL};
use crate::testkit::cluster::{order_request, CALL_TIMEOUT, STOCKS};

/// The stock only the stale-read probe trades, so that it knows its exact quantity.
pub const PROBE_STOCK: &str = "MenhirCo";

/// How long an order thread re-sends one order (same request id) before it counts as an
/// error.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(15);

/// Pause between two re-sends, and after an order that failed.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Whether a failed call may succeed when sent again: the load client's own rule.
pub(crate) use crate::client::is_retryable;

/// One acknowledged order as a client saw it, and when.
#[derive(Clone, Debug)]
pub struct Acked {
    pub order: Order,
    pub at: Instant,
}

/// What a load saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every acknowledged order (for sessions, stamped when they ended).
    pub acked: Vec<Acked>,
    /// Orders that ended without an acknowledgement (503, transport error, deadline),
    /// stopping the load included.
    pub failed: u64,
    /// The counts: for sessions the client's own summary (latencies, lookups, mismatches);
    /// for order threads `errors` (failures not caused by stopping the load), `rejected`
    /// (409), `retries` and `acknowledged`.
    pub summary: Summary,
}

/// Threads placing orders through one front-end; see the module doc.
pub struct Load {
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
    workers: Workers,
}

/// What order threads record as they go.
#[derive(Default)]
struct Live {
    tally: Mutex<Tally>,
    count: AtomicUsize,
}

enum Workers {
    Sessions(JoinHandle<Summary>),
    Orders(Vec<JoinHandle<()>>),
}

impl Load {
    /// Starts [`client::run`] with `options` on a thread of its own. Its `stop` flag is the
    /// load's (the caller's own, when `options` has one).
    pub fn sessions(mut options: ClientOptions) -> Result<Load> {
        let stop = options
            .stop
            .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        let handle = thread::Builder::new()
            .name("clients".into())
            .spawn(move || client::run(&options))?;
        Ok(Load {
            stop,
            live: Arc::default(),
            workers: Workers::Sessions(handle),
        })
    }

    /// Starts `threads` order threads on front-end `fe` until stopped (or `limit` orders each).
    /// With `ids`, each order carries the request id `<tag>-<thread>-<i>` and is re-sent with
    /// it on 5xx/transport errors until [`RETRY_DEADLINE`]; without, each order is sent once.
    pub fn orders(fe: &str, threads: usize, ids: bool, tag: &str, limit: Option<usize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        live.tally.lock().summary.clients = threads;
        let stocks: Vec<&'static str> = STOCKS
            .iter()
            .map(String::as_str)
            .filter(|s| *s != PROBE_STOCK)
            .collect();
        let handles = (0..threads)
            .map(|t| {
                let thread = OrderThread {
                    fe: fe.to_string(),
                    tag: tag.to_string(),
                    stocks: stocks.clone(),
                    t,
                    ids,
                    limit,
                    stop: stop.clone(),
                    live: live.clone(),
                };
                thread::spawn(move || thread.run())
            })
            .collect();
        Load {
            stop,
            live,
            workers: Workers::Orders(handles),
        }
    }

    /// Orders acknowledged so far (order threads only).
    pub fn acked(&self) -> usize {
        self.live.count.load(Ordering::SeqCst)
    }

    /// Waits until `more` orders beyond now are acknowledged; false on timeout.
    pub fn wait_more(&self, more: usize, timeout: Duration) -> bool {
        let target = self.acked() + more;
        poll_every("acknowledged orders", timeout, POLL_INTERVAL, || {
            (self.acked() >= target).then_some(())
        })
        .is_ok()
    }

    /// Acknowledged orders received at or after `since` (order threads only).
    pub fn acked_since(&self, since: Instant) -> Vec<Acked> {
        let tally = self.live.tally.lock();
        tally
            .acked
            .iter()
            .filter(|a| a.at >= since)
            .cloned()
            .collect()
    }

    /// Whether every worker has ended by itself (its count or deadline reached).
    pub fn is_finished(&self) -> bool {
        match &self.workers {
            Workers::Sessions(handle) => handle.is_finished(),
            Workers::Orders(handles) => handles.iter().all(JoinHandle::is_finished),
        }
    }

    /// Stops the load and returns what it saw.
    pub fn finish(self) -> Result<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits up to `timeout` for the load to end by itself (a `limit`), then stops it.
    pub fn join_within(self, timeout: Duration) -> Result<Tally> {
        let _ = poll_every("the load to end", timeout, POLL_INTERVAL, || {
            self.is_finished().then_some(())
        });
        self.finish()
    }

    /// Waits for the load to end by itself (its count or deadline) and returns what it saw.
    pub fn join(self) -> Result<Tally> {
        let panicked = || Error::Internal("a load thread panicked".into());
        match self.workers {
            Workers::Sessions(handle) => {
                let summary = handle.join().map_err(|_| panicked())?;
                let at = Instant::now();
                Ok(Tally {
                    acked: summary
                        .acknowledged
                        .iter()
                        .map(|order| Acked {
                            order: order.clone(),
                            at,
                        })
                        .collect(),
                    failed: summary.errors,
                    summary,
                })
            }
            Workers::Orders(handles) => {
                for handle in handles {
                    handle.join().map_err(|_| panicked())?;
                }
                let mut tally = std::mem::take(&mut *self.live.tally.lock());
                tally.summary.acknowledged = tally.acked.iter().map(|a| a.order.clone()).collect();
                Ok(tally)
            }
        }
    }

    /// [`Load::join`]'s summary: what a run of client sessions reports.
    pub fn summary(self) -> Result<Summary> {
        self.join().map(|tally| tally.summary)
    }
}

/// One order thread of [`Load::orders`].
struct OrderThread {
    fe: String,
    tag: String,
    stocks: Vec<&'static str>,
    t: usize,
    ids: bool,
    limit: Option<usize>,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
}

impl OrderThread {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(self) {
        let client = Client::new();
        // Each thread its own fixed choices, so that two runs place alike orders.
        let mut rng = fastrand::Rng::with_seed(self.t as u64 * 7919 + 1);
        let mut i = 0usize;
        while !self.stopped() && self.limit.is_none_or(|l| i < l) {
            let rid = format!("{}-{}-{i}", self.tag, self.t);
            let kind = if i.is_multiple_of(2) {
                OrderType::Sell
            } else {
                OrderType::Buy
            };
            let req = order_request(
                self.stocks[rng.usize(..self.stocks.len())],
                rng.u64(1..=3),
                kind,
                self.ids.then_some(rid.as_str()),
            );
            i += 1;
            let started = Instant::now();
            let mut retries = 0;
            let answer = loop {
                let got = client.post::<_, OrderAck>(&self.fe, "/orders", &req, CALL_TIMEOUT);
                match got {
                    Err(e)
                        if is_retryable(&e)
                            && self.ids
                            && !self.stopped()
                            && started.elapsed() < RETRY_DEADLINE =>
                    {
                        retries += 1;
                        thread::sleep(RETRY_PAUSE);
                    }
                    other => break other,
                }
            };
            let mut tally = self.live.tally.lock();
            tally.summary.retries += retries;
            tally.summary.orders += 1;
            match answer {
                Ok(ack) => {
                    tally.acked.push(Acked {
                        order: Order {
                            number: ack.transaction_number,
                            name: req.name.clone(),
                            kind: req.kind,
                            quantity: req.quantity,
                        },
                        at: Instant::now(),
                    });
                    self.live.count.fetch_add(1, Ordering::SeqCst);
                }
                Err(Error::Conflict(_)) => tally.summary.rejected += 1,
                Err(e) => {
                    tally.failed += 1;
                    if !self.stopped() {
                        tally.summary.errors += 1;
                        eprintln!("load {}: order {req:?} failed: {e}", self.tag);
                    }
                    drop(tally);
                    thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }
}

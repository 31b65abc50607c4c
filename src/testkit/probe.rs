//! The stale-read probe of docs/spec.md §5.5, for `chaos` and the fault sequences: it trades
//! [`PROBE_STOCK`] one share at a time through one front-end and looks the stock up through
//! another (or the same) right after each acknowledgement. Nothing else trades that stock (the
//! load leaves it alone), so the expected quantity is exact and any lookup older than an
//! acknowledged trade is caught. It buys while more than half the stock is left and sells
//! otherwise, so it never runs out.
//!
//! How long it insists on one call is its [`Patience`]: `chaos` gives each call the client's
//! retry deadline and counts a call still failing after it as a violation; the sequences
//! retry until the probe is stopped, since their faults (a majority down) may hold orders for
//! longer on purpose.
//!
//! Caveats: one trade at a time, so it sees a stale lookup only if one is served right after
//! its own trade; a probe stopped mid-call reports nothing for that call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::api::{Order, OrderAck, OrderType, Stock};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::testkit::cluster::{order_request, CALL_TIMEOUT};
pub use crate::testkit::load::PROBE_STOCK;
use crate::testkit::load::RETRY_PAUSE;

/// How long the probe insists on one call (an order or a lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Retry every failure (but a refused order) until the probe is stopped.
    UntilStopped,
    /// Retry transport failures and 5xx answers for this long; any other answer, or a
    /// failure past it, is a violation.
    For(Duration),
}

/// What the probe saw.
#[derive(Debug, Default)]
pub struct ProbeOutcome {
    /// Its acknowledged trades, for the oracle's "acknowledged orders stored" check.
    pub acked: Vec<Order>,
    /// The first violation: a stale lookup, or a call that failed for good.
    pub stale: Option<String>,
}

/// The probe, on a thread of its own until [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<ProbeOutcome>,
}

impl Probe {
    /// Starts trading through `order_fe` and looking up through `lookup_fe`; request ids are
    /// `<tag>-probe-<k>`.
    pub fn start(order_fe: &str, lookup_fe: &str, tag: &str, patience: Patience) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let run = Run {
            order_fe: order_fe.to_string(),
            lookup_fe: lookup_fe.to_string(),
            tag: tag.to_string(),
            patience,
            stop: stop.clone(),
            client: Client::new(),
        };
        let handle = thread::Builder::new()
            .name("probe".into())
            .spawn(move || run.run())?;
        Ok(Probe { stop, handle })
    }

    /// Stops the probe and returns what it saw.
    pub fn finish(self) -> ProbeOutcome {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_else(|_| ProbeOutcome {
            acked: Vec::new(),
            stale: Some("probe panicked".into()),
        })
    }
}

/// How one call ended.
enum Call<T> {
    Done(T),
    Failed(Error),
    Stopped,
}

struct Run {
    order_fe: String,
    lookup_fe: String,
    tag: String,
    patience: Patience,
    stop: Arc<AtomicBool>,
    client: Client,
}

impl Run {
    fn run(&self) -> ProbeOutcome {
        let mut outcome = ProbeOutcome::default();
        let mut expected = match self.lookup() {
            Call::Done(q) => q,
            Call::Stopped => return outcome,
            Call::Failed(e) => {
                outcome.stale = Some(format!("probe cannot look {PROBE_STOCK} up: {e}"));
                return outcome;
            }
        };
        for k in 0.. {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let kind = if expected > 50 {
                OrderType::Buy
            } else {
                OrderType::Sell
            };
            let rid = format!("{}-probe-{k}", self.tag);
            let req = order_request(PROBE_STOCK, 1, kind, Some(&rid));
            let ack = match self.call(true, || {
                self.client
                    .post::<_, OrderAck>(&self.order_fe, "/orders", &req, CALL_TIMEOUT)
            }) {
                Call::Done(ack) => ack,
                Call::Stopped => break,
                Call::Failed(e) => {
                    outcome.stale = Some(format!("probe order {k} failed: {e}"));
                    break;
                }
            };
            outcome.acked.push(Order {
                number: ack.transaction_number,
                name: PROBE_STOCK.into(),
                kind,
                quantity: 1,
            });
            expected = match kind {
                OrderType::Buy => expected - 1,
                OrderType::Sell => expected + 1,
            };
            match self.lookup() {
                Call::Done(q) if q == expected => {}
                Call::Done(q) => {
                    outcome.stale = Some(format!(
                        "after probe trade {k} (number {}) a lookup through {} showed {q}, \
                         expected {expected}",
                        ack.transaction_number, self.lookup_fe
                    ));
                    break;
                }
                Call::Stopped => break,
                Call::Failed(e) => {
                    outcome.stale = Some(format!("probe lookup failed: {e}"));
                    break;
                }
            }
        }
        outcome
    }

    fn lookup(&self) -> Call<u64> {
        let path = format!("/stocks/{PROBE_STOCK}");
        match self.call(false, || {
            self.client
                .get::<Stock>(&self.lookup_fe, &path, CALL_TIMEOUT)
        }) {
            Call::Done(stock) => Call::Done(stock.quantity),
            Call::Failed(e) => Call::Failed(e),
            Call::Stopped => Call::Stopped,
        }
    }

    /// Calls `f` until it succeeds, fails for good (see [`Patience`]; `ordering`: a refused
    /// order is final either way), or, when patient until stopped, the probe is stopped.
    fn call<T>(&self, ordering: bool, mut f: impl FnMut() -> Result<T>) -> Call<T> {
        let deadline = match self.patience {
            Patience::For(limit) => Some(Instant::now() + limit),
            Patience::UntilStopped => None,
        };
        loop {
            if deadline.is_none() && self.stop.load(Ordering::SeqCst) {
                return Call::Stopped;
            }
            match f() {
                Ok(v) => return Call::Done(v),
                Err(e) if ordering && matches!(e, Error::Conflict(_)) => return Call::Failed(e),
                Err(e) => match deadline {
                    Some(_) if !crate::testkit::load::is_retryable(&e) => return Call::Failed(e),
                    Some(at) if Instant::now() >= at => return Call::Failed(e),
                    _ => thread::sleep(RETRY_PAUSE),
                },
            }
        }
    }
}

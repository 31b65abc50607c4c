//! The catalog's invalidation fan-out: after an apply is persisted and published, and before it
//! is answered, every front-end of `config.frontend_addrs()` is told to drop the batch's
//! stocks. One `POST /invalidation` with an `InvalidateBatch` (distinct names) and the secret
//! per front-end, all front-ends in parallel, the whole fan-out bounded by
//! [`INVALIDATION_BUDGET`]: the first front-end is called by the apply's own thread (one
//! front-end is the usual deployment, and a hand-off to a worker and back cost two thread
//! wake-ups per apply), every other one by a long-lived worker thread of its own. A front-end that is down or slower than that is
//! logged (warn) and the apply still succeeds; [`Invalidator::invalidate`] says whether every
//! running front-end confirmed, so that the caller can wait out a cache lease otherwise
//! (`super::routes`).
//!
//! Caveats:
//! - The answer waits at most the budget even when a connect hangs (the HTTP client's connect
//!   timeout is longer than the budget): the worker goes on with the call, and the batches
//!   queued behind it are dropped once their own budget is spent (reported as unconfirmed).
//! - A front-end that is down (connection refused) counts as confirmed: it starts again with
//!   an empty cache. One that is only paused or slower than the budget may keep what it cached
//!   before the trade; that is the caller's lease wait.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use log::{debug, warn};

use crate::api::InvalidateBatch;
use crate::error::Result;
use crate::http::client::is_refused;
use crate::http::Client;
use crate::timing::INVALIDATION_BUDGET;

/// The front-ends to invalidate and a worker for each but the first.
pub(crate) struct Invalidator {
    frontends: Vec<String>,
    /// The invalidation worker of each front-end after the first, in `frontends` order
    /// (`None`: it could not start).
    workers: Vec<Option<mpsc::Sender<Job>>>,
    /// Calls the first front-end from the apply's thread.
    client: Client,
}

/// One batch for one front-end's invalidation worker.
struct Job {
    batch: Arc<InvalidateBatch>,
    /// The end of the batch's budget: a job picked up later is dropped (already reported).
    deadline: Instant,
    index: usize,
    done: mpsc::Sender<(usize, Result<()>)>,
}

impl Invalidator {
    /// Starts a worker for each of `frontends`, calling with the deployment `secret` (the
    /// front-ends' invalidation endpoints require it).
    pub(crate) fn new(frontends: Vec<String>, secret: &str) -> Invalidator {
        let client = Client::with_secret(secret);
        let workers = frontends
            .iter()
            .skip(1)
            .map(|addr| spawn_worker(client.clone(), addr.clone()))
            .collect();
        Invalidator {
            frontends,
            workers,
            client,
        }
    }

    /// Tells every front-end, in parallel, to drop `names`, waiting at most
    /// [`INVALIDATION_BUDGET`] in all; failures and late answers are logged. True if every
    /// front-end confirmed or is not running (connection refused: no process, no cache).
    pub(crate) fn invalidate(&self, names: Vec<String>) -> bool {
        if names.is_empty() || self.frontends.is_empty() {
            return true;
        }
        let started = Instant::now();
        let deadline = started + INVALIDATION_BUDGET;
        let batch = Arc::new(InvalidateBatch { names });
        let (done, answers) = mpsc::channel();
        let mut waiting = vec![false; self.frontends.len()];
        let others = self.frontends.iter().skip(1).zip(&self.workers);
        for (i, (addr, worker)) in others.enumerate() {
            let i = i + 1;
            let job = Job {
                batch: batch.clone(),
                deadline,
                index: i,
                done: done.clone(),
            };
            match worker.as_ref().map(|w| w.send(job)) {
                Some(Ok(())) => waiting[i] = true,
                _ => warn!("no invalidation worker for front-end {addr}"),
            }
        }
        // The first front-end on this thread, while the workers call the others.
        let first: Result<InvalidateBatch> = self.client.post_within(
            &self.frontends[0],
            "/invalidation",
            &*batch,
            INVALIDATION_BUDGET,
        );
        let _ = done.send((0, first.map(|_| ())));
        waiting[0] = true;
        drop(done);
        let mut confirmed = 0;
        while waiting.contains(&true) {
            let left = deadline.saturating_duration_since(Instant::now());
            match answers.recv_timeout(left) {
                Ok((i, answer)) => {
                    waiting[i] = false;
                    let gone = answer.as_ref().is_err_and(is_refused);
                    confirmed += usize::from(answer.is_ok() || gone);
                    if let (Err(e), false) = (&answer, gone) {
                        warn!(
                            "could not invalidate {:?} at front-end {}: {e}",
                            batch.names, self.frontends[i]
                        );
                    }
                }
                Err(_) => break,
            }
        }
        for (addr, _) in self.frontends.iter().zip(&waiting).filter(|(_, w)| **w) {
            warn!(
                "front-end {addr} did not confirm invalidating {:?} within {} ms; answering anyway",
                batch.names,
                INVALIDATION_BUDGET.as_millis()
            );
        }
        debug!(
            "invalidated {:?} at {confirmed} of {} front-ends in {:?}",
            batch.names,
            self.frontends.len(),
            started.elapsed()
        );
        confirmed == self.frontends.len()
    }
}

/// The long-lived thread that makes one front-end's invalidation calls, one batch at a time.
/// (A thread per call cost a spawn per front-end per batch on the hot path.) While a call
/// hangs, later batches wait in the channel and are dropped once their budget is spent.
fn spawn_worker(client: Client, addr: String) -> Option<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("invalidate".into())
        .spawn(move || {
            for job in queue {
                let timeout = job.deadline.saturating_duration_since(Instant::now());
                if timeout.is_zero() {
                    continue;
                }
                let answer: Result<InvalidateBatch> =
                    client.post(&addr, "/invalidation", &*job.batch, timeout);
                // The receiver is gone once the budget is spent: nothing to tell then.
                let _ = job.done.send((job.index, answer.map(|_| ())));
            }
        });
    match spawned {
        Ok(_) => Some(jobs),
        Err(e) => {
            warn!("cannot start the invalidation worker: {e}; front-end caches may go stale");
            None
        }
    }
}

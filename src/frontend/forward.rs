//! Forwarding orders and order queries to the leading replica, with retries: a forward that
//! finds the leader unreachable, or hears 421 "not the leader", re-selects the leader (once per
//! failure wave, serialized, `leader::LeaderTracker`) and retries the same body — same
//! `request_id`, which the front-end assigns when the client did not, so the catalog and the
//! replicas recognise the retry and never trade twice. An order the leader answers 503
//! "re-send with the same request_id" is retried the same way. Retries stop after
//! [`MAX_FORWARD_ATTEMPTS`] or at [`FORWARD_DEADLINE`], answering 503 "no order replica
//! reachable"; for an order that 503 says "re-send" and carries the request id, since the
//! order may still commit and a client that sent no id could not re-send it otherwise.
//!
//! Caveats:
//! - Every other error (400/404/409, a 503 meaning the catalog is down, a leader's 503 on a
//!   read of an order it has not committed yet, 500) is the leader's real answer and goes
//!   straight back with its status, not retried.
//! - A frozen leader (SIGSTOP) still accepts connections: each forward to it costs up to
//!   [`FORWARD_TIMEOUT`] before the front-end re-selects.

use std::time::{Duration, Instant};

use log::warn;

use super::FrontendApi;
use crate::api::{new_request_id, Order, OrderAck, OrderRequest, RESEND};
use crate::error::{Error, Result};
use crate::timing::{FORWARD_DEADLINE, FORWARD_TIMEOUT, RETRY_BACKOFF};

/// The most forwards one client request makes (a safety net under the deadline).
pub(crate) const MAX_FORWARD_ATTEMPTS: u32 = 64;

impl FrontendApi {
    /// Forwards an order to the leader (with retries), then drops the stock from the cache
    /// before the client hears of it. A 503 "re-send" names the request id the order went
    /// under (the client's, or the one given here), so that a client that sent none can.
    pub(super) fn place_order(&self, mut order: OrderRequest) -> Result<OrderAck> {
        let request_id = order
            .request_id
            .get_or_insert_with(|| self.next_request_id())
            .clone();
        self.traffic.count_order();
        let result = self
            .forward(Some(&request_id), |addr, timeout| {
                self.client.post(addr, "/orders", &order, timeout)
            })
            .map_err(|e| e.with_request_id(&request_id));
        // The catalog invalidated before it answered; doing it here as well keeps lookups
        // fresh even if that call was lost. Only an acknowledged trade needs it: after an error
        // nothing was promised, and a retry that completes the trade invalidates again. (A
        // failed order must not evict a stock the catalog may be too down to serve again.)
        if result.is_ok() {
            self.cache.invalidate(&order.name);
        }
        result
    }

    pub(super) fn query_order(&self, number: u64) -> Result<Order> {
        let path = format!("/orders/{number}");
        self.forward(None, |addr, timeout| self.client.get(addr, &path, timeout))
    }

    /// Calls `call(leader_http_addr, timeout)` on the leader, re-selecting and retrying while
    /// the leader is unreachable or says it does not lead (421: a follower, a candidate, or a
    /// leader without its lease, which may be deposed), and, for an order (`request_id` is
    /// its id), while the leader says "re-send". Any other answer is the leader's, passed on
    /// as it is: a read of an order not yet committed may get the leader's own 503, which
    /// says nothing about whether the order will commit, so it is not retried here.
    fn forward<T>(
        &self,
        request_id: Option<&str>,
        call: impl Fn(&str, Duration) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + FORWARD_DEADLINE;
        let mut attempts = 0;
        loop {
            let view = self.leader.view();
            let failure = match view.leader.and_then(|l| self.leader.replica(l.id)) {
                None => Error::Unavailable("no leader".into()),
                Some(replica) => {
                    let timeout =
                        FORWARD_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
                    match call(&replica.http_addr(), timeout) {
                        Err(err @ (Error::Unreachable(_) | Error::NotLeader(_))) => {
                            warn!("forward to order replica {} failed: {err}", replica.id);
                            err
                        }
                        // The leader could not commit it in time (no majority, or it stepped
                        // down): the order may still commit, and the same request id finds it.
                        Err(err) if request_id.is_some() && err.is_resend() => {
                            warn!("order replica {}: {err}", replica.id);
                            err
                        }
                        answer => return answer,
                    }
                }
            };
            attempts += 1;
            if attempts >= MAX_FORWARD_ATTEMPTS || Instant::now() >= deadline {
                return Err(give_up(attempts, &failure, request_id));
            }
            if view.leader.is_some() {
                self.leader.count_retry();
            }
            let next = self.leader.reselect(view, deadline);
            if next.leader.is_none() || next.leader == view.leader {
                let pause = RETRY_BACKOFF.min(deadline.saturating_duration_since(Instant::now()));
                std::thread::sleep(pause);
            }
        }
    }

    /// The id of an order the client sent without one (see [`new_request_id`]).
    pub(super) fn next_request_id(&self) -> String {
        new_request_id("fe")
    }
}

/// The answer after `attempts` forwards that all failed, the last with `failure`. An order
/// (`request_id`) may have been logged by a leader that then became unreachable, so it may
/// still commit: the client must re-send it under that id, which the answer carries. A read
/// changes nothing, so it is a plain 503.
pub(super) fn give_up(attempts: u32, failure: &Error, request_id: Option<&str>) -> Error {
    let message =
        format!("no order replica reachable (after {attempts} attempts; last: {failure})");
    match request_id {
        Some(id) => Error::Resend {
            message: format!("{message}; {RESEND}"),
            request_id: id.to_string(),
        },
        None => Error::Unavailable(message),
    }
}

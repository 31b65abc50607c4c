//! Replication: the leader's commit path and the followers' side of `/propagate`.
//!
//! Leader:
//!
//! 1. A handler thread (in `Node::place_order`) validates the order, queues it for
//!    `commit_loop` and waits for the answer.
//! 2. [`commit_loop`] takes everything queued (group commit, at most [`MAX_COMMIT_BATCH`]) and
//!    sends the orders that are not retries of logged ones to the catalog in one `POST
//!    /trades`, which applies them in that order and answers each (traded, or 404/409). The
//!    traded ones are numbered in the same order and appended with one fsync (an order whose
//!    request id is already logged, or earlier in the batch, gets its first number), the
//!    replicate loops are woken, and once every *live* follower has stored the batch every
//!    waiter is answered. Since the log lists each batch in the order the catalog applied it,
//!    replaying the log walks through the catalog's own states.
//! 3. One [`replicate_loop`] per peer keeps `next`, the first entry the follower may lack, and
//!    sends `Propagate { epoch, leader, prev, entries[next..] }` (at most [`MAX_BATCH`], and
//!    small enough for the follower's request-body limit: [`fit_body`]) while
//!    the follower is behind, and an empty one as a heartbeat every [`HEARTBEAT_INTERVAL`]. An
//!    accepted batch advances the follower's `matched`; a mismatch moves `next` back to the
//!    follower's hint; a 409 (the follower has seen a newer epoch) makes this replica step
//!    down; a failure or a timeout ([`PROPAGATE_TIMEOUT`]) marks the follower not live, so
//!    commits stop waiting for it. It is live again once a batch reaching the leader's latest
//!    entry is accepted.
//!
//! Follower (`Node::propagate`): an epoch below ours is refused (409); a higher one is
//! persisted and ends any leadership of ours; then the batch goes through `OrderLog::apply`,
//! which checks `prev`, skips what it holds and replaces a conflicting suffix. The body also
//! carries the leader's latest number ([`Propagate::leader_latest`]): our entries past it
//! with an older epoch can never be in the leader's log (everything the leader adds has its
//! epoch), so they are removed — this is how a returning old leader's unreplicated suffix goes
//! away even when the new leader writes nothing after it.
//!
//! Caveats: the commit path waits only for live followers, so while a follower is down an
//! order is acknowledged with two copies (or one, with both followers down); see
//! `docs/replication.md`. Batches are not pipelined: a batch waits for the previous one's
//! replication, which is what groups concurrent orders into one fsync and one round trip.

use std::time::{Duration, Instant};

use ::log::{debug, info, warn};

use super::failpoint;
use super::{Node, Role};
use crate::api::{OrderRequest, Propagate, PropagateAck, TradeBatch, TradeOutcome, TradeResult};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// How long the leader waits for a follower to answer a `/propagate`; past it the follower is
/// not live and commits stop waiting for it.
pub const PROPAGATE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a leader sends an empty `/propagate` to an idle follower: it carries the epoch
/// (a replaced leader learns it from the 409) and trims a stale suffix on the follower.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);

/// Pause between attempts at a follower that failed, so a dead one is not hammered.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Longest the commit path waits for live followers before giving up on a batch (the
/// front-end then retries on a leader it re-selects).
pub const COMMIT_TIMEOUT: Duration = Duration::from_millis(2500);

/// Most orders one commit takes from the queue: they go to the catalog in one request, which
/// must stay under the HTTP layer's body limit.
pub const MAX_COMMIT_BATCH: usize = 128;

/// Most entries in one `/propagate`.
pub const MAX_BATCH: usize = 1000;

/// Most bytes of entries in one `/propagate`: half the HTTP layer's body limit, leaving room
/// for the JSON around them. A bigger body would be refused with 413, again and again.
pub const MAX_PROPAGATE_BYTES: usize = crate::http::MAX_BODY_BYTES / 2;

/// Generous size of one entry as JSON, beyond its name and request id.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// Drops entries from the end until the rest fit in [`MAX_PROPAGATE_BYTES`], keeping at least
/// one (a single entry always fits: names and request ids are bounded).
pub fn fit_body(entries: &mut Vec<crate::api::LogEntry>) {
    let mut bytes = 0;
    let fits = entries
        .iter()
        .take_while(|e| {
            bytes += e.name.len() + e.request_id.len() + ENTRY_OVERHEAD_BYTES;
            bytes <= MAX_PROPAGATE_BYTES
        })
        .count();
    entries.truncate(fits.max(1));
}

/// What the leader knows about one follower in the current leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The commit path waits for this follower.
    pub live: bool,
    /// Highest number the follower is known to hold in agreement with us; −1 unknown.
    pub matched: i64,
}

impl Default for PeerProgress {
    fn default() -> Self {
        PeerProgress {
            live: true,
            matched: -1,
        }
    }
}

/// An order waiting for `commit_loop`.
pub struct Pending {
    order: OrderRequest,
    reply: std::sync::mpsc::Sender<Result<u64>>,
}

impl Node {
    /// Queues a traded order for `commit_loop` and waits for its number.
    pub(super) fn commit(&self, order: OrderRequest) -> Result<u64> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.queue.lock().push(Pending { order, reply });
        self.queued.notify_one();
        // commit_loop answers within about COMMIT_TIMEOUT once it takes the batch; the margin
        // covers a batch ahead of ours.
        answer.recv_timeout(COMMIT_TIMEOUT * 2).unwrap_or_else(|_| {
            Err(Error::NotLeader(format!(
                "replica {}: commit timed out",
                self.id
            )))
        })
    }

    /// Waits until every live follower holds `number`, while we lead in `epoch`.
    pub(super) fn wait_replicated(&self, number: u64, epoch: u64, deadline: Instant) -> Result<()> {
        let number = number as i64;
        let mut st = self.state.lock();
        loop {
            if st.role != Role::Leader || st.lead_epoch != epoch {
                return Err(Error::NotLeader(format!(
                    "replica {} stopped leading",
                    self.id
                )));
            }
            if st.peers.iter().all(|p| !p.live || p.matched >= number) {
                return Ok(());
            }
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return Err(Error::NotLeader(format!(
                    "replica {}: order {number} not replicated in time",
                    self.id
                )));
            }
        }
    }

    /// Trades, numbers, appends and replicates one batch; the number (or the refusal) of each
    /// order. Retries of logged orders and repeats within the batch are not traded again;
    /// the rest go to the catalog in one request, in queue order, and are logged in the order
    /// the catalog applied them, so a replay of the log passes through the catalog's states.
    fn commit_batch(&self, orders: &[OrderRequest]) -> Vec<Result<u64>> {
        let Some(epoch) = self.leading_epoch() else {
            return vec![Err(self.not_leader()); orders.len()];
        };
        let mut to_trade: Vec<OrderRequest> = Vec::new();
        for order in orders {
            let id = request_id(order);
            let new =
                self.log.lookup(id).is_none() && !to_trade.iter().any(|o| request_id(o) == id);
            if new {
                to_trade.push(order.clone());
            }
        }
        let refused: HashMap<&str, Error> = match self.trade(&to_trade) {
            Ok(outcomes) => to_trade
                .iter()
                .zip(outcomes)
                .filter_map(|(o, outcome)| outcome.err().map(|e| (request_id(o), e)))
                .collect(),
            Err(e) => to_trade
                .iter()
                .map(|o| (request_id(o), e.clone()))
                .collect(),
        };
        for _ in 0..to_trade.len() - refused.len() {
            failpoint::hit(failpoint::AFTER_CATALOG_TRADE);
        }
        let loggable: Vec<OrderRequest> = orders
            .iter()
            .filter(|o| !refused.contains_key(request_id(o)))
            .cloned()
            .collect();
        let mut numbers = match self.append_and_replicate(epoch, &loggable) {
            Ok(numbers) => numbers.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); loggable.len()],
        }
        .into_iter();
        orders
            .iter()
            .map(|o| match refused.get(request_id(o)) {
                Some(e) => Err(e.clone()),
                None => numbers
                    .next()
                    .unwrap_or_else(|| Err(Error::Internal("lost a number".into()))),
            })
            .collect()
    }

    /// Has the catalog apply `orders` in this order: each one's outcome, or why the whole
    /// batch could not be traded (an unreachable catalog is a 503, never a hang).
    fn trade(&self, orders: &[OrderRequest]) -> Result<Vec<Result<()>>> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let batch = TradeBatch {
            orders: orders.to_vec(),
        };
        let answer: Result<Vec<TradeOutcome>> = self.client.post(
            &self.config.catalog_addr(),
            "/trades",
            &batch,
            super::CATALOG_TIMEOUT,
        );
        let outcomes = answer.map_err(|e| match e {
            Error::Unreachable(why) => {
                warn!("catalog unreachable for {} order(s): {why}", orders.len());
                Error::Unavailable("catalog unavailable".into())
            }
            other => other,
        })?;
        if outcomes.len() != orders.len() {
            return Err(Error::Internal(format!(
                "the catalog answered {} outcomes for {} orders",
                outcomes.len(),
                orders.len()
            )));
        }
        Ok(outcomes
            .into_iter()
            .map(|o| Result::<TradeResult>::from(o).map(|_| ()))
            .collect())
    }

    /// Appends the traded orders with one fsync and waits until every live follower has them.
    fn append_and_replicate(&self, epoch: u64, orders: &[OrderRequest]) -> Result<Vec<u64>> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let before = self.log.latest();
        let numbers = self.log.append_orders(epoch, orders)?;
        let fresh = numbers.iter().filter(|&&n| n as i64 > before).count();
        for _ in 0..fresh {
            failpoint::hit(failpoint::AFTER_LOG_APPEND);
        }
        self.changed.notify_all();
        if let Some(&last) = numbers.iter().max() {
            self.wait_replicated(last, epoch, Instant::now() + COMMIT_TIMEOUT)?;
        }
        for _ in 0..fresh {
            failpoint::hit(failpoint::BEFORE_REPLY);
        }
        debug!(
            "committed {fresh} new order(s) up to {:?}",
            numbers.iter().max()
        );
        Ok(numbers)
    }

    /// A follower stored everything up to `matched` in our leadership `epoch`. `caught_up`:
    /// that reached our latest entry when we sent it. Returns how many entries were stored by
    /// a follower for the first time (for the failpoint).
    fn peer_stored(&self, index: usize, epoch: u64, matched: i64, caught_up: bool) -> i64 {
        let mut st = self.state.lock();
        if st.role != Role::Leader || st.lead_epoch != epoch {
            return 0;
        }
        let peer = &mut st.peers[index];
        peer.matched = peer.matched.max(matched);
        if caught_up && !peer.live {
            peer.live = true;
            info!(
                "replica {} caught up (order {matched}); commits wait for it again",
                self.peers[index].id
            );
        }
        let first_time = (matched - st.replicated_once).max(0);
        st.replicated_once = st.replicated_once.max(matched);
        self.changed.notify_all();
        first_time
    }

    /// A follower did not answer: commits stop waiting for it.
    fn peer_failed(&self, index: usize, epoch: u64, why: &Error) {
        let mut st = self.state.lock();
        if st.role != Role::Leader || st.lead_epoch != epoch {
            return;
        }
        let peer = &mut st.peers[index];
        if peer.live {
            peer.live = false;
            warn!(
                "replica {} is not live, commits go on without it: {why}",
                self.peers[index].id
            );
            self.changed.notify_all();
        }
    }

    /// Follower side of `POST /propagate`.
    pub(super) fn propagate(&self, p: Propagate) -> Result<PropagateAck> {
        let leader_latest = Some(p.base);
        let _gate = self.apply_gate.lock();
        let own = self.epoch.get();
        let last_epoch = self.log.last_position().map_or(0, |pos| pos.epoch);
        if p.epoch < own.max(last_epoch) {
            return Err(Error::Conflict(format!(
                "stale epoch {} from replica {}: replica {} is in epoch {own}",
                p.epoch, p.leader, self.id
            )));
        }
        if p.epoch > own {
            self.adopt_epoch(p.epoch)?;
        }
        {
            let mut st = self.state.lock();
            if st.role == Role::Leader && p.leader != self.id {
                // Same epoch, two leaders: refuse, both step down, the front-end re-selects.
                return Err(Error::Conflict(format!(
                    "replica {} also leads epoch {}",
                    self.id, p.epoch
                )));
            }
            if st.leader != Some(p.leader) {
                debug!(
                    "replica {} follows replica {} in epoch {}",
                    self.id, p.leader, p.epoch
                );
                st.leader = Some(p.leader);
            }
        }
        match self.log.apply(p.prev, &p.entries)? {
            super::log::Applied::Accepted { .. } => {
                if let Some(leader_latest) = leader_latest {
                    self.log.trim_older_after(leader_latest, p.epoch)?;
                }
                Ok(PropagateAck {
                    accepted: true,
                    latest: self.log.latest(),
                })
            }
            super::log::Applied::Mismatch { hint }
            | super::log::Applied::Superseded { latest: hint } => Ok(PropagateAck {
                accepted: false,
                latest: hint,
            }),
        }
    }
}

/// The single committer: drains the queue, commits each batch, answers its waiters.
pub fn commit_loop(node: Arc<Node>) {
    loop {
        let batch = {
            let mut queue = node.queue.lock();
            while queue.is_empty() && !node.stopped() {
                node.queued.wait_for(&mut queue, Duration::from_millis(500));
            }
            if node.stopped() {
                for pending in queue.drain(..) {
                    let _ = pending
                        .reply
                        .send(Err(Error::Unavailable("replica shutting down".into())));
                }
                return;
            }
            let n = queue.len().min(MAX_COMMIT_BATCH);
            queue.drain(..n).collect::<Vec<_>>()
        };
        let orders: Vec<OrderRequest> = batch.iter().map(|p| p.order.clone()).collect();
        let results = node.commit_batch(&orders);
        // Refusals (400, 404, 409) are answers; anything else means the batch could not commit.
        let failed: Vec<&Error> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .filter(|e| {
                !matches!(
                    e,
                    Error::BadRequest(_) | Error::NotFound(_) | Error::Conflict(_)
                )
            })
            .collect();
        if let Some(e) = failed.first() {
            warn!(
                "{} of {} order(s) not committed: {e}",
                failed.len(),
                batch.len()
            );
        }
        for (pending, result) in batch.into_iter().zip(results) {
            // A waiter that gave up has dropped its receiver: nothing to do.
            let _ = pending.reply.send(result);
        }
    }
}

/// Pushes our log to peer `index` while we lead; idle otherwise.
pub fn replicate_loop(node: Arc<Node>, index: usize) {
    let peer = node.peers[index].clone();
    let addr = peer.http_addr();
    let mut cursor_epoch = 0;
    let mut next: u64 = 0;
    let mut last_contact: Option<Instant> = None;
    while !node.stopped() {
        let Some(epoch) = node.leading_epoch() else {
            let mut st = node.state.lock();
            if st.role != Role::Leader && !node.stopped() {
                node.changed.wait_for(&mut st, HEARTBEAT_INTERVAL);
            }
            continue;
        };
        if epoch != cursor_epoch {
            // A new leadership: optimistically assume the follower has all we have; the first
            // propagate checks it.
            cursor_epoch = epoch;
            next = (node.log.latest() + 1) as u64;
            last_contact = None;
        }
        let behind = next as i64 <= node.log.latest();
        let heartbeat_due = last_contact.is_none_or(|t| t.elapsed() >= HEARTBEAT_INTERVAL);
        if !behind && !heartbeat_due {
            let mut st = node.state.lock();
            if next as i64 > node.log.latest() && st.role == Role::Leader {
                node.changed.wait_for(&mut st, HEARTBEAT_INTERVAL);
            }
            continue;
        }

        let mut page = node.log.since(next, MAX_BATCH);
        fit_body(&mut page.entries);
        let prev = match next {
            0 => None,
            n => node.log.position(n - 1),
        };
        let sent_last = page
            .entries
            .last()
            .map_or(next as i64 - 1, |e| e.number as i64);
        let body = Propagate {
            epoch,
            leader: node.id,
            prev,
            entries: page.entries,
            base: page.latest,
            commit: -1,
        };
        let serial = failpoint::serial();
        let result =
            node.client
                .post::<_, PropagateAck>(&addr, "/propagate", &body, PROPAGATE_TIMEOUT);
        match result {
            Ok(ack) if ack.accepted => {
                last_contact = Some(Instant::now());
                next = (sent_last + 1) as u64;
                let first_time =
                    node.peer_stored(index, epoch, sent_last, sent_last >= page.latest);
                for _ in 0..first_time {
                    failpoint::hit(failpoint::AFTER_REPLICATE_ONE);
                }
            }
            Ok(ack) => {
                last_contact = Some(Instant::now());
                let resume = (ack.latest + 1).clamp(0, node.log.latest() + 1) as u64;
                debug!(
                    "replica {} disagrees before {next}; resending from {resume}",
                    peer.id
                );
                if resume >= next && next > 0 {
                    // A hint that does not move back would loop; start over from the beginning.
                    warn!(
                        "replica {} gave hint {} at {next}; resending the whole log",
                        peer.id, ack.latest
                    );
                    next = 0;
                } else {
                    next = resume;
                }
            }
            Err(Error::Conflict(why)) => {
                drop(serial);
                node.step_down(
                    Some(epoch),
                    Role::Follower,
                    &format!("replica {} refused our epoch: {why}", peer.id),
                );
            }
            Err(e) => {
                drop(serial);
                node.peer_failed(index, epoch, &e);
                std::thread::sleep(RETRY_INTERVAL);
            }
        }
    }
}

/// The request id of an order in the commit path (`place_order` always sets one).
fn request_id(order: &OrderRequest) -> &str {
    order.request_id.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LogEntry, OrderType};

    fn entries(n: usize, rid_len: usize) -> Vec<LogEntry> {
        (0..n as u64)
            .map(|number| LogEntry {
                number,
                name: "GameStart".into(),
                kind: OrderType::Buy,
                quantity: 1,
                epoch: 1,
                request_id: "r".repeat(rid_len),
            })
            .collect()
    }

    #[test]
    fn propagate_bodies_stay_under_the_request_limit() {
        for (n, rid_len) in [(0, 8), (1, 128), (10, 8), (1000, 8), (1000, 128)] {
            let mut batch = entries(n, rid_len);
            fit_body(&mut batch);
            assert!(n == 0 || !batch.is_empty(), "{n} entries: none left");
            let body = Propagate {
                epoch: u64::MAX,
                leader: 3,
                prev: None,
                entries: batch,
                base: i64::MAX,
                commit: i64::MAX,
            };
            let bytes = serde_json::to_vec(&body).unwrap().len();
            assert!(
                bytes <= crate::http::MAX_BODY_BYTES,
                "{n} x {rid_len}: {bytes} bytes"
            );
        }
    }
}

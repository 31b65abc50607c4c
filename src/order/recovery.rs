//! Recovery: a replica never leads while behind.
//!
//! - [`recover_loop`]: while the replica is recovering (at start, and after a freeze), every
//!   [`RECOVER_INTERVAL`] it asks every peer `GET /synchronize`. Once at least one answered, it
//!   adopts the highest epoch seen, pulls from the most up-to-date peer if that one is ahead of
//!   us ([`catch_up`]), and becomes a follower. With no peers configured it is ready at once.
//!   If every replica restarts together, each sees the others and they settle on the most
//!   up-to-date log before the front-end can pick any of them.
//! - [`take_leadership`] (`You win <hint>`): the same catch-up from the reachable peers, then
//!   epoch = max(ours, hint, peers') + 1, persisted, and the replica leads.
//! - [`pause_watchdog`]: a tick every [`WATCHDOG_TICK`]; a gap over [`PAUSE_THRESHOLD`] means
//!   the process was stopped (`kill -STOP`) long enough for the front-end to have moved on, so
//!   the replica stops leading and recovers again before it answers `Ping`.
//!
//! "More up to date" is the higher `(last_epoch, latest)` pair ([`more_up_to_date`]). Pulling
//! reads `GET /orders?since=<anchor>` pages, whose first entry is our last entry, checks it
//! with `OrderLog::apply_with(.., Conflict::KeepNewer)` and steps back to the hint on a
//! mismatch. `KeepNewer` matters because a leader may write to us while we pull: entries with
//! a newer epoch than the pulled ones are never replaced by a pull.
//!
//! Caveats: a replica that hears from one peer only adopts that peer's view; if the only
//! replica holding some acknowledged orders is down while the others restart and elect, those
//! orders are lost (and removed from it when it returns). The pause watchdog measures the
//! wall-clock gap between its own ticks, so a machine overloaded for longer than the threshold
//! also counts as a freeze (harmless: the replica only re-syncs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::log::{debug, info, warn};

use super::log::{Applied, Conflict};
use super::{Node, Role};
use crate::api::{LogPage, LogPosition, SyncState};
use crate::error::{Error, Result};

/// How often a recovering replica asks its peers how far their logs go.
pub const RECOVER_INTERVAL: Duration = Duration::from_millis(200);

/// How long to wait for a peer's `/synchronize`: a stopped peer must not stall recovery.
pub const SYNC_TIMEOUT: Duration = Duration::from_millis(500);

/// How long to wait for one page of a peer's log.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `You win` may spend catching up: well inside the front-end's
/// `election::YOU_WIN_TIMEOUT`, so that it gets an answer (`WAIT` if not done) rather than a
/// timeout.
pub const CATCH_UP_BUDGET: Duration = Duration::from_secs(3);

/// Interval of the pause watchdog's ticks.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(100);

/// A gap between two watchdog ticks longer than this means the process was frozen.
pub const PAUSE_THRESHOLD: Duration = Duration::from_secs(2);

/// The new epoch a winner takes: above its own, the front-end's hint and every peer's.
pub fn next_epoch(own: u64, hint: u64, peers: u64) -> u64 {
    own.max(hint).max(peers) + 1
}

/// True if a log ending at `a` is more up to date than one ending at `b`.
pub fn more_up_to_date(a: &SyncState, b: &SyncState) -> bool {
    (a.log_epoch, a.latest) > (b.log_epoch, b.latest)
}

/// The most up-to-date of the answers, if any is more up to date than `ours`.
pub fn best_source<'a>(
    ours: &SyncState,
    answers: &'a [(usize, SyncState)],
) -> Option<&'a (usize, SyncState)> {
    answers
        .iter()
        .filter(|(_, s)| more_up_to_date(s, ours))
        .max_by_key(|(_, s)| (s.log_epoch, s.latest))
}

/// Keeps a recovering replica trying to hear from its peers and catch up.
pub fn recover_loop(node: Arc<Node>) {
    let mut attempts: u64 = 0;
    while !node.stopped() {
        if node.role() == Role::Recovering {
            attempts += 1;
            match catch_up(&node, None) {
                Ok(Some(_)) => finish_recovery(&node),
                Ok(None) if node.peers.is_empty() => finish_recovery(&node),
                // Every 5 s, so that a replica waiting for its peers says so without flooding.
                Ok(None) if attempts % 25 == 1 => {
                    info!("replica {} recovering: no peer answers yet", node.id)
                }
                Ok(None) => {}
                Err(e) => warn!("replica {} recovering: {e}", node.id),
            }
        } else {
            attempts = 0;
        }
        std::thread::sleep(RECOVER_INTERVAL);
    }
}

fn finish_recovery(node: &Node) {
    let mut st = node.state.lock();
    if st.role == Role::Recovering && !node.stopped() {
        st.role = Role::Follower;
        info!(
            "replica {} ready as follower: latest {}, epoch {}",
            node.id,
            node.log.latest(),
            node.epoch.get()
        );
        node.changed.notify_all();
    }
}

/// Asks every peer how far it is, adopts the highest epoch, pulls from the most up-to-date
/// peer if it is ahead of us. `None` when no peer answered; else the highest peer epoch.
pub fn catch_up(node: &Node, deadline: Option<Instant>) -> Result<Option<u64>> {
    let answers: Vec<(usize, SyncState)> = node
        .peers
        .iter()
        .enumerate()
        .filter_map(|(i, peer)| {
            match node
                .client
                .get::<SyncState>(&peer.http_addr(), "/synchronize", SYNC_TIMEOUT)
            {
                Ok(state) => Some((i, state)),
                Err(e) => {
                    debug!("replica {}: /synchronize: {e}", peer.id);
                    None
                }
            }
        })
        .collect();
    let Some(peer_epoch) = answers.iter().map(|(_, s)| s.epoch).max() else {
        return Ok(None);
    };
    node.adopt_epoch(peer_epoch)?;
    let ours = node.sync_state();
    if let Some((index, theirs)) = best_source(&ours, &answers) {
        let peer = &node.peers[*index];
        info!(
            "replica {} (latest {}, last epoch {}) pulls from replica {} (latest {}, last epoch {})",
            node.id, ours.latest, ours.log_epoch, peer.id, theirs.latest, theirs.log_epoch
        );
        pull_from(node, &peer.http_addr(), deadline)?;
        info!("replica {} pulled up to {}", node.id, node.log.latest());
    }
    Ok(Some(peer_epoch))
}

/// Copies a peer's log into ours, page by page, until we reach its end or hold newer entries.
fn pull_from(node: &Node, addr: &str, deadline: Option<Instant>) -> Result<()> {
    // The entry both logs must agree on before the page's other entries; None = from 0.
    let mut anchor: Option<u64> = u64::try_from(node.log.latest()).ok();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) || node.stopped() {
            return Err(Error::Unavailable(format!(
                "catch-up from {addr} did not finish in time"
            )));
        }
        let path = format!(
            "/orders?since={}&limit={}",
            anchor.unwrap_or(0),
            super::MAX_PAGE
        );
        let page: LogPage = node.client.get(addr, &path, PAGE_TIMEOUT)?;
        let (prev, rest) = match (anchor, page.entries.split_first()) {
            (None, _) => (None, &page.entries[..]),
            (Some(a), Some((first, rest))) if first.number == a => (
                Some(LogPosition {
                    number: first.number,
                    epoch: first.epoch,
                }),
                rest,
            ),
            (Some(_), _) => {
                // The peer is shorter than our anchor: agree on its last entry first.
                anchor = u64::try_from(page.latest).ok();
                continue;
            }
        };
        let reached_end = page
            .entries
            .last()
            .is_none_or(|e| e.number as i64 >= page.latest);
        match node.log.apply_with(prev, rest, Conflict::KeepNewer)? {
            Applied::Accepted { .. } if reached_end => return Ok(()),
            Applied::Accepted { .. } => anchor = page.entries.last().map(|e| e.number),
            Applied::Superseded { .. } => return Ok(()),
            Applied::Mismatch { hint } => {
                let back = u64::try_from(hint).ok();
                if back >= anchor {
                    return Err(Error::Internal(format!(
                        "pull from {addr}: hint {hint} does not move back"
                    )));
                }
                anchor = back;
            }
        }
    }
}

/// `You win <hint>`: catch up from the reachable peers, take a new epoch, lead. The answer
/// line: `OK <epoch>`, or `WAIT` when this replica cannot lead now.
pub fn take_leadership(node: &Node, hint: Option<u64>) -> String {
    if node.role() == Role::Recovering {
        return "WAIT".into();
    }
    let Some(_one_at_a_time) = node.election.try_lock_for(CATCH_UP_BUDGET) else {
        return "WAIT".into();
    };
    let peer_epoch = match catch_up(node, Some(Instant::now() + CATCH_UP_BUDGET)) {
        Ok(epoch) => epoch.unwrap_or(0),
        Err(e) => {
            warn!("replica {} cannot lead yet: {e}", node.id);
            return "WAIT".into();
        }
    };
    let epoch = next_epoch(node.epoch.get(), hint.unwrap_or(0), peer_epoch);
    if let Err(e) = node.epoch.raise_to(epoch) {
        warn!("replica {} cannot persist epoch {epoch}: {e}", node.id);
        return format!("ERR {e}");
    }
    if node.become_leader(epoch) {
        format!("OK {epoch}")
    } else {
        "WAIT".into()
    }
}

/// Notices that the process was frozen and sends the replica back to recovering.
pub fn pause_watchdog(node: Arc<Node>) {
    let mut last = Instant::now();
    while !node.stopped() {
        std::thread::sleep(WATCHDOG_TICK);
        let now = Instant::now();
        let gap = now.duration_since(last);
        last = now;
        if gap > PAUSE_THRESHOLD {
            warn!(
                "replica {} was frozen for {gap:?}; recovering before it serves again",
                node.id
            );
            node.step_down(None, Role::Recovering, "woken from a freeze");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(latest: i64, last_epoch: u64) -> SyncState {
        SyncState {
            latest,
            epoch: last_epoch,
            log_epoch: last_epoch,
        }
    }

    #[test]
    fn next_epoch_table() {
        let cases = [
            ((0, 0, 0), 1),
            ((3, 0, 0), 4),
            ((1, 5, 2), 6),
            ((1, 2, 9), 10),
            ((7, 7, 7), 8),
        ];
        for ((own, hint, peers), want) in cases {
            assert_eq!(next_epoch(own, hint, peers), want, "{own} {hint} {peers}");
        }
    }

    #[test]
    fn up_to_date_table() {
        let cases = [
            (s(5, 1), s(4, 1), true),
            (s(4, 1), s(4, 1), false),
            (s(3, 2), s(9, 1), true),
            (s(9, 1), s(3, 2), false),
            (s(0, 1), s(-1, 0), true),
        ];
        for (a, b, want) in cases {
            assert_eq!(more_up_to_date(&a, &b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn best_source_table() {
        // (ours, the peers' answers, the index to pull from)
        type Case<'a> = (SyncState, &'a [(usize, SyncState)], Option<usize>);
        let cases: &[Case] = &[
            (s(5, 2), &[], None),
            (s(5, 2), &[(0, s(5, 2)), (1, s(4, 2))], None),
            (s(5, 2), &[(0, s(6, 2)), (1, s(7, 2))], Some(1)),
            (s(5, 2), &[(0, s(9, 2)), (1, s(1, 3))], Some(1)),
            (s(-1, 0), &[(1, s(0, 1))], Some(1)),
        ];
        for (ours, answers, want) in cases {
            assert_eq!(
                best_source(ours, answers).map(|(i, _)| *i),
                *want,
                "{ours:?} {answers:?}"
            );
        }
    }
}

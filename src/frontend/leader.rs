//! Which order replica leads, as the front-end sees it, and how it re-selects one.
//!
//! The front-end holds the current [`Leadership`] (or none), the highest epoch it has seen, and
//! a selection counter (`version`). Anyone who forwards to the leader first takes a [`View`]
//! (leader and version together). When the forward fails in a way that means "this is not the
//! leader any more" (unreachable, or a 421 `NotLeader`), the caller asks
//! [`LeaderTracker::reselect`] with that view:
//!
//! - if a selection has completed since the view was taken, the leader it found is returned
//!   without selecting again, so a burst of requests failing against the same dead leader
//!   causes one selection, not one per request;
//! - if a selection is running, the caller waits for it (bounded by its own deadline);
//! - otherwise the caller runs the selection itself: `selection::select_leader` with the
//!   highest epoch seen as the hint, outside the lock.
//!
//! Selections are therefore serialized (a `selecting` flag plus a condvar; the state lock is
//! never held across the TCP exchanges). The `health_check_loop` thread of the front-end uses
//! the same call for its periodic checks, so active and passive checks share one path.
//!
//! Counters: `retries` (forwards retried after a failure, counted by the caller through
//! [`LeaderTracker::count_retry`]) and `failovers` (selections that moved leadership to a
//! different replica than the last one known; the first selection is not a failover).
//!
//! The last few changes of leader (including "no leader") are kept with their time for the
//! front-end's live page (`LeaderTracker::changes`, at most `LEADER_CHANGES_KEPT`).
//!
//! The tracker never takes a leadership whose epoch is below the highest it has seen (the
//! selection refuses such an answer too): that replica was deposed, and reading or deciding
//! orders on it would use a stale log.
//!
//! Caveats: a selection that finds no replica sets the leader to none; requests then retry
//! until their deadline, each wave of retries running at most one selection at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};

use crate::api::LeaderChange;
use crate::config::ReplicaConfig;
use crate::selection::{self, Leadership};

/// Chooses a leader among replicas given an epoch hint: `selection::select_leader` in
/// production, a stub in tests.
pub(crate) type Selector = dyn Fn(&[ReplicaConfig], u64) -> Option<Leadership> + Send + Sync;

/// How many leader changes [`LeaderTracker::changes`] remembers: enough for a screen.
pub(crate) const LEADER_CHANGES_KEPT: usize = 10;

/// A consistent snapshot: the leader and the selection it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) leader: Option<Leadership>,
    version: u64,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Leadership>,
    highest_epoch: u64,
    /// Completed selections.
    version: u64,
    selecting: bool,
    /// The last replica that led, kept while there is none, to tell a failover from a return.
    last_id: Option<u32>,
    /// The last changes of `current`, oldest first, at most [`LEADER_CHANGES_KEPT`].
    changes: VecDeque<LeaderChange>,
}

/// The front-end's knowledge of the leader.
pub(crate) struct LeaderTracker {
    replicas: Vec<ReplicaConfig>,
    selector: Box<Selector>,
    state: Mutex<State>,
    /// Signalled when a selection finishes.
    selected: Condvar,
    retries: AtomicU64,
    failovers: AtomicU64,
}

impl LeaderTracker {
    /// A tracker with no leader yet, selecting with `selection::select_leader`, which sends
    /// the deployment's `secret` on the lines that change who leads.
    pub(crate) fn new(replicas: Vec<ReplicaConfig>, secret: &str) -> LeaderTracker {
        let secret = secret.to_string();
        LeaderTracker::with_selector(
            replicas,
            Box::new(move |replicas, hint| selection::select_leader(replicas, hint, &secret)),
        )
    }

    /// A tracker that selects with `selector` (tests).
    pub(crate) fn with_selector(
        replicas: Vec<ReplicaConfig>,
        selector: Box<Selector>,
    ) -> LeaderTracker {
        LeaderTracker {
            replicas,
            selector,
            state: Mutex::new(State::default()),
            selected: Condvar::new(),
            retries: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
        }
    }

    pub(crate) fn view(&self) -> View {
        let state = self.state.lock();
        View {
            leader: state.current,
            version: state.version,
        }
    }

    /// Every configured replica, in config order.
    pub(crate) fn replicas(&self) -> &[ReplicaConfig] {
        &self.replicas
    }

    /// The replica with this id.
    pub(crate) fn replica(&self, id: u32) -> Option<&ReplicaConfig> {
        self.replicas.iter().find(|r| r.id == id)
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The last changes of leader, oldest first.
    pub(crate) fn changes(&self) -> Vec<LeaderChange> {
        self.state.lock().changes.iter().copied().collect()
    }

    /// Re-selects the leader because `seen` failed, unless a selection already completed
    /// since `seen` was taken; waits for a running selection at most until `deadline`.
    pub(crate) fn reselect(&self, seen: View, deadline: Instant) -> View {
        let mut state = self.state.lock();
        loop {
            if state.version != seen.version {
                return View {
                    leader: state.current,
                    version: state.version,
                };
            }
            if !state.selecting {
                break;
            }
            if self.selected.wait_until(&mut state, deadline).timed_out() {
                return View {
                    leader: state.current,
                    version: state.version,
                };
            }
        }
        state.selecting = true;
        let hint = state.highest_epoch;
        drop(state);

        let mut guard = SelectingGuard {
            tracker: self,
            outcome: None,
        };
        guard.outcome = Some((self.selector)(&self.replicas, hint));
        drop(guard);
        self.view()
    }

    /// Records a selection's outcome; called with the lock held, before `version` moves, so
    /// nobody sees the new version with the old leader.
    fn apply(&self, state: &mut State, outcome: Option<Leadership>) {
        // Selections ask with the highest epoch as the hint and refuse an answer below it;
        // this holds the same for any selector, so no leader of an older epoch is ever
        // forwarded to once a newer one was seen.
        let outcome = match outcome {
            Some(stale) if stale.epoch < state.highest_epoch => {
                warn!(
                    "order replica {} claims epoch {}, below {} already seen: not the leader",
                    stale.id, stale.epoch, state.highest_epoch
                );
                None
            }
            other => other,
        };
        if state.current != outcome {
            if state.changes.len() >= LEADER_CHANGES_KEPT {
                state.changes.pop_front();
            }
            state.changes.push_back(LeaderChange {
                at_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                from: state.current.map(|l| l.id),
                to: outcome.map(|l| l.id),
                epoch: outcome.map(|l| l.epoch),
            });
        }
        match outcome {
            Some(new) => {
                state.highest_epoch = state.highest_epoch.max(new.epoch);
                if state.last_id.is_some_and(|id| id != new.id) {
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                }
                if state.current != Some(new) {
                    info!("order replica {} leads (epoch {})", new.id, new.epoch);
                }
                state.current = Some(new);
                state.last_id = Some(new.id);
            }
            None => {
                if state.current.is_some() || state.version == 0 {
                    warn!("no order replica answered the leader selection");
                }
                state.current = None;
            }
        }
    }
}

/// Publishes a selection's outcome, clears the `selecting` flag and wakes the waiters, also
/// when the selector panics (then the leader is left as it was), so one failed selection
/// cannot wedge every later request.
struct SelectingGuard<'a> {
    tracker: &'a LeaderTracker,
    outcome: Option<Option<Leadership>>,
}

impl Drop for SelectingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.tracker.state.lock();
        if let Some(outcome) = self.outcome.take() {
            self.tracker.apply(&mut state, outcome);
        }
        state.selecting = false;
        state.version += 1;
        self.tracker.selected.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn replicas() -> Vec<ReplicaConfig> {
        (1..=3)
            .map(|id| ReplicaConfig {
                id,
                host: "127.0.0.1".into(),
                port: 1,
                leader_broadcast_port: 1,
                health_check_port: 1,
            })
            .collect()
    }

    fn lead(id: u32, epoch: u64) -> Option<Leadership> {
        Some(Leadership { id, epoch })
    }

    /// A tracker whose selections return the scripted outcomes in turn, recording the hints.
    fn scripted(outcomes: Vec<Option<Leadership>>) -> (LeaderTracker, Arc<Mutex<Vec<u64>>>) {
        let hints = Arc::new(Mutex::new(Vec::new()));
        let seen = hints.clone();
        let next = AtomicUsize::new(0);
        let selector = move |_: &[ReplicaConfig], hint: u64| {
            seen.lock().push(hint);
            outcomes
                .get(next.fetch_add(1, Ordering::SeqCst))
                .copied()
                .flatten()
        };
        (
            LeaderTracker::with_selector(replicas(), Box::new(selector)),
            hints,
        )
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn selections_track_leader_epoch_and_failovers() {
        /// (outcomes in turn, leader after them, hints given, failovers)
        type Case = (Vec<Option<Leadership>>, Option<Leadership>, Vec<u64>, u64);
        let cases: Vec<Case> = vec![
            (vec![lead(3, 1)], lead(3, 1), vec![0], 0),
            (vec![None], None, vec![0], 0),
            (vec![lead(3, 1), lead(2, 2)], lead(2, 2), vec![0, 1], 1),
            (vec![lead(3, 1), lead(3, 2)], lead(3, 2), vec![0, 1], 0),
            (
                vec![lead(3, 4), None, lead(2, 5)],
                lead(2, 5),
                vec![0, 4, 4],
                1,
            ),
            (
                vec![lead(3, 4), None, lead(3, 5)],
                lead(3, 5),
                vec![0, 4, 4],
                0,
            ),
            (
                vec![lead(3, 1), lead(2, 2), lead(3, 3)],
                lead(3, 3),
                vec![0, 1, 2],
                2,
            ),
            // An outcome below the highest epoch seen is no leader; the next selection still
            // hints the highest.
            (vec![lead(2, 5), lead(3, 4)], None, vec![0, 5], 0),
            (
                vec![lead(2, 5), lead(3, 4), lead(1, 6)],
                lead(1, 6),
                vec![0, 5, 5],
                1,
            ),
        ];
        for (outcomes, want, hints, failovers) in cases {
            let (tracker, seen_hints) = scripted(outcomes.clone());
            for _ in 0..outcomes.len() {
                let view = tracker.view();
                tracker.reselect(view, far());
            }
            assert_eq!(tracker.view().leader, want, "{outcomes:?}");
            assert_eq!(*seen_hints.lock(), hints, "{outcomes:?}");
            assert_eq!(tracker.failovers(), failovers, "{outcomes:?}");
        }
    }

    #[test]
    fn leader_changes_are_kept_in_a_bounded_ring() {
        let mut outcomes = vec![lead(3, 1), lead(3, 1), None, lead(2, 2), lead(2, 3)];
        let extra = LEADER_CHANGES_KEPT as u64 + 2;
        outcomes.extend((0..extra).map(|e| lead(1 + (e % 2) as u32, 4 + e)));
        let (tracker, _) = scripted(outcomes);
        for _ in 0..4 {
            let view = tracker.view();
            tracker.reselect(view, far());
        }
        let seen: Vec<_> = tracker
            .changes()
            .iter()
            .map(|c| (c.from, c.to, c.epoch))
            .collect();
        // Re-confirming 3 in epoch 1 is not a change; losing the leader is.
        assert_eq!(
            seen,
            vec![
                (None, Some(3), Some(1)),
                (Some(3), None, None),
                (None, Some(2), Some(2))
            ]
        );
        for _ in 0..extra + 1 {
            let view = tracker.view();
            tracker.reselect(view, far());
        }
        let changes = tracker.changes();
        assert_eq!(changes.len(), LEADER_CHANGES_KEPT);
        assert_eq!(changes.last().and_then(|c| c.epoch), Some(4 + extra - 1));
        assert!(changes.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn a_stale_view_does_not_select_again() {
        let (tracker, hints) = scripted(vec![lead(3, 1), lead(2, 2)]);
        let before = tracker.view();
        tracker.reselect(before, far());
        // A second request that failed against the same (old) view gets the new leader.
        assert_eq!(tracker.reselect(before, far()).leader, lead(3, 1));
        assert_eq!(hints.lock().len(), 1);
    }

    #[test]
    fn concurrent_failures_share_one_selection() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let selector = move |_: &[ReplicaConfig], _: u64| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50)); // a slow selection
            lead(2, 7)
        };
        let tracker = Arc::new(LeaderTracker::with_selector(replicas(), Box::new(selector)));
        let view = tracker.view();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let tracker = tracker.clone();
                std::thread::spawn(move || tracker.reselect(view, far()).leader)
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), lead(2, 7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_selector_does_not_wedge_later_selections() {
        let first = AtomicUsize::new(0);
        let selector = move |_: &[ReplicaConfig], _: u64| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("selector failed");
            }
            lead(1, 1)
        };
        let tracker = Arc::new(LeaderTracker::with_selector(replicas(), Box::new(selector)));
        let t = tracker.clone();
        let view = tracker.view();
        assert!(std::thread::spawn(move || t.reselect(view, far()))
            .join()
            .is_err());
        let view = tracker.view();
        assert_eq!(tracker.reselect(view, far()).leader, lead(1, 1));
    }
}

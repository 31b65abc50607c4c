//! The driver of the replica's core: whichever thread brings an event steps the core itself
//! (flat combining), and the core thread only ticks.
//!
//! A thread with an event (an order, a follower's propagate, a peer's answer) queues it in
//! [`Shared::inbox`] and, if no other thread holds the core right now, takes every queued
//! event, steps the core with each, flushes it (one fsync for all appends of the round: group
//! commit) and dispatches the effects; a thread that finds the core held just waits for its
//! answer, and the holder takes its event in its next round. So an event is stepped on the
//! thread that read it, without a hand-off to another thread and back (each hand-off is a
//! wake-up: `docs/performance.md`). The core thread ([`core_loop`]) ticks every `TICK`
//! (heartbeats, leases, retries) and takes over when a driver has done [`MAX_DRIVE_ROUNDS`]
//! rounds and events are still queued.
//!
//! Caveats:
//! - The thread that drives pays for the others' events of its round, fsync included: an
//!   order's latency includes whatever queued with it (bounded by [`MAX_DRIVE_ROUNDS`]).
//! - Effects go to the peer and catalog threads through unbounded channels: what a slow
//!   peer's thread has not sent yet waits there, in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::core::{
    Answer, CatalogMessage, Core, Effect, Event, PeerMessage, RoleName, Status, Token,
};
use super::logfile::OrderLog;
use super::metrics::ReplicaMetrics;
use super::store::FileStore;
use crate::config::{Config, ReplicaConfig};
use crate::metrics::Metrics;
use crate::timing::TICK;

/// Rounds a thread that brought an event drives the core before it hands over to the core
/// thread (`Shared::drive`): enough to take what queued during its own fsync, few enough
/// that its own caller is not kept waiting behind a steady stream of others' events.
pub(super) const MAX_DRIVE_ROUNDS: usize = 4;

/// An event and, for a request, where its answer goes.
pub(super) struct Input {
    pub(super) event: Event,
    pub(super) reply: Option<(Token, SyncSender<Answer>)>,
}

/// What the replica's threads share.
pub(super) struct Shared {
    pub(super) id: u32,
    pub(super) config: Config,
    pub(super) log: Arc<OrderLog>,
    /// The core's status, published after every flush (so everything it counts is synced).
    pub(super) status: Mutex<Status>,
    /// Signalled at every publish: reads of an uncommitted order wait on it.
    pub(super) published: Condvar,
    /// Events not yet stepped. Whoever holds `driving` next takes them all as one batch.
    pub(super) inbox: Mutex<Vec<Input>>,
    /// The core and what only its current driver touches; see [`Shared::drive`].
    pub(super) driving: Mutex<Driving>,
    /// Wakes the core thread: a driver left events behind, or the replica is stopping.
    pub(super) kick: Condvar,
    pub(super) next_token: AtomicU64,
    pub(super) stopped: AtomicBool,
    pub(super) metrics: Metrics,
    pub(super) own: ReplicaMetrics,
}

/// Where the core's messages for the peer and catalog threads come out: one receiver per
/// peer, one for the catalog (`outbound`).
pub(super) struct Outboxes {
    pub(super) peers: Vec<(ReplicaConfig, Receiver<PeerMessage>)>,
    pub(super) catalog: Receiver<CatalogMessage>,
}

impl Shared {
    /// What the threads of replica `id` share, around `core`, and the other ends of the
    /// channels its effects go to.
    pub(super) fn new(
        id: u32,
        config: Config,
        log: Arc<OrderLog>,
        core: Core<FileStore>,
        peers: Vec<ReplicaConfig>,
        (metrics, own): (Metrics, ReplicaMetrics),
    ) -> (Arc<Shared>, Outboxes) {
        let mut outboxes = HashMap::new();
        let mut peer_inboxes = Vec::new();
        for peer in peers {
            let (tx, rx) = mpsc::channel();
            outboxes.insert(peer.id, tx);
            peer_inboxes.push((peer, rx));
        }
        let (catalog_tx, catalog_rx) = mpsc::channel();
        let status = core.status();
        let driving = Driving {
            core,
            waiting: HashMap::new(),
            peers: outboxes,
            catalog: catalog_tx,
            next_tick: Instant::now(),
        };
        let shared = Arc::new(Shared {
            id,
            config,
            log,
            status: Mutex::new(status),
            published: Condvar::new(),
            inbox: Mutex::new(Vec::new()),
            driving: Mutex::new(driving),
            kick: Condvar::new(),
            next_token: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            metrics,
            own,
        });
        let outboxes = Outboxes {
            peers: peer_inboxes,
            catalog: catalog_rx,
        };
        (shared, outboxes)
    }

    /// Tells every thread to stop (they look at it between waits) and wakes the core thread.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.kick.notify_all();
    }
}

impl Shared {
    pub(super) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sends a request event to the core and waits for its answer until `wait` passes.
    pub(super) fn ask(&self, make: impl FnOnce(Token) -> Event, wait: Duration) -> Option<Answer> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Input {
            event: make(token),
            reply: Some((token, tx)),
        });
        rx.recv_timeout(wait).ok()
    }

    pub(super) fn tell(&self, event: Event) {
        self.submit(Input { event, reply: None });
    }

    /// Queues `input` for the core and drives the core if nobody else does right now.
    pub(super) fn submit(&self, input: Input) {
        self.inbox.lock().push(input);
        self.drive();
    }

    /// Steps the core with everything queued, on this thread, if no other thread holds it
    /// (flat combining; see the module doc). A thread that finds it held leaves at once: the
    /// holder looks at the inbox again after letting go, so nothing queued is left behind.
    /// After [`MAX_DRIVE_ROUNDS`] rounds the core thread takes over, so that a connection
    /// thread does not keep its own caller waiting while others keep queueing.
    pub(super) fn drive(&self) {
        for _ in 0..MAX_DRIVE_ROUNDS {
            let Some(mut driving) = self.driving.try_lock() else {
                return;
            };
            self.drive_once(&mut driving);
            drop(driving);
            if self.inbox.lock().is_empty() {
                return;
            }
        }
        self.kick.notify_one();
    }

    /// One round: steps the core with every queued event (and a tick when one is due),
    /// writes and fsyncs what they appended (one fsync for the whole round: group commit),
    /// publishes the status and hands out the effects. False if there was nothing to do.
    pub(super) fn drive_once(&self, d: &mut Driving) -> bool {
        let batch = std::mem::take(&mut *self.inbox.lock());
        let now = Instant::now();
        let tick = now >= d.next_tick;
        if batch.is_empty() && !tick {
            return false;
        }
        for input in batch {
            if let Some((token, tx)) = input.reply {
                d.waiting.insert(token, tx);
            }
            d.core.step(now, input.event);
        }
        if tick {
            d.core.step(now, Event::Tick);
            d.next_tick = now + TICK;
        }
        // What rests on nothing this round wrote goes first (propagates, so that our fsync
        // overlaps the followers' round trip; acknowledgements and applies of committed orders,
        // so that they do not wait for it: `Core::take_early`); the rest once it is durable.
        let early = d.core.take_early();
        let propagated = early.iter().any(Effect::is_propagate);
        for effect in early {
            d.dispatch(effect);
        }
        // A leader's round that only took orders while propagates are out leaves their fsync
        // to the round that sends them on (`Core::may_defer_sync`).
        if !tick && !propagated && d.core.may_defer_sync(&self.status()) {
            return true;
        }
        let effects = d.core.flush();
        self.publish(d.core.status());
        for effect in effects {
            d.dispatch(effect);
        }
        true
    }

    pub(super) fn status(&self) -> Status {
        *self.status.lock()
    }

    pub(super) fn publish(&self, status: Status) {
        {
            let mut published = self.status.lock();
            if status.role == RoleName::Leader && published.role != RoleName::Leader {
                self.own.leaderships.inc();
            }
            *published = status;
        }
        self.published.notify_all();
    }
}

/// The core and the places its effects go: owned by whichever thread drives the core.
pub(super) struct Driving {
    core: Core<FileStore>,
    /// Requests waiting for the core's answer, by token.
    waiting: HashMap<Token, SyncSender<Answer>>,
    peers: HashMap<u32, Sender<PeerMessage>>,
    catalog: Sender<CatalogMessage>,
    /// When the core is next due a tick.
    next_tick: Instant,
}

impl Driving {
    /// Hands one effect to the thread that carries it out.
    fn dispatch(&mut self, effect: Effect) {
        match effect {
            Effect::Send { to, msg } => {
                if let Some(tx) = self.peers.get(&to) {
                    let _ = tx.send(msg);
                }
            }
            Effect::Catalog(msg) => {
                let _ = self.catalog.send(msg);
            }
            Effect::Answer { token, answer } => {
                if let Some(tx) = self.waiting.remove(&token) {
                    // A caller that gave up has dropped its receiver: nothing to do.
                    let _ = tx.try_send(answer);
                }
            }
        }
    }
}

/// The core thread: drives the core when a tick is due and when a driver left events behind
/// (`Shared::drive`). Under load the threads that bring events drive it themselves.
pub(super) fn core_loop(shared: &Shared) {
    while !shared.stopped() {
        let mut driving = shared.driving.lock();
        while shared.drive_once(&mut driving) {}
        let wake = driving.next_tick;
        drop(driving);
        let mut inbox = shared.inbox.lock();
        if inbox.is_empty() && !shared.stopped() {
            shared.kick.wait_until(&mut inbox, wake);
        }
    }
}

//! The replica's protocol core: every rule of leadership, replication, commit and the catalog's
//! apply path, in one single-owner state machine with no network, no threads and no clock: it
//! reaches peers and the catalog only through the effects it returns, and is told the time. Its
//! storage is not so abstract: the [`Store`] writes and fsyncs files inside `step` and `flush`.
//!
//! The core takes [`Event`]s (a client's order, a peer's request, the answer to something it
//! sent, a clock tick) through [`Core::step`] and produces [`Effect`]s (send this to a peer,
//! send that to the catalog, answer that caller), collected by [`Core::flush`]. Its only
//! dependency is a [`Store`]: the log and the small persisted [`HardState`]. `flush` first makes
//! the store durable (one fsync for everything the drained events appended), and only then
//! hands out the effects, so nothing leaves the replica that a crash could take back; what
//! rests on nothing the events appended (a propagate, an acknowledgement of an applied order,
//! an apply of committed ones) may leave before it, through [`Core::take_early`]. The
//! driver (`order::mod`) owns the threads that move bytes; the scripted tests at the end of this
//! file drive three cores by hand, with no sockets and no clock.
//!
//! Numbers that say how far something reaches (a log, the commit point, the catalog's apply
//! point) are [`Last`]: the last order number covered, `None` for none. The role's own data is
//! apart from the rest ([`Context`]): a leader's methods take `&mut Leadership` and the context,
//! so no other role's code can reach a leader's data.
//!
//! # The protocol
//!
//! **Epochs are granted by a majority.** `You win` (from any front-end) makes a follower a
//! candidate for `epoch = max(own, hint) + 1`: it persists its vote for itself and asks each
//! peer to grant the epoch ([`VoteRequest`]). A voter grants an epoch at most once (the grant
//! is persisted before the answer), refuses lower epochs from then on, and refuses any
//! candidate while it hears from a live leader ([`LEADER_LEASE`]), so a front-end that cannot
//! see the leader cannot depose it. With a majority of grants (itself included) the candidate
//! takes the most up-to-date log among them (pulling it page by page if another granter's is
//! better), and only then leads. Any two majorities share a replica, so no two leaders ever
//! share an epoch, and the new leader holds every committed order.
//!
//! **"More up to date" is `(log_epoch, latest)`.** `log_epoch` is persisted: the epoch of the
//! leader whose log ours is known to be a prefix of. A leader's is its own epoch; a follower
//! takes the leader's epoch only once it holds the leader's log up to `base` (the leader's last
//! number when its leadership began), and then drops anything after the entries it was sent
//! that carries an older epoch. This is what makes the Raft paper's Figure 8 harmless without
//! writing no-op entries into the order log: an entry of an earlier epoch counts as committed
//! only through followers whose `log_epoch` is the current one, and such a follower outranks,
//! at election time, every replica that might still hold a conflicting older suffix.
//!
//! **Commit needs a majority of the current epoch.** The leader's commit point is the highest
//! number held durably by a majority: itself (after fsync) and the followers that hold its log
//! through `base`. A slow or unreachable follower is never dropped from the count: without a
//! majority nothing commits and orders wait. A leader that has not heard from a majority for
//! [`QUORUM_TIMEOUT`] steps down, so a leader cut off from its followers stops taking orders.
//!
//! **The log decides, the catalog applies.** A new leader announces itself to the catalog
//! ([`LeaderHello`], which raises the catalog's epoch fence) and learns the catalog's stocks at
//! its last applied number. It decides each order against that state plus every order after it
//! in its log (404 unknown stock, 409 not enough to buy), numbers and appends it, replicates,
//! and once the order is committed has the catalog apply the committed log in number order
//! ([`ApplyBatch`]). The order is answered when the catalog has applied it. A request id
//! already in the log (the whole log, however old) is answered with its number.
//!
//! # Caveats
//!
//! - Orders held in a leader's log but not yet committed when it steps down are answered 503
//!   with "re-send with the same request_id": they may still commit under the next leader.
//! - A voter's stickiness ([`LEADER_LEASE`]) delays a fail-over by up to that long after the
//!   leader's last heartbeat.
//! - The whole log is kept in memory by the store.
//! - Only the leader's code is split off (`impl Leadership`); a candidate's and a follower's
//!   methods still find their data by matching the role.
//! - A link (a follower, the catalog) that answered 413 gets smaller batches for the rest of
//!   the leadership. A peer whose body limit is below one entry (the largest possible one is
//!   under 2 KiB of JSON) would still refuse that entry at every retry.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use serde::{Deserialize, Serialize};

use crate::api::{minus_one, RESEND};
use crate::api::{
    ApplyBatch, CatalogState, LeaderHello, LogEntry, LogPage, LogPosition, OrderRequest, OrderType,
    Propagate, PropagateAck, SyncState, VoteReply, VoteRequest,
};
use crate::error::{Error, Result};

/// The name of a role without its state (this file's own `Role` carries the state): the wire's
/// [`api::Role`](crate::api::Role), so that `/health` reports what the core says with no
/// conversion. The core never reports `Unknown`, which only a reader of a newer replica meets.
pub(crate) use crate::api::Role as RoleName;
use crate::timing::{
    CANDIDACY_TIMEOUT, HEARTBEAT_INTERVAL, LEADER_LEASE, QUORUM_TIMEOUT, READ_LEASE, RETRY_INTERVAL,
};

/// Most entries in one propagate, apply batch or log page. Batches are also bounded by bytes
/// ([`MAX_BATCH_BYTES`]), which is what keeps them under the body limit.
pub(crate) const MAX_BATCH: usize = 128;

/// Most bytes of encoded entries in one propagate, apply batch or log page (always at least one
/// entry, so every batch makes progress). Three quarters of the 64 KiB request body limit
/// (`http::MAX_BODY_BYTES`): the message around the entries is under 200 bytes, and the rest is
/// slack. A count alone cannot bound a body: one entry with a 128-byte request id of control
/// characters is over 800 bytes of JSON, so 128 of them are 100 KiB and would get 413 forever.
/// The largest possible entry is far below this (a unit test checks both).
pub(crate) const MAX_BATCH_BYTES: usize = 48 * 1024;

/// The longest prefix of `entries` whose JSON array fits in `budget` bytes, and never less than
/// the first entry: a batch that cannot shrink must still move.
pub(crate) fn fit_batch(mut entries: Vec<LogEntry>, budget: usize) -> Vec<LogEntry> {
    let mut used = "[]".len();
    let mut keep = 0;
    for e in &entries {
        let more = e.encoded_len() + usize::from(keep > 0);
        if keep > 0 && used + more > budget {
            break;
        }
        used += more;
        keep += 1;
    }
    entries.truncate(keep);
    entries
}

/// The most entries a link (a follower, the catalog) takes in one batch: [`MAX_BATCH`], or less
/// once it answered 413 to a batch (a peer with a smaller body limit than ours).
fn batch_cap(cap: Option<usize>) -> usize {
    cap.unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH)
}

/// After a 413 to a batch of `sent` entries on the link named `link`: half as many from now on
/// (down to one), logged once per halving rather than once per resend.
fn halve_cap(cap: &mut Option<usize>, sent: usize, link: &str) {
    let halved = (sent / 2).max(1);
    if *cap != Some(halved) {
        warn!(
            "{link} refused a batch of {sent} entries as too large (413); \
             sending at most {halved} from now on"
        );
    }
    *cap = Some(halved);
}

/// Most orders a leader holds while it waits for the catalog's state; more get 503.
pub(crate) const MAX_QUEUED: usize = 10_000;

/// How far a log, a commit point or an apply point reaches: the last order number it covers,
/// `None` while it covers none (orders are numbered from 0). `Option`'s order is the one
/// wanted (`None` is below every number), so `max`, `min` and comparisons need no special
/// case. The wire and `/health` spell `None` as −1 ([`minus_one`]).
pub(crate) type Last = Option<u64>;

/// The number after `last`: where the next entry goes, and the first one `last` lacks.
pub(crate) fn after(last: Last) -> u64 {
    last.map_or(0, |number| number.saturating_add(1))
}

/// The last number a propagate carries: its last entry's, or its `prev`'s if it carries none.
pub(crate) fn last_carried(p: &Propagate) -> Last {
    p.entries
        .last()
        .map(|e| e.number)
        .or(p.prev.map(|prev| prev.number))
}

/// What a replica persists besides its log, always before acting on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HardState {
    /// The highest epoch granted (to itself or another) or seen.
    pub(crate) epoch: u64,
    /// Whom `epoch` was granted to.
    #[serde(default)]
    pub(crate) voted_for: Option<u32>,
    /// The epoch of the leader whose log this log is a prefix of.
    #[serde(default)]
    pub(crate) log_epoch: u64,
    /// How far the `log_epoch` claim reaches: our log held that leader's log through this
    /// entry when the claim was saved. Checked at start: a log that lost any of it (cut short,
    /// replaced) no longer backs the claim. `None` with `log_epoch` 0, and in files written
    /// before checksums (trusted as they are).
    #[serde(default)]
    pub(crate) log_through: Option<Through>,
    /// The disk was found wiped or damaged and no leader has repaired the replica yet: it
    /// grants no vote and does not campaign (see `Core`'s recovery rules).
    #[serde(default)]
    pub(crate) recovering: bool,
}

/// The last entry a `log_epoch` claim covers, and its chained checksum (`crate::checksum`),
/// which vouches for every entry up to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Through {
    pub(crate) number: u64,
    pub(crate) checksum: u32,
}

/// What a [`Store`] found wrong with its files when it opened them, or since (a read of an
/// entry that no longer checks). The core decides what it means (see its recovery rules).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Damage {
    /// The hard state is missing or failed its checksum: the replica may have granted votes
    /// it no longer remembers. (A new replica's disk looks the same: the core asks its peers.)
    pub(crate) state_lost: bool,
    /// The first entry that failed its checksum (or was unreadable); the store holds only the
    /// entries before it, and cuts the rest from its file at the next write.
    pub(crate) log_from: Option<u64>,
}

/// The log and hard state as the core sees them. Appends may be buffered until [`Store::sync`];
/// the core never lets an effect out before `sync` succeeded. Every error a method returns is
/// an [`Error::Storage`]: the core steps down and reloads for that error and no other.
pub(crate) trait Store {
    /// Highest number held (synced or not).
    fn latest(&self) -> Last;
    /// The number and epoch of entry `number`, if held; cheap (no read of the log file).
    fn position(&self, number: u64) -> Option<LogPosition>;
    fn entry(&self, number: u64) -> Result<Option<LogEntry>>;
    /// Up to `limit` entries from `from` on.
    fn entries(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>>;
    fn lookup(&self, request_id: &str) -> Result<Option<u64>>;
    fn append(&mut self, entries: Vec<LogEntry>) -> Result<()>;
    /// Removes entries `from..`, durably, before returning (the file store logs each one).
    fn truncate(&mut self, from: u64) -> Result<()>;
    /// Makes every append durable and visible to readers.
    fn sync(&mut self) -> Result<()>;
    /// After a failed write or sync: forget what is not in the file.
    fn reload(&mut self) -> Result<()>;
    fn hard_state(&self) -> HardState;
    /// Writes the hard state durably before returning.
    fn save_hard_state(&mut self, state: HardState) -> Result<()>;
    /// The chained checksum through synced entry `number` (see [`Through`]), if held.
    fn checksum(&self, number: u64) -> Option<u32>;
    /// What was found damaged or missing (at open, or by a read since).
    fn damage(&self) -> Damage;
}

/// Identifies a caller waiting for an [`Answer`]; chosen by the driver.
pub(crate) type Token = u64;

/// Something that happened to the replica.
#[derive(Debug)]
pub(crate) enum Event {
    /// Time passed: heartbeats, retries, leases and timeouts are checked.
    Tick,
    /// A client's order (`request_id` filled in).
    Order { token: Token, order: OrderRequest },
    /// A front-end's `You win`, with the highest epoch it has seen.
    YouWin { token: Token, hint: u64 },
    /// A front-end's `<id> <epoch>` announcement.
    Announce { id: u32, epoch: u64 },
    /// A leader's `POST /propagate`.
    Propagate { token: Token, msg: Propagate },
    /// A candidate's `POST /vote`.
    Vote { token: Token, req: VoteRequest },
    /// A peer's `GET /synchronize`: a recovering replica learning our epoch.
    Probe { token: Token },
    /// The answer (or failure) of something this replica sent to a peer.
    PeerReply { from: u32, reply: PeerReply },
    /// The answer (or failure) of something this replica sent to the catalog.
    CatalogReply {
        epoch: u64,
        result: Result<CatalogState>,
    },
}

/// What came back from a peer.
#[derive(Debug)]
pub(crate) enum PeerReply {
    Propagate {
        epoch: u64,
        /// The last entry number the propagate carried (its `prev` if it carried none).
        sent_last: Last,
        result: Result<PropagateAck>,
    },
    Vote {
        epoch: u64,
        pre: bool,
        result: Result<VoteReply>,
    },
    Page {
        since: u64,
        result: Result<LogPage>,
    },
    Probe {
        result: Result<SyncState>,
    },
}

/// What the core wants done.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    Send { to: u32, msg: PeerMessage },
    Catalog(CatalogMessage),
    Answer { token: Token, answer: Answer },
}

impl Effect {
    /// A propagate to a follower (what may leave before our fsync, and what a round that
    /// defers its fsync must not have sent: see [`Core::take_early`], [`Core::may_defer_sync`]).
    pub(crate) fn is_propagate(&self) -> bool {
        matches!(
            self,
            Effect::Send {
                msg: PeerMessage::Propagate(_),
                ..
            }
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PeerMessage {
    Propagate(Propagate),
    Vote(VoteRequest),
    /// `GET /orders?since=&limit=` on the peer.
    FetchPage {
        since: u64,
        limit: usize,
    },
    /// `GET /synchronize` on the peer: its hard epoch and log (see [`Recovery`]).
    Probe,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CatalogMessage {
    Hello(LeaderHello),
    Apply(ApplyBatch),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    Order(Result<u64>),
    /// To `You win`: leading in this epoch, or `None` for `WAIT`.
    Lead(Option<u64>),
    Propagate(Result<PropagateAck>),
    Vote(Result<VoteReply>),
    Probe(SyncState),
}

/// A snapshot for `/health` and the line ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) role: RoleName,
    pub(crate) epoch: u64,
    pub(crate) leader: Option<u32>,
    pub(crate) latest: Last,
    pub(crate) commit: Last,
    pub(crate) applied: Last,
    pub(crate) log_epoch: u64,
    /// Answers `Ping` with `OK`: not a follower still catching up with a live leader, nor one
    /// that started less than a lease ago and has not heard from a leader yet.
    pub(crate) ready: bool,
    /// While leading: reads and refusals are safe before this instant ([`READ_LEASE`]).
    pub(crate) read_lease: Option<Instant>,
    /// Its disk was found wiped or damaged and no leader has repaired it yet.
    pub(crate) recovering: bool,
}

/// How `GET /orders/<n>` may be answered (see [`Status::read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// At or below the commit point: its contents never change, whoever serves it.
    Committed,
    /// A leader holding its lease has no such number: 404.
    NoSuchOrder,
    /// A leader holding its lease holds it, not yet committed: wait for the commit.
    NotYet,
    /// Only the leader, while its lease holds, knows what is not committed: 421.
    NotLeader,
}

impl Status {
    /// The read rule (docs/spec.md §4): only committed orders are served, and only a leader
    /// that holds its read lease may say that an order does not exist (any other replica may
    /// be behind, or deposed without knowing it).
    pub(crate) fn read(&self, number: u64, now: Instant) -> Read {
        let number = Some(number);
        let leading =
            self.role == RoleName::Leader && self.read_lease.is_some_and(|until| now < until);
        // A follower may know a commit point beyond what it holds (a failed sync lost the end).
        if number <= self.commit.min(self.latest) {
            Read::Committed
        } else if !leading {
            Read::NotLeader
        } else if number > self.latest {
            Read::NoSuchOrder
        } else {
            Read::NotYet
        }
    }
}

enum Role {
    Follower(Follower),
    Candidate(Candidacy),
    Leader(Box<Leadership>),
}

#[derive(Default)]
struct Follower {
    /// When the leader we follow last reached us.
    heard: Option<Instant>,
    /// Our log reached the leader's commit point at its last propagate.
    caught_up: bool,
    /// `You win` callers told while our leader still seemed alive, with the highest hint:
    /// we campaign for them once [`LEADER_LEASE`] passes without word from it, and answer
    /// `WAIT` if the leader speaks first (it is alive; the caller just cannot reach it).
    deferred: Vec<Token>,
    hint: u64,
}

struct Candidacy {
    epoch: u64,
    /// Still asking for pre-votes: nothing is persisted until a majority would grant `epoch`.
    pre: bool,
    started: Instant,
    /// Granters (ourselves included) and their logs when they granted.
    grants: BTreeMap<u32, SyncState>,
    /// `You win` callers waiting for the outcome.
    waiting: Vec<Token>,
    /// Once a majority granted and another granter's log is better: pulling it.
    pull: Option<Pull>,
    /// When vote requests last went out: peers that have not granted are asked again every
    /// [`HEARTBEAT_INTERVAL`] (a voter refuses while its own lease on the old leader runs).
    votes_sent: Instant,
}

struct Pull {
    from: u32,
    /// Our entry that the next page must start with (`None`: from order 0).
    anchor: Option<u64>,
    /// The last number the source held when it granted: a page that ends before it means the
    /// source lost its log since (a wiped disk, restarted within the candidacy).
    granted_latest: Last,
}

struct Leadership {
    epoch: u64,
    /// Our last number when we started leading.
    base: Last,
    started: Instant,
    peers: BTreeMap<u32, Progress>,
    catalog: CatalogLink,
    /// Quantity of each stock after every order in our log; `None` until the catalog answered.
    projection: Option<HashMap<String, u64>>,
    /// Orders that arrived before the projection.
    queued: Vec<(Token, OrderRequest)>,
}

#[derive(Default)]
struct Progress {
    /// The next number to send.
    next: u64,
    /// Synced through, once it holds our log at least to `base` (`None` before: it does not
    /// count towards the commit point, see [`Core::advance_commit`]).
    matched: Option<Last>,
    in_flight: bool,
    /// The propagate in flight carries orders (not a bare heartbeat): its answer brings a
    /// round that sends on what came since (see [`Core::may_defer_sync`]).
    carrying: bool,
    last_sent: Option<Instant>,
    /// When the propagate in flight was sent.
    in_flight_sent: Option<Instant>,
    /// The send time of the newest propagate it answered: it votes for nobody else before
    /// this plus [`LEADER_LEASE`].
    promised: Option<Instant>,
    last_heard: Option<Instant>,
    /// After a failed send: not before this.
    retry_at: Option<Instant>,
    /// Fewer entries per propagate than [`MAX_BATCH`], after a 413 (see [`halve_cap`]).
    cap: Option<usize>,
}

#[derive(Default)]
struct CatalogLink {
    /// The catalog's last applied number, once it answered.
    applied: Option<Last>,
    in_flight: bool,
    retry_at: Option<Instant>,
    /// Entries in the apply in flight, and fewer per apply after a 413 (see [`halve_cap`]).
    sent: usize,
    cap: Option<usize>,
}

/// A replica whose disk was found wiped or damaged, until a leader has repaired it.
struct Recovery {
    /// Set when the hard state was lost: what each peer reported, until every peer answered
    /// (then the epoch floor is known, or the deployment is found to be new).
    probe: Option<BTreeMap<u32, SyncState>>,
    /// When the peers that have not answered were last asked.
    probe_sent: Option<Instant>,
}

/// One replica's protocol state: its role, with the data only that role has, and everything
/// else ([`Context`]). The two are apart so that a role's methods take `&mut` of their own
/// role's data and of the context, and no other role's (see [`Leadership`]'s methods).
pub(crate) struct Core<S: Store> {
    role: Role,
    cx: Context<S>,
}

/// What a replica keeps whatever its role.
struct Context<S: Store> {
    id: u32,
    peers: Vec<u32>,
    store: S,
    hard: HardState,
    /// The leader as last heard (ourselves while leading).
    leader: Option<u32>,
    /// Highest number held durably by a majority, as far as we know.
    commit: Last,
    /// Highest number of our own log that is synced.
    durable: Last,
    /// Highest number the catalog applied, as far as we know.
    applied: Last,
    /// Callers waiting for an order number to be applied.
    waiters: BTreeMap<u64, Vec<Token>>,
    effects: Vec<Effect>,
    now: Instant,
    started: Instant,
    /// `Some` while the replica recovers from a lost or damaged disk.
    recovery: Option<Recovery>,
}

/// What a leader's method asks of `Core`, which alone can end the leadership.
#[must_use]
enum Outcome {
    Lead,
    StepDown(String),
}

impl<S: Store> Core<S> {
    /// A replica on `store` as it was found on disk. If the store reports damage (or the hard
    /// state's claim no longer matches the log), the replica starts recovering; that may
    /// write the hard state and cut the log, hence the `Result`.
    pub(crate) fn new(id: u32, peers: Vec<u32>, store: S, now: Instant) -> Result<Core<S>> {
        let damage = store.damage();
        // A lost state loads as zero; `check_disk` decides what the replica may do with it.
        let hard = if damage.state_lost {
            HardState::default()
        } else {
            store.hard_state()
        };
        let durable = store.latest();
        let mut core = Core {
            role: Role::Follower(Follower::default()),
            cx: Context {
                id,
                peers,
                store,
                hard,
                leader: None,
                commit: None,
                durable,
                applied: None,
                waiters: BTreeMap::new(),
                effects: Vec::new(),
                now,
                started: now,
                recovery: None,
            },
        };
        // Before any event: a damaged disk must not vote or lead even once.
        core.check_disk(damage)?;
        Ok(core)
    }

    #[cfg(test)]
    pub(crate) fn store(&self) -> &S {
        &self.cx.store
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            role: match self.role {
                Role::Follower(_) => RoleName::Follower,
                Role::Candidate(_) => RoleName::Candidate,
                Role::Leader(_) => RoleName::Leader,
            },
            epoch: self.cx.hard.epoch,
            leader: self.cx.leader,
            latest: self.cx.store.latest(),
            commit: self.cx.commit,
            applied: self.cx.applied,
            log_epoch: self.cx.hard.log_epoch,
            read_lease: match &self.role {
                Role::Leader(l) => l.read_lease(&self.cx),
                _ => None,
            },
            recovering: self.cx.recovery.is_some(),
            ready: match &self.role {
                // Its log may lack committed orders: never selected while it recovers.
                _ if self.cx.recovery.is_some() => false,
                // A live leader's follower is ready once it holds the leader's commit point.
                Role::Follower(f) if within(f.heard, self.cx.now, LEADER_LEASE) => f.caught_up,
                // No leader heard: ready once a leader would have reached us by now.
                Role::Follower(_) => !within(Some(self.cx.started), self.cx.now, LEADER_LEASE),
                _ => true,
            },
        }
    }

    /// Handles one event at time `now`. A storage failure inside is handled here: the replica
    /// stops leading and reloads its log from the file.
    pub(crate) fn step(&mut self, now: Instant, event: Event) {
        self.cx.now = now;
        // Only storage failures come back here (every refusal was answered inside `handle`).
        if let Err(e) = self.handle(event) {
            self.storage_failed(&e);
        }
    }

    /// Makes the store durable, then hands out the effects of every event since the last
    /// flush. If the sync fails, nothing acts on it: callers get 503 and peers get nothing.
    pub(crate) fn flush(&mut self) -> Vec<Effect> {
        // The fsync comes first: nothing leaves the replica that a crash could take back.
        if let Err(e) = self.cx.store.sync() {
            self.storage_failed(&e);
            return self.take_failed_effects();
        }
        self.cx.durable = self.cx.store.latest();
        if let Role::Leader(l) = &mut self.role {
            // Our own log is durable now: it counts towards the commit point.
            if let Err(e) = l.advance_commit(&mut self.cx) {
                self.storage_failed(&e);
                return self.take_failed_effects();
            }
        }
        std::mem::take(&mut self.cx.effects)
    }

    /// What may leave before [`Core::flush`] makes this round's appends durable, because
    /// none of it rests on them:
    /// - propagates: the leader's fsync then overlaps the followers' round trip. Safe because
    ///   the leader counts its own copy only once it is durable (`durable`), and an order held
    ///   by the followers alone is as committed as any other (the election takes the best log);
    /// - an order's acknowledgement: given only once the catalog applied the order, so it is
    ///   committed (durable on a majority, by syncs that already returned) and applied;
    /// - an apply: it carries committed orders only.
    ///
    /// Held through our fsync, the last two added that fsync to every order's latency and to
    /// every apply's round trip, and the apply stage is what paces orders under load
    /// (`docs/performance.md`). Everything else waits for the fsync as before: a refusal
    /// counts the orders of this very round, a vote or a propagate's answer rests on what this
    /// round wrote.
    pub(crate) fn take_early(&mut self) -> Vec<Effect> {
        let (early, rest) = std::mem::take(&mut self.cx.effects)
            .into_iter()
            .partition(|e| {
                e.is_propagate()
                    || matches!(
                        e,
                        Effect::Catalog(CatalogMessage::Apply(_))
                            | Effect::Answer {
                                answer: Answer::Order(Ok(_)),
                                ..
                            }
                    )
            });
        self.cx.effects = rest;
        early
    }

    /// Whether the fsync of this round's appends may wait for a later round (the driver asks
    /// after [`Core::take_early`], when the round sent no propagate and was no tick): only a
    /// leader's round that did nothing but take new orders (nothing left to hand out, its
    /// status apart from its last number as `published`) while a propagate that carries
    /// orders is in flight. The answer to that propagate brings the round that sends these
    /// orders on and syncs them (before its own effects leave), and the next tick syncs them
    /// at the latest. Nothing of the deferred round leaves the replica or is published, so
    /// nothing claims the orders before they are durable; a crash loses them unacknowledged
    /// and unsent, as a crash before their fsync always could. What it saves: the leader
    /// synced once per arrival of orders, more often than its followers, and held the core
    /// through each of those fsyncs while peers' answers waited. Not behind a bare heartbeat:
    /// a lone order would wait for its answer before its own fsync even started, which showed
    /// in the sequential p50.
    pub(crate) fn may_defer_sync(&self, published: &Status) -> bool {
        let Role::Leader(l) = &self.role else {
            return false;
        };
        if !self.cx.effects.is_empty() || !l.peers.values().any(|p| p.in_flight && p.carrying) {
            return false;
        }
        let mut now = self.status();
        now.latest = published.latest;
        now == *published
    }

    fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Tick => self.tick(),
            Event::Order { token, order } => match &mut self.role {
                Role::Leader(l) => l.order(&mut self.cx, token, order),
                _ => {
                    let e = self.cx.not_leader();
                    self.cx.answer(token, Answer::Order(Err(e)));
                    Ok(())
                }
            },
            Event::YouWin { token, hint } => self.you_win(token, hint),
            Event::Announce { id, epoch } => {
                // A front-end's word is no proof that the leader is alive: it names whom to
                // follow, but `heard` (which makes us refuse votes) waits for the leader's own
                // propagate.
                if id != self.cx.id && epoch >= self.cx.hard.epoch && !self.is_leader() {
                    self.cx.leader = Some(id);
                }
                Ok(())
            }
            Event::Propagate { token, msg } => {
                let answer = self.propagate(msg);
                self.cx.answer(token, Answer::Propagate(answer.clone()));
                // A refusal was the answer and changes nothing here; only our own storage
                // failing goes on to `step`, which steps down and reloads.
                answer.map(|_| ()).or_else(|e| match e {
                    Error::Storage(_) => Err(e),
                    _ => Ok(()),
                })
            }
            Event::Vote { token, req } => {
                // Only a failed save of the grant comes back as an error: then no answer at all.
                let answer = self.vote(req)?;
                self.cx.answer(token, Answer::Vote(Ok(answer)));
                Ok(())
            }
            // Answered even while recovering: a peer that lost its state needs our epoch.
            Event::Probe { token } => {
                self.cx.answer(token, Answer::Probe(self.cx.sync_state()));
                Ok(())
            }
            Event::PeerReply { from, reply } => match reply {
                PeerReply::Propagate {
                    epoch,
                    sent_last,
                    result,
                } => match &mut self.role {
                    // An answer from an earlier leadership of ours says nothing about this one.
                    Role::Leader(l) if l.epoch == epoch => {
                        let outcome = l.propagate_reply(&mut self.cx, from, sent_last, result)?;
                        self.act_on(outcome);
                        Ok(())
                    }
                    _ => Ok(()),
                },
                PeerReply::Vote { epoch, pre, result } => self.vote_reply(from, epoch, pre, result),
                PeerReply::Page { since, result } => self.page(from, since, result),
                PeerReply::Probe { result } => self.probe_reply(from, result),
            },
            Event::CatalogReply { epoch, result } => match &mut self.role {
                Role::Leader(l) if l.epoch == epoch => {
                    let outcome = l.catalog_reply(&mut self.cx, result)?;
                    self.act_on(outcome);
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }

    /// Ends the leadership if a leader's method asked to.
    fn act_on(&mut self, outcome: Outcome) {
        if let Outcome::StepDown(why) = outcome {
            self.become_follower(None, &why);
        }
    }

    fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    // ---- Recovery from a lost or damaged disk ----------------------------------------------

    /// Decides, from what the store found, whether this replica may take part as it is or
    /// must recover first (see `docs/replication.md`, "Storage faults"):
    ///
    /// - hard state lost: votes it granted are forgotten, so it learns the epochs of every
    ///   peer first ([`Core::probe_reply`]);
    /// - log damaged, or shorter than its claim: it keeps the intact prefix and drops the
    ///   claim (saved before the log is cut: the claim must never outlive its data).
    ///
    /// Either way it moves its epoch past every epoch it knew ([`repair_epoch`]). A recovering
    /// replica grants no vote, does not campaign and is not ready, until a leader of a newer
    /// epoch brings its log through that leader's base ([`Core::claim_log_epoch`]).
    fn check_disk(&mut self, damage: Damage) -> Result<()> {
        // The claim names an entry and its checksum: a log that no longer has both lost data.
        let claim_lost = self
            .cx
            .hard
            .log_through
            .filter(|t| self.cx.store.checksum(t.number) != Some(t.checksum));
        let log_damaged = damage.log_from;
        if !damage.state_lost && log_damaged.is_none() && claim_lost.is_none() {
            if self.cx.hard.recovering && self.cx.recovery.is_none() {
                // A restart in the middle of a repair: still recovering.
                warn!(
                    "replica {}: still recovering from a damaged disk",
                    self.cx.id
                );
                self.cx.recovery = Some(Recovery {
                    probe: None,
                    probe_sent: None,
                });
            }
            return Ok(());
        }
        if damage.state_lost {
            warn!(
                "replica {}: its hard state is missing or damaged: it votes for nobody until it \
                 has heard the epoch of every peer (a new deployment: all report an empty disk)",
                self.cx.id
            );
        }
        if let Some(t) = claim_lost {
            warn!(
                "replica {}: its log no longer holds order {} with checksum {:08x}, which its \
                 claim to epoch {}'s log covers (cut short or replaced): recovering",
                self.cx.id, t.number, t.checksum, self.cx.hard.log_epoch
            );
        }
        if let Some(n) = log_damaged {
            warn!(
                "replica {}: its log is damaged from order {n} on: keeping orders before it, \
                 recovering the rest from the next leader",
                self.cx.id
            );
        }
        // The claim goes before the cut (a claim must never outlive its data), and `recovering`
        // is persisted so that a restart mid-repair still refuses votes. The epoch moves past
        // every epoch we acknowledged orders in (see [`repair_epoch`]), in the same write.
        if !damage.state_lost {
            self.cx.save_hard(HardState {
                epoch: repair_epoch(self.cx.hard.epoch),
                voted_for: Some(self.cx.id),
                log_epoch: 0,
                log_through: None,
                recovering: true,
            })?;
        }
        if let Some(n) = log_damaged {
            self.cx.store.truncate(n)?;
            self.cx.durable = self.cx.store.latest();
        }
        let probe = match &self.cx.recovery {
            Some(r) => r.probe.clone(),
            // Only a lost hard state needs its peers' epochs; a damaged log needs only a leader.
            None => damage.state_lost.then(BTreeMap::new),
        };
        self.cx.recovery = Some(Recovery {
            probe,
            probe_sent: None,
        });
        // A replica that may lack committed orders neither leads nor takes a log by election.
        if self.is_leader() || matches!(self.role, Role::Candidate(_)) {
            self.become_follower(None, "its disk is damaged");
        }
        Ok(())
    }

    /// Asks the peers that have not answered yet for their state (every
    /// [`HEARTBEAT_INTERVAL`]).
    fn probe_peers(&mut self) {
        let Some(Recovery {
            probe: Some(answers),
            probe_sent,
        }) = &mut self.cx.recovery
        else {
            return;
        };
        // Asked again each heartbeat until every peer answered: a down peer may come back.
        if within(*probe_sent, self.cx.now, HEARTBEAT_INTERVAL) {
            return;
        }
        *probe_sent = Some(self.cx.now);
        let ask: Vec<u32> = self
            .cx
            .peers
            .iter()
            .copied()
            .filter(|p| !answers.contains_key(p))
            .collect();
        for peer in ask {
            self.cx.send(peer, PeerMessage::Probe);
        }
    }

    /// A peer's state, while our hard state is lost. Once every peer answered:
    ///
    /// - all report epoch 0 and an empty log: nobody ever granted an epoch, so there is no vote
    ///   we could have forgotten: a new deployment, and we start as new;
    /// - otherwise any epoch we granted before the loss was persisted by its candidate, which
    ///   is among them: we take the highest as ours, granted to nobody else (as if to
    ///   ourselves), moved one past ([`repair_epoch`]), and wait for a leader of that epoch or
    ///   later to repair our log.
    ///
    /// Every peer, not a majority: a candidate we granted an epoch to needed only our grant and
    /// its own, and may be the one peer that did not answer.
    fn probe_reply(&mut self, from: u32, result: Result<SyncState>) -> Result<()> {
        let Some(Recovery {
            probe: Some(answers),
            ..
        }) = &mut self.cx.recovery
        else {
            return Ok(());
        };
        match result {
            Ok(state) => {
                answers.insert(from, state);
            }
            Err(e) => {
                // No answer is no evidence: asked again at the next heartbeat.
                debug!("replica {}: probe of replica {from}: {e}", self.cx.id);
                return Ok(());
            }
        }
        // Every peer, not a majority: the one that has not answered may hold our forgotten grant.
        if answers.len() < self.cx.peers.len() {
            return Ok(());
        }
        let fresh = answers
            .values()
            .all(|s| s.epoch == 0 && s.log_epoch == 0 && s.latest.is_none());
        let floor = answers.values().map(|s| s.epoch).max().unwrap_or(0);
        // Nobody ever granted an epoch (all at zero, all empty): there is nothing to forget.
        if fresh {
            // Saved even though it equals the state in memory: the file must exist, so that a
            // restart does not take it for lost again.
            self.cx.store.save_hard_state(HardState::default())?;
            self.cx.hard = HardState::default();
            self.cx.recovery = None;
            info!(
                "replica {}: every replica reports an empty disk: a new deployment",
                self.cx.id
            );
        } else {
            let hard = HardState {
                // Granted to ourselves: we can grant no epoch up to the floor to anyone again,
                // and only a leader elected without us may repair us (`repair_epoch`).
                epoch: repair_epoch(floor),
                voted_for: Some(self.cx.id),
                log_epoch: 0,
                log_through: None,
                recovering: true,
            };
            self.cx.store.save_hard_state(hard)?;
            self.cx.hard = hard;
            if let Some(r) = &mut self.cx.recovery {
                r.probe = None;
            }
            info!(
                "replica {}: its peers are at epoch {floor}; it votes for nobody until a leader \
                 of epoch {} or later has repaired its log",
                self.cx.id, hard.epoch
            );
        }
        Ok(())
    }

    // ---- Leader selection ------------------------------------------------------------------

    fn you_win(&mut self, token: Token, hint: u64) -> Result<()> {
        match &mut self.role {
            Role::Leader(l) => {
                // Re-confirming the sitting leader keeps its epoch, unless it has lost its
                // majority (then another replica must be tried).
                let answer = l.lease_holds(&self.cx).then_some(l.epoch);
                self.cx.answer(token, Answer::Lead(answer));
                Ok(())
            }
            Role::Candidate(c) => {
                // Answered with the candidacy's outcome.
                c.waiting.push(token);
                Ok(())
            }
            Role::Follower(_) if self.cx.recovery.is_some() => {
                // It may not hold committed orders: it must not lead.
                self.cx.answer(token, Answer::Lead(None));
                Ok(())
            }
            Role::Follower(f) => {
                // A restarted replica waits one lease too: it may have promised a leader its vote.
                let alive = self.cx.leader.is_some() && within(f.heard, self.cx.now, LEADER_LEASE);
                if alive || within(Some(self.cx.started), self.cx.now, LEADER_LEASE) {
                    // Our leader seemed alive a moment ago: campaigning now would depose a
                    // live leader, so wait until its lease runs out.
                    debug!(
                        "replica {}: You win deferred, replica {:?} led a moment ago",
                        self.cx.id, self.cx.leader
                    );
                    f.deferred.push(token);
                    f.hint = f.hint.max(hint);
                    return Ok(());
                }
                // No leader within a lease: this front-end's choice is as good as any.
                self.campaign(vec![token], hint)
            }
        }
    }

    /// Starts a candidacy with a pre-vote round: only when a majority would grant the epoch
    /// does the candidate persist it and ask for real.
    fn campaign(&mut self, waiting: Vec<Token>, hint: u64) -> Result<()> {
        // Above every epoch we granted or saw and the front-end's hint: new as far as we know.
        let epoch = self.cx.hard.epoch.max(hint) + 1;
        debug!(
            "replica {} asks for pre-votes for epoch {epoch}",
            self.cx.id
        );
        let mut grants = BTreeMap::new();
        // Our own grant, with our log: the best log of the majority may be ours.
        grants.insert(self.cx.id, self.cx.sync_state());
        self.role = Role::Candidate(Candidacy {
            epoch,
            pre: true,
            started: self.cx.now,
            grants,
            waiting,
            pull: None,
            votes_sent: self.cx.now,
        });
        self.cx.leader = None;
        self.ask_votes(self.cx.peers.clone());
        self.count_votes()
    }

    /// Sends the candidacy's vote request (pre or real) to `peers`.
    fn ask_votes(&mut self, peers: Vec<u32>) {
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        // Peers that have not granted are asked again from this instant on (see `tick`).
        c.votes_sent = self.cx.now;
        let req = VoteRequest {
            epoch: c.epoch,
            candidate: self.cx.id,
            pre: c.pre,
        };
        for peer in peers {
            self.cx.send(peer, PeerMessage::Vote(req));
        }
    }

    fn vote(&mut self, req: VoteRequest) -> Result<VoteReply> {
        // A refusal carries our log too: the candidate learns if our epoch is past its own.
        let refuse = |core: &Self, why: &str| {
            debug!(
                "replica {} refuses epoch {} to replica {}: {why}",
                core.cx.id, req.epoch, req.candidate
            );
            Ok(VoteReply {
                granted: false,
                state: core.cx.sync_state(),
            })
        };
        if self.cx.recovery.is_some() {
            // Its log may lack committed orders (the candidate would take a log without them)
            // and, if its state was lost, it may have granted this epoch already.
            return refuse(self, "its disk is recovering");
        }
        // An epoch is granted once: lower ones never again, the same one only to its holder.
        if req.epoch < self.cx.hard.epoch {
            return refuse(self, "a higher epoch was granted");
        }
        if req.epoch == self.cx.hard.epoch && self.cx.hard.voted_for != Some(req.candidate) {
            return refuse(self, "this epoch was granted to another replica");
        }
        match &self.role {
            // Stickiness: a live leader (or a follower that hears one) is not deposed by a
            // front-end that merely cannot reach it.
            Role::Leader(l) if l.lease_holds(&self.cx) => {
                return refuse(self, "this replica leads with a majority")
            }
            Role::Follower(f)
                if self.cx.leader.is_some_and(|l| l != req.candidate)
                    && within(f.heard, self.cx.now, LEADER_LEASE) =>
            {
                return refuse(self, "its leader is alive")
            }
            // Whoever led may count on a promise we made before a crash (its read lease).
            _ if self.cx.just_started() => return refuse(self, "it started less than a lease ago"),
            _ => {}
        }
        // A pre-vote changes and persists nothing: a replica cut off cannot raise epochs in vain.
        if req.pre {
            return Ok(VoteReply {
                granted: true,
                state: self.cx.sync_state(),
            });
        }
        if req.epoch > self.cx.hard.epoch {
            // Granting a newer epoch ends whatever we were doing in ours.
            self.become_follower(None, "granted a newer epoch");
        }
        self.cx.save_hard(HardState {
            epoch: req.epoch,
            voted_for: Some(req.candidate),
            ..self.cx.hard
        })?;
        info!(
            "replica {} grants epoch {} to replica {}",
            self.cx.id, req.epoch, req.candidate
        );
        Ok(VoteReply {
            granted: true,
            state: self.cx.sync_state(),
        })
    }

    fn vote_reply(
        &mut self,
        from: u32,
        epoch: u64,
        pre: bool,
        result: Result<VoteReply>,
    ) -> Result<()> {
        let Role::Candidate(c) = &mut self.role else {
            return Ok(());
        };
        // A late answer to an earlier round or candidacy counts for nothing now.
        if c.epoch != epoch || c.pre != pre {
            return Ok(());
        }
        match result {
            Ok(reply) if reply.granted => {
                c.grants.insert(from, reply.state);
                self.count_votes()
            }
            // A voter is past our epoch: we cannot win it, and must not reuse it.
            Ok(reply) if reply.state.epoch > epoch => {
                let hard = HardState {
                    epoch: reply.state.epoch,
                    voted_for: None,
                    ..self.cx.hard
                };
                self.cx.save_hard(hard)?;
                self.give_up(&format!("replica {from} is in epoch {}", reply.state.epoch));
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                debug!("replica {}: vote from replica {from}: {e}", self.cx.id);
                Ok(())
            }
        }
    }

    /// With a majority of grants: lead, or first pull the best log among the granters.
    fn count_votes(&mut self) -> Result<()> {
        let majority = self.cx.majority();
        let id = self.cx.id;
        let Role::Candidate(c) = &mut self.role else {
            return Ok(());
        };
        // While pulling, more grants change nothing: the best log of the majority is chosen.
        if c.pull.is_some() || c.grants.len() < majority {
            return Ok(());
        }
        if c.pre {
            // A majority would grant it: now persist our own vote and ask for real.
            let epoch = c.epoch;
            c.pre = false;
            // Pre-votes persist nothing and prove nothing about the real round: count afresh.
            c.grants.clear();
            self.cx.save_hard(HardState {
                epoch,
                voted_for: Some(id),
                ..self.cx.hard
            })?;
            info!("replica {id} campaigns for epoch {epoch}");
            let ours = self.cx.sync_state();
            if let Role::Candidate(c) = &mut self.role {
                c.grants.insert(id, ours);
            }
            self.ask_votes(self.cx.peers.clone());
            // With one peer a majority may already be ours.
            return self.count_votes();
        }
        // Two majorities share a replica: the best log of our granters holds every commit.
        let ours = c.grants[&id].rank();
        let best = c
            .grants
            .iter()
            .filter(|(_, s)| s.rank() > ours)
            .max_by_key(|(_, s)| s.rank())
            .map(|(&peer, _)| peer);
        match best {
            // Ours is the best log of the majority: lead with it as it is.
            None => self.lead(),
            Some(from) => {
                info!(
                    "replica {id} won epoch {}; taking the more up-to-date log of replica {from}",
                    c.epoch
                );
                // Pull from our last entry: the source's page must start with it (our logs agree).
                let anchor = self.cx.store.latest();
                // Remembered: the page check below refuses a source that since lost this much.
                let granted_latest = c.grants.get(&from).and_then(|s| s.latest);
                c.pull = Some(Pull {
                    from,
                    anchor,
                    granted_latest,
                });
                self.fetch(from, anchor);
                Ok(())
            }
        }
    }

    /// Asks `from` for the page of its log that starts at `anchor`. The peer also cuts the page
    /// at [`MAX_BATCH_BYTES`] (`order::mod`'s `GET /orders?since=`), so a page may hold fewer
    /// entries than asked for; [`Core::page`] goes by the entries it got and `latest`.
    fn fetch(&mut self, from: u32, anchor: Option<u64>) {
        self.cx.send(
            from,
            PeerMessage::FetchPage {
                since: anchor.unwrap_or(0),
                limit: MAX_BATCH,
            },
        );
    }

    /// A page of the log we are pulling as a candidate.
    fn page(&mut self, from: u32, since: u64, result: Result<LogPage>) -> Result<()> {
        let Role::Candidate(Candidacy {
            pull: Some(pull), ..
        }) = &mut self.role
        else {
            return Ok(());
        };
        // A page for an earlier request: the one in flight is the one that counts.
        if pull.from != from || pull.anchor.unwrap_or(0) != since {
            return Ok(());
        }
        let page = match result {
            Ok(page) => page,
            Err(e) => {
                // Without its log we cannot lead safely; a later `You win` tries again.
                self.give_up(&format!("cannot read the log of replica {from}: {e}"));
                return Ok(());
            }
        };
        // The granter's page check: what it reported when it granted is what won the election.
        if page.latest < pull.granted_latest {
            // Taking what it holds now would lose what it held (and reported) when it granted.
            let why = format!(
                "replica {from}'s log now ends at {}, before {} where it ended when it granted",
                minus_one::encode(page.latest),
                minus_one::encode(pull.granted_latest)
            );
            self.give_up(&why);
            return Ok(());
        }
        let anchor = pull.anchor;
        let (prev, rest) = match (anchor, page.entries.split_first()) {
            // From order 0: nothing of ours to agree on.
            (None, _) => (None, &page.entries[..]),
            // The page starts with our anchor: it is the `prev` the rest must follow.
            (Some(a), Some((first, rest))) if first.number == a => (
                Some(LogPosition {
                    number: first.number,
                    epoch: first.epoch,
                }),
                rest,
            ),
            (Some(_), _) => {
                // The source is shorter than our anchor: agree on its last entry first.
                return self.pull_again(from, page.latest);
            }
        };
        match self.cx.apply_entries(prev, rest)? {
            Applied::Accepted => {
                let end = page.entries.last().map(|e| e.number);
                if end >= page.latest {
                    // Their log ends here; ours must too.
                    if self.cx.store.latest() > page.latest {
                        self.cx.cut_log(after(page.latest))?;
                    }
                    info!(
                        "replica {} took the log of replica {from} (latest {})",
                        self.cx.id,
                        minus_one::encode(page.latest)
                    );
                    self.lead()
                } else {
                    // More to come: the next page starts at this one's last entry.
                    self.pull_again(from, page.entries.last().map(|e| e.number))
                }
            }
            Applied::Mismatch { hint: back } => {
                // Each mismatch must move the anchor back, or the pull would never end.
                if back >= anchor {
                    // A source that keeps refusing the same place is not a log we can take.
                    self.give_up(&format!("replica {from}'s log does not move back"));
                    return Ok(());
                }
                self.pull_again(from, back)
            }
        }
    }

    fn pull_again(&mut self, from: u32, anchor: Option<u64>) -> Result<()> {
        if let Role::Candidate(Candidacy {
            pull: Some(pull), ..
        }) = &mut self.role
        {
            pull.anchor = anchor;
        }
        self.fetch(from, anchor);
        Ok(())
    }

    fn give_up(&mut self, why: &str) {
        if let Role::Candidate(c) = &self.role {
            info!(
                "replica {} gives up its candidacy for epoch {}: {why}",
                self.cx.id, c.epoch
            );
        }
        self.become_follower(None, why);
    }

    fn lead(&mut self) -> Result<()> {
        let Role::Candidate(c) =
            std::mem::replace(&mut self.role, Role::Follower(Follower::default()))
        else {
            return Ok(());
        };
        // The role is taken above: if the claim below fails, we are left a follower.
        let epoch = c.epoch;
        // The pulled entries are still pending: the claim "my log is epoch's log" is saved only
        // once they are on disk.
        self.cx.claim_log_epoch(epoch)?;
        let latest = self.cx.store.latest();
        info!(
            "replica {} leads epoch {epoch} (log latest {})",
            self.cx.id,
            minus_one::encode(latest)
        );
        // Optimistic: a follower that lacks entries says so and we move back.
        let next = after(latest);
        let peers = self
            .cx
            .peers
            .iter()
            .map(|&p| {
                (
                    p,
                    Progress {
                        next,
                        ..Progress::default()
                    },
                )
            })
            .collect();
        let mut leadership = Box::new(Leadership {
            epoch,
            // What a follower must hold before its copy counts (Figure 8, see `log_epoch`).
            base: latest,
            started: self.cx.now,
            peers,
            catalog: CatalogLink {
                // The hello below: the catalog raises its fence to our epoch and tells us its
                // stocks, and no order is decided before that.
                in_flight: true,
                ..CatalogLink::default()
            },
            projection: None,
            queued: Vec::new(),
        });
        self.cx.leader = Some(self.cx.id);
        for token in c.waiting {
            self.cx.answer(token, Answer::Lead(Some(epoch)));
        }
        self.cx
            .effects
            .push(Effect::Catalog(CatalogMessage::Hello(LeaderHello {
                epoch,
                leader: self.cx.id,
            })));
        // The first propagates carry `base`: followers learn what they must hold to count.
        let replicated = leadership.replicate(&mut self.cx);
        self.role = Role::Leader(leadership);
        replicated
    }

    /// Leaves any role for following. Orders a leader was holding get their answer: 503 with
    /// "re-send" for numbered ones (they may still commit), 421 for queued ones.
    fn become_follower(&mut self, leader: Option<u32>, why: &str) {
        // Whatever we were, every caller waiting on that role gets an answer now.
        let old = std::mem::replace(&mut self.role, Role::Follower(Follower::default()));
        match old {
            Role::Leader(l) => {
                info!(
                    "replica {} stops leading epoch {}: {why}",
                    self.cx.id, l.epoch
                );
                // Never numbered: the front-end re-selects and sends them to the next leader.
                for (token, _) in l.queued {
                    let e = self.cx.not_leader();
                    self.cx.answer(token, Answer::Order(Err(e)));
                }
                // Numbered, not applied: they may still commit under the next leader: re-send.
                let waiters = std::mem::take(&mut self.cx.waiters);
                for token in waiters.into_values().flatten() {
                    let e = Error::Unavailable(format!(
                        "replica {} stopped leading before the order committed; {RESEND}",
                        self.cx.id
                    ));
                    self.cx.answer(token, Answer::Order(Err(e)));
                }
            }
            // A lost candidacy: its `You win` callers are answered WAIT.
            Role::Candidate(c) => {
                for token in c.waiting {
                    self.cx.answer(token, Answer::Lead(None));
                }
            }
            Role::Follower(mut f) => {
                // Still following the same leader: keep what we know about it.
                if leader.is_some() && leader == self.cx.leader {
                    self.role = Role::Follower(f);
                } else {
                    // A new leader (or none): the deferred `You win` callers are answered WAIT.
                    for token in std::mem::take(&mut f.deferred) {
                        self.cx.answer(token, Answer::Lead(None));
                    }
                }
            }
        }
        self.cx.leader = leader;
    }

    /// Follower side of `POST /propagate`.
    fn propagate(&mut self, p: Propagate) -> Result<PropagateAck> {
        self.refuse_propagate(&p)?;
        match &self.role {
            Role::Leader(l) if l.epoch == p.epoch => {
                // Cannot happen: an epoch is granted by a majority once.
                return Err(Error::Conflict(format!(
                    "replica {} also leads epoch {}",
                    self.cx.id, p.epoch
                )));
            }
            // The leader we follow: nothing changes but `heard` below.
            Role::Follower(_) if self.cx.leader == Some(p.leader) => {}
            _ => self.become_follower(Some(p.leader), &format!("replica {} leads", p.leader)),
        }
        self.cx.leader = Some(p.leader);
        let mut alive = Vec::new();
        if let Role::Follower(f) = &mut self.role {
            // Only the leader's own message proves it alive (not `Announce`): no votes for a lease.
            f.heard = Some(self.cx.now);
            alive = std::mem::take(&mut f.deferred);
        }
        for token in alive {
            // The leader is alive: whoever asked us to win cannot reach it, but it leads.
            self.cx.answer(token, Answer::Lead(None));
        }
        if p.epoch > self.cx.hard.epoch {
            self.cx.save_hard(HardState {
                epoch: p.epoch,
                // A majority granted it this epoch: recorded as its, so we grant it to no one else.
                voted_for: Some(p.leader),
                ..self.cx.hard
            })?;
        }
        // Our log lacks `prev` or holds it from another epoch: tell the leader where to resume.
        if let Applied::Mismatch { hint } = self.cx.apply_entries(p.prev, &p.entries)? {
            if let Role::Follower(f) = &mut self.role {
                f.caught_up = false;
            }
            return Ok(PropagateAck {
                accepted: false,
                latest: hint,
            });
        }
        let sent_last = last_carried(&p);
        if sent_last >= p.base {
            self.take_through_base(&p, sent_last)?;
        }
        // Ready (`Ping`) once we could serve every committed order.
        let caught_up = sent_last >= p.base && sent_last >= p.commit;
        if let Role::Follower(f) = &mut self.role {
            f.caught_up = caught_up;
        }
        Ok(PropagateAck {
            accepted: true,
            latest: sent_last,
        })
    }

    /// What a `/propagate` must not be, before it changes anything (not even whom we follow).
    fn refuse_propagate(&self, p: &Propagate) -> Result<()> {
        // A malformed message changes nothing, not even whom we follow.
        if p.first_gap().is_some() {
            return Err(Error::BadRequest(format!(
                "entries must be consecutive from {}",
                after(p.prev.map(|prev| prev.number))
            )));
        }
        // A deposed leader: 409 tells it to step down. So is one we served before our disk
        // was found damaged ([`repair_epoch`]): it steps down, and the next leader repairs us.
        if p.epoch < self.cx.hard.epoch && self.cx.recovery.is_some() {
            return Err(Error::Conflict(format!(
                "replica {} found its disk damaged and takes a repair only from a leader \
                 elected after that (epoch {} or later), not from epoch {}",
                self.cx.id, self.cx.hard.epoch, p.epoch
            )));
        }
        if p.epoch < self.cx.hard.epoch {
            return Err(Error::Conflict(format!(
                "stale epoch {} from replica {}: replica {} is in epoch {}",
                p.epoch, p.leader, self.cx.id, self.cx.hard.epoch
            )));
        }
        // Our own id from outside is a forgery or a misconfiguration, never a leader.
        if p.leader == self.cx.id {
            return Err(Error::BadRequest("a propagate from ourselves".into()));
        }
        // A log found damaged (state intact) knows its epoch: it takes the next leader's repair.
        if self.cx.recovery.as_ref().is_some_and(|r| r.probe.is_some()) {
            // Until we know our peers' epochs we cannot tell a deposed leader from the current
            // one, and only the current one may repair us.
            return Err(Error::Unavailable(format!(
                "replica {} lost its state and is learning its peers' epochs",
                self.cx.id
            )));
        }
        Ok(())
    }

    /// We hold the leader's log through its base (`sent_last >= p.base`): the rest of our
    /// log is the leader's or an older epoch's leftover, and we may claim its epoch.
    fn take_through_base(&mut self, p: &Propagate, sent_last: Last) -> Result<()> {
        // We hold the leader's log through its base: anything after what it sent that
        // carries an older epoch is in no log that can win.
        let from = after(sent_last);
        // Only an older epoch's leftover is cut; entries of this epoch are the leader's own.
        if self
            .cx
            .store
            .position(from)
            .is_some_and(|e| e.epoch < p.epoch)
        {
            self.cx.cut_log(from)?;
        }
        // The `log_through` claim: now our log is epoch `p.epoch`'s log through this entry.
        self.cx.claim_log_epoch(p.epoch)?;
        // We know its commit point only through what we hold of its log.
        self.cx.commit = self.cx.commit.max(p.commit.min(sent_last));
        Ok(())
    }

    fn tick(&mut self) -> Result<()> {
        match &mut self.role {
            Role::Leader(l) => {
                if !l.lease_holds(&self.cx) {
                    // Cut off from its followers: let the front-ends find a leader that is not.
                    self.become_follower(None, "no majority answered within the lease");
                    return Ok(());
                }
                l.replicate(&mut self.cx)?;
                l.apply_to_catalog(&mut self.cx)?;
            }
            Role::Candidate(c) => {
                // The front-end waits for an answer: a candidacy that drags on answers WAIT.
                if !within(Some(c.started), self.cx.now, CANDIDACY_TIMEOUT) {
                    self.give_up("no majority in time");
                // Voters refuse while their lease on the old leader runs: ask the others again.
                } else if c.pull.is_none()
                    && !within(Some(c.votes_sent), self.cx.now, HEARTBEAT_INTERVAL)
                {
                    let ask: Vec<u32> = self
                        .cx
                        .peers
                        .iter()
                        .copied()
                        .filter(|p| !c.grants.contains_key(p))
                        .collect();
                    self.ask_votes(ask);
                }
            }
            // Recovering: never campaigns; asks its peers' epochs until it knows them all.
            Role::Follower(_) if self.cx.recovery.is_some() => self.probe_peers(),
            Role::Follower(f) => {
                // The leader's lease ran out without a word: campaign for the deferred `You win`s.
                if !f.deferred.is_empty()
                    && !within(f.heard, self.cx.now, LEADER_LEASE)
                    && !self.cx.just_started()
                {
                    let hint = f.hint;
                    let waiting = match &mut self.role {
                        Role::Follower(f) => std::mem::take(&mut f.deferred),
                        _ => Vec::new(),
                    };
                    info!(
                        "replica {}: no word from replica {:?} within the lease",
                        self.cx.id, self.cx.leader
                    );
                    return self.campaign(waiting, hint);
                }
            }
        }
        Ok(())
    }

    // ---- Failures --------------------------------------------------------------------------

    fn storage_failed(&mut self, e: &Error) {
        log::error!(
            "replica {}: storage failed: {e}; re-syncing from the file",
            self.cx.id
        );
        // What we promised may not be on disk: no leading on it.
        self.become_follower(None, "storage failed");
        // Memory goes back to what is durable; the page cache is no evidence after a failed fsync.
        if let Err(e) = self.cx.store.reload() {
            log::error!("replica {}: cannot reload the log: {e}", self.cx.id);
        }
        // The last hard state saved successfully, not the one that failed to save.
        self.cx.hard = self.cx.store.hard_state();
        self.cx.durable = self.cx.store.latest();
        // A read that found an entry damaged: recover it from the next leader.
        let damage = self.cx.store.damage();
        let latest = self.cx.store.latest();
        if damage.log_from.is_some_and(|n| Some(n) <= latest) {
            if let Err(e) = self.check_disk(Damage {
                state_lost: false,
                ..damage
            }) {
                log::error!("replica {}: cannot start recovering: {e}", self.cx.id);
            }
        }
    }

    /// After a failed sync: only answers leave, and none of them claims success.
    fn take_failed_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.cx.effects)
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Answer { token, answer } => {
                    let failed = Error::Unavailable(format!(
                        "replica {}: storage failed; {RESEND}",
                        self.cx.id
                    ));
                    let answer = match answer {
                        Answer::Order(Err(e)) => Answer::Order(Err(e)),
                        // The success may rest on what failed to sync: re-sent with the same id.
                        Answer::Order(Ok(_)) => Answer::Order(Err(failed)),
                        Answer::Lead(_) => Answer::Lead(None),
                        Answer::Propagate(_) => Answer::Propagate(Err(failed)),
                        Answer::Vote(_) => Answer::Vote(Err(failed)),
                        // An epoch report claims nothing durable of ours.
                        Answer::Probe(state) => Answer::Probe(state),
                    };
                    Some(Effect::Answer { token, answer })
                }
                // Sends and catalog calls might claim what is not durable: dropped; retries resend.
                _ => None,
            })
            .collect()
    }
}

impl<S: Store> Context<S> {
    fn majority(&self) -> usize {
        // Peers plus ourselves: with 3 replicas, 2; with 5, 3.
        let replicas = self.peers.len() + 1;
        replicas / 2 + 1
    }

    fn sync_state(&self) -> SyncState {
        SyncState {
            latest: self.store.latest(),
            epoch: self.hard.epoch,
            log_epoch: self.hard.log_epoch,
        }
    }

    fn answer(&mut self, token: Token, answer: Answer) {
        self.effects.push(Effect::Answer { token, answer });
    }

    fn send(&mut self, to: u32, msg: PeerMessage) {
        self.effects.push(Effect::Send { to, msg });
    }

    fn not_leader(&self) -> Error {
        match self.leader {
            Some(l) if l != self.id => Error::NotLeader(format!(
                "replica {} is not the leader (replica {l} is)",
                self.id
            )),
            _ => Error::NotLeader(format!("replica {} is not the leader", self.id)),
        }
    }

    fn save_hard(&mut self, hard: HardState) -> Result<()> {
        // Each save is an fsync: skipped when nothing changes.
        if hard != self.hard {
            self.store.save_hard_state(hard)?;
            self.hard = hard;
        }
        Ok(())
    }

    /// Persists `log_epoch = epoch`: the claim that our log is a prefix of that epoch's
    /// leader's log, which ranks us above every log of an older epoch at the next election. The
    /// claim is only true of entries on disk, so the store syncs first: a crash between the two
    /// writes leaves the entries without the claim (harmless: we rank lower), never the claim
    /// without the entries (which could elect us without acknowledged orders).
    ///
    /// The claim also names the last entry it covers and that entry's chained checksum
    /// ([`Through`]), so a log that later loses any of it is caught at start. A recovering
    /// replica that makes the claim is repaired: its log is now a leader's log through that
    /// leader's base.
    fn claim_log_epoch(&mut self, epoch: u64) -> Result<()> {
        // Already claimed: the claim only moves on to a new epoch or a repair.
        if self.hard.log_epoch == epoch && self.recovery.is_none() {
            return Ok(());
        }
        self.store.sync()?;
        self.durable = self.store.latest();
        // The entries are synced now: the claim may name the last one and its checksum.
        let log_through = self.durable.and_then(|number| {
            let checksum = self.store.checksum(number)?;
            Some(Through { number, checksum })
        });
        self.save_hard(HardState {
            log_epoch: epoch,
            log_through,
            recovering: false,
            ..self.hard
        })?;
        if self.recovery.take().is_some() {
            info!(
                "replica {} is repaired: its log is the log of epoch {epoch}'s leader through {}",
                self.id,
                minus_one::encode(self.durable)
            );
        }
        Ok(())
    }

    /// Removes entries `from..` of our log. A claim that vouches for any of them goes first
    /// (persisted claims follow their data): we then rank as a log of no epoch until the
    /// next claim.
    fn cut_log(&mut self, from: u64) -> Result<()> {
        // The claim vouches for entries about to go: it goes first.
        if self.hard.log_through.is_some_and(|t| t.number >= from) {
            self.save_hard(HardState {
                log_epoch: 0,
                log_through: None,
                ..self.hard
            })?;
        }
        self.store.truncate(from)
    }

    /// Makes our log agree with a sender whose log holds `prev` followed by `entries`: skips
    /// what we hold with the same epoch, replaces a conflicting suffix, appends the rest.
    fn apply_entries(
        &mut self,
        prev: Option<LogPosition>,
        entries: &[LogEntry],
    ) -> Result<Applied> {
        if let Some(prev) = prev {
            // We must hold `prev` with its epoch, or what follows would not extend the same log.
            match self.store.position(prev.number) {
                None => {
                    return Ok(Applied::Mismatch {
                        hint: self.store.latest(),
                    })
                }
                Some(ours) if ours.epoch != prev.epoch => {
                    // Resume before our run of the mismatching epoch.
                    let mut n = prev.number;
                    while n > 0
                        && self
                            .store
                            .position(n - 1)
                            .is_some_and(|p| p.epoch == ours.epoch)
                    {
                        n -= 1;
                    }
                    return Ok(Applied::Mismatch {
                        hint: n.checked_sub(1),
                    });
                }
                Some(_) => {}
            }
        }
        let mut fresh = entries.len();
        for (i, e) in entries.iter().enumerate() {
            match self.store.position(e.number) {
                // Same number and epoch: the same entry (one leader per epoch numbers it once).
                Some(ours) if ours.epoch == e.epoch => continue,
                Some(_) => {
                    // A conflicting suffix: the sender's log is the current leader's, ours is not.
                    self.cut_log(e.number)?;
                    fresh = i;
                    break;
                }
                None => {
                    fresh = i;
                    break;
                }
            }
        }
        if fresh < entries.len() {
            self.store.append(entries[fresh..].to_vec())?;
        }
        Ok(Applied::Accepted)
    }

    /// A replica that started less than [`LEADER_LEASE`] ago may have promised a leader,
    /// before it crashed, not to vote for anyone else for that long; it has forgotten whom.
    fn just_started(&self) -> bool {
        within(Some(self.started), self.now, LEADER_LEASE)
    }

    /// Answers every order the catalog has applied.
    fn answer_applied(&mut self) {
        // An order is answered only once the catalog applied it, never merely committed.
        let rest = self.waiters.split_off(&after(self.applied));
        let done = std::mem::replace(&mut self.waiters, rest);
        for (number, tokens) in done {
            for token in tokens {
                self.answer(token, Answer::Order(Ok(number)));
            }
        }
    }
}

/// A leader's methods: they take its [`Leadership`] and the [`Context`], so they cannot reach
/// a candidate's or a follower's data. They cannot end the leadership either: the ones that
/// may find a reason to step down return [`Outcome`], and `Core` acts on it.
impl Leadership {
    // ---- Replication -----------------------------------------------------------------------

    /// Sends each idle follower what it lacks, or a heartbeat when one is due.
    fn replicate<S: Store>(&mut self, cx: &mut Context<S>) -> Result<()> {
        let latest = cx.store.latest();
        let mut sends = Vec::new();
        for (&peer, p) in self.peers.iter_mut() {
            // One propagate in flight per follower: its answer decides where the next starts.
            if p.in_flight || p.retry_at.is_some_and(|t| cx.now < t) {
                continue;
            }
            let behind = Some(p.next) <= latest;
            let due = !within(p.last_sent, cx.now, HEARTBEAT_INTERVAL);
            if !behind && !due {
                continue;
            }
            p.in_flight = true;
            p.carrying = behind;
            p.last_sent = Some(cx.now);
            p.in_flight_sent = Some(cx.now);
            sends.push((peer, p.next, batch_cap(p.cap)));
        }
        for (peer, next, cap) in sends {
            // The entry before the batch, so that the follower can check its log agrees.
            let prev = next.checked_sub(1).and_then(|n| cx.store.position(n));
            let entries = fit_batch(cx.store.entries(next, cap)?, MAX_BATCH_BYTES);
            let msg = Propagate {
                epoch: self.epoch,
                leader: cx.id,
                prev,
                entries,
                base: self.base,
                commit: cx.commit,
            };
            cx.send(peer, PeerMessage::Propagate(msg));
        }
        Ok(())
    }

    /// A follower's answer to the propagate that carried up to `sent_last`.
    fn propagate_reply<S: Store>(
        &mut self,
        cx: &mut Context<S>,
        from: u32,
        sent_last: Last,
        result: Result<PropagateAck>,
    ) -> Result<Outcome> {
        let latest = cx.store.latest();
        let now = cx.now;
        let base = self.base;
        let Some(p) = self.peers.get_mut(&from) else {
            return Ok(Outcome::Lead);
        };
        p.in_flight = false;
        let sent = p.in_flight_sent.take();
        if result.is_ok() {
            // Accepted or not, it processed our propagate, so it heard from us then.
            p.promised = p.promised.max(sent);
        }
        match result {
            Ok(ack) if ack.accepted => {
                p.last_heard = Some(now);
                p.next = after(sent_last);
                // Figure 8: only a follower holding our log through `base` counts towards the
                // commit point; before that its copy may still end in an older epoch's suffix.
                if sent_last >= base {
                    p.matched = Some(p.matched.flatten().max(sent_last));
                }
                self.advance_commit(cx)?;
            }
            Ok(ack) => {
                p.last_heard = Some(now);
                // Resume after its hint, never past our own end (a hint is only a hint).
                let resume = after(ack.latest.min(latest));
                p.next = if resume >= p.next && p.next > 0 {
                    // A refusal must move us back; a hint that does not cannot be trusted,
                    // so the whole log goes again (entries it holds are skipped, not rewritten).
                    warn!(
                        "replica {from} gave hint {} at {}; resending all",
                        minus_one::encode(ack.latest),
                        p.next
                    );
                    0
                } else {
                    resume
                };
                // Resend at once rather than at the next heartbeat.
                p.last_sent = None;
            }
            Err(Error::Conflict(why)) => {
                // It granted a higher epoch: another leader may exist; ours is over.
                return Ok(Outcome::StepDown(format!("replica {from} refused: {why}")));
            }
            Err(Error::PayloadTooLarge) => {
                // The batch started at `next` (unchanged while it was in flight).
                let sent = usize::try_from(after(sent_last).saturating_sub(p.next)).unwrap_or(1);
                halve_cap(&mut p.cap, sent, &format!("replica {from}"));
                p.last_sent = None;
            }
            Err(e) => {
                debug!("replica {from}: propagate failed: {e}");
                p.retry_at = Some(now + RETRY_INTERVAL);
            }
        }
        self.replicate(cx)?;
        Ok(Outcome::Lead)
    }

    /// The leader's commit point: the highest number durable on a majority of this epoch.
    fn advance_commit<S: Store>(&mut self, cx: &mut Context<S>) -> Result<()> {
        // Our own copy counts only once synced: the propagates went out before our fsync.
        let ours = cx.durable.min(cx.store.latest());
        // Followers not yet holding our log through `base` are left out (`matched` is `None`).
        let mut held: Vec<Last> = self.peers.values().filter_map(|p| p.matched).collect();
        held.push(ours);
        held.sort_unstable_by(|a, b| b.cmp(a));
        // The majority-th highest is held by a majority: no election can pass it by.
        let Some(&point) = held.get(cx.majority() - 1) else {
            return Ok(());
        };
        if point > cx.commit {
            debug!(
                "replica {} commits through {}",
                cx.id,
                minus_one::encode(point)
            );
            cx.commit = point;
            self.apply_to_catalog(cx)?;
        }
        Ok(())
    }

    /// Until when reads and refusals are safe: a majority (ourselves included) promised to
    /// vote for nobody else until [`READ_LEASE`] after the propagates they answered.
    fn read_lease<S: Store>(&self, cx: &Context<S>) -> Option<Instant> {
        let mut promised: Vec<Instant> = self.peers.values().filter_map(|p| p.promised).collect();
        promised.sort_unstable_by(|a, b| b.cmp(a));
        // We promise ourselves; the rest of the majority must be followers' promises, and the
        // oldest of the newest ones among them is what the lease runs from.
        let others = cx.majority() - 1;
        let since = match others {
            0 => Some(cx.now),
            k => promised.get(k - 1).copied(),
        };
        since.map(|t| t + READ_LEASE)
    }

    fn read_lease_holds<S: Store>(&self, cx: &Context<S>) -> bool {
        self.read_lease(cx).is_some_and(|until| cx.now < until)
    }

    /// True while a majority (ourselves included) answered within [`QUORUM_TIMEOUT`].
    fn lease_holds<S: Store>(&self, cx: &Context<S>) -> bool {
        // A new leader has had no time to hear from anyone yet.
        if within(Some(self.started), cx.now, QUORUM_TIMEOUT) {
            return true;
        }
        let heard = self
            .peers
            .values()
            .filter(|p| within(p.last_heard, cx.now, QUORUM_TIMEOUT))
            .count();
        heard + 1 >= cx.majority()
    }

    // ---- Orders and the catalog ------------------------------------------------------------

    /// A client's order: decided now, or held until the catalog's state arrives.
    fn order<S: Store>(
        &mut self,
        cx: &mut Context<S>,
        token: Token,
        order: OrderRequest,
    ) -> Result<()> {
        // Without the catalog's state we cannot tell 404 or 409 from a valid order: hold it.
        if self.projection.is_none() {
            if self.queued.len() >= MAX_QUEUED {
                let e = Error::Unavailable("the catalog has not answered the new leader".into());
                cx.answer(token, Answer::Order(Err(e)));
            } else {
                self.queued.push((token, order));
            }
            return Ok(());
        }
        self.decide(cx, token, order)
    }

    /// Numbers an order (or answers a repeat or a refusal). Needs the projection.
    fn decide<S: Store>(
        &mut self,
        cx: &mut Context<S>,
        token: Token,
        order: OrderRequest,
    ) -> Result<()> {
        let Some(request_id) = order.request_id.clone() else {
            let e = Error::Internal("an order reached the core without a request id".into());
            cx.answer(token, Answer::Order(Err(e)));
            return Ok(());
        };
        // A request id already in the log, however old, is that order: never a second trade.
        if let Some(number) = cx.store.lookup(&request_id)? {
            let same = cx.store.entry(number)?.is_some_and(|e| {
                e.name == order.name && e.kind == order.kind && e.quantity == order.quantity
            });
            if !same {
                let e = Error::Conflict(format!(
                    "request_id {request_id:?} was already used for another order ({number})"
                ));
                self.refuse(cx, token, e);
            } else if Some(number) <= cx.applied {
                cx.answer(token, Answer::Order(Ok(number)));
            } else {
                // Logged but not applied yet: answered with the others when it is.
                cx.waiters.entry(number).or_default().push(token);
            }
            return Ok(());
        }
        let latest = cx.store.latest();
        let Some(projection) = self.projection.as_mut() else {
            return Ok(());
        };
        let Some(quantity) = projection.get_mut(&order.name) else {
            let e = Error::NotFound(format!("no such stock: {}", order.name));
            self.refuse(cx, token, e);
            return Ok(());
        };
        let left = match order.kind {
            OrderType::Buy => quantity.checked_sub(order.quantity).ok_or_else(|| {
                Error::Conflict(format!(
                    "not enough stock: {} has {quantity} left, cannot buy {}",
                    order.name, order.quantity
                ))
            }),
            OrderType::Sell => quantity
                .checked_add(order.quantity)
                .ok_or_else(|| Error::BadRequest("quantity too large".into())),
        };
        let left = match left {
            Ok(left) => left,
            Err(e) => {
                self.refuse(cx, token, e);
                return Ok(());
            }
        };
        // The projection counts the order from now on: the next one is decided after it.
        *quantity = left;
        let number = after(latest);
        let entry = LogEntry {
            number,
            name: order.name,
            kind: order.kind,
            quantity: order.quantity,
            epoch: self.epoch,
            request_id,
        };
        cx.store.append(vec![entry])?;
        cx.waiters.entry(number).or_default().push(token);
        self.replicate(cx)?;
        Ok(())
    }

    /// Refuses an order (404, 409) only while our read lease holds: a leader deposed without
    /// knowing it decides against a stale view of the stocks. Otherwise 421, so that the
    /// front-end re-selects and re-sends; nothing was logged.
    fn refuse<S: Store>(&self, cx: &mut Context<S>, token: Token, e: Error) {
        let e = if self.read_lease_holds(cx) {
            e
        } else {
            Error::NotLeader(format!(
                "replica {} cannot confirm that it still leads",
                cx.id
            ))
        };
        cx.answer(token, Answer::Order(Err(e)));
    }

    /// Sends the catalog the next committed orders it lacks, if nothing is in flight.
    fn apply_to_catalog<S: Store>(&mut self, cx: &mut Context<S>) -> Result<()> {
        // One message in flight: the catalog applies strictly in number order.
        if self.catalog.in_flight || self.catalog.retry_at.is_some_and(|t| cx.now < t) {
            return Ok(());
        }
        let msg = match self.catalog.applied {
            // Until it answered a hello we do not know where it stands (or that it fenced us).
            None => CatalogMessage::Hello(LeaderHello {
                epoch: self.epoch,
                leader: cx.id,
            }),
            // Only committed orders reach the catalog.
            Some(applied) if applied < cx.commit => {
                let from = after(applied);
                let count = usize::try_from(after(cx.commit).saturating_sub(from))
                    .unwrap_or(usize::MAX)
                    .min(batch_cap(self.catalog.cap));
                let entries = fit_batch(cx.store.entries(from, count)?, MAX_BATCH_BYTES);
                self.catalog.sent = entries.len();
                CatalogMessage::Apply(ApplyBatch {
                    epoch: self.epoch,
                    leader: cx.id,
                    entries,
                })
            }
            Some(_) => return Ok(()),
        };
        self.catalog.in_flight = true;
        cx.effects.push(Effect::Catalog(msg));
        Ok(())
    }

    /// The catalog's answer to our hello or apply: where it stands, and its stocks.
    fn catalog_reply<S: Store>(
        &mut self,
        cx: &mut Context<S>,
        result: Result<CatalogState>,
    ) -> Result<Outcome> {
        let latest = cx.store.latest();
        let now = cx.now;
        self.catalog.in_flight = false;
        // A catalog that says it applied fewer than none is answered like a failed call.
        let result = result.and_then(|state| Ok((minus_one::decode(state.applied)?, state)));
        let (applied, state) = match result {
            Ok(state) => state,
            Err(Error::Conflict(why)) => {
                // Its fence is above our epoch: a newer leader has spoken to it.
                let why = format!("the catalog refused our epoch: {why}");
                return Ok(Outcome::StepDown(why));
            }
            Err(Error::PayloadTooLarge) => {
                halve_cap(&mut self.catalog.cap, self.catalog.sent, "the catalog");
                self.apply_to_catalog(cx)?;
                return Ok(Outcome::Lead);
            }
            Err(e) => {
                debug!("catalog: {e}");
                self.catalog.retry_at = Some(now + RETRY_INTERVAL);
                return Ok(Outcome::Lead);
            }
        };
        if applied > latest {
            // Impossible while at most one disk lost data (the leader holds every committed
            // order): say what happened and what to do, in one line, and back off rather than
            // decide orders against a state our log cannot explain.
            warn!(
                "the catalog applied up to order {} but the leading log ends at {}: \
                 committed orders {}..={} are on no replica that could lead (more than one disk \
                 lost them); not taking orders. Restore a replica's files that hold them, or \
                 accept their loss and rebuild the catalog from the log (docs/recovery.md)",
                state.applied,
                minus_one::encode(latest),
                after(latest),
                state.applied
            );
            self.catalog.retry_at = Some(now + LEADER_LEASE);
            return Ok(Outcome::Lead);
        }
        self.catalog.retry_at = None;
        self.catalog.applied = Some(applied);
        cx.applied = cx.applied.max(applied);
        // Only a hello's answer carries the stocks (an apply's has none): the projection is
        // built once, from the catalog's state plus every order of our log after it.
        if self.projection.is_none() && !state.stocks.is_empty() {
            let mut projection: HashMap<String, u64> = state
                .stocks
                .iter()
                .map(|s| (s.name.clone(), s.quantity))
                .collect();
            for e in cx.store.entries(after(applied), usize::MAX)? {
                if let Some(q) = projection.get_mut(&e.name) {
                    *q = match e.kind {
                        OrderType::Buy => q.saturating_sub(e.quantity),
                        OrderType::Sell => q.saturating_add(e.quantity),
                    };
                }
            }
            self.projection = Some(projection);
            for (token, order) in std::mem::take(&mut self.queued) {
                self.decide(cx, token, order)?;
            }
        }
        cx.answer_applied();
        self.apply_to_catalog(cx)?;
        Ok(Outcome::Lead)
    }
}

/// The result of [`Core::apply_entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    Accepted,
    /// We lack `prev` or hold it with another epoch: resend after `hint`.
    Mismatch {
        hint: Last,
    },
}

/// The epoch a replica moves to when it finds its disk damaged or lost, from `epoch`, the
/// highest it knew of (its own, or its peers' when its own was lost): one above, granted to
/// itself. Its lost entries may have been acknowledged to a leader, and counted towards a
/// commit, only in an epoch up to `epoch` (a follower saves a leader's epoch before it takes
/// the leader's entries). A leader of such an epoch, or a late propagate of one, may bring
/// the damaged log up to its base and no further than what was sent, short of what was
/// acknowledged: repaired by it, the replica would vote with a log that lacks committed
/// orders while claiming that epoch. Above `epoch`, it refuses those leaders (409: they step
/// down, and the front-ends elect again); the next leader is elected by a majority without
/// it, which holds every committed order, and its log through its base repairs the replica.
fn repair_epoch(epoch: u64) -> u64 {
    epoch.saturating_add(1)
}

/// True if `at` is less than `within` before `now`.
fn within(at: Option<Instant>, now: Instant, within: Duration) -> bool {
    at.is_some_and(|t| now.saturating_duration_since(t) < within)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sim.rs"]
mod sim;

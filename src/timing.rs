//! Every timeout, lease and protocol interval of the bazaar, in one place, because they are
//! not independent: a front-end's cache lease, the catalog's wait for an unconfirmed
//! invalidation, the replicas' leases, the leader selection's waits and the front-end's
//! forward timeout only keep their promises together. Each relation the code relies on is
//! written below its constants as a `const` assertion, with why it must hold, so that
//! retuning one number against a stated relation fails the build instead of a test (or a
//! deployment).
//!
//! The constants are grouped by who relies on them: the cache and the catalog's apply path,
//! the replica's core, the replica's driver (its calls and waits), the leader selection, the
//! front-end, the load client, and the HTTP transport. Pure implementation details (buffer
//! sizes, the accept loop's back-off, a socket timeout's slack, test helpers' polls) stay
//! beside the code they tune.
//!
//! Caveats:
//! - A lease is only as good as the clocks that measure it: both sides count on their own
//!   monotonic clock, so a lease holds between processes on one machine or machines whose
//!   clocks run at the same rate, not across a clock that jumps or a paused virtual machine.
//! - The assertions check the relations between constants only. Configured durations
//!   (`health_check_interval`, the HTTP server's `idle_timeout_ms` and `request_timeout_ms`)
//!   are checked when the config is loaded, or not at all.
//! - A relation states what the code relies on, not a margin that is comfortable on a busy
//!   machine: the margins are in the numbers, and `docs/chaos.md` tells how they were found.

use std::time::Duration;

/// `a < b`, in a form a `const` assertion can evaluate (Duration's comparisons are not const).
const fn lt(a: Duration, b: Duration) -> bool {
    a.as_nanos() < b.as_nanos()
}

/// `a ≤ b`, likewise.
const fn le(a: Duration, b: Duration) -> bool {
    a.as_nanos() <= b.as_nanos()
}

/// `a + b`, in nanoseconds (Duration's `+` is not const).
const fn sum(parts: &[Duration]) -> u128 {
    let mut total = 0;
    let mut i = 0;
    while i < parts.len() {
        total += parts[i].as_nanos();
        i += 1;
    }
    total
}

// ---- The cache and the catalog's apply path ---------------------------------------------

/// How long a front-end may serve a cached stock, counted from before it asked the catalog.
///
/// Two services rely on it:
/// - the **front-end** (`frontend::cache`) serves a cached entry only within this lease of the
///   lookup that fetched it, whether or not an invalidation arrived;
/// - the **catalog** (`catalog::routes`), when some front-end did not confirm an invalidation
///   (it may be paused or cut off), answers the apply only once this lease has passed since
///   the change became visible to lookups, so whatever that front-end cached before the trade
///   has expired by then, and no lookup that starts after the acknowledgement shows the
///   pre-trade quantity (docs/spec.md §5.5).
pub(crate) const CACHE_LEASE: Duration = Duration::from_secs(1);

/// The most time an apply spends telling every front-end to drop the traded stocks, all
/// front-ends together (not per name or per front-end).
pub(crate) const INVALIDATION_BUDGET: Duration = Duration::from_millis(300);

/// Most a hello waits for earlier applies to settle (an apply waits one cache lease at most
/// after its budget), before it answers 503 and the leader says hello again.
pub(crate) const HELLO_SETTLE_LIMIT: Duration = Duration::from_millis(1500);

// A hello waits for the applies under way; each takes at most its invalidation budget and
// then one cache lease. A limit below that would answer 503 to every hello that meets a
// paused front-end, and a new leader would never learn the catalog's state while it stays
// paused.
const _: () = assert!(sum(&[INVALIDATION_BUDGET, CACHE_LEASE]) < HELLO_SETTLE_LIMIT.as_nanos());

// ---- The replica's core: leases, heartbeats, candidacies ----------------------------------

/// How often the core checks heartbeats, leases and retries.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// Between heartbeats (empty propagates) to an idle follower.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// A follower that heard from its leader this recently refuses to vote for anyone else (and
/// defers a `You win`): how long after a leader's last heartbeat a fail-over can begin.
pub(crate) const LEADER_LEASE: Duration = Duration::from_millis(800);

/// A leader that has not heard from a majority for this long steps down, so that a front-end
/// that still reaches it selects another. Longer than [`LEADER_LEASE`] on purpose: stepping
/// down is not needed for safety (without a majority nothing commits anyway), and on a machine
/// starved of CPU, followers' answers arrive late; a short timeout there only adds fail-overs.
pub(crate) const QUORUM_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long a leader may answer reads and refusals after a majority (itself included) last
/// confirmed it: a follower that answers a propagate sent at `t` votes for nobody else before
/// `t + LEADER_LEASE`, and a restarted replica votes for nobody during its first
/// `LEADER_LEASE`, so no other leader can exist before `t + READ_LEASE`. Shorter than
/// [`LEADER_LEASE`] by a margin for clocks that run at slightly different rates.
pub(crate) const READ_LEASE: Duration = Duration::from_millis(600);

/// How long a candidacy (votes and pulling the best log) may take before it gives up; well
/// inside the front-end's [`YOU_WIN_TIMEOUT`], so `You win` gets an answer.
pub(crate) const CANDIDACY_TIMEOUT: Duration = Duration::from_millis(2500);

/// How long a failed call to a peer or the catalog waits before it is tried again.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_millis(50);

// Heartbeats, lease checks and retries happen at ticks: a tick coarser than the heartbeat
// interval or the retry interval would stretch both to a tick.
const _: () = assert!(lt(TICK, HEARTBEAT_INTERVAL) && lt(TICK, RETRY_INTERVAL));

// An idle leader renews its read lease (and its followers' leases on it) only by heartbeats:
// with heartbeats rarer than the read lease, an idle leader would refuse reads between them
// with 421, and with heartbeats rarer than the voters' lease, followers would campaign
// against a live leader.
const _: () = assert!(lt(HEARTBEAT_INTERVAL, READ_LEASE));

// The safety of reads: the voters' promise not to elect another leader lasts LEADER_LEASE,
// and the leader must stop answering reads and refusals before that promise ends on any
// voter's clock (docs/replication.md, "The read lease").
const _: () = assert!(lt(READ_LEASE, LEADER_LEASE));

// A leader steps down after QUORUM_TIMEOUT without a majority; with it at or below the
// voters' lease, a CPU-starved machine's late answers would depose healthy leaders again and
// again (docs/chaos.md, the 800 ms / 2 s history).
const _: () = assert!(lt(LEADER_LEASE, QUORUM_TIMEOUT));

// ---- The replica's driver: its calls to peers and the catalog, its waits for the core ----

/// How long a propagate or vote to a peer may take: a frozen peer must not stall the leader's
/// thread for that peer much longer than a lease.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_millis(800);

/// How long one page of a peer's log may take to arrive.
pub(crate) const PAGE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the leader's call to the catalog (`POST /leader`, `POST /apply`) may take: the
/// catalog invalidates every front-end first, and may wait out a cache lease for one that did
/// not confirm. (The front-end's own calls to the catalog: [`FRONTEND_CATALOG_TIMEOUT`].)
pub(crate) const LEADER_CATALOG_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a peer's `/propagate` or `/vote` waits for the core (it answers at once unless
/// the disk is slow).
pub(crate) const PEER_WAIT: Duration = Duration::from_secs(2);

/// How long `POST /orders` waits for its order to be committed and applied before answering
/// 503 "re-send": below the front-end's [`FORWARD_TIMEOUT`], so the front-end hears why.
pub(crate) const ORDER_WAIT: Duration = Duration::from_millis(650);

/// How long `GET /orders/<n>` waits for an order the leader holds to commit before 503: a
/// read of an order being committed right now (or by a leader just elected) is answered.
pub(crate) const READ_WAIT: Duration = Duration::from_millis(500);

/// How long `You win` waits for the candidacy's outcome: below [`YOU_WIN_TIMEOUT`].
pub(crate) const YOU_WIN_WAIT: Duration = Duration::from_secs(4);

/// How long a line connection may take to send its line.
pub(crate) const LINE_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// How long writing the answer to a line may take.
pub(crate) const LINE_WRITE_TIMEOUT: Duration = Duration::from_millis(500);

// The leader's thread for a peer carries one message at a time, so a call that hangs delays
// the next heartbeat to that peer by up to PEER_TIMEOUT. Longer than the lease, and a peer
// that is slow rather than gone would see its lease on a live leader run out and campaign.
const _: () = assert!(le(PEER_TIMEOUT, LEADER_LEASE));

// The leader must hear the catalog's answer to an apply (which may take the invalidation
// budget and then a cache lease) and to a hello (which answers 503 at HELLO_SETTLE_LIMIT):
// a shorter call would give up on answers that are on their way, and resend them forever
// while a front-end stays paused.
const _: () = assert!(sum(&[INVALIDATION_BUDGET, CACHE_LEASE]) < LEADER_CATALOG_TIMEOUT.as_nanos());
const _: () = assert!(lt(HELLO_SETTLE_LIMIT, LEADER_CATALOG_TIMEOUT));

// A replica's own 503s reach the front-end only if they come before its forward gives up:
// an order's "re-send with the same request_id" and a read's "not committed yet" (which the
// front-end passes to the client as the leader's answer).
const _: () = assert!(lt(ORDER_WAIT, FORWARD_TIMEOUT) && lt(READ_WAIT, FORWARD_TIMEOUT));

// A `You win` to a follower may first be deferred for a lease (its leader spoke a moment ago,
// or it has just started) and then run a whole candidacy; the answer must come before the
// line gives up on the core (else WAIT for a candidacy that may still win), and the line's
// answer before the front-end gives up on the line.
const _: () = assert!(sum(&[LEADER_LEASE, CANDIDACY_TIMEOUT]) < YOU_WIN_WAIT.as_nanos());
const _: () = assert!(lt(CANDIDACY_TIMEOUT, YOU_WIN_WAIT) && lt(YOU_WIN_WAIT, YOU_WIN_TIMEOUT));

// ---- Leader selection: the front-end's side of the line protocol ---------------------------

/// How long the front-end waits for `OK` to a `Ping` (a stopped process still accepts TCP).
pub const PING_TIMEOUT: Duration = Duration::from_millis(300);

/// How long the front-end waits for `OK` to `You win`: the winner first catches up.
pub const YOU_WIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the front-end waits for `OK` to the `<id> <epoch>` announcement; it is best effort
/// and a stopped replica must not delay the selection much.
pub(crate) const ANNOUNCE_TIMEOUT: Duration = Duration::from_millis(300);

// ---- The front-end: forwarding, the catalog, the live page --------------------------------

/// How long one forward to the leader waits for its answer. A frozen leader (SIGSTOP) still
/// accepts connections, so this is how long orders sent to it wait before the front-end
/// re-selects; a healthy leader answers well within it, or says 503 "re-send" itself after
/// [`ORDER_WAIT`], and the retry (same request id) finds the order wherever it went.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_millis(800);

/// The most time a client request spends forwarding and retrying before it gets 503.
pub(crate) const FORWARD_DEADLINE: Duration = Duration::from_secs(6);

/// Pause before retrying when re-selection did not produce a different leader, so that a
/// request does not spin while no replica answers.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// How long a lookup or a stock listing on the front-end waits for the catalog. (The
/// leader's calls to the catalog: [`LEADER_CATALOG_TIMEOUT`].)
pub(crate) const FRONTEND_CATALOG_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the health-check thread waits for a selection another thread is running.
pub(crate) const HEALTH_SELECTION_WAIT: Duration = Duration::from_secs(6);

/// How long `/cluster` waits for one replica's `/health`: short, because a replica that takes
/// longer is as good as down for someone watching, and the page refreshes every second.
pub(crate) const REPLICA_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// How long `/cluster` waits for the catalog's `/stocks` (a longer answer than a health check).
pub(crate) const CATALOG_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

// One fail-over must not reach a client as an error (docs/replication.md, "Failure cases":
// the front-end retries the same request id). A frozen leader costs one forward timeout to
// notice, then its lease runs out at the followers, then one candidacy: the front-end's
// retries must outlast all three.
const _: () =
    assert!(sum(&[FORWARD_TIMEOUT, LEADER_LEASE, CANDIDACY_TIMEOUT]) < FORWARD_DEADLINE.as_nanos());

// ---- The load client ----------------------------------------------------------------------

/// How long one request of the load client is retried before it counts as an error.
pub(crate) const CLIENT_RETRY_DEADLINE: Duration = Duration::from_secs(15);

/// Pause between the load client's retries of one request.
pub(crate) const CLIENT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long the load client waits for one answer from the front-end (an order may wait for a
/// fail-over).
pub(crate) const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

// The front-end answers an order it could not place with 503 "re-send" and the request id
// at its forward deadline; the client must still be listening then, or it would time out and
// re-send without knowing the order may have committed.
const _: () = assert!(lt(FORWARD_DEADLINE, CLIENT_REQUEST_TIMEOUT));

// ---- The HTTP transport -------------------------------------------------------------------

/// How long an outbound call waits for its TCP connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A client that does not read its response for this long is dropped.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// After an error response, how long to keep discarding what the client still sends before
/// closing (see `http::server::framing::linger`).
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

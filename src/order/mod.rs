//! The order replica: one of three copies of the order log, one of which leads.
//!
//! A replica serves (docs/spec.md §4):
//!
//! - HTTP: `POST /orders` (leader only; else 421), `GET /orders/<n>` (committed orders only;
//!   see `Status::read`), `GET /orders?since=N[&limit=M]` (pages of the log as this replica
//!   holds it, committed or not: for peers and tools), `GET /synchronize`, `GET /health`,
//!   `GET /metrics` (Prometheus text: the published status, group-commit histograms,
//!   leaderships; `crate::metrics`), and, with the
//!   deployment secret, `POST /propagate` (leader → follower) and `POST /vote` (candidate →
//!   peer).
//! - TCP lines (`lines`, protocol in [`crate::selection`]): `Ping`, `You win <hint> <secret>`,
//!   `<id> <epoch> <secret>` on the leader-broadcast port; `Ping` on the health port.
//!
//! Every rule lives in `core`: a single-owner state machine that takes events and returns
//! effects. This module is the driver around it, and its threads only move bytes:
//!
//! - the core is **driven by whichever thread brings an event** (flat combining): the
//!   thread queues its event, and if no other thread holds the core it takes every queued
//!   event, steps the core with each, flushes it (one fsync for all appends of the round:
//!   group commit) and dispatches the effects; a thread that finds the core held just waits
//!   for its answer, and the holder takes its event in its next round. So an order, a
//!   follower's propagate or a peer's answer is stepped on the thread that read it, without
//!   a hand-off to another thread and back (each hand-off is a wake-up: `docs/performance.md`);
//! - the **core thread** only ticks (heartbeats, leases, retries every `TICK`) and takes over
//!   when a driver has done `MAX_DRIVE_ROUNDS` rounds and events are still queued;
//! - one **peer thread** per other replica sends what the core wants sent to it (propagate,
//!   vote, log page) and feeds the answer back as an event;
//! - the **catalog thread** does the same for `POST /leader` and `POST /apply`;
//! - HTTP handlers and line connections turn requests into events and wait for the answer
//!   with a deadline; reads (`GET /orders/..`, `/health`) never go through the core: they
//!   read the log's memory and the status the core publishes after each flush.
//!
//! Caveats: see `docs/replication.md` (what the protocol cannot save: a majority of disks
//! lost for good). An order still uncommitted when its caller's deadline passes is answered
//! 503 "re-send with the same request_id": it may still commit, and the retry finds it.

pub(crate) mod core;
mod epoch;
mod failpoint;
mod lines;
pub mod logfile;
mod store;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::log::{info, warn};
use parking_lot::{Condvar, Mutex};

use self::core::RoleName;
use self::core::{
    Answer, CatalogMessage, Core, Effect, Event, PeerMessage, PeerReply, Read, Status, Token,
};
use self::logfile::OrderLog;
use self::store::{FileStore, SyncMetrics};
use crate::api::{
    decimal_param, minus_one, new_request_id, CatalogState, LogPage, Order, OrderAck, OrderRequest,
    Propagate, PropagateAck, ReplicaHealth, SyncState, VoteReply, VoteRequest,
};
use crate::config::{Config, ReplicaConfig};
use crate::error::{Error, Result};
use crate::http::Runs::Inline;
use crate::http::{self, Client, Handler, Request, Response, Route, Server, ServerOptions};
use crate::metrics::{gauge_value, Metrics};
use crate::timing::{
    LEADER_CATALOG_TIMEOUT, ORDER_WAIT, PAGE_TIMEOUT, PEER_TIMEOUT, PEER_WAIT, READ_WAIT, TICK,
    YOU_WIN_WAIT,
};
use prometheus::{IntCounter, IntGauge, IntGaugeVec};

/// Rounds a thread that brought an event drives the core before it hands over to the core
/// thread (`Shared::drive`): enough to take what queued during its own fsync, few enough
/// that its own caller is not kept waiting behind a steady stream of others' events.
const MAX_DRIVE_ROUNDS: usize = 4;

/// Most entries in one `GET /orders?since=` page.
pub(crate) const MAX_PAGE: usize = 1000;

/// An event and, for a request, where its answer goes.
struct Input {
    event: Event,
    reply: Option<(Token, SyncSender<Answer>)>,
}

/// What the replica's threads share.
struct Shared {
    id: u32,
    config: Config,
    log: Arc<OrderLog>,
    /// The core's status, published after every flush (so everything it counts is synced).
    status: Mutex<Status>,
    /// Signalled at every publish: reads of an uncommitted order wait on it.
    published: Condvar,
    /// Events not yet stepped. Whoever holds `driving` next takes them all as one batch.
    inbox: Mutex<Vec<Input>>,
    /// The core and what only its current driver touches; see [`Shared::drive`].
    driving: Mutex<Driving>,
    /// Wakes the core thread: a driver left events behind, or the replica is stopping.
    kick: Condvar,
    next_token: AtomicU64,
    stopped: AtomicBool,
    metrics: Metrics,
    own: ReplicaMetrics,
}

/// Buckets of one sync's write + fdatasync, seconds.
const FSYNC_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Buckets of the orders one sync writes (group commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A replica's own metrics: the published status is copied in at each scrape, the rest is
/// counted as it happens (`crate::metrics`).
struct ReplicaMetrics {
    role: IntGaugeVec,
    epoch: IntGauge,
    last: IntGauge,
    commit: IntGauge,
    applied: IntGauge,
    leaderships: IntCounter,
}

impl ReplicaMetrics {
    /// The replica's gauges and counter, and the histograms its store feeds.
    fn new(m: &Metrics) -> Result<(ReplicaMetrics, SyncMetrics)> {
        let own = ReplicaMetrics {
            role: m.gauge_vec(
                "bazaar_replica_role",
                "1 for the role the replica has now (follower, candidate, leader), else 0.",
                "role",
            )?,
            epoch: m.gauge("bazaar_replica_epoch", "The replica's current epoch.")?,
            last: m.gauge(
                "bazaar_replica_last_number",
                "The highest order number the replica holds durably (-1: none).",
            )?,
            commit: m.gauge(
                "bazaar_replica_commit_number",
                "The highest order number the replica knows committed (-1: none).",
            )?,
            applied: m.gauge(
                "bazaar_replica_applied_number",
                "The highest order number the replica knows the catalog applied (-1: none).",
            )?,
            leaderships: m.counter(
                "bazaar_replica_leaderships_total",
                "Times this replica started leading (fail-overs to it, and the first election).",
            )?,
        };
        let sync = SyncMetrics {
            seconds: m.histogram(
                "bazaar_replica_fsync_seconds",
                "Time of one group commit: the log write and its fdatasync.",
                FSYNC_BUCKETS,
            )?,
            orders: m.histogram(
                "bazaar_replica_sync_batch_orders",
                "Orders written by one group commit.",
                BATCH_BUCKETS,
            )?,
        };
        Ok((own, sync))
    }
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sends a request event to the core and waits for its answer until `wait` passes.
    fn ask(&self, make: impl FnOnce(Token) -> Event, wait: Duration) -> Option<Answer> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Input {
            event: make(token),
            reply: Some((token, tx)),
        });
        rx.recv_timeout(wait).ok()
    }

    fn tell(&self, event: Event) {
        self.submit(Input { event, reply: None });
    }

    /// Queues `input` for the core and drives the core if nobody else does right now.
    fn submit(&self, input: Input) {
        self.inbox.lock().push(input);
        self.drive();
    }

    /// Steps the core with everything queued, on this thread, if no other thread holds it
    /// (flat combining; see the module doc). A thread that finds it held leaves at once: the
    /// holder looks at the inbox again after letting go, so nothing queued is left behind.
    /// After [`MAX_DRIVE_ROUNDS`] rounds the core thread takes over, so that a connection
    /// thread does not keep its own caller waiting while others keep queueing.
    fn drive(&self) {
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
    fn drive_once(&self, d: &mut Driving) -> bool {
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
        // Propagates first, so that our fsync overlaps the followers' round trip; everything
        // else only once our appends are durable.
        for effect in d.core.take_propagates() {
            d.dispatch(effect);
        }
        let effects = d.core.flush();
        self.publish(d.core.status());
        for effect in effects {
            d.dispatch(effect);
        }
        true
    }

    fn status(&self) -> Status {
        *self.status.lock()
    }

    fn publish(&self, status: Status) {
        {
            let mut published = self.status.lock();
            if status.role == RoleName::Leader && published.role != RoleName::Leader {
                self.own.leaderships.inc();
            }
            *published = status;
        }
        self.published.notify_all();
    }

    /// `GET /metrics` (`crate::metrics`; no secret, see there).
    fn metrics(&self) -> Response {
        self.metrics.render(|| {
            let s = self.status();
            for role in [RoleName::Follower, RoleName::Candidate, RoleName::Leader] {
                self.own
                    .role
                    .with_label_values(&[role.as_str()])
                    .set(i64::from(s.role == role));
            }
            self.own.epoch.set(gauge_value(s.epoch));
            self.own.last.set(minus_one::encode(s.latest));
            self.own.commit.set(minus_one::encode(s.commit));
            self.own.applied.set(minus_one::encode(s.applied));
        })
    }

    fn health(&self) -> ReplicaHealth {
        let s = self.status();
        ReplicaHealth {
            status: "ok".into(),
            id: self.id,
            role: s.role.as_str().into(),
            epoch: s.epoch,
            leader: s.leader,
            latest: minus_one::encode(s.latest),
            commit: minus_one::encode(s.commit),
            applied: minus_one::encode(s.applied),
            recovering: s.recovering,
        }
    }

    /// `GET /synchronize`: asked of the core rather than read from the published status, so
    /// that an epoch granted a moment ago is never reported as older (a recovering replica
    /// takes its epoch floor from these answers).
    fn sync_state(&self) -> Result<SyncState> {
        match self.ask(|token| Event::Probe { token }, PEER_TIMEOUT) {
            Some(Answer::Probe(state)) => Ok(state),
            _ => Err(Error::Unavailable(format!(
                "replica {} did not answer in time",
                self.id
            ))),
        }
    }

    /// `POST /orders`.
    fn place_order(&self, req: &Request) -> Result<Response> {
        let mut order = OrderRequest::parse(&req.body)?;
        let request_id = order
            .request_id
            .get_or_insert_with(|| new_request_id(&format!("order-{}", self.id)))
            .clone();
        match self.ask(|token| Event::Order { token, order }, ORDER_WAIT) {
            Some(Answer::Order(Ok(number))) => {
                failpoint::hit(failpoint::BEFORE_REPLY);
                Ok(Response::ok(OrderAck {
                    transaction_number: number,
                }))
            }
            Some(Answer::Order(Err(e))) => Err(e.with_request_id(&request_id)),
            _ => Err(Error::Resend {
                message: format!(
                    "order {request_id} not committed in time; {}",
                    crate::api::RESEND
                ),
                request_id,
            }),
        }
    }

    fn propagate(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.config.secret)?;
        let msg = req.json()?;
        self.check_propagate(&msg)?;
        match self.ask(|token| Event::Propagate { token, msg }, PEER_WAIT) {
            Some(Answer::Propagate(answer)) => answer.map(Response::ok),
            _ => Err(Error::Unavailable("replica busy".into())),
        }
    }

    fn vote(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.config.secret)?;
        let vote: VoteRequest = req.json()?;
        self.check_peer(vote.candidate, "candidate")?;
        match self.ask(|token| Event::Vote { token, req: vote }, PEER_WAIT) {
            Some(Answer::Vote(answer)) => answer.map(Response::ok),
            _ => Err(Error::Unavailable("replica busy".into())),
        }
    }

    /// `id` names another replica of the config.
    fn check_peer(&self, id: u32, what: &str) -> Result<()> {
        if id == self.id || self.config.replica(id).is_err() {
            return Err(Error::BadRequest(format!(
                "{what} {id} is not another replica of this deployment"
            )));
        }
        Ok(())
    }

    /// What a `/propagate` must hold before it reaches the core, so that a message that lies
    /// (even one with the secret) changes nothing: a sender that is another replica, entries
    /// numbered consecutively after `prev`, none from an epoch above the message's, each an
    /// order the leader could have numbered (a non-empty name, a positive quantity, a request
    /// id of 1 to 128 bytes). The request id's characters are not checked: clients may only
    /// send printable ASCII now, but logs of older versions hold others and must replicate.
    ///
    /// Caveat: whether the stock exists is not checked here. A follower does not know the
    /// catalog's stocks (an existing `catalog.json` wins over the config's list), so an entry
    /// for an unknown stock from an authenticated leader is stored; the catalog refuses it
    /// (422) and changes nothing.
    fn check_propagate(&self, p: &Propagate) -> Result<()> {
        self.check_peer(p.leader, "leader")?;
        let bad = |why: String| Err(Error::BadRequest(format!("propagate refused: {why}")));
        if let Some(prev) = p.prev.filter(|prev| prev.epoch > p.epoch) {
            return bad(format!("prev is from epoch {} > {}", prev.epoch, p.epoch));
        }
        let first = p.prev.map_or(Some(0), |prev| prev.number.checked_add(1));
        for (i, e) in p.entries.iter().enumerate() {
            if first.and_then(|f| f.checked_add(i as u64)) != Some(e.number) {
                return bad(format!("entry {i} is order {}, not consecutive", e.number));
            }
            if e.epoch > p.epoch {
                return bad(format!(
                    "order {} is from epoch {} > {}",
                    e.number, e.epoch, p.epoch
                ));
            }
            e.validate()?;
        }
        Ok(())
    }

    /// `GET /orders/<n>`, by the read rule of [`Status::read`]: a committed order; 404 only
    /// from a leader holding its lease; an order it holds uncommitted after a bounded wait
    /// for the commit; 421 from anyone else, so that the front-end re-selects.
    fn get_order(&self, n: &str) -> Result<Response> {
        let number = decimal_param(n, "order number")?;
        let deadline = Instant::now() + READ_WAIT;
        let mut status = self.status.lock();
        loop {
            match status.read(number, Instant::now()) {
                Read::Committed => break,
                Read::NoSuchOrder => return Err(Error::NotFound(format!("no order {number}"))),
                Read::NotLeader => {
                    return Err(Error::NotLeader(format!(
                        "replica {} cannot tell whether order {number} is committed; ask the \
                         leader",
                        self.id
                    )))
                }
                Read::NotYet => {
                    if self.published.wait_until(&mut status, deadline).timed_out() {
                        return Err(Error::Unavailable(format!(
                            "order {number} is not committed yet; try again"
                        )));
                    }
                }
            }
        }
        drop(status);
        let entry = self.log.get(number)?.ok_or_else(|| {
            Error::Unavailable(format!(
                "order {number} is committed but replica {} does not hold it yet",
                self.id
            ))
        })?;
        Ok(Response::ok(Order::from(&entry)))
    }

    /// `GET /orders?since=N[&limit=M]`: at most `limit` entries and about
    /// [`core::MAX_BATCH_BYTES`] of them (at least one), like every batch replicas exchange.
    fn log_page(&self, req: &Request) -> Result<Response> {
        let since = match req.query_param("since") {
            Some(s) => decimal_param(&s, "since")?,
            None => 0,
        };
        let limit = match req.query_param("limit") {
            Some(s) => decimal_param(&s, "limit")?.clamp(1, MAX_PAGE as u64) as usize,
            None => MAX_PAGE,
        };
        let mut page = self.log.since(since, limit)?;
        page.entries = core::fit_batch(page.entries, core::MAX_BATCH_BYTES);
        Ok(Response::ok(page))
    }

    /// The answer to one line on the leader-broadcast (or health) port. `You win` and
    /// `<id> <epoch>` without the deployment secret get `ERR unauthorized` and change nothing.
    fn line(&self, command: crate::selection::Command) -> crate::selection::Reply {
        use crate::selection::{Command, Reply};
        if command != Command::Ping
            && !crate::http::secret_matches(command.secret(), &self.config.secret)
        {
            warn!(
                "replica {}: refused the line {}: missing or wrong deployment secret",
                self.id,
                command.redacted()
            );
            return Reply::Error("unauthorized".into());
        }
        match command {
            Command::Ping if self.status().ready => Reply::Ok,
            Command::Ping => Reply::Wait,
            Command::YouWin { hint, .. } => {
                let hint = hint.unwrap_or(0);
                match self.ask(|token| Event::YouWin { token, hint }, YOU_WIN_WAIT) {
                    Some(Answer::Lead(Some(epoch))) => Reply::OkEpoch(epoch),
                    _ => Reply::Wait,
                }
            }
            Command::Leader { id, epoch, .. } => {
                self.tell(Event::Announce {
                    id,
                    epoch: epoch.unwrap_or(0),
                });
                Reply::Ok
            }
        }
    }
}

/// The replica's HTTP handler.
struct Router(Arc<Shared>);

impl Handler for Router {
    fn handle(&self, req: &Request) -> Result<Response> {
        http::dispatch(ROUTES, &*self.0, &self.0.metrics, req)
    }

    /// Every route reads memory or hands an event to the core thread and waits: the pool hop
    /// would only add two thread hand-offs per request (`docs/http-server.md`).
    fn runs_inline(&self, req: &Request) -> bool {
        http::runs_inline(ROUTES, req)
    }
}

/// Every route of a replica: orders from the front-ends, reads of the log, and the
/// replication between replicas. All of them run inline (see `Router::runs_inline`).
const ROUTES: &[Route<Shared>] = &[
    ("POST", &["orders"], Inline, |s, req, _| s.place_order(req)),
    ("GET", &["orders"], Inline, |s, req, _| s.log_page(req)),
    ("GET", &["orders", "*"], Inline, |s, _, path| {
        s.get_order(path[1])
    }),
    ("GET", &["synchronize"], Inline, |s, _, _| {
        Ok(Response::ok(s.sync_state()?))
    }),
    ("POST", &["propagate"], Inline, |s, req, _| s.propagate(req)),
    ("POST", &["vote"], Inline, |s, req, _| s.vote(req)),
    ("GET", &["health"], Inline, |s, _, _| {
        Ok(Response::ok(s.health()))
    }),
    ("GET", &["metrics"], Inline, |s, _, _| Ok(s.metrics())),
];

/// The three listening sockets of a replica, bound before it starts (tests bind
/// `127.0.0.1:0`).
pub struct Listeners {
    pub http: TcpListener,
    pub broadcast: TcpListener,
    pub health: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `replica`.
    pub fn bind(replica: &ReplicaConfig) -> Result<Listeners> {
        use crate::http::server::listen;
        Ok(Listeners {
            http: listen(&replica.http_addr())?,
            broadcast: listen(&replica.broadcast_addr())?,
            health: listen(&replica.health_addr())?,
        })
    }
}

/// A running replica.
pub struct Replica {
    shared: Arc<Shared>,
    server: Server,
    threads: Vec<JoinHandle<()>>,
    line_addrs: Vec<std::net::SocketAddr>,
}

/// Starts replica `id` of `config` on the addresses the config names.
pub fn start(config: Config, id: u32) -> Result<Replica> {
    let listeners = Listeners::bind(config.replica(id)?)?;
    start_on(config, id, listeners)
}

/// Starts replica `id` on already bound listeners: loads its log and hard state, starts the
/// core, peer and catalog threads, serves HTTP and the line ports.
pub fn start_on(config: Config, id: u32, listeners: Listeners) -> Result<Replica> {
    config.replica(id)?;
    let log = Arc::new(OrderLog::open(&config.order_log_path(id))?);
    let metrics = Metrics::new()?;
    let (own, sync_metrics) = ReplicaMetrics::new(&metrics)?;
    let store =
        FileStore::new(log.clone(), config.order_state_path(id))?.with_metrics(sync_metrics);
    let peers: Vec<ReplicaConfig> = config
        .order
        .replicas
        .iter()
        .filter(|r| r.id != id)
        .cloned()
        .collect();
    let core = Core::new(
        id,
        peers.iter().map(|p| p.id).collect(),
        store,
        Instant::now(),
    )?;
    let status = core.status();
    info!(
        "replica {id} starting: {} orders, epoch {}, log epoch {}",
        core::after(status.latest),
        status.epoch,
        status.log_epoch
    );
    let mut outboxes = HashMap::new();
    let mut peer_inboxes = Vec::new();
    for peer in peers {
        let (tx, rx) = mpsc::channel();
        outboxes.insert(peer.id, tx);
        peer_inboxes.push((peer, rx));
    }
    let (catalog_tx, catalog_rx) = mpsc::channel();
    let driving = Driving {
        core,
        waiting: HashMap::new(),
        peers: outboxes,
        catalog: catalog_tx,
        next_tick: Instant::now(),
    };
    let shared = Arc::new(Shared {
        id,
        config: config.clone(),
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

    let mut threads = Vec::new();
    for (peer, rx) in peer_inboxes {
        let s = shared.clone();
        threads.push(spawn(&format!("order-{id}-peer-{}", peer.id), move || {
            peer_loop(&s, &peer, rx)
        })?);
    }
    let s = shared.clone();
    threads.push(spawn(&format!("order-{id}-catalog"), move || {
        catalog_loop(&s, catalog_rx)
    })?);
    let s = shared.clone();
    threads.push(spawn(&format!("order-{id}-core"), move || core_loop(&s))?);

    let line_addrs = vec![
        listeners.broadcast.local_addr()?,
        listeners.health.local_addr()?,
    ];
    let answer = shared.clone();
    let answer: Arc<lines::Answerer> = Arc::new(move |command| answer.line(command));
    threads.push(lines::spawn(
        id,
        answer.clone(),
        listeners.broadcast,
        lines::Port::Broadcast,
        shared_stop(&shared),
    )?);
    threads.push(lines::spawn(
        id,
        answer,
        listeners.health,
        lines::Port::Health,
        shared_stop(&shared),
    )?);
    let options = ServerOptions::new(&format!("order-{id}"), config.order.threads, &config.http);
    let handler: Arc<dyn Handler> = Arc::new(Router(shared.clone()));
    let server = match Server::start(listeners.http, options, handler) {
        Ok(server) => server,
        Err(e) => {
            shared.stopped.store(true, Ordering::SeqCst);
            lines::wake(&line_addrs);
            return Err(e);
        }
    };
    Ok(Replica {
        shared,
        server,
        threads,
        line_addrs,
    })
}

fn shared_stop(shared: &Arc<Shared>) -> Arc<dyn Fn() -> bool + Send + Sync> {
    let s = shared.clone();
    Arc::new(move || s.stopped())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    Ok(std::thread::Builder::new().name(name.into()).spawn(f)?)
}

impl Replica {
    /// Blocks until the replica stops.
    pub fn join(self) {
        self.server.join();
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.kick.notify_all();
        lines::wake(&self.line_addrs);
        self.server.shutdown();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The core and the places its effects go: owned by whichever thread drives the core.
struct Driving {
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
fn core_loop(shared: &Shared) {
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

/// Sends what the core wants sent to one peer, one message at a time, and feeds the answers
/// back as events.
fn peer_loop(shared: &Shared, peer: &ReplicaConfig, outbox: Receiver<PeerMessage>) {
    let client = Client::with_secret(&shared.config.secret);
    let addr = peer.http_addr();
    while !shared.stopped() {
        let msg = match outbox.recv_timeout(Duration::from_millis(200)) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let reply = match msg {
            PeerMessage::Propagate(p) => {
                let sent_last = core::last_carried(&p);
                let carried = !p.entries.is_empty();
                let result: Result<PropagateAck> =
                    client.post(&addr, "/propagate", &p, PEER_TIMEOUT);
                if carried && result.as_ref().is_ok_and(|a| a.accepted) {
                    failpoint::hit(failpoint::AFTER_REPLICATE_ONE);
                }
                PeerReply::Propagate {
                    epoch: p.epoch,
                    sent_last,
                    result,
                }
            }
            PeerMessage::Vote(v) => PeerReply::Vote {
                epoch: v.epoch,
                pre: v.pre,
                result: client.post::<_, VoteReply>(&addr, "/vote", &v, PEER_TIMEOUT),
            },
            PeerMessage::Probe => PeerReply::Probe {
                result: client.get::<SyncState>(&addr, "/synchronize", PEER_TIMEOUT),
            },
            PeerMessage::FetchPage { since, limit } => PeerReply::Page {
                since,
                result: client.get::<LogPage>(
                    &addr,
                    &format!("/orders?since={since}&limit={limit}"),
                    PAGE_TIMEOUT,
                ),
            },
        };
        shared.tell(Event::PeerReply {
            from: peer.id,
            reply,
        });
    }
}

/// Sends the core's messages to the catalog and feeds the answers back.
fn catalog_loop(shared: &Shared, outbox: Receiver<CatalogMessage>) {
    let client = Client::with_secret(&shared.config.secret);
    let addr = shared.config.catalog_addr();
    while !shared.stopped() {
        let msg = match outbox.recv_timeout(Duration::from_millis(200)) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (epoch, result) = match msg {
            CatalogMessage::Hello(hello) => (
                hello.epoch,
                client.post::<_, CatalogState>(&addr, "/leader", &hello, LEADER_CATALOG_TIMEOUT),
            ),
            CatalogMessage::Apply(batch) => {
                let result =
                    client.post::<_, CatalogState>(&addr, "/apply", &batch, LEADER_CATALOG_TIMEOUT);
                if result.is_ok() && !batch.entries.is_empty() {
                    failpoint::hit(failpoint::AFTER_CATALOG_TRADE);
                }
                (batch.epoch, result)
            }
        };
        if let Err(e) = &result {
            warn!("replica {}: catalog: {e}", shared.id);
        }
        shared.tell(Event::CatalogReply { epoch, result });
    }
}

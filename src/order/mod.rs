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
//! effects. This module and its children are the driver around it, and their threads only
//! move bytes:
//!
//! - the core is **driven by whichever thread brings an event** (flat combining): the
//!   thread queues its event, and if no other thread holds the core it takes every queued
//!   event, steps the core with each, flushes it (one fsync for all appends of the round:
//!   group commit) and dispatches the effects; a thread that finds the core held just waits
//!   for its answer, and the holder takes its event in its next round. So an order, a
//!   follower's propagate or a peer's answer is stepped on the thread that read it, without
//!   a hand-off to another thread and back (each hand-off is a wake-up: `docs/performance.md`;
//!   `driver`);
//! - the **core thread** only ticks (heartbeats, leases, retries every `TICK`) and takes over
//!   when a driver has done `MAX_DRIVE_ROUNDS` rounds and events are still queued;
//! - one **peer thread** per other replica sends what the core wants sent to it (propagate,
//!   vote, log page) and feeds the answer back as an event (`outbound`);
//! - the **catalog thread** does the same for `POST /leader` and `POST /apply`;
//! - HTTP handlers and line connections turn requests into events and wait for the answer
//!   with a deadline; reads (`GET /orders/..`, `/health`) never go through the core: they
//!   read the log's memory and the status the core publishes after each flush (`routes`);
//! - `metrics` copies the published status into Prometheus gauges at each scrape.
//!
//! Caveats: see `docs/replication.md` (what the protocol cannot save: a majority of disks
//! lost for good). An order still uncommitted when its caller's deadline passes is answered
//! 503 "re-send with the same request_id": it may still commit, and the retry finds it.

pub(crate) mod core;
mod driver;
mod epoch;
mod failpoint;
mod lines;
pub mod logfile;
mod metrics;
mod outbound;
mod routes;
mod store;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ::log::info;

use self::core::Core;
use self::driver::{Outboxes, Shared};
use self::logfile::OrderLog;
use self::metrics::ReplicaMetrics;
use self::routes::Router;
use self::store::FileStore;
use crate::config::{Config, ReplicaConfig};
use crate::error::Result;
use crate::http::{Handler, Server, ServerOptions};
use crate::metrics::Metrics;

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
    let (shared, outboxes) = open(&config, id)?;
    let mut threads = outbound::spawn_all(&shared, outboxes)?;
    let s = shared.clone();
    threads.push(spawn(&format!("order-{id}-core"), move || {
        driver::core_loop(&s)
    })?);

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

/// Loads replica `id`'s log and hard state into its core, and what its threads will share.
fn open(config: &Config, id: u32) -> Result<(Arc<Shared>, Outboxes)> {
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
    Ok(Shared::new(
        id,
        config.clone(),
        log,
        core,
        peers,
        (metrics, own),
    ))
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
        self.shared.stop();
        lines::wake(&self.line_addrs);
        self.server.shutdown();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

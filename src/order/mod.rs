//! The order replica: one of three copies of the order log, one of which leads.
//!
//! A replica serves (SPEC §4):
//!
//! - HTTP: `POST /orders` (leader only; else 421), `GET /orders/<n>`, `GET /orders?since=N
//!   [&limit=M]` (pages of the log for a catching-up peer), `GET /synchronize`, `POST
//!   /propagate` (leader → follower), `GET /health`.
//! - TCP lines ([`lines`], protocol in [`crate::election`]): `Ping`, `You win`, `<id> <epoch>`
//!   on the leader-broadcast port; `Ping` on the health port.
//!
//! Roles: a replica starts **recovering** (answers `WAIT` to `Ping`, so it is never chosen),
//! becomes a **follower** once it has heard from a peer and caught up ([`recovery`]), and a
//! **leader** when the front-end tells it `You win` (it catches up from its peers first and
//! takes a new epoch above every epoch it knows). A leader steps down when any replica shows it
//! a higher epoch; a replica that was frozen (`kill -STOP`) goes back to recovering.
//!
//! The leader's order path ([`replication`]): a handler thread validates the order and hands it
//! to the single `commit_loop`, which takes a whole batch, has the catalog trade it in one
//! request (`POST /trades`: applied in order, deduplicated by request id), numbers the traded
//! orders in that same order, appends them with one fsync ([`log`]), waits until every *live*
//! follower has stored them (one `replicate_loop` thread per peer pushes the log), and then
//! answers every waiter. A retried order (same request id) is answered with its first number.
//!
//! Threads, each with one job: the HTTP server's, two line listeners (plus one short-lived
//! thread per line connection), `commit_loop`, one `replicate_loop` per peer, `recover_loop`
//! and `pause_watchdog`.
//!
//! Caveats: see `docs/replication.md` for what the protocol cannot save (acknowledged orders
//! held only by a replica that never comes back, network partitions between replicas, a
//! catalog trade whose order is never retried). An order the catalog traded but the leader
//! could not log (it crashed, or stepped down) is completed by the front-end's retry with the
//! same request id; if nobody retries, the catalog holds a trade that no log records.

pub mod epoch;
pub mod failpoint;
pub mod lines;
pub mod log;
pub mod recovery;
pub mod replication;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::log::{info, warn};
use parking_lot::{Condvar, Mutex};

use crate::api::{Order, OrderAck, OrderRequest, ReplicaHealth, SyncState};
use crate::config::{Config, ReplicaConfig};
use crate::error::{Error, Result};
use crate::http::{Client, Handler, Request, Response, Server, ServerOptions};

use self::epoch::Epoch;
use self::log::OrderLog;
use self::replication::{PeerProgress, Pending};

/// How long the leader waits for the catalog to trade; an unreachable catalog must turn into a
/// clear 503, never a hang.
pub const CATALOG_TIMEOUT: Duration = Duration::from_secs(1);

/// Most entries in one `GET /orders?since=` page.
pub const MAX_PAGE: usize = 1000;

/// A replica's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not caught up yet (or woken from a freeze): answers `WAIT`, never leads.
    Recovering,
    Follower,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Recovering => "recovering",
            Role::Follower => "follower",
            Role::Leader => "leader",
        }
    }
}

/// Role and replication progress, under one lock with one condvar ([`Node::changed`]) that is
/// notified on every change: the commit path and the replicate loops wait on it.
struct State {
    role: Role,
    /// The leader as last heard (ourselves while leading).
    leader: Option<u32>,
    /// While leading: the epoch of this leadership.
    lead_epoch: u64,
    /// Per peer, in the order of [`Node::peers`]; meaningful while leading.
    peers: Vec<PeerProgress>,
    /// While leading: the highest number at least one follower stored (for the failpoint).
    replicated_once: i64,
}

/// Everything a replica's threads share.
pub struct Node {
    id: u32,
    config: Config,
    /// Every other replica.
    peers: Vec<ReplicaConfig>,
    log: OrderLog,
    epoch: Epoch,
    client: Client,
    state: Mutex<State>,
    changed: Condvar,
    /// Orders waiting for `commit_loop`.
    queue: Mutex<Vec<Pending>>,
    queued: Condvar,
    /// One catch-up-and-take-leadership at a time.
    election: Mutex<()>,
    /// A `/propagate` checks the epoch and applies under this, so that an old leader's batch
    /// cannot land after a newer leader's batch was applied.
    apply_gate: Mutex<()>,
    stopped: AtomicBool,
    /// For request ids the replica has to make up (a client that talks to it directly).
    boot_nanos: u128,
    made_up_ids: AtomicU64,
}

impl Node {
    fn new(config: Config, id: u32, log: OrderLog, epoch: Epoch) -> Node {
        let peers: Vec<ReplicaConfig> = config
            .order
            .replicas
            .iter()
            .filter(|r| r.id != id)
            .cloned()
            .collect();
        let progress = peers.iter().map(|_| PeerProgress::default()).collect();
        Node {
            id,
            peers,
            config,
            log,
            epoch,
            client: Client::new(),
            state: Mutex::new(State {
                role: Role::Recovering,
                leader: None,
                lead_epoch: 0,
                peers: progress,
                replicated_once: -1,
            }),
            changed: Condvar::new(),
            queue: Mutex::new(Vec::new()),
            queued: Condvar::new(),
            election: Mutex::new(()),
            apply_gate: Mutex::new(()),
            stopped: AtomicBool::new(false),
            boot_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            made_up_ids: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn role(&self) -> Role {
        self.state.lock().role
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The epoch of our leadership, if we lead.
    fn leading_epoch(&self) -> Option<u64> {
        let st = self.state.lock();
        (st.role == Role::Leader).then_some(st.lead_epoch)
    }

    fn not_leader(&self) -> Error {
        let st = self.state.lock();
        match st.leader {
            Some(l) if l != self.id => Error::NotLeader(format!(
                "replica {} is not the leader (replica {l} is)",
                self.id
            )),
            _ => Error::NotLeader(format!("replica {} is not the leader", self.id)),
        }
    }

    /// Starts leading in `epoch` (already persisted). Refused if a higher epoch arrived in the
    /// meantime or the replica fell back to recovering.
    fn become_leader(&self, epoch: u64) -> bool {
        let mut st = self.state.lock();
        if self.epoch.get() != epoch || st.role == Role::Recovering {
            return false;
        }
        st.role = Role::Leader;
        st.leader = Some(self.id);
        st.lead_epoch = epoch;
        // Until a follower answers, assume it is live: the first orders wait for it (at most
        // one propagate timeout) rather than being acknowledged with fewer copies.
        for p in &mut st.peers {
            *p = PeerProgress {
                live: true,
                matched: -1,
            };
        }
        st.replicated_once = self.log.latest();
        info!(
            "replica {} leads in epoch {epoch} (log latest {})",
            self.id,
            self.log.latest()
        );
        self.changed.notify_all();
        true
    }

    /// Stops leading (if leading in `epoch`, or in any epoch when `None`), to `role`.
    fn step_down(&self, epoch: Option<u64>, role: Role, why: &str) {
        let mut st = self.state.lock();
        let leading = st.role == Role::Leader && epoch.is_none_or(|e| e == st.lead_epoch);
        if leading || (role == Role::Recovering && st.role != Role::Recovering) {
            info!(
                "replica {} {} -> {}: {why}",
                self.id,
                st.role.as_str(),
                role.as_str()
            );
            st.role = role;
            if st.leader == Some(self.id) {
                st.leader = None;
            }
            self.changed.notify_all();
        }
    }

    /// Adopts `epoch` if it is higher than ours (persisting it first) and stops leading an
    /// older epoch.
    fn adopt_epoch(&self, epoch: u64) -> Result<()> {
        self.epoch.raise_to(epoch)?;
        let lead_epoch = self.leading_epoch();
        if let Some(lead) = lead_epoch.filter(|&lead| lead < epoch) {
            self.step_down(
                Some(lead),
                Role::Follower,
                &format!("epoch {epoch} is newer than ours ({lead})"),
            );
        }
        Ok(())
    }

    /// `<id> [<epoch>]` from the front-end: replica `id` leads.
    fn heard_leader(&self, id: u32, epoch: Option<u64>) -> Result<()> {
        if let Some(epoch) = epoch {
            self.adopt_epoch(epoch)?;
        }
        if id != self.id {
            let lead = self.leading_epoch();
            if lead.is_some() && epoch.is_none_or(|e| Some(e) >= lead) {
                self.step_down(
                    lead,
                    Role::Follower,
                    &format!("replica {id} was announced leader"),
                );
            }
        }
        let mut st = self.state.lock();
        if id != self.id || st.role == Role::Leader {
            st.leader = Some(id);
        }
        Ok(())
    }

    fn sync_state(&self) -> SyncState {
        self.log.sync_state(self.epoch.get())
    }

    /// `GET /health`.
    pub fn health(&self) -> ReplicaHealth {
        ReplicaHealth {
            status: "ok".into(),
            id: self.id,
            role: self.role().as_str().into(),
            epoch: self.epoch.get(),
            leader: None,
            latest: self.log.latest(),
            commit: -1,
            applied: -1,
        }
    }

    /// `POST /orders`: hand the order to `commit_loop`, which trades and logs it.
    fn place_order(&self, req: &Request) -> Result<Response> {
        let mut order = OrderRequest::parse(&req.body)?;
        let epoch = self.leading_epoch().ok_or_else(|| self.not_leader())?;
        let request_id = order
            .request_id
            .get_or_insert_with(|| {
                let n = self.made_up_ids.fetch_add(1, Ordering::Relaxed);
                format!("order-{}-{}-{n}", self.id, self.boot_nanos)
            })
            .clone();
        if let Some(number) = self.log.lookup(&request_id) {
            // A retry of a logged order: answer its number once it is as safe as a new one.
            self.wait_replicated(number, epoch, Instant::now() + replication::COMMIT_TIMEOUT)?;
            info!("request {request_id} repeated: order {number}");
            return Ok(Response::ok(OrderAck {
                transaction_number: number,
            }));
        }
        let number = self.commit(order)?;
        Ok(Response::ok(OrderAck {
            transaction_number: number,
        }))
    }

    /// `GET /orders/<n>`.
    fn get_order(&self, n: &str) -> Result<Response> {
        let number = parse_number(n, "order number")?;
        let entry = self
            .log
            .get(number)
            .ok_or_else(|| Error::NotFound(format!("no order {number}")))?;
        Ok(Response::ok(Order::from(&entry)))
    }

    /// `GET /orders?since=N[&limit=M]`.
    fn log_page(&self, req: &Request) -> Result<Response> {
        let since = match req.query_param("since") {
            Some(s) => parse_number(&s, "since")?,
            None => 0,
        };
        let limit = match req.query_param("limit") {
            Some(s) => parse_number(&s, "limit")?.clamp(1, MAX_PAGE as u64) as usize,
            None => MAX_PAGE,
        };
        Ok(Response::ok(self.log.since(since, limit)))
    }

    /// Asks every thread to stop and wakes the ones waiting.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.step_down(None, Role::Recovering, "shutting down");
        self.changed.notify_all();
        self.queued.notify_all();
    }
}

/// A non-negative integer made only of digits (`u64::from_str` would also take `+5`).
fn parse_number(s: &str, what: &str) -> Result<u64> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| {
            Error::BadRequest(format!("{what} must be a non-negative integer, not {s:?}"))
        })
}

/// The replica's one router.
pub fn route(node: &Node, req: &Request) -> Result<Response> {
    match (req.method.as_str(), req.segments().as_slice()) {
        ("POST", ["orders"]) => node.place_order(req),
        ("GET", ["orders"]) => node.log_page(req),
        ("GET", ["orders", n]) => node.get_order(n),
        ("GET", ["synchronize"]) => Ok(Response::ok(node.sync_state())),
        ("POST", ["propagate"]) => Ok(Response::ok(node.propagate(req.json()?)?)),
        ("GET", ["health"]) => Ok(Response::ok(node.health())),
        (_, ["orders"] | ["orders", _] | ["synchronize"] | ["propagate"] | ["health"]) => {
            Err(Error::MethodNotAllowed)
        }
        _ => Err(Error::NotFound(format!("no route {}", req.path))),
    }
}

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
    node: Arc<Node>,
    server: Server,
    threads: Vec<JoinHandle<()>>,
    line_addrs: Vec<std::net::SocketAddr>,
}

/// Asks a running replica to stop; `Replica::join` then returns. Cheap to clone, usable from a
/// signal-handling thread.
#[derive(Clone)]
pub struct StopHandle(Arc<Node>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// Starts replica `id` of `config` on the addresses the config names.
pub fn start(config: Config, id: u32) -> Result<Replica> {
    let listeners = Listeners::bind(config.replica(id)?)?;
    start_on(config, id, listeners)
}

/// Starts replica `id` on already bound listeners: loads its log and epoch, serves HTTP and
/// the line ports (answering `WAIT` until recovered), starts the background threads.
pub fn start_on(config: Config, id: u32, listeners: Listeners) -> Result<Replica> {
    config.replica(id)?;
    let log = OrderLog::open(&config.order_log_path(id))?;
    let epoch = Epoch::open(&config.order_state_path(id))?;
    info!(
        "replica {id} starting: {} orders, epoch {}",
        log.latest() + 1,
        epoch.get()
    );
    let options = ServerOptions::new(&format!("order-{id}"), config.order.threads, &config.http);
    let node = Arc::new(Node::new(config, id, log, epoch));

    let line_addrs = vec![
        listeners.broadcast.local_addr()?,
        listeners.health.local_addr()?,
    ];
    let mut threads = vec![
        lines::spawn(node.clone(), listeners.broadcast, lines::Port::Broadcast)?,
        lines::spawn(node.clone(), listeners.health, lines::Port::Health)?,
    ];
    let router = node.clone();
    let handler: Arc<dyn Handler> = Arc::new(move |req: &Request| route(&router, req));
    let server = match Server::start(listeners.http, options, handler) {
        Ok(server) => server,
        Err(e) => {
            node.stop();
            lines::wake(&line_addrs);
            return Err(e);
        }
    };
    threads.push(spawn(&node, "commit", replication::commit_loop)?);
    for index in 0..node.peers.len() {
        let name = format!("replicate-{}", node.peers[index].id);
        threads.push(spawn(&node, &name, move |n| {
            replication::replicate_loop(n, index)
        })?);
    }
    threads.push(spawn(&node, "recover", recovery::recover_loop)?);
    threads.push(spawn(&node, "watchdog", recovery::pause_watchdog)?);
    Ok(Replica {
        node,
        server,
        threads,
        line_addrs,
    })
}

fn spawn(
    node: &Arc<Node>,
    job: &str,
    run: impl FnOnce(Arc<Node>) + Send + 'static,
) -> Result<JoinHandle<()>> {
    let node = node.clone();
    let name = format!("order-{}-{job}", node.id);
    Ok(std::thread::Builder::new()
        .name(name)
        .spawn(move || run(node))?)
}

impl Replica {
    pub fn id(&self) -> u32 {
        self.node.id
    }

    /// The replica's state, as `GET /health` shows it.
    pub fn health(&self) -> ReplicaHealth {
        self.node.health()
    }

    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.node.clone())
    }

    /// Blocks until a [`StopHandle`] asks the replica to stop, then shuts it down.
    pub fn join(self) {
        {
            let mut st = self.node.state.lock();
            while !self.node.stopped() {
                self.node
                    .changed
                    .wait_for(&mut st, Duration::from_millis(500));
            }
        }
        self.shutdown();
    }

    /// Stops serving and waits for every thread: afterwards nothing touches the replica's files.
    pub fn shutdown(self) {
        info!("replica {} stopping", self.node.id);
        self.node.stop();
        self.server.shutdown();
        lines::wake(&self.line_addrs);
        for thread in self.threads {
            if thread.join().is_err() {
                warn!("a replica thread panicked");
            }
        }
        info!("replica {} stopped", self.node.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_number_table() {
        let cases = [
            ("0", Some(0)),
            ("42", Some(42)),
            ("+5", None),
            ("-1", None),
            ("", None),
            ("1.0", None),
            ("99999999999999999999999", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_number(s, "n").ok(), want, "{s:?}");
        }
    }
}

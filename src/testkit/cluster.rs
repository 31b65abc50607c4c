//! A whole bazaar of real processes on one machine, for the end-to-end tests and `chaos`.
//!
//! [`Cluster::configure`] picks free loopback ports ([`crate::local`]), writes a config (a
//! serialized [`crate::config::Config`]) and a data directory into a fresh temporary directory; [`Cluster::start_service`] spawns a real binary and polls its
//! `/health` until it answers; `kill`, `signal` (`STOP`/`CONT`) and restarts drive the faults;
//! [`Cluster::check_invariants`] reads the replicas' files and the catalog back and checks docs/spec.md
//! §5. The number of replicas is [`ClusterOptions::replicas`] (default 3); every check and
//! helper iterates the configured ids and takes `n / 2 + 1` as the majority. Dropping the cluster kills every process it started and removes the directory (kept,
//! with its logs, when the thread is panicking, so a failed test can be inspected).
//!
//! Caveats: free ports are found by binding a port and releasing it, so another process could
//! take one in between; on a shared machine that shows up as a start failure naming the
//! service, not as a wrong result.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::api::{
    FrontendHealth, LogEntry, LogPage, Order, OrderAck, OrderRequest, OrderType, ReplicaHealth,
    Role, StockRecord,
};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::local::{free_ports, poll};

pub(crate) use super::proxy::{LinkProxy, LinkState};
// The harness's parts, re-exported under the path the tests, benches and `chaos` have always
// used (`bazaar::testkit::cluster::...`).
use super::config::LOOPBACK;
pub use super::config::{loopback_config, port_count, ClusterOptions, INITIAL_QUANTITY, STOCKS};
pub use super::oracle::{
    parse_log, two_leaders_in_one_epoch, CatalogView, Invariant, LeaderSamples,
};
pub use super::process::{Binaries, Process};
pub use super::sampler::{Sampler, SAMPLE_INTERVAL};

/// How long a service may take to answer `/health` after it was spawned.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for the front-end to report a leader.
pub(crate) const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the replica logs may take to become identical once the load has stopped.
pub const QUIET_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times [`Cluster::start`] tries before it gives up.
pub(crate) const START_ATTEMPTS: u32 = 3;
/// Timeout of one HTTP call made by the harness.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one health or order read from a replica by the harness.
pub(crate) const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(2);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A running bazaar.
pub struct Cluster {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub options: ClusterOptions,
    pub(crate) binaries: Binaries,
    /// The default front-end's address (`frontends[0]`).
    pub frontend: String,
    /// Every front-end's address, by index.
    pub frontends: Vec<String>,
    pub catalog: String,
    /// Replica id → (HTTP, leader-broadcast, health) address.
    pub replicas: BTreeMap<u32, (String, String, String)>,
    pub client: Client,
    pub(super) children: BTreeMap<Process, Child>,
    /// (from, to) → the proxy replica `from` reaches replica `to` through (proxied links only).
    pub(super) links: BTreeMap<(u32, u32), LinkProxy>,
    /// Keep the directory even when not panicking (chaos keeps its evidence).
    pub keep_dir: bool,
}

impl Cluster {
    /// Configures a fresh cluster and starts every service, then waits for a leader. A start
    /// that fails (say, a port taken between choosing and binding it) is tried again on new
    /// ports, up to `START_ATTEMPTS` times.
    pub fn start(binaries: Binaries, options: ClusterOptions) -> Result<Cluster> {
        let mut attempt = 1;
        loop {
            match Cluster::try_start(binaries.clone(), options.clone()) {
                Ok(cluster) => return Ok(cluster),
                Err(e) if attempt < START_ATTEMPTS => {
                    log::warn!("cluster start attempt {attempt} failed, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_start(binaries: Binaries, options: ClusterOptions) -> Result<Cluster> {
        let mut cluster = Cluster::configure(binaries, options)?;
        // Keep the logs of a cluster that fails to start.
        cluster.keep_dir = true;
        cluster.start_service(Process::Catalog)?;
        for id in cluster.replica_ids() {
            cluster.start_service(Process::Order(id))?;
        }
        // Every replica ready before the front-end's first selection, so that it picks the
        // highest id.
        for id in cluster.replica_ids() {
            cluster.wait_ready(id)?;
        }
        for i in 0..cluster.frontends.len() {
            cluster.start_service(Process::Frontend(i))?;
        }
        cluster.wait_leader()?;
        cluster.keep_dir = false;
        Ok(cluster)
    }

    /// Writes the config of a fresh cluster in a new temporary directory; starts nothing.
    pub fn configure(binaries: Binaries, options: ClusterOptions) -> Result<Cluster> {
        let dir = std::env::temp_dir().join(format!(
            "bazaar-cluster-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs"))?;
        let ports = free_ports(port_count(&options))?;
        let config = loopback_config(dir.join("data"), &ports, &options);
        let other_ports = &ports[2 + 3 * options.replicas as usize..];
        let replicas: BTreeMap<u32, (String, String, String)> = config
            .order
            .replicas
            .iter()
            .map(|r| (r.id, (r.http_addr(), r.broadcast_addr(), r.health_addr())))
            .collect();
        let config_path = dir.join("bazaar.yaml");
        let yaml = serde_yaml::to_string(&config)
            .map_err(|e| Error::Internal(format!("cannot write the cluster's config: {e}")))?;
        fs::write(&config_path, yaml)?;
        let mut links = BTreeMap::new();
        if options.proxied_links {
            for &from in replicas.keys() {
                for &to in replicas.keys().filter(|&&to| to != from) {
                    let proxy = LinkProxy::start("127.0.0.1:0", &replicas[&to].0)?;
                    links.insert((from, to), proxy);
                }
            }
        }
        let frontends: Vec<String> = std::iter::once(ports[1])
            .chain(other_ports.iter().copied())
            .map(|p| format!("{LOOPBACK}:{p}"))
            .collect();
        Ok(Cluster {
            frontend: frontends[0].clone(),
            frontends,
            catalog: format!("{LOOPBACK}:{}", ports[0]),
            dir,
            config_path,
            options,
            binaries,
            replicas,
            client: Client::new(),
            children: BTreeMap::new(),
            links,
            keep_dir: false,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The configured replica ids, ascending.
    pub fn replica_ids(&self) -> Vec<u32> {
        self.replicas.keys().copied().collect()
    }

    /// How many replicas make a majority: `n / 2 + 1` of the `n` configured.
    pub fn majority(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    /// Every process of this bazaar with its default front-end: the front-end, the catalog,
    /// then each replica ([`Process::ALL`] for three replicas).
    pub fn processes(&self) -> Vec<Process> {
        [Process::FRONTEND, Process::Catalog]
            .into_iter()
            .chain(self.replica_ids().into_iter().map(Process::Order))
            .collect()
    }

    pub fn log_path(&self, id: u32) -> PathBuf {
        self.data_dir().join(format!("orders-{id}.csv"))
    }

    pub fn http_addr(&self, service: Process) -> String {
        match service {
            Process::Catalog => self.catalog.clone(),
            Process::Frontend(i) => self.frontends[i].clone(),
            Process::Order(id) => self.replicas[&id].0.clone(),
        }
    }

    pub fn frontend_health(&self) -> Result<FrontendHealth> {
        self.client.get(&self.frontend, "/health", CALL_TIMEOUT)
    }

    pub fn replica_health(&self, id: u32) -> Result<ReplicaHealth> {
        self.client
            .get(&self.replicas[&id].0, "/health", Duration::from_secs(2))
    }

    /// Waits until replica `id` answers `Ping` on its health port: it has caught up.
    pub fn wait_ready(&self, id: u32) -> Result<()> {
        let health = &self.replicas[&id].2;
        poll(&format!("order-{id} to answer Ping"), START_TIMEOUT, || {
            crate::selection::ping(health, crate::selection::PING_TIMEOUT).then_some(())
        })
    }

    /// Waits until the front-end reports a leader; returns its id.
    pub fn wait_leader(&self) -> Result<u32> {
        poll("a leader", LEADER_TIMEOUT, || {
            self.frontend_health().ok().and_then(|h| h.leader)
        })
    }

    /// The catalog's view of every stock.
    pub fn stocks(&self) -> Result<BTreeMap<String, StockRecord>> {
        let list: Vec<StockRecord> = self.client.get(&self.catalog, "/stocks", CALL_TIMEOUT)?;
        Ok(list.into_iter().map(|s| (s.name.clone(), s)).collect())
    }

    /// Waits until every replica's log is byte-identical; returns their entries.
    pub fn wait_logs_identical(&self, timeout: Duration) -> Result<Vec<LogEntry>> {
        let bytes = poll("identical replica logs", timeout, || {
            let files: Vec<Vec<u8>> = self
                .replica_ids()
                .into_iter()
                .map(|id| fs::read(self.log_path(id)).unwrap_or_default())
                .collect();
            let first = files.first()?;
            (!first.is_empty() && files.iter().all(|f| f == first)).then(|| first.clone())
        })?;
        parse_log(&bytes)
    }
}

/// One front-end order body: `request_id: None` is a bare `POST /orders` like curl's.
pub fn order_request(
    name: &str,
    quantity: u64,
    kind: OrderType,
    request_id: Option<&str>,
) -> OrderRequest {
    OrderRequest {
        name: name.into(),
        quantity,
        kind,
        request_id: request_id.map(str::to_string),
    }
}

/// Links, direct reads of replicas, orders through a chosen front-end, and the run-wide checks
/// that need samples taken during the run.
impl Cluster {
    /// The proxy of the directed link `from → to`.
    fn link(&self, from: u32, to: u32) -> Result<&LinkProxy> {
        self.links.get(&(from, to)).ok_or_else(|| {
            Error::Internal(format!(
                "no proxied link {from}→{to} (start with ClusterOptions::proxied_links)"
            ))
        })
    }

    /// Cuts the link `from → to` so that `to` looks silent to `from` (calls time out).
    pub fn cut(&self, from: u32, to: u32) -> Result<()> {
        self.cut_with(from, to, LinkState::Silent)
    }

    /// Cuts the link `from → to`: [`LinkState::Silent`] or [`LinkState::Refused`].
    pub(crate) fn cut_with(&self, from: u32, to: u32, how: LinkState) -> Result<()> {
        log::info!("cutting link order-{from} → order-{to} ({how:?})");
        self.link(from, to)?.set(how);
        Ok(())
    }

    /// Cuts replica `id` from every peer, both directions (silent); the front-end still
    /// reaches it.
    pub fn isolate(&self, id: u32) -> Result<()> {
        for peer in self.replica_ids().into_iter().filter(|&p| p != id) {
            self.cut(id, peer)?;
            self.cut(peer, id)?;
        }
        Ok(())
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for proxy in self.links.values() {
            proxy.set(LinkState::Open);
        }
    }

    /// Front-end `i`'s `/health`.
    pub fn frontend_health_of(&self, i: usize) -> Result<FrontendHealth> {
        self.client.get(&self.frontends[i], "/health", CALL_TIMEOUT)
    }

    /// Places one order through front-end `frontend` (an index into [`Cluster::frontends`]).
    pub fn place_order(&self, frontend: usize, order: &OrderRequest) -> Result<OrderAck> {
        self.client
            .post(&self.frontends[frontend], "/orders", order, CALL_TIMEOUT)
    }

    /// Order `n` as replica `id` holds it in its log, committed or not: the first entry of
    /// the log page `GET /orders?since=n&limit=1` on the replica itself. (`GET /orders/<n>`
    /// answers only what the replica knows to be committed, and only on a leader holding
    /// its lease; this asks what the replica *holds*.)
    pub(crate) fn replica_order(&self, id: u32, n: u64) -> Result<Order> {
        let page: LogPage = self.client.get(
            &self.replicas[&id].0,
            &format!("/orders?since={n}&limit=1"),
            REPLICA_READ_TIMEOUT,
        )?;
        match page.entries.first() {
            Some(entry) if entry.number == n => Ok(Order::from(entry)),
            _ => Err(Error::NotFound(format!("order-{id} holds no order {n}"))),
        }
    }

    /// The replicas that hold `order` with these contents right now.
    pub fn holders(&self, order: &Order) -> Vec<u32> {
        self.replica_ids()
            .into_iter()
            .filter(|&id| self.replica_order(id, order.number).ok().as_ref() == Some(order))
            .collect()
    }

    /// Waits until a majority ([`Cluster::majority`], 2 of 3) of the replicas hold `order`, as an acknowledged order
    /// must (docs/spec.md §4: nothing is acknowledged by one copy); `Err` names who holds it.
    pub fn wait_majority_holds(&self, order: &Order, timeout: Duration) -> Result<Vec<u32>> {
        let mut last = Vec::new();
        poll(
            &format!("a majority to hold acknowledged order {order:?}"),
            timeout,
            || {
                last = self.holders(order);
                (last.len() >= self.majority()).then(|| last.clone())
            },
        )
        .map_err(|_| {
            Error::Unavailable(format!(
                "acknowledged order {order:?} held by replicas {last:?} only after {timeout:?}"
            ))
        })
    }

    /// Every reachable replica's `/health`.
    pub(crate) fn replica_healths(&self) -> BTreeMap<u32, ReplicaHealth> {
        self.replica_ids()
            .into_iter()
            .filter_map(|id| self.replica_health(id).ok().map(|h| (id, h)))
            .collect()
    }

    /// The replica that says it leads with the highest epoch, if any.
    pub fn leading_replica(&self) -> Option<ReplicaHealth> {
        self.replica_healths()
            .into_values()
            .filter(|h| h.role == Role::Leader)
            .max_by_key(|h| h.epoch)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let services: Vec<Process> = self.children.keys().copied().collect();
        for service in services {
            // A frozen process must be woken to be reaped promptly after SIGKILL.
            let _ = self.signal(service, "CONT");
            self.kill(service);
        }
        if thread::panicking() || self.keep_dir {
            eprintln!(
                "cluster directory kept for inspection: {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

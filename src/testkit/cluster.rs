//! A whole bazaar of real processes on one machine, for the end-to-end tests and `chaos`.
//!
//! [`Cluster::configure`] picks free loopback ports ([`crate::local`]), writes a config (a
//! serialized [`Config`]) and a data directory into a fresh temporary directory; [`Cluster::start_service`] spawns a real binary and polls its
//! `/health` until it answers; `kill`, `signal` (`STOP`/`CONT`) and restarts drive the faults;
//! [`Cluster::check_invariants`] reads the replicas' files and the catalog back and checks docs/spec.md
//! §5. The number of replicas is [`ClusterOptions::replicas`] (default 3); every check and
//! helper iterates the configured ids and takes `n / 2 + 1` as the majority. Dropping the cluster kills every process it started and removes the directory (kept,
//! with its logs, when the thread is panicking, so a failed test can be inspected).
//!
//! Caveats: free ports are found by binding a port and releasing it, so another process could
//! take one in between; on a shared machine that shows up as a start failure naming the
//! service, not as a wrong result.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::api::{
    FrontendHealth, LogEntry, LogPage, Order, OrderAck, OrderRequest, OrderType, ReplicaHealth,
    StockRecord,
};
use crate::config::{
    CatalogConfig, Config, Endpoint, FrontendConfig, HttpConfig, OrderConfig, ReplicaConfig,
    StockConfig,
};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::local::{free_ports, poll};

pub(crate) use super::proxy::{LinkProxy, LinkState};

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
/// Interval between two samples of the catalog (or of the replicas' roles) during a run.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The stocks of a test bazaar (the shipped config's), each starting at quantity 100.
pub use crate::config::SHIPPED_STOCKS as STOCKS;

/// The quantity every stock starts with.
pub const INITIAL_QUANTITY: i64 = 100;

/// The price of every stock of a test bazaar.
const PRICE: f64 = 10.5;
/// Where every service of a test bazaar listens.
const LOOPBACK: &str = "127.0.0.1";
/// The deployment secret of every test bazaar.
const SECRET: &str = "cluster-test-secret";
/// Request threads of each service.
const THREADS: usize = 8;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A service of the bazaar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    Catalog,
    Order(u32),
    /// Front-end `i`: 0 is the config's default one, `i >= 1` serves `frontend.others[i-1]`
    /// (`frontend --index i`).
    Frontend(usize),
}

impl Process {
    /// The default front-end.
    pub const FRONTEND: Process = Process::Frontend(0);

    /// The five processes of a bazaar with one front-end and three replicas (see
    /// [`Cluster::processes`] for any other size).
    pub const ALL: [Process; 5] = [
        Process::FRONTEND,
        Process::Catalog,
        Process::Order(1),
        Process::Order(2),
        Process::Order(3),
    ];

    pub fn name(self) -> String {
        match self {
            Process::Catalog => "catalog".into(),
            Process::Order(id) => format!("order-{id}"),
            Process::Frontend(0) => "frontend".into(),
            Process::Frontend(i) => format!("frontend-{i}"),
        }
    }
}

/// Where the service binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub catalog: PathBuf,
    pub order: PathBuf,
    pub frontend: PathBuf,
}

impl Binaries {
    /// The binaries next to the running executable (how `chaos` finds them).
    pub fn beside_current_exe() -> Result<Binaries> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .ok_or_else(|| Error::Internal("executable has no directory".into()))?;
        Ok(Binaries {
            catalog: dir.join("catalog"),
            order: dir.join("order"),
            frontend: dir.join("frontend"),
        })
    }
}

/// Knobs of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub cache: bool,
    pub cache_size: usize,
    pub health_check_interval: f64,
    /// Extra environment for one replica, e.g. `BAZAAR_FAILPOINT`.
    pub replica_env: BTreeMap<u32, Vec<(String, String)>>,
    /// Extra environment for one front-end (by index), e.g. its own
    /// `HEALTH_CHECK_INTERVAL`.
    pub frontend_env: BTreeMap<usize, Vec<(String, String)>>,
    /// Log level of the services.
    pub log_level: String,
    /// How many front-ends run (at least 1); the extra ones are listed in the config under
    /// `frontend.others` and started as `frontend --index i`.
    pub frontends: usize,
    /// Route every directed replica→replica HTTP link through a `LinkProxy` owned by this
    /// process, so that tests can [`Cluster::cut`] and `Cluster::heal` single links.
    pub proxied_links: bool,
    /// How many order replicas run (ids 1 to `replicas`); odd, so that a majority
    /// (`replicas / 2 + 1`) survives `replicas / 2` failures. Default 3.
    pub replicas: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            cache: true,
            cache_size: 10,
            health_check_interval: 0.25,
            replica_env: BTreeMap::new(),
            frontend_env: BTreeMap::new(),
            log_level: "debug".into(),
            frontends: 1,
            proxied_links: false,
            replicas: 3,
        }
    }
}

/// One invariant of docs/spec.md §5 and whether it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invariant {
    pub name: &'static str,
    /// `None` when it held; otherwise what broke it.
    pub violation: Option<String>,
}

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
    children: BTreeMap<Process, Child>,
    /// (from, to) → the proxy replica `from` reaches replica `to` through (proxied links only).
    links: BTreeMap<(u32, u32), LinkProxy>,
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

    /// Spawns one service (it resumes from its files) and waits until it answers `/health`.
    pub fn start_service(&mut self, service: Process) -> Result<()> {
        if self.children.contains_key(&service) {
            return Err(Error::Internal(format!(
                "{} is already running",
                service.name()
            )));
        }
        let (exe, args): (&Path, Vec<String>) = match service {
            Process::Catalog => (&self.binaries.catalog, vec![]),
            Process::Order(id) => (&self.binaries.order, vec!["--id".into(), id.to_string()]),
            Process::Frontend(0) => (&self.binaries.frontend, vec![]),
            Process::Frontend(i) => (
                &self.binaries.frontend,
                vec!["--index".into(), i.to_string()],
            ),
        };
        let log = fs::OpenOptions::new().create(true).append(true).open(
            self.dir
                .join("logs")
                .join(format!("{}.log", service.name())),
        )?;
        let mut cmd = Command::new(exe);
        cmd.args(&args)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--log-level")
            .arg(&self.options.log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The config file alone describes this cluster: no override of the caller's applies.
        for (key, _) in std::env::vars() {
            if crate::config::is_env_override(&key) {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("BAZAAR_FAILPOINT");
        if let Process::Frontend(i) = service {
            for (k, v) in self
                .options
                .frontend_env
                .get(&i)
                .cloned()
                .unwrap_or_default()
            {
                cmd.env(k, v);
            }
        }
        if let Process::Order(id) = service {
            for (k, v) in self
                .options
                .replica_env
                .get(&id)
                .cloned()
                .unwrap_or_default()
            {
                cmd.env(k, v);
            }
            // This replica reaches each peer through the proxy of that directed link; its own
            // port is left alone, so it still binds the real one.
            for ((from, to), proxy) in &self.links {
                if *from == id {
                    cmd.env(format!("ORDER_PORT{to}"), proxy.port().to_string());
                }
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot spawn {}: {e}", exe.display())))?;
        self.children.insert(service, child);
        let addr = self.http_addr(service);
        let client = self.client.clone();
        let mut exited = None;
        poll(
            &format!("{} /health", service.name()),
            START_TIMEOUT,
            || {
                let child = self.children.get_mut(&service)?;
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return Some(());
                }
                let health =
                    client.get::<serde_json::Value>(&addr, "/health", Duration::from_secs(1));
                health.ok().map(|_| ())
            },
        )?;
        if let Some(status) = exited {
            self.children.remove(&service);
            let log_path = self
                .dir
                .join("logs")
                .join(format!("{}.log", service.name()));
            let log = fs::read_to_string(log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(Error::Unavailable(format!(
                "{} exited at start ({status}): {}",
                service.name(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(())
    }

    /// The process id of a running service (tests and benches read its CPU time and RSS from
    /// `/proc`).
    pub fn pid(&self, service: Process) -> Option<u32> {
        self.children.get(&service).map(Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, service: Process) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) to a running service.
    pub fn signal(&self, service: Process, signal: &str) -> Result<()> {
        let child = self
            .children
            .get(&service)
            .ok_or_else(|| Error::Internal(format!("{} is not running", service.name())))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            return Err(Error::Internal(format!(
                "kill -{signal} {} failed",
                service.name()
            )));
        }
        Ok(())
    }

    /// True if the service's process has exited by itself (e.g. at a fail point).
    pub fn has_exited(&mut self, service: Process) -> bool {
        match self.children.get_mut(&service) {
            Some(child) => child.try_wait().map(|s| s.is_some()).unwrap_or(true),
            None => true,
        }
    }

    /// Forgets a service whose process has exited by itself.
    pub fn reap(&mut self, service: Process) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.wait();
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

    /// Checks the invariants of docs/spec.md §5 that can be read off the files and the catalog once
    /// the load has stopped, given every order the clients were told about. Returns the log
    /// (empty when the files never became identical) and one verdict per invariant.
    pub fn check_invariants(&self, acknowledged: &[Order]) -> (Vec<LogEntry>, Vec<Invariant>) {
        let mut verdicts = Vec::new();
        let log = match self.wait_logs_identical(QUIET_TIMEOUT) {
            Ok(log) => {
                verdicts.push(Invariant {
                    name: "replica files byte-identical",
                    violation: None,
                });
                log
            }
            Err(e) => {
                verdicts.push(Invariant {
                    name: "replica files byte-identical",
                    violation: Some(e.to_string()),
                });
                let first = self.replica_ids().first().copied().unwrap_or(1);
                parse_log(&fs::read(self.log_path(first)).unwrap_or_default()).unwrap_or_default()
            }
        };
        verdicts.push(Invariant {
            name: "acknowledged orders stored unchanged",
            violation: acknowledged_stored(&log, acknowledged),
        });
        verdicts.push(Invariant {
            name: "numbers 0..N-1, one entry per request",
            violation: numbering(&log),
        });
        let quantities = match self.stocks() {
            Ok(stocks) => quantities(&log, &stocks),
            Err(e) => Some(format!("cannot read the catalog: {e}")),
        };
        verdicts.push(Invariant {
            name: "quantity = 100 - buys + sells for every stock",
            violation: quantities,
        });
        let whole = match self.catalog_view() {
            Ok(view) => catalog_prefix_violation(&initial_view(), &log, &[view], true),
            Err(e) => Some(format!("cannot read the catalog: {e}")),
        };
        verdicts.push(Invariant {
            name: "catalog (quantity and volume) = initial + the whole log",
            violation: whole,
        });
        let files: Vec<(u32, Vec<LogEntry>)> = self
            .replica_ids()
            .into_iter()
            .map(|id| {
                let bytes = fs::read(self.log_path(id)).unwrap_or_default();
                (id, parse_log(&bytes).unwrap_or_default())
            })
            .collect();
        verdicts.push(Invariant {
            name: "same number and epoch, same entry, in every file",
            violation: same_epoch_conflict(&files),
        });
        (log, verdicts)
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
            .filter(|h| h.role == "leader")
            .max_by_key(|h| h.epoch)
    }

    /// The catalog as a [`CatalogView`] (signed, so that a negative quantity shows).
    pub(crate) fn catalog_view(&self) -> Result<CatalogView> {
        let list: Vec<SampledStock> = self.client.get(&self.catalog, "/stocks", CALL_TIMEOUT)?;
        Ok(list
            .into_iter()
            .map(|s| (s.name, (s.quantity, s.volume)))
            .collect())
    }

    /// [`Cluster::check_invariants`], plus invariant 4 at every moment sampled: each catalog
    /// sample equals the initial stocks plus a prefix of the final log.
    pub fn check_all(
        &self,
        acknowledged: &[Order],
        catalog_samples: &[CatalogView],
    ) -> (Vec<LogEntry>, Vec<Invariant>) {
        let (log, mut verdicts) = self.check_invariants(acknowledged);
        verdicts.push(Invariant {
            name: "every catalog sample = initial + a prefix of the log",
            violation: catalog_prefix_violation(&initial_view(), &log, catalog_samples, false),
        });
        (log, verdicts)
    }
}

/// A stock in `GET /stocks`, read with signed numbers so that a negative quantity is seen.
#[derive(serde::Deserialize)]
struct SampledStock {
    name: String,
    quantity: i64,
    volume: i64,
}

/// How many ports [`loopback_config`] takes for `options`: the catalog's, the front-end's,
/// three per replica and one per further front-end.
pub fn port_count(options: &ClusterOptions) -> usize {
    2 + 3 * options.replicas as usize + options.frontends.max(1) - 1
}

/// The typed config of a bazaar on loopback: `ports` are the catalog's, the front-end's, then
/// each replica's HTTP, leader-broadcast and health ports (ids 1 to `options.replicas`), then
/// any further front-ends' ([`port_count`] in all; ports beyond the replicas' are taken as
/// further front-ends). The one place test bazaars are described; written out with serde.
pub fn loopback_config(data_dir: PathBuf, ports: &[u16], options: &ClusterOptions) -> Config {
    let replica_ports = 3 * options.replicas as usize;
    let other_ports = ports.get(2 + replica_ports..).unwrap_or_default();
    let mut replica_configs = Vec::new();
    for id in 1..=options.replicas {
        let base = 2 + 3 * (id as usize - 1);
        let (http, bcast, health) = (ports[base], ports[base + 1], ports[base + 2]);
        replica_configs.push(ReplicaConfig {
            id,
            host: LOOPBACK.into(),
            port: http.into(),
            leader_broadcast_port: bcast.into(),
            health_check_port: health.into(),
        });
    }
    Config {
        output_dir: data_dir,
        health_check_interval: options.health_check_interval,
        secret: SECRET.into(),
        secret_file: None,
        http: HttpConfig::default(),
        catalog: CatalogConfig {
            host: LOOPBACK.into(),
            port: ports[0].into(),
            threads: THREADS,
            stocks: STOCKS
                .iter()
                .map(|name| StockConfig {
                    name: name.to_string(),
                    price: PRICE,
                    quantity: INITIAL_QUANTITY as u64,
                })
                .collect(),
        },
        frontend: FrontendConfig {
            host: LOOPBACK.into(),
            port: ports[1].into(),
            threads: THREADS,
            cache: options.cache,
            cache_size: options.cache_size,
            dump: false,
            cache_log_path: None,
            others: other_ports
                .iter()
                .map(|&port| Endpoint {
                    host: LOOPBACK.into(),
                    port: port.into(),
                })
                .collect(),
        },
        order: OrderConfig {
            threads: THREADS,
            replicas: replica_configs,
        },
    }
}

/// The catalog as the checks see it: stock → (quantity, volume).
pub type CatalogView = BTreeMap<String, (i64, i64)>;

/// The initial catalog of a test bazaar: every stock at quantity 100, volume 0.
pub(crate) fn initial_view() -> CatalogView {
    STOCKS
        .iter()
        .map(|s| (s.to_string(), (INITIAL_QUANTITY, 0)))
        .collect()
}

/// docs/spec.md §5.4 at every sampled moment: each sample must equal `initial` plus some prefix of
/// `log` (quantity − buys + sells, volume + traded quantities), never negative; with
/// `whole_at_end`, the last sample must be the whole log. Returns the first violation.
pub(crate) fn catalog_prefix_violation(
    initial: &CatalogView,
    log: &[LogEntry],
    samples: &[CatalogView],
    whole_at_end: bool,
) -> Option<String> {
    let names: Vec<&String> = initial.keys().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut state: Vec<(i64, i64)> = initial.values().copied().collect();
    let mut prefixes: HashMap<Vec<(i64, i64)>, usize> = HashMap::new();
    prefixes.entry(state.clone()).or_insert(0);
    for (k, entry) in log.iter().enumerate() {
        let Some(&i) = index.get(entry.name.as_str()) else {
            return Some(format!(
                "log entry {} trades unknown stock {}",
                k, entry.name
            ));
        };
        let q = entry.quantity as i64;
        state[i].0 += match entry.kind {
            OrderType::Buy => -q,
            OrderType::Sell => q,
        };
        state[i].1 += q;
        prefixes.entry(state.clone()).or_insert(k + 1);
    }
    let whole = state;
    let describe = |sample: &CatalogView| -> String {
        names
            .iter()
            .zip(&whole)
            .filter_map(|(name, want)| {
                let got = sample.get(*name).copied();
                (got != Some(*want)).then(|| {
                    format!("{name} (quantity, volume) {got:?} where the whole log gives {want:?}")
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (i, sample) in samples.iter().enumerate() {
        if sample.keys().ne(initial.keys()) {
            return Some(format!(
                "catalog sample {i} lists stocks {:?}",
                sample.keys().collect::<Vec<_>>()
            ));
        }
        if let Some((name, (q, _))) = sample.iter().find(|(_, (q, _))| *q < 0) {
            return Some(format!("catalog sample {i}: {name} has quantity {q} < 0"));
        }
        let values: Vec<(i64, i64)> = sample.values().copied().collect();
        if !prefixes.contains_key(&values) {
            return Some(format!(
                "catalog sample {i} of {} is initial + no prefix of the {}-entry log; {}",
                samples.len(),
                log.len(),
                closest_prefix(initial, log, &values)
            ));
        }
    }
    if whole_at_end {
        if let Some(last) = samples.last() {
            if last.values().copied().ne(whole.iter().copied()) {
                return Some(format!(
                    "the final catalog is not initial + the whole log: {}",
                    describe(last)
                ));
            }
        }
    }
    None
}

/// Which prefix of `log` comes closest to `sample` (fewest shares apart), and how the two
/// differ: the diagnosis of a sample that matches none.
fn closest_prefix(initial: &CatalogView, log: &[LogEntry], sample: &[(i64, i64)]) -> String {
    let names: Vec<&String> = initial.keys().collect();
    let mut state: Vec<(i64, i64)> = initial.values().copied().collect();
    let distance = |state: &[(i64, i64)]| -> i64 {
        state
            .iter()
            .zip(sample)
            .map(|(a, b)| (a.0 - b.0).abs() + (a.1 - b.1).abs())
            .sum()
    };
    let mut best = (distance(&state), 0, state.clone());
    for (k, entry) in log.iter().enumerate() {
        if let Some(i) = names.iter().position(|n| **n == entry.name) {
            let q = entry.quantity as i64;
            state[i].0 += match entry.kind {
                OrderType::Buy => -q,
                OrderType::Sell => q,
            };
            state[i].1 += q;
        }
        let d = distance(&state);
        if d < best.0 {
            best = (d, k + 1, state.clone());
        }
    }
    let diff: Vec<String> = names
        .iter()
        .zip(best.2.iter().zip(sample))
        .filter(|(_, (want, got))| want != got)
        .map(|(name, (want, got))| format!("{name} (quantity, volume) {got:?}, the log {want:?}"))
        .collect();
    format!(
        "closest: the first {} entries, {} shares apart: {}",
        best.1,
        best.0,
        diff.join("; ")
    )
}

/// docs/spec.md §5.8 read off the files: two replica files that hold the same number in the same
/// epoch hold the same entry there (two leaders of one epoch would number differently).
pub(crate) fn same_epoch_conflict(files: &[(u32, Vec<LogEntry>)]) -> Option<String> {
    for (a, (ida, la)) in files.iter().enumerate() {
        for (idb, lb) in &files[a + 1..] {
            for (x, y) in la.iter().zip(lb) {
                if x.epoch == y.epoch && x != y {
                    return Some(format!(
                        "order {} in epoch {}: replica {ida} holds {x:?}, replica {idb} holds {y:?}",
                        x.number, x.epoch
                    ));
                }
            }
        }
    }
    None
}

/// Replicas that said they lead, as sampled: id → the epochs they led in.
pub type LeaderSamples = BTreeMap<u32, HashSet<u64>>;

/// docs/spec.md §5.8 on samples of `/health`: no epoch led by two replicas.
pub fn two_leaders_in_one_epoch(samples: &LeaderSamples) -> Option<String> {
    let mut by_epoch: BTreeMap<u64, u32> = BTreeMap::new();
    for (&id, epochs) in samples {
        for &epoch in epochs {
            if let Some(other) = by_epoch.insert(epoch, id) {
                if other != id {
                    return Some(format!("replicas {other} and {id} both led epoch {epoch}"));
                }
            }
        }
    }
    None
}

/// Samples, on a thread of its own until [`Sampler::finish`], the catalog's `/stocks` and the
/// replicas' `/health` (who says it leads in which epoch). Samples that fail (a service down or
/// frozen) are skipped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(Vec<CatalogView>, LeaderSamples)>>,
}

impl Sampler {
    pub fn start(cluster: &Cluster) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (catalog, replicas, client) = (
            cluster.catalog.clone(),
            cluster.replicas.clone(),
            cluster.client.clone(),
        );
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut views = Vec::new();
                let mut leaders = LeaderSamples::new();
                while !flag.load(Ordering::SeqCst) {
                    let list: Result<Vec<SampledStock>> =
                        client.get(&catalog, "/stocks", REPLICA_READ_TIMEOUT);
                    if let Ok(list) = list {
                        views.push(
                            list.into_iter()
                                .map(|s| (s.name, (s.quantity, s.volume)))
                                .collect(),
                        );
                    }
                    for (id, (http, _, _)) in &replicas {
                        let health: Result<ReplicaHealth> =
                            client.get(http, "/health", SAMPLE_INTERVAL);
                        if let Ok(h) = health {
                            if h.role == "leader" {
                                leaders.entry(*id).or_default().insert(h.epoch);
                            }
                        }
                    }
                    thread::sleep(SAMPLE_INTERVAL);
                }
                (views, leaders)
            })
            .ok();
        Sampler { stop, handle }
    }

    /// Stops sampling; returns the catalog samples and who led which epoch.
    pub fn finish(mut self) -> (Vec<CatalogView>, LeaderSamples) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn acknowledged_stored(log: &[LogEntry], acknowledged: &[Order]) -> Option<String> {
    acknowledged
        .iter()
        .find_map(|order| match log.get(order.number as usize) {
            None => Some(format!("acknowledged order {} is missing", order.number)),
            Some(entry) if &Order::from(entry) != order => Some(format!(
                "order {} was acknowledged as {order:?} but stored as {entry:?}",
                order.number
            )),
            Some(_) => None,
        })
}

fn numbering(log: &[LogEntry]) -> Option<String> {
    let mut ids = HashSet::new();
    for (i, entry) in log.iter().enumerate() {
        if entry.number != i as u64 {
            return Some(format!("line {i} holds number {}", entry.number));
        }
        if !ids.insert(&entry.request_id) {
            return Some(format!("request id {} logged twice", entry.request_id));
        }
    }
    None
}

/// docs/spec.md §5.4 on the files: each stock's quantity in the catalog is 100 − buys + sells of the
/// log. (Not checked: that every prefix of the log stays non-negative. The leader logs each
/// batch in the order the catalog traded it, but an order retried after a fail-over is logged
/// where the new leader takes it, which may be after trades the catalog applied later. The
/// catalog's own quantity never goes negative; its type cannot.)
fn quantities(log: &[LogEntry], stocks: &BTreeMap<String, StockRecord>) -> Option<String> {
    for (name, stock) in stocks {
        let expected =
            log.iter()
                .filter(|e| &e.name == name)
                .fold(INITIAL_QUANTITY, |q, e| match e.kind {
                    OrderType::Buy => q - e.quantity as i64,
                    OrderType::Sell => q + e.quantity as i64,
                });
        if stock.quantity as i64 != expected {
            return Some(format!(
                "{name}: catalog has {}, the log says {expected}",
                stock.quantity
            ));
        }
    }
    None
}

/// Parses the bytes of an order log file strictly, with the replica's own parser
/// (`crate::order::logfile::entries`).
pub fn parse_log(bytes: &[u8]) -> Result<Vec<LogEntry>> {
    crate::order::logfile::entries(bytes, Path::new("order log"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderType::{Buy, Sell};

    fn entry(number: u64, name: &str, kind: OrderType, quantity: u64, rid: &str) -> LogEntry {
        LogEntry {
            number,
            name: name.into(),
            kind,
            quantity,
            epoch: 1,
            request_id: rid.into(),
        }
    }

    fn view(pairs: &[(&str, i64, i64)]) -> CatalogView {
        pairs
            .iter()
            .map(|(n, q, v)| (n.to_string(), (*q, *v)))
            .collect()
    }

    #[test]
    fn every_catalog_sample_must_be_a_prefix_of_the_log() {
        let initial = view(&[("A", 100, 0), ("B", 100, 0)]);
        let log = vec![
            entry(0, "A", Buy, 5, "r0"),
            entry(1, "B", Sell, 2, "r1"),
            entry(2, "A", Sell, 1, "r2"),
        ];
        let prefix0 = initial.clone();
        let prefix2 = view(&[("A", 95, 5), ("B", 102, 2)]);
        let whole = view(&[("A", 96, 6), ("B", 102, 2)]);
        let good = [prefix0.clone(), prefix2.clone(), whole.clone()];
        assert_eq!(catalog_prefix_violation(&initial, &log, &good, true), None);
        // Order 1 applied without order 0: a state no prefix of the log reaches.
        let skipped = view(&[("A", 100, 0), ("B", 102, 2)]);
        let bad = [prefix0.clone(), skipped, whole.clone()];
        let v = catalog_prefix_violation(&initial, &log, &bad, true).unwrap();
        assert!(v.contains("sample 1 of 3"), "{v}");
        // A trade the log lacks (the catalog-stall case): quantity right, volume off.
        let extra = view(&[("A", 96, 8), ("B", 102, 2)]);
        assert!(catalog_prefix_violation(&initial, &log, &[extra], false).is_some());
        // A valid prefix, but not the whole log once quiet.
        let v = catalog_prefix_violation(&initial, &log, &[prefix0, prefix2], true).unwrap();
        assert!(v.contains("whole log"), "{v}");
        let negative = view(&[("A", -1, 101), ("B", 100, 0)]);
        let v = catalog_prefix_violation(&initial, &log, &[negative], false).unwrap();
        assert!(v.contains("< 0"), "{v}");
    }

    #[test]
    fn two_leaders_of_one_epoch_are_caught_in_files_and_samples() {
        let mut other = entry(1, "B", Buy, 1, "x");
        other.epoch = 1;
        let a = vec![entry(0, "A", Buy, 5, "r0"), entry(1, "A", Sell, 2, "r1")];
        let b = vec![entry(0, "A", Buy, 5, "r0"), other];
        assert_eq!(same_epoch_conflict(&[(1, a.clone()), (2, a.clone())]), None);
        let v = same_epoch_conflict(&[(1, a), (3, b)]).unwrap();
        assert!(v.contains("order 1 in epoch 1"), "{v}");

        let mut leaders = LeaderSamples::new();
        leaders.entry(3).or_default().extend([1, 2]);
        leaders.entry(2).or_default().insert(3);
        assert_eq!(two_leaders_in_one_epoch(&leaders), None);
        leaders.entry(1).or_default().insert(2);
        assert!(two_leaders_in_one_epoch(&leaders)
            .unwrap()
            .contains("epoch 2"));
    }

    #[test]
    fn invariant_checks_catch_each_violation() {
        let log = vec![entry(0, "A", Buy, 5, "r0"), entry(1, "A", Sell, 2, "r1")];
        assert_eq!(numbering(&log), None);
        let gap = vec![entry(0, "A", Buy, 5, "r0"), entry(2, "A", Sell, 2, "r1")];
        assert!(numbering(&gap).unwrap().contains("line 1"));
        let twice = vec![entry(0, "A", Buy, 5, "r0"), entry(1, "A", Buy, 5, "r0")];
        assert!(numbering(&twice).unwrap().contains("twice"));

        let acked = vec![Order {
            number: 1,
            name: "A".into(),
            kind: Sell,
            quantity: 2,
        }];
        assert_eq!(acknowledged_stored(&log, &acked), None);
        let changed = vec![Order {
            number: 1,
            name: "A".into(),
            kind: Buy,
            quantity: 2,
        }];
        assert!(acknowledged_stored(&log, &changed).is_some());
        let lost = vec![Order {
            number: 7,
            name: "A".into(),
            kind: Buy,
            quantity: 2,
        }];
        assert!(acknowledged_stored(&log, &lost)
            .unwrap()
            .contains("missing"));

        let stock = |q| StockRecord {
            name: "A".into(),
            price: 1.0,
            quantity: q,
            volume: 7,
        };
        let stocks = |q| BTreeMap::from([("A".to_string(), stock(q))]);
        assert_eq!(quantities(&log, &stocks(97)), None);
        assert!(quantities(&log, &stocks(95))
            .unwrap()
            .contains("catalog has 95"));
        let oversold = vec![entry(0, "A", Buy, 101, "r0")];
        assert!(quantities(&oversold, &stocks(0))
            .unwrap()
            .contains("the log says -1"));
    }
}

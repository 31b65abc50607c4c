//! A whole bazaar of real processes on one machine, for the end-to-end tests and `chaos`.
//!
//! [`Cluster::configure`] picks free loopback ports, writes a config and a data directory into a
//! fresh temporary directory; [`Cluster::start_service`] spawns a real binary and polls its
//! `/health` until it answers; `kill`, `signal` (`STOP`/`CONT`) and restarts drive the faults;
//! [`Cluster::check_invariants`] reads the replicas' files and the catalog back and checks SPEC
//! §5. Dropping the cluster kills every process it started and removes the directory (kept,
//! with its logs, when the thread is panicking, so a failed test can be inspected).
//!
//! Caveats: free ports are found by binding port 0 and releasing it, so another process could
//! take one in between; on a shared machine that shows up as a start failure naming the
//! service, not as a wrong result.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::api::{FrontendHealth, LogEntry, Order, OrderType, ReplicaHealth, StockRecord};
use crate::error::{Error, Result};
use crate::http::Client;

/// How long a service may take to answer `/health` after it was spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for the front-end to report a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the replica logs may take to become identical once the load has stopped.
pub const QUIET_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times [`Cluster::start`] tries before it gives up.
pub const START_ATTEMPTS: u32 = 3;
/// Poll interval of every wait.
pub const POLL: Duration = Duration::from_millis(50);
/// Timeout of one HTTP call made by the harness.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The stocks of a test bazaar (the shipped config's), each starting at quantity 100.
pub use crate::client::DEFAULT_STOCKS as STOCKS;

/// The quantity every stock starts with.
pub const INITIAL_QUANTITY: i64 = 100;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// Polls `f` until it returns `Some`, or fails naming `what` after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        thread::sleep(POLL);
    }
}

/// A service of the bazaar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Catalog,
    Order(u32),
    Frontend,
}

impl Service {
    pub fn name(self) -> String {
        match self {
            Service::Catalog => "catalog".into(),
            Service::Order(id) => format!("order-{id}"),
            Service::Frontend => "frontend".into(),
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
    /// Log level of the services.
    pub log_level: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            cache: true,
            cache_size: 10,
            health_check_interval: 0.25,
            replica_env: BTreeMap::new(),
            log_level: "debug".into(),
        }
    }
}

/// One invariant of SPEC §5 and whether it held.
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
    pub binaries: Binaries,
    pub frontend: String,
    pub catalog: String,
    /// Replica id → (HTTP, leader-broadcast, health) address.
    pub replicas: BTreeMap<u32, (String, String, String)>,
    pub client: Client,
    children: BTreeMap<Service, Child>,
    /// Keep the directory even when not panicking (chaos keeps its evidence).
    pub keep_dir: bool,
}

impl Cluster {
    /// Configures a fresh cluster and starts every service, then waits for a leader. A start
    /// that fails (say, a port taken between choosing and binding it) is tried again on new
    /// ports, up to [`START_ATTEMPTS`] times.
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
        cluster.start_service(Service::Catalog)?;
        for id in 1..=3 {
            cluster.start_service(Service::Order(id))?;
        }
        // Every replica ready before the front-end's first selection, so that it picks 3.
        for id in 1..=3 {
            cluster.wait_ready(id)?;
        }
        cluster.start_service(Service::Frontend)?;
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
        let ports = free_ports(11)?;
        let stocks: String = STOCKS
            .iter()
            .map(|s| format!("    - {{name: {s}, price: 10.5}}\n"))
            .collect();
        let mut replicas = BTreeMap::new();
        let mut replica_yaml = String::new();
        for id in 1..=3u32 {
            let base = 2 + 3 * (id as usize - 1);
            let (http, bcast, health) = (ports[base], ports[base + 1], ports[base + 2]);
            replica_yaml.push_str(&format!(
                "    - {{id: {id}, host: 127.0.0.1, port: {http}, leader_broadcast_port: {bcast}, health_check_port: {health}}}\n"
            ));
            let addr = |p: u16| format!("127.0.0.1:{p}");
            replicas.insert(id, (addr(http), addr(bcast), addr(health)));
        }
        let config = format!(
            "output_dir: {data}\nhealth_check_interval: {hci}\n\
             catalog:\n  host: 127.0.0.1\n  port: {cat}\n  threads: 8\n  stocks:\n{stocks}\
             frontend:\n  host: 127.0.0.1\n  port: {fe}\n  threads: 8\n  cache: {cache}\n  cache_size: {size}\n  dump: false\n\
             order:\n  threads: 8\n  replicas:\n{replica_yaml}",
            data = dir.join("data").display(),
            hci = options.health_check_interval,
            cat = ports[0],
            fe = ports[1],
            cache = options.cache,
            size = options.cache_size,
        );
        let config_path = dir.join("bazaar.yaml");
        fs::write(&config_path, config)?;
        Ok(Cluster {
            frontend: format!("127.0.0.1:{}", ports[1]),
            catalog: format!("127.0.0.1:{}", ports[0]),
            dir,
            config_path,
            options,
            binaries,
            replicas,
            client: Client::new(),
            children: BTreeMap::new(),
            keep_dir: false,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self, id: u32) -> PathBuf {
        self.data_dir().join(format!("orders-{id}.csv"))
    }

    pub fn http_addr(&self, service: Service) -> String {
        match service {
            Service::Catalog => self.catalog.clone(),
            Service::Frontend => self.frontend.clone(),
            Service::Order(id) => self.replicas[&id].0.clone(),
        }
    }

    /// True while the cluster has a live process for this service.
    pub fn is_running(&self, service: Service) -> bool {
        self.children.contains_key(&service)
    }

    /// Spawns one service (it resumes from its files) and waits until it answers `/health`.
    pub fn start_service(&mut self, service: Service) -> Result<()> {
        if self.children.contains_key(&service) {
            return Err(Error::Internal(format!(
                "{} is already running",
                service.name()
            )));
        }
        let (exe, args): (&Path, Vec<String>) = match service {
            Service::Catalog => (&self.binaries.catalog, vec![]),
            Service::Order(id) => (&self.binaries.order, vec!["--id".into(), id.to_string()]),
            Service::Frontend => (&self.binaries.frontend, vec![]),
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
        for key in crate::config::ENV_KEYS {
            cmd.env_remove(key);
        }
        cmd.env_remove("BAZAAR_FAILPOINT");
        if let Service::Order(id) = service {
            for (k, v) in self
                .options
                .replica_env
                .get(&id)
                .cloned()
                .unwrap_or_default()
            {
                cmd.env(k, v);
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

    /// SIGKILL, and reap.
    pub fn kill(&mut self, service: Service) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) to a running service.
    pub fn signal(&self, service: Service, signal: &str) -> Result<()> {
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
    pub fn has_exited(&mut self, service: Service) -> bool {
        match self.children.get_mut(&service) {
            Some(child) => child.try_wait().map(|s| s.is_some()).unwrap_or(true),
            None => true,
        }
    }

    /// Forgets a service whose process has exited by itself.
    pub fn reap(&mut self, service: Service) {
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
            crate::election::ping(health, crate::election::PING_TIMEOUT).then_some(())
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

    /// Waits until the three replica logs are byte-identical; returns their entries.
    pub fn wait_logs_identical(&self, timeout: Duration) -> Result<Vec<LogEntry>> {
        let bytes = poll("identical replica logs", timeout, || {
            let files: Vec<Vec<u8>> = (1..=3)
                .map(|id| fs::read(self.log_path(id)).unwrap_or_default())
                .collect();
            (!files[0].is_empty() && files[0] == files[1] && files[1] == files[2])
                .then(|| files[0].clone())
        })?;
        parse_log(&bytes)
    }

    /// Checks the invariants of SPEC §5 that can be read off the files and the catalog once
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
                parse_log(&fs::read(self.log_path(1)).unwrap_or_default()).unwrap_or_default()
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
        (log, verdicts)
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

/// SPEC §5.4 on the files: each stock's quantity in the catalog is 100 − buys + sells of the
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

/// Parses an order log file (header and lines).
pub fn parse_log(bytes: &[u8]) -> Result<Vec<LogEntry>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers()?.clone();
    if !headers
        .iter()
        .take(4)
        .eq(["number", "name", "type", "quantity"])
    {
        return Err(Error::Internal(format!("log header is {headers:?}")));
    }
    reader
        .deserialize()
        .map(|r| r.map_err(Error::from))
        .collect()
}

/// Ports are picked below Linux's ephemeral range (32768 and up by default), so that the
/// outgoing connections of a running test can never take a port a service is about to bind.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// `n` ports that are free right now, at random places in [`PORT_RANGE`] so that tests running
/// at once rarely try the same ones.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut rng = fastrand::Rng::new();
    let mut ports = Vec::with_capacity(n);
    for _ in 0..PORT_RANGE.len() {
        if ports.len() == n {
            return Ok(ports);
        }
        let port = rng.u16(PORT_RANGE);
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Err(Error::Unavailable(format!(
        "no {n} free ports in {PORT_RANGE:?}"
    )))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let services: Vec<Service> = self.children.keys().copied().collect();
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

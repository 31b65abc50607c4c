//! The driver: a front-end to send load to ([`Target`]: the client binary, `/health`,
//! `/cluster`, `/stocks`), and a private bazaar started, faulted and stopped through `run.sh`
//! ([`Bazaar`]), the way a student would, never by looking inside a service.
//!
//! A private bazaar gets its own ports, chosen at run time, and its own data and run
//! directories under the run's temporary directory, all passed as the environment overrides of
//! docs/spec.md §1; `BAZAAR_BIN_DIR` makes run.sh use the binaries built with this one and
//! never build inside a measurement.
//!
//! Caveats:
//!
//! - A port chosen at run time may be taken before the bazaar binds it: a start is tried
//!   [`UP_ATTEMPTS`] times, each on new ports.
//! - A bazaar that did not start, or a run that panicked, keeps its directory (run.sh's log in
//!   `run.log`, the services' logs under `run/`) and names it on stderr.
//! - Always three replicas, ids 1 to 3, on loopback.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bazaar::api::{CacheStats, FrontendHealth, ReplicaHealth, Role, StockRecord};
use bazaar::error::{Error, Result};
use bazaar::http::Client;
use bazaar::local::{free_ports, poll, wait_child};
use serde::Deserialize;

use crate::options::{fmt_prob, EvalOptions};
use crate::stats::ClientJson;

/// How long `./run.sh up` may take (it waits for a leader itself, 30 s at most).
const UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restarted replica may take to catch up and answer `/health` as leader or
/// follower.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the replica files may take to become identical once the load stopped.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one REST call of this process (health, probes' reads).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of `GET /cluster`: the front-end asks every replica and the catalog first.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one client run may take before it is killed.
const CLIENT_RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The front-end's leader check interval in every eval bazaar (the shipped config's).
pub(crate) const HEALTH_CHECK_INTERVAL: &str = "1.0";
/// Attempts at starting a bazaar (a port chosen at run time may be taken before it is bound).
const UP_ATTEMPTS: u32 = 2;
/// Cache entries of the latency and fail-over bazaars (the shipped config's).
pub(crate) const CACHE_SIZE: usize = 10;

/// Just the cache of the front-end's `GET /cluster`.
#[derive(Deserialize)]
struct ClusterCache {
    cache: CacheStats,
}

/// A front-end to send load to.
pub(crate) struct Target {
    host: String,
    port: String,
    pub(crate) client: Client,
}

impl Target {
    pub(crate) fn new(addr: &str) -> Target {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "8080"));
        Target {
            host: host.to_string(),
            port: port.to_string(),
            client: Client::new(),
        }
    }

    pub(crate) fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn health(&self) -> Result<FrontendHealth> {
        self.client.get(&self.addr(), "/health", CALL_TIMEOUT)
    }

    pub(crate) fn leader(&self) -> Option<u32> {
        self.health().ok().and_then(|h| h.leader)
    }

    pub(crate) fn cache_stats(&self) -> Result<CacheStats> {
        let cluster: ClusterCache = self.client.get(&self.addr(), "/cluster", CLUSTER_TIMEOUT)?;
        Ok(cluster.cache)
    }

    pub(crate) fn stock_count(&self) -> Result<usize> {
        let stocks: Vec<StockRecord> = self.client.get(&self.addr(), "/stocks", CALL_TIMEOUT)?;
        Ok(stocks.len())
    }

    /// Runs the client binary once and parses its `--json` summary.
    pub(crate) fn client_run(
        &self,
        client: &Path,
        clients: usize,
        prob: f64,
        seed: u64,
        n: usize,
    ) -> Result<ClientJson> {
        let mut child = Command::new(client)
            .args(["--host", &self.host, "--port", &self.port, "--json"])
            .args(["--clients", &clients.to_string(), "--prob", &fmt_prob(prob)])
            .args(["--seed", &seed.to_string(), "--n-request", &n.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot run {}: {e}", client.display())))?;
        // The JSON is one short line: reading it to the end is bounded by the client's own
        // retry deadlines; the timeout below only guards against a wedged client.
        let stdout = child.stdout.take();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut out) = stdout {
                let _ = std::io::Read::read_to_string(&mut out, &mut text);
            }
            text
        });
        wait_child(&mut child, CLIENT_RUN_TIMEOUT)?;
        let text = reader
            .join()
            .map_err(|_| Error::Internal("client output reader panicked".into()))?;
        serde_json::from_str(text.trim())
            .map_err(|e| Error::Internal(format!("client printed no JSON summary ({e}): {text:?}")))
    }
}

/// A bazaar started with `./run.sh up` on its own ports and directories; `./run.sh down` when
/// dropped.
pub(crate) struct Bazaar {
    run_sh: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    pub(crate) target: Target,
    pub(crate) replicas: BTreeMap<u32, String>,
    keep: bool,
}

/// The knobs of one bazaar.
pub(crate) struct BazaarSpec<'a> {
    pub(crate) tag: &'a str,
    pub(crate) cache: bool,
    pub(crate) cache_size: usize,
    pub(crate) dump: bool,
}

impl Bazaar {
    pub(crate) fn up(options: &EvalOptions, work: &Path, spec: &BazaarSpec) -> Result<Bazaar> {
        let mut attempt = 1;
        loop {
            match Bazaar::try_up(options, work, spec, attempt) {
                Ok(bazaar) => return Ok(bazaar),
                Err(e) if attempt < UP_ATTEMPTS => {
                    eprintln!(
                        "eval: bazaar {} did not start ({e}); trying again",
                        spec.tag
                    );
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_up(
        options: &EvalOptions,
        work: &Path,
        spec: &BazaarSpec,
        attempt: u32,
    ) -> Result<Bazaar> {
        let dir = work.join(format!("{}-{attempt}", spec.tag));
        fs::create_dir_all(&dir)?;
        let ports = free_ports(11)?;
        let mut env: Vec<(String, String)> = vec![
            (
                "BAZAAR_RUN_DIR".into(),
                dir.join("run").display().to_string(),
            ),
            ("OUTPUT_DIR".into(), dir.join("data").display().to_string()),
            (
                "CACHE_LOG_PATH".into(),
                dir.join("data/frontend-cache.jsonl").display().to_string(),
            ),
            ("CATALOG_HOST".into(), "127.0.0.1".into()),
            ("CATALOG_PORT".into(), ports[0].to_string()),
            ("FRONTEND_HOST".into(), "127.0.0.1".into()),
            ("FRONTEND_PORT".into(), ports[1].to_string()),
            ("CACHE".into(), if spec.cache { "1" } else { "0" }.into()),
            ("CACHE_SIZE".into(), spec.cache_size.to_string()),
            ("DUMP".into(), if spec.dump { "1" } else { "0" }.into()),
            ("HEALTH_CHECK_INTERVAL".into(), HEALTH_CHECK_INTERVAL.into()),
            ("RUST_LOG".into(), "info".into()),
            // The services this eval was built with, and no cargo run inside the measurement.
            (
                "BAZAAR_BIN_DIR".into(),
                options.bin_dir.display().to_string(),
            ),
        ];
        let mut replicas = BTreeMap::new();
        for id in 1..=3u32 {
            let base = 2 + 3 * (id as usize - 1);
            env.push((format!("ORDER_HOST{id}"), "127.0.0.1".into()));
            env.push((format!("ORDER_PORT{id}"), ports[base].to_string()));
            env.push((
                format!("ORDER_LEADER_BROADCAST_PORT{id}"),
                ports[base + 1].to_string(),
            ));
            env.push((
                format!("ORDER_HEALTH_CHECK_PORT{id}"),
                ports[base + 2].to_string(),
            ));
            replicas.insert(id, format!("127.0.0.1:{}", ports[base]));
        }
        let mut bazaar = Bazaar {
            run_sh: options.run_sh.clone(),
            env,
            dir,
            target: Target::new(&format!("127.0.0.1:{}", ports[1])),
            replicas,
            keep: true,
        };
        bazaar.run_sh(&["up"], UP_TIMEOUT)?;
        bazaar.keep = false;
        Ok(bazaar)
    }

    /// Runs `./run.sh ARGS` with this bazaar's environment; its output goes to `run.log`.
    fn run_sh(&self, args: &[&str], timeout: Duration) -> Result<()> {
        let log_path = self.dir.join("run.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut child = Command::new(&self.run_sh)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot run {}: {e}", self.run_sh.display())))?;
        let status = wait_child(&mut child, timeout)?;
        if status {
            Ok(())
        } else {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            Err(Error::Unavailable(format!(
                "./run.sh {} failed: {}",
                args.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )))
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn kill(&self, id: u32) -> Result<()> {
        self.run_sh(&["kill", &format!("order-{id}")], CALL_TIMEOUT * 5)
    }

    /// Restarts a replica and waits until it has caught up; returns how long that took.
    pub(crate) fn restart(&self, id: u32) -> Result<f64> {
        let started = Instant::now();
        self.run_sh(&["start", &format!("order-{id}")], CALL_TIMEOUT * 5)?;
        let addr = &self.replicas[&id];
        poll(&format!("order-{id} to catch up"), READY_TIMEOUT, || {
            let health: ReplicaHealth =
                self.target.client.get(addr, "/health", CALL_TIMEOUT).ok()?;
            matches!(health.role, Role::Leader | Role::Follower).then_some(())
        })?;
        Ok(ms_since(started))
    }

    /// `cmp` of the three replica files, polled until they agree or [`QUIET_TIMEOUT`].
    pub(crate) fn files_identical(&self) -> bool {
        let file = |id: u32| self.data_dir().join(format!("orders-{id}.csv"));
        poll("identical replica files", QUIET_TIMEOUT, || {
            let same = |a: u32, b: u32| {
                Command::new("cmp")
                    .arg("-s")
                    .arg(file(a))
                    .arg(file(b))
                    .status()
                    .is_ok_and(|s| s.success())
            };
            (same(1, 2) && same(1, 3)).then_some(())
        })
        .is_ok()
    }
}

impl Drop for Bazaar {
    fn drop(&mut self) {
        if let Err(e) = self.run_sh(&["down"], UP_TIMEOUT) {
            eprintln!("eval: ./run.sh down failed: {e}");
        }
        if self.keep || thread::panicking() {
            eprintln!("eval: kept {} for inspection", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

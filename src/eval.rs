//! The course evaluation (`./run.sh eval`): latency against the order probability with the
//! cache on and off, the cache's hit ratio and its replacement over time, and a fail-over
//! experiment, written to `docs/eval/` as a CSV, SVG plots and a README with the numbers and an
//! analysis generated from them.
//!
//! It drives the system only from the outside, the way a student would: every bazaar is a
//! private one started with `./run.sh up` (own ports chosen at run time, own data and run
//! directories under the temporary directory, passed as the environment overrides of
//! docs/spec.md §1), faults are `./run.sh kill` / `./run.sh start`, load and latency come from
//! the `client` binary's `--json` summary, and everything else from the REST API (`GET /health`
//! of the front-end and the replicas, the front-end's `GET /cluster` for its cache counters and
//! capacity, `GET /stocks` for the catalog's size, `POST /orders` probes), the front-end's cache
//! dump and `cmp` of the replica files. It never looks inside a service, so it measures whatever
//! order path the replicas implement.
//!
//! Phases, each on a fresh bazaar:
//!
//! 1. **Latency**: for cache on and off, for each p, `repeats` runs of
//!    `client --clients N --prob p` (the same seeds for on and off); before and after each run
//!    the front-end's hit and miss counters, so that every run has its own hit ratio; a progress
//!    line per run; `latency.csv` (one row per run and request type) and `latency.svg` (mean and
//!    p99 against p, one panel per request type, error bars from the lowest to the highest run).
//! 2. **Cache trace**: a front-end with `DUMP=1` and a cache smaller than the catalog;
//!    `cache-trace.svg` shows which stocks sit in the cache after every cache event, with
//!    evictions and invalidations marked.
//! 3. **Fail-over**: clients run in back-to-back `client` runs while the leader, a follower and
//!    the leader again are killed and restarted, then two replicas at once; during the double
//!    fault this process sends its own probe orders and counts their answers; throughout, one
//!    more probe places one order at a time and times it (`failover.svg`: the probe's orders and
//!    every client run on a log scale, the faults shaded). Then the replica files are compared
//!    with `cmp`.
//!
//! With `--host H --port P` (`EvalOptions::remote`) it measures an existing deployment instead
//! (containers, a Swarm stack, other machines): only phase 1, with the deployment's own cache
//! setting; phases 2 and 3 need the cache dump file and `./run.sh kill` on the deployment's
//! machines and are skipped, which the report says.
//!
//! Every sentence of the analysis is computed from the measurements, the bazaar's own answers
//! (stock count, cache capacity) and the machine (core count, load average): two means differ
//! ("rose", "fell", "lower") only when the ranges of their runs do not overlap; otherwise the
//! report says the difference is within the run-to-run spread.
//!
//! Caveats:
//!
//! - Locally everything runs on one machine, clients included: latencies are loopback latencies
//!   and the clients compete with the services for the same cores, so absolute numbers depend
//!   on the machine and on whatever else runs on it; compare the curves, not single values.
//! - The spread is the range (lowest to highest) of a few runs' means, not a confidence
//!   interval: with the default three runs, "within the spread" means "not shown to differ".
//! - The client times a request including its own retries; a fail-over therefore shows as one
//!   long request (the "longest pause"), not as errors.
//! - Stock quantities carry over from one run to the next within a bazaar (one bazaar per cache
//!   setting), so the share of refused (409) buys can differ slightly between on and off. Against
//!   a remote deployment the runs place real orders there.
//! - The hit ratio comes from the front-end's counters, which count every lookup it served: run
//!   against a deployment that others use at the same time, it includes their lookups.
//! - Rows with no sample (orders and order queries at p = 0) are left out of the CSV.
//! - A run fails as a whole when a bazaar does not start; its temporary directory (logs
//!   included) is then kept and named.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

use crate::api::{
    new_request_id, CacheStats, FrontendHealth, OrderAck, OrderRequest, OrderType, StockRecord,
};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::local::{free_ports, poll, wait_child};

/// How long `./run.sh up` may take (it waits for a leader itself, 30 s at most).
const UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restarted replica may take to catch up and answer `/health` as leader or
/// follower.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the front-end may take to name a new leader after the leader was killed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the replica files may take to become identical once the load stopped.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two probe orders of the double fault.
const PROBE_PAUSE: Duration = Duration::from_millis(200);
/// Timeout of one REST call of this process (health, probes' reads).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of `GET /cluster`: the front-end asks every replica and the catalog first.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one probe order during the double fault: longer than the front-end's own
/// forwarding deadline, so that its answer (acknowledged or 503) is what is counted.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Load before the first fault and after the last restart.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a killed replica stays down.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// How long two replicas stay down together.
const TWO_DOWN_FOR: Duration = Duration::from_secs(5);
/// Lookups per client in each back-to-back client run of the fail-over phase.
const FAILOVER_CLIENT_REQUESTS: usize = 100;
/// Order probability of the fail-over phase's clients.
const FAILOVER_PROB: f64 = 0.5;
/// How long one client run may take before it is killed.
const CLIENT_RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The front-end's leader check interval in every eval bazaar (the shipped config's).
const HEALTH_CHECK_INTERVAL: &str = "1.0";
/// Pause between two orders of the fail-over timeline probe.
const TIMELINE_PAUSE: Duration = Duration::from_millis(20);
/// Bound on the timeline probe's orders (the phase lasts about 30 s).
const MAX_TIMELINE_SAMPLES: usize = 20_000;
/// Bound on the fail-over phase's back-to-back client runs (each takes a fraction of a second).
const MAX_FAILOVER_RUNS: u64 = 10_000;
/// Attempts at starting a bazaar (a port chosen at run time may be taken before it is bound).
const UP_ATTEMPTS: u32 = 2;
/// Cache entries of the latency and fail-over bazaars (the shipped config's).
const CACHE_SIZE: usize = 10;
/// Clients and order probability of the cache-trace run: enough misses to fill and churn a
/// small cache, and some invalidations, in a picture that can still be read event by event.
const TRACE_CLIENTS: usize = 2;
const TRACE_PROB: f64 = 0.2;
/// How many times the longest request outside the faults a fault's longest must take to be
/// called a pause: both are single maxima of a loaded machine, so a few ms more is noise.
const PAUSE_FACTOR: f64 = 2.0;
/// After a restart, how long a fault's window stays open: a restarted replica catching up may
/// still slow the others.
const AFTER_RESTART_S: f64 = 1.0;

/// What to run; see `bin/eval.rs` for the flags.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// `run.sh` of this checkout.
    pub run_sh: PathBuf,
    /// The `client` binary.
    pub client: PathBuf,
    /// Where the service binaries are (handed to run.sh as `BAZAAR_BIN_DIR`).
    pub bin_dir: PathBuf,
    /// Where the CSV, the plots and the README go.
    pub out_dir: PathBuf,
    /// The order probabilities of the latency phase.
    pub probs: Vec<f64>,
    /// Client runs per (p, cache) point.
    pub repeats: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Lookups per client at each point of the latency phase.
    pub n_request: usize,
    /// Seed of the client runs (the same for cache on and off).
    pub seed: u64,
    /// Cache size of the cache-trace phase (smaller than the catalog's stocks).
    pub trace_cache_size: usize,
    /// Lookups per client of the cache-trace phase.
    pub trace_requests: usize,
    /// Skip the fail-over phase.
    pub skip_failover: bool,
    /// Measure the deployment whose front-end is at this `host:port` instead of private
    /// bazaars (latency phase only).
    pub remote: Option<String>,
}

/// The files a run writes, in the order the report shows them.
pub fn written_files(options: &EvalOptions) -> Vec<&'static str> {
    let mut files = vec!["latency.csv", "latency.svg"];
    if options.remote.is_none() {
        files.push("cache-trace.svg");
        if !options.skip_failover {
            files.push("failover.svg");
        }
    }
    files.push("README.md");
    files
}

/// A probability as the user wrote it: `0.25` stays `0.25`, `0` stays `0` (the shortest text
/// that reads back as the same number).
pub fn fmt_prob(p: f64) -> String {
    format!("{p}")
}

/// What `client --json` printed.
#[derive(Clone, Debug, Default, Deserialize)]
struct ClientJson {
    lookups: u64,
    orders: u64,
    order_queries: u64,
    rejected: u64,
    errors: u64,
    mismatches: u64,
    #[serde(default)]
    retries: u64,
    lookup_ms: Lat,
    order_ms: Lat,
    query_ms: Lat,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct Lat {
    mean: f64,
    p50: f64,
    p99: f64,
    #[serde(default)]
    max: f64,
}

/// The three request types, as the report and the plots name them and as the CSV spells them.
const KINDS: [(&str, &str); 3] = [
    ("lookup", "lookup"),
    ("order", "order"),
    ("order query", "order_query"),
];

impl ClientJson {
    fn longest_ms(&self) -> f64 {
        self.lookup_ms
            .max
            .max(self.order_ms.max)
            .max(self.query_ms.max)
    }

    /// (latency, timed requests) of each request type, in the order of [`KINDS`].
    fn rows(&self) -> [(Lat, u64); 3] {
        [
            (self.lookup_ms, self.lookups.saturating_sub(self.errors)),
            (self.order_ms, self.orders.saturating_sub(self.rejected)),
            (self.query_ms, self.order_queries),
        ]
    }

    fn add(&mut self, run: &ClientJson) {
        self.lookups += run.lookups;
        self.orders += run.orders;
        self.order_queries += run.order_queries;
        self.rejected += run.rejected;
        self.errors += run.errors;
        self.mismatches += run.mismatches;
        self.retries += run.retries;
    }
}

/// The front-end's cache hits and misses during one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CacheCount {
    hits: u64,
    misses: u64,
}

impl CacheCount {
    fn ratio(self) -> Option<f64> {
        let all = self.hits + self.misses;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }
}

/// One client run of the latency phase.
#[derive(Clone, Debug)]
struct Run {
    result: ClientJson,
    seconds: f64,
    /// `None` when the front-end's counters could not be read.
    cache: Option<CacheCount>,
}

/// One (p, cache) point: its runs.
#[derive(Clone, Debug)]
struct Point {
    p: f64,
    cache: bool,
    runs: Vec<Run>,
}

/// The mean of a few runs' values and their range.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Spread {
    mean: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    Some(Spread {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        n: values.len(),
    })
}

/// Picks one figure (mean, p99) out of a latency summary.
type Stat = fn(&Lat) -> f64;

impl Point {
    /// One figure of one request type over the runs that timed any such request.
    fn lat(&self, kind: usize, stat: Stat) -> Option<Spread> {
        spread(self.runs.iter().filter_map(|r| {
            let (lat, count) = r.result.rows()[kind];
            (count > 0).then(|| stat(&lat))
        }))
    }

    /// The hit ratio of each run, with the cache on.
    fn hit_ratio(&self) -> Option<Spread> {
        if !self.cache {
            return None;
        }
        spread(self.runs.iter().filter_map(|r| r.cache?.ratio()))
    }

    fn total(&self) -> ClientJson {
        let mut total = ClientJson::default();
        for run in &self.runs {
            total.add(&run.result);
        }
        total
    }
}

/// How a second value compares with a first one, given their runs' ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Higher,
    Lower,
    /// The ranges overlap: not shown to differ.
    Within,
}

/// `b` against `a`: higher or lower only when the ranges of their runs do not overlap.
fn compare(a: &Spread, b: &Spread) -> Change {
    if b.min > a.max {
        Change::Higher
    } else if b.max < a.min {
        Change::Lower
    } else {
        Change::Within
    }
}

/// "0.26 ms (0.25–0.27)", or "0.26 ms" for a single run.
fn ms_text(s: &Spread) -> String {
    if s.n > 1 {
        format!("{:.2} ms ({:.2}–{:.2})", s.mean, s.min, s.max)
    } else {
        format!("{:.2} ms", s.mean)
    }
}

fn pct_text(s: &Spread) -> String {
    if s.n > 1 {
        format!(
            "{:.0}% ({:.0}–{:.0}%)",
            100.0 * s.mean,
            100.0 * s.min,
            100.0 * s.max
        )
    } else {
        format!("{:.0}%", 100.0 * s.mean)
    }
}

/// How a figure moved from the first p to the last, e.g. "rose from 0.15 ms (…) at p = 0 to
/// 0.26 ms (…) at p = 0.8".
fn trend(first: (f64, Spread), last: (f64, Spread), text: fn(&Spread) -> String) -> String {
    let ((p0, a), (p1, b)) = (first, last);
    let (a_text, b_text) = (text(&a), text(&b));
    let (p0, p1) = (fmt_prob(p0), fmt_prob(p1));
    match compare(&a, &b) {
        Change::Higher => format!("rose from {a_text} at p = {p0} to {b_text} at p = {p1}"),
        Change::Lower => format!("fell from {a_text} at p = {p0} to {b_text} at p = {p1}"),
        Change::Within => format!(
            "went from {a_text} at p = {p0} to {b_text} at p = {p1}, within the run-to-run spread"
        ),
    }
}

/// One fault of the fail-over phase.
#[derive(Clone, Debug)]
struct Fault {
    what: String,
    /// A few words for the timeline figure and the tables.
    label: &'static str,
    leader_before: Option<u32>,
    leader_after: Option<u32>,
    /// From the kill until the front-end named another leader (leader kills only).
    new_leader_ms: Option<f64>,
    /// From the restart until the replica answered as leader or follower again.
    catch_up_ms: f64,
    /// The front-end's retried forwards from just before the kill until the replica(s)
    /// caught up (`None` when `/health` did not answer).
    frontend_retries: Option<u64>,
    /// When the replica(s) went down and when they were started again, in seconds since the
    /// phase began.
    down_s: f64,
    up_s: f64,
}

impl Fault {
    /// The window in which this fault can have cost anything.
    fn window(&self) -> std::ops::Range<f64> {
        self.down_s..self.up_s + AFTER_RESTART_S
    }
}

/// One order of the timeline probe.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// When it was sent, in seconds since the phase began.
    at_s: f64,
    ms: f64,
    /// Answered with a number or a correct refusal (409).
    ok: bool,
}

impl Sample {
    /// Whether the order was under way during the window: one sent just before a kill can
    /// wait for the whole fail-over.
    fn overlaps(&self, window: &std::ops::Range<f64>) -> bool {
        self.at_s < window.end && self.at_s + self.ms / 1000.0 > window.start
    }
}

/// One `client` run of the fail-over phase.
#[derive(Clone, Debug)]
struct ClientRun {
    start_s: f64,
    end_s: f64,
    result: ClientJson,
}

impl ClientRun {
    fn overlaps(&self, window: &std::ops::Range<f64>) -> bool {
        self.start_s < window.end && self.end_s > window.start
    }
}

/// What the fail-over phase saw.
#[derive(Clone, Debug, Default)]
struct Failover {
    faults: Vec<Fault>,
    runs: Vec<ClientRun>,
    probes_ok: u64,
    probes_503: u64,
    probes_other: u64,
    frontend_retries: u64,
    frontend_failovers: u64,
    identical: bool,
    replicas: usize,
    orders_in_log: usize,
    seconds: f64,
    timeline: Vec<Sample>,
}

impl Failover {
    fn clients(&self) -> ClientJson {
        let mut total = ClientJson::default();
        for run in &self.runs {
            total.add(&run.result);
        }
        total
    }

    fn longest_ms(&self) -> f64 {
        self.runs
            .iter()
            .map(|r| r.result.longest_ms())
            .fold(0.0, f64::max)
    }
}

/// One line of the front-end's cache dump (`src/frontend/cache.rs`).
#[derive(Clone, Debug, Deserialize)]
struct TraceLine {
    ts_ms: u64,
    event: String,
    key: String,
    items: Vec<String>,
}

/// What the measured bazaar says about itself, and the machine it ran on.
#[derive(Clone, Debug, Default)]
struct Setting {
    /// Stocks the catalog lists (`GET /stocks`).
    stocks: usize,
    /// The front-end's cache capacity with the cache on (`GET /cluster`).
    capacity: Option<usize>,
    cores: usize,
    /// The 1-minute load average when the run began (Linux `/proc/loadavg`).
    load: Option<f64>,
}

fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs every phase and writes `docs/eval/`. Returns a one-line summary.
pub fn run(options: &EvalOptions) -> Result<String> {
    let started = Instant::now();
    let mut setting = Setting {
        cores: thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load: load_average(),
        ..Setting::default()
    };
    fs::create_dir_all(&options.out_dir)?;
    let work = std::env::temp_dir().join(format!("bazaar-eval-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;

    let points = latency_phase(options, &work, &mut setting)?;
    fs::write(options.out_dir.join("latency.csv"), latency_csv(&points))?;
    plot_latency(
        &points,
        options.clients,
        &options.out_dir.join("latency.svg"),
    )?;

    let (trace, failover) = if options.remote.is_some() {
        (None, None)
    } else {
        let trace = trace_phase(options, &work)?;
        plot_trace(
            &trace,
            options.trace_cache_size,
            &options.out_dir.join("cache-trace.svg"),
        )?;
        let failover = if options.skip_failover {
            None
        } else {
            let failover = failover_phase(options, &work)?;
            plot_failover(&failover, &options.out_dir.join("failover.svg"))?;
            Some(failover)
        };
        (Some(trace), failover)
    };
    let seconds = started.elapsed().as_secs_f64();
    let readme = report(
        options,
        &setting,
        &points,
        trace.as_deref(),
        failover.as_ref(),
        seconds,
    );
    fs::write(options.out_dir.join("README.md"), readme)?;
    let _ = fs::remove_dir_all(&work);
    Ok(format!(
        "eval: done in {seconds:.0} s; wrote {}/{{{}}}",
        options.out_dir.display(),
        written_files(options).join(",")
    ))
}

// ---------------------------------------------------------------------------------------------
// The front-end measured: a private bazaar's or a remote deployment's.

/// Just the cache of the front-end's `GET /cluster`.
#[derive(Deserialize)]
struct ClusterCache {
    cache: CacheStats,
}

/// A front-end to send load to.
struct Target {
    host: String,
    port: String,
    client: Client,
}

impl Target {
    fn new(addr: &str) -> Target {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "8080"));
        Target {
            host: host.to_string(),
            port: port.to_string(),
            client: Client::new(),
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn health(&self) -> Result<FrontendHealth> {
        self.client.get(&self.addr(), "/health", CALL_TIMEOUT)
    }

    fn leader(&self) -> Option<u32> {
        self.health().ok().and_then(|h| h.leader)
    }

    fn cache_stats(&self) -> Result<CacheStats> {
        let cluster: ClusterCache = self.client.get(&self.addr(), "/cluster", CLUSTER_TIMEOUT)?;
        Ok(cluster.cache)
    }

    fn stock_count(&self) -> Result<usize> {
        let stocks: Vec<StockRecord> = self.client.get(&self.addr(), "/stocks", CALL_TIMEOUT)?;
        Ok(stocks.len())
    }

    /// Runs the client binary once and parses its `--json` summary.
    fn client_run(
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

// ---------------------------------------------------------------------------------------------
// A private bazaar, driven through run.sh.

/// A bazaar started with `./run.sh up` on its own ports and directories; `./run.sh down` when
/// dropped.
struct Bazaar {
    run_sh: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    target: Target,
    replicas: BTreeMap<u32, String>,
    keep: bool,
}

/// The knobs of one bazaar.
struct BazaarSpec<'a> {
    tag: &'a str,
    cache: bool,
    cache_size: usize,
    dump: bool,
}

impl Bazaar {
    fn up(options: &EvalOptions, work: &Path, spec: &BazaarSpec) -> Result<Bazaar> {
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

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn kill(&self, id: u32) -> Result<()> {
        self.run_sh(&["kill", &format!("order-{id}")], CALL_TIMEOUT * 5)
    }

    /// Restarts a replica and waits until it has caught up; returns how long that took.
    fn restart(&self, id: u32) -> Result<f64> {
        let started = Instant::now();
        self.run_sh(&["start", &format!("order-{id}")], CALL_TIMEOUT * 5)?;
        let addr = &self.replicas[&id];
        poll(&format!("order-{id} to catch up"), READY_TIMEOUT, || {
            let health: serde_json::Value =
                self.target.client.get(addr, "/health", CALL_TIMEOUT).ok()?;
            matches!(health["role"].as_str(), Some("leader" | "follower")).then_some(())
        })?;
        Ok(ms_since(started))
    }

    /// `cmp` of the three replica files, polled until they agree or [`QUIET_TIMEOUT`].
    fn files_identical(&self) -> bool {
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

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Phase 1: latency against p, cache on and off.

fn latency_phase(options: &EvalOptions, work: &Path, setting: &mut Setting) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    if let Some(addr) = &options.remote {
        let target = Target::new(addr);
        let stats = target.cache_stats()?;
        setting.stocks = target.stock_count()?;
        setting.capacity = stats.enabled.then_some(stats.capacity);
        let total = options.probs.len() * options.repeats;
        measure_series(options, &target, stats.enabled, total, &mut points)?;
        return Ok(points);
    }
    let total = 2 * options.probs.len() * options.repeats;
    for cache in [true, false] {
        let spec = BazaarSpec {
            tag: if cache {
                "latency-cache-on"
            } else {
                "latency-cache-off"
            },
            cache,
            cache_size: CACHE_SIZE,
            dump: false,
        };
        let bazaar = Bazaar::up(options, work, &spec)?;
        if cache {
            setting.stocks = bazaar.target.stock_count()?;
            setting.capacity = Some(bazaar.target.cache_stats()?.capacity);
        }
        measure_series(options, &bazaar.target, cache, total, &mut points)?;
    }
    Ok(points)
}

/// Every p, `repeats` runs each, against one front-end; appends one point per p.
fn measure_series(
    options: &EvalOptions,
    target: &Target,
    cache: bool,
    total: usize,
    points: &mut Vec<Point>,
) -> Result<()> {
    let done = points.iter().map(|p| p.runs.len()).sum::<usize>();
    for (i, &p) in options.probs.iter().enumerate() {
        let mut runs = Vec::with_capacity(options.repeats);
        for repeat in 0..options.repeats {
            // The same seeds for on and off: both ask the same sequences of lookups and orders.
            let seed = options
                .seed
                .wrapping_add(1000 * i as u64)
                .wrapping_add(repeat as u64);
            let before = target.cache_stats().ok();
            let started = Instant::now();
            let result =
                target.client_run(&options.client, options.clients, p, seed, options.n_request)?;
            let seconds = started.elapsed().as_secs_f64();
            let after = target.cache_stats().ok();
            let counts = before.zip(after).map(|(b, a)| CacheCount {
                hits: a.hits.saturating_sub(b.hits),
                misses: a.misses.saturating_sub(b.misses),
            });
            eprintln!(
                "eval [{:>2}/{total}] p={} cache {:<3} run {}: {} lookups {:.2} ms, {} orders {:.2} ms, \
                 {} order queries {:.2} ms (mean); hit ratio {}; {} errors; {seconds:.1} s",
                done + i * options.repeats + repeat + 1,
                fmt_prob(p),
                on_off(cache),
                repeat + 1,
                result.lookups,
                result.lookup_ms.mean,
                result.orders,
                result.order_ms.mean,
                result.order_queries,
                result.query_ms.mean,
                counts
                    .filter(|_| cache)
                    .and_then(CacheCount::ratio)
                    .map(|r| format!("{:.0}%", 100.0 * r))
                    .unwrap_or_else(|| "–".into()),
                result.errors,
            );
            runs.push(Run {
                result,
                seconds,
                cache: counts,
            });
        }
        points.push(Point { p, cache, runs });
    }
    Ok(())
}

fn on_off(cache: bool) -> &'static str {
    if cache {
        "on"
    } else {
        "off"
    }
}

/// The CSV's header: one row per run and request type with samples; the cache's hits and
/// misses of the run are on its lookup row.
const CSV_HEADER: &str =
    "p,cache,run,type,mean_ms,p50_ms,p99_ms,max_ms,count,cache_hits,cache_misses";

fn latency_csv(points: &[Point]) -> String {
    let mut csv = format!("{CSV_HEADER}\n");
    for point in points {
        for (run_index, run) in point.runs.iter().enumerate() {
            for (kind, (lat, count)) in run.result.rows().into_iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let (hits, misses) = match (kind, run.cache) {
                    (0, Some(c)) => (c.hits.to_string(), c.misses.to_string()),
                    _ => (String::new(), String::new()),
                };
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{count},{hits},{misses}",
                    fmt_prob(point.p),
                    on_off(point.cache),
                    run_index + 1,
                    KINDS[kind].1,
                    lat.mean,
                    lat.p50,
                    lat.p99,
                    lat.max,
                );
            }
        }
    }
    csv
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("plot: {e:?}"))
}

/// Cache on in blue, off in red.
const ON_COLOR: RGBColor = RGBColor(31, 119, 180);
const OFF_COLOR: RGBColor = RGBColor(214, 39, 40);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
/// Height of the legend strip under every plot, in pixels.
const LEGEND_STRIP: u32 = 36;

/// One entry of a legend strip.
enum Key {
    Line(RGBColor),
    Dot(RGBColor),
    Cell(RGBAColor),
    Cross(RGBColor),
    Triangle(RGBColor),
    Bar(RGBColor),
}

/// A legend in its own strip under the plot, so that it never covers data.
fn draw_legend_strip(area: &DrawingArea<SVGBackend, Shift>, keys: &[(Key, &str)]) -> Result<()> {
    let (_, height) = area.dim_in_pixel();
    let y = height as i32 / 2;
    let font = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 60;
    for (key, label) in keys {
        let result = match key {
            Key::Line(c) => area.draw(&PathElement::new(
                vec![(x, y), (x + 18, y)],
                c.stroke_width(2),
            )),
            Key::Dot(c) => area.draw(&Circle::new((x + 9, y), 4, c.filled())),
            Key::Cell(c) => area.draw(&Rectangle::new([(x, y - 6), (x + 18, y + 6)], c.filled())),
            Key::Cross(c) => area.draw(&Cross::new((x + 9, y), 6, c.stroke_width(2))),
            Key::Triangle(c) => area.draw(&TriangleMarker::new((x + 9, y), 6, c.filled())),
            Key::Bar(c) => area.draw(&PathElement::new(
                vec![(x + 9, y - 8), (x + 9, y + 8)],
                c.stroke_width(2),
            )),
        };
        result.map_err(plot_err)?;
        area.draw(&Text::new(label.to_string(), (x + 26, y), font.clone()))
            .map_err(plot_err)?;
        // About 8 px a character at this size, and a gap.
        x += 26 + 8 * label.chars().count() as i32 + 30;
    }
    Ok(())
}

/// The x range of a plot against p: the measured p values and a little margin, no more.
fn p_range(points: &[Point]) -> std::ops::Range<f64> {
    let lo = points.iter().map(|p| p.p).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.p).fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.06).max(0.03);
    (lo - pad)..(hi + pad)
}

/// "0.25" for 0.25, "0.2" for 0.2000001: axis labels at up to two decimals, no trailing zeros.
fn axis_prob(x: f64) -> String {
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// Two rows (mean, p99) by three columns (lookup, order, order query), latency against p; a
/// dot per point at the mean of its runs, an error bar from the lowest to the highest run.
fn plot_latency(points: &[Point], clients: usize, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let runs = points.iter().map(|p| p.runs.len()).max().unwrap_or(0);
    let root = root
        .titled(
            &format!(
                "Latency against order probability p ({clients} clients; {runs} run(s) per point, \
                 bars from the lowest to the highest run)"
            ),
            ("sans-serif", 20),
        )
        .map_err(plot_err)?;
    let (body, strip) = root.split_vertically(800 - 30 - LEGEND_STRIP);
    let panels = body.split_evenly((2, 3));
    let stats: [(&str, Stat); 2] = [("mean", |l| l.mean), ("p99", |l| l.p99)];
    let x_range = p_range(points);
    for (row, (stat_name, stat)) in stats.iter().enumerate() {
        for (col, (kind, _)) in KINDS.iter().enumerate() {
            let series = |cache: bool| -> Vec<(f64, Spread)> {
                points
                    .iter()
                    .filter(|pt| pt.cache == cache)
                    .filter_map(|pt| pt.lat(col, *stat).map(|s| (pt.p, s)))
                    .collect()
            };
            let (on, off) = (series(true), series(false));
            let y_max = on
                .iter()
                .chain(&off)
                .map(|(_, s)| s.max)
                .fold(0.0, f64::max)
                .max(0.01)
                * 1.1;
            let mut chart = ChartBuilder::on(&panels[row * 3 + col])
                .caption(format!("{kind}: {stat_name} latency"), ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(38)
                .y_label_area_size(55)
                .build_cartesian_2d(x_range.clone(), 0f64..y_max)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("p (order probability)")
                .y_desc("ms")
                .x_labels(6)
                .x_label_formatter(&|x| axis_prob(*x))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .draw()
                .map_err(plot_err)?;
            for (data, color) in [(on, ON_COLOR), (off, OFF_COLOR)] {
                chart
                    .draw_series(LineSeries::new(
                        data.iter().map(|&(p, s)| (p, s.mean)),
                        color.stroke_width(2),
                    ))
                    .map_err(plot_err)?;
                chart
                    .draw_series(
                        data.iter()
                            .map(|&(p, s)| Circle::new((p, s.mean), 4, color.filled())),
                    )
                    .map_err(plot_err)?;
                chart
                    .draw_series(data.iter().filter(|(_, s)| s.n > 1).map(|&(p, s)| {
                        PathElement::new(vec![(p, s.min), (p, s.max)], color.stroke_width(2))
                    }))
                    .map_err(plot_err)?;
            }
        }
    }
    let mut keys = Vec::new();
    if points.iter().any(|p| p.cache) {
        keys.push((Key::Line(ON_COLOR), "cache on (mean of the runs)"));
    }
    if points.iter().any(|p| !p.cache) {
        keys.push((Key::Line(OFF_COLOR), "cache off (mean of the runs)"));
    }
    keys.push((Key::Bar(BLACK), "lowest to highest run"));
    draw_legend_strip(&strip, &keys)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 2: the cache over time.

fn trace_phase(options: &EvalOptions, work: &Path) -> Result<Vec<TraceLine>> {
    let spec = BazaarSpec {
        tag: "cache-trace",
        cache: true,
        cache_size: options.trace_cache_size,
        dump: true,
    };
    let bazaar = Bazaar::up(options, work, &spec)?;
    let started = Instant::now();
    let result = bazaar.target.client_run(
        &options.client,
        TRACE_CLIENTS,
        TRACE_PROB,
        options.seed,
        options.trace_requests,
    )?;
    let text = fs::read_to_string(bazaar.data_dir().join("frontend-cache.jsonl"))?;
    let trace: Vec<TraceLine> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &TraceLine| line.event != "start")
        .collect();
    eprintln!(
        "eval cache trace: cache size {}, {} lookups, {} orders, {} cache events; {:.1} s",
        options.trace_cache_size,
        result.lookups,
        result.orders,
        trace.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(trace)
}

/// One row per stock, one column per cache event: a cell is filled while the stock is in the
/// cache after that event; evictions and invalidations are marked.
fn plot_trace(trace: &[TraceLine], cache_size: usize, path: &Path) -> Result<()> {
    let mut names: Vec<String> = crate::config::SHIPPED_STOCKS.clone();
    for line in trace {
        for name in line.items.iter().chain([&line.key]) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let row = |name: &str| names.iter().position(|n| n == name).unwrap_or(0) as f64;
    let n = trace.len().max(1) as f64;
    let root = SVGBackend::new(path, (1200, 580)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (body, strip) = root.split_vertically(580 - LEGEND_STRIP);
    let span_s = match (trace.first(), trace.last()) {
        (Some(a), Some(b)) => b.ts_ms.saturating_sub(a.ts_ms) as f64 / 1000.0,
        _ => 0.0,
    };
    let mut chart = ChartBuilder::on(&body)
        .caption(
            format!(
                "Front-end cache over time (capacity {cache_size}, {} stocks; {} events in {span_s:.2} s)",
                names.len(),
                trace.len()
            ),
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..n, -0.5f64..(names.len() as f64 - 0.5))
        .map_err(plot_err)?;
    let label_names = names.clone();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("cache event (insert, hit, evict, invalidate), in order")
        .y_labels(names.len())
        .y_label_formatter(&move |y| {
            let k = y.round();
            if (y - k).abs() < 1e-6 && k >= 0.0 {
                label_names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(plot_err)?;
    let cells = trace.iter().enumerate().flat_map(|(i, line)| {
        let x = i as f64;
        line.items.iter().enumerate().map(move |(rank, name)| {
            // Most recently used darkest: the LRU order is visible in each column.
            let shade = 0.85 - 0.6 * rank as f64 / cache_size.max(1) as f64;
            (x, name.clone(), ON_COLOR.mix(shade.clamp(0.2, 0.9)))
        })
    });
    chart
        .draw_series(cells.map(|(x, name, color)| {
            let y = row(&name);
            Rectangle::new([(x, y - 0.38), (x + 1.0, y + 0.38)], color.filled())
        }))
        .map_err(plot_err)?;
    let marks = |event: &str| -> Vec<(f64, f64)> {
        trace
            .iter()
            .enumerate()
            .filter(|(_, l)| l.event == event)
            .map(|(i, l)| (i as f64 + 0.5, row(&l.key)))
            .collect()
    };
    chart
        .draw_series(
            marks("evict")
                .into_iter()
                .map(|pt| Cross::new(pt, 6, OFF_COLOR.stroke_width(2))),
        )
        .map_err(plot_err)?;
    chart
        .draw_series(
            marks("invalidate")
                .into_iter()
                .map(|pt| TriangleMarker::new(pt, 6, ORANGE.filled())),
        )
        .map_err(plot_err)?;
    draw_legend_strip(
        &strip,
        &[
            (
                Key::Cell(ON_COLOR.mix(0.85)),
                "in the cache (darker = more recently used)",
            ),
            (Key::Cross(OFF_COLOR), "evicted (least recently used)"),
            (Key::Triangle(ORANGE), "invalidated (a trade on that stock)"),
        ],
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 3: fail-over.

fn failover_phase(options: &EvalOptions, work: &Path) -> Result<Failover> {
    let spec = BazaarSpec {
        tag: "failover",
        cache: true,
        cache_size: CACHE_SIZE,
        dump: false,
    };
    let bazaar = Bazaar::up(options, work, &spec)?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, client, addr) = (stop.clone(), options.client.clone(), bazaar.target.addr());
        let (clients, seed) = (options.clients, options.seed);
        thread::Builder::new()
            .name("eval-load".into())
            .spawn(move || load(&Target::new(&addr), &client, clients, seed, started, &stop))?
    };
    let probe = {
        let (stop, frontend) = (stop.clone(), bazaar.target.addr());
        thread::Builder::new()
            .name("eval-timeline".into())
            .spawn(move || timeline_probe(&frontend, started, &stop))?
    };
    let faults = fault_schedule(&bazaar, started);
    stop.store(true, Ordering::SeqCst);
    let runs = load
        .join()
        .map_err(|_| Error::Internal("load thread panicked".into()))?;
    let timeline = probe
        .join()
        .map_err(|_| Error::Internal("timeline thread panicked".into()))?;
    let (faults, (probes_ok, probes_503, probes_other)) = faults?;
    let runs = runs?;
    let health = bazaar.target.health()?;
    let identical = bazaar.files_identical();
    let orders_in_log = fs::read_to_string(bazaar.data_dir().join("orders-1.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0);
    let failover = Failover {
        faults,
        runs,
        probes_ok,
        probes_503,
        probes_other,
        frontend_retries: health.retries,
        frontend_failovers: health.failovers,
        identical,
        replicas: bazaar.replicas.len(),
        orders_in_log,
        seconds: started.elapsed().as_secs_f64(),
        timeline,
    };
    let clients = failover.clients();
    eprintln!(
        "eval fail-over: {} faults, {} client runs, {} errors, {} retries, longest request {:.0} ms; \
         probes with two replicas down: {} acknowledged, {} 503; replica files {}; {:.1} s",
        failover.faults.len(),
        failover.runs.len(),
        clients.errors,
        clients.retries,
        failover.longest_ms(),
        failover.probes_ok,
        failover.probes_503,
        if identical { "identical" } else { "DIFFER" },
        failover.seconds
    );
    Ok(failover)
}

/// The probe's orders and the clients' runs over the phase on a log scale (normal orders take
/// a few ms, a fail-over seconds), the fault windows shaded.
fn plot_failover(f: &Failover, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (body, strip) = root.split_vertically(520 - LEGEND_STRIP);
    let x_max = f
        .timeline
        .iter()
        .map(|s| s.at_s)
        .chain(f.runs.iter().map(|r| r.end_s))
        .fold(0.0, f64::max)
        .max(1.0);
    let values = || {
        f.timeline
            .iter()
            .map(|s| s.ms)
            .chain(f.runs.iter().map(|r| r.result.longest_ms()))
            .chain(f.runs.iter().map(|r| r.result.order_ms.mean))
            .filter(|&ms| ms > 0.0)
    };
    let y_lo = values().fold(f64::INFINITY, f64::min).clamp(0.01, 1.0) * 0.7;
    let y_hi = values().fold(1.0, f64::max) * 2.5;
    let mut chart = ChartBuilder::on(&body)
        .caption(
            "Orders during the fail-over experiment (log scale)",
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds since the load started")
        .y_desc("order latency, ms (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(f.faults.iter().map(|fault| {
            Rectangle::new(
                [(fault.down_s, y_lo), (fault.up_s, y_hi)],
                OFF_COLOR.mix(0.12).filled(),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(f.faults.iter().map(|fault| {
            Text::new(
                fault.label,
                (fault.down_s, y_hi / 1.6),
                ("sans-serif", 13).into_font().color(&BLACK),
            )
        }))
        .map_err(plot_err)?;
    // Each client run: its mean order latency as a segment over its duration, and its longest
    // request (retries included) as a mark.
    chart
        .draw_series(f.runs.iter().filter(|r| r.result.orders > 0).map(|r| {
            PathElement::new(
                vec![
                    (r.start_s, r.result.order_ms.mean),
                    (r.end_s, r.result.order_ms.mean),
                ],
                GREEN.stroke_width(2),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(f.runs.iter().map(|r| {
            TriangleMarker::new(
                ((r.start_s + r.end_s) / 2.0, r.result.longest_ms()),
                4,
                PURPLE.filled(),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(
            f.timeline
                .iter()
                .filter(|s| s.ok)
                .map(|s| Circle::new((s.at_s, s.ms), 2, ON_COLOR.filled())),
        )
        .map_err(plot_err)?;
    chart
        .draw_series(
            f.timeline
                .iter()
                .filter(|s| !s.ok)
                .map(|s| Cross::new((s.at_s, s.ms), 5, OFF_COLOR.stroke_width(2))),
        )
        .map_err(plot_err)?;
    draw_legend_strip(
        &strip,
        &[
            (Key::Cell(OFF_COLOR.mix(0.25)), "replica(s) down"),
            (Key::Dot(ON_COLOR), "probe order answered"),
            (Key::Cross(OFF_COLOR), "probe order failed"),
            (Key::Line(GREEN), "client run: mean order"),
            (Key::Triangle(PURPLE), "client run: longest request"),
        ],
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One order at a time through the front-end for as long as the faults last, each timed: what
/// a single user saw at each moment of the phase.
fn timeline_probe(frontend: &str, started: Instant, stop: &AtomicBool) -> Vec<Sample> {
    let client = Client::new();
    let mut samples = Vec::new();
    while !stop.load(Ordering::SeqCst) && samples.len() < MAX_TIMELINE_SAMPLES {
        let i = samples.len();
        let order = OrderRequest {
            name: "FishCo".into(),
            quantity: 1,
            // Sell first, so that the buys always find the share the probe sold.
            kind: if i % 2 == 0 {
                OrderType::Sell
            } else {
                OrderType::Buy
            },
            request_id: Some(new_request_id("eval-timeline")),
        };
        let sent = Instant::now();
        let answer = client.post::<_, OrderAck>(frontend, "/orders", &order, PROBE_TIMEOUT);
        samples.push(Sample {
            at_s: sent.duration_since(started).as_secs_f64(),
            ms: ms_since(sent),
            ok: matches!(answer, Ok(_) | Err(Error::Conflict(_))),
        });
        thread::sleep(TIMELINE_PAUSE);
    }
    samples
}

/// The load of the fail-over phase: back-to-back client runs (each verifies its own orders)
/// until stopped.
fn load(
    target: &Target,
    client: &Path,
    clients: usize,
    seed: u64,
    t0: Instant,
    stop: &AtomicBool,
) -> Result<Vec<ClientRun>> {
    let mut runs = Vec::new();
    while !stop.load(Ordering::SeqCst) && (runs.len() as u64) < MAX_FAILOVER_RUNS {
        let start_s = t0.elapsed().as_secs_f64();
        let result = target.client_run(
            client,
            clients,
            FAILOVER_PROB,
            seed.wrapping_add(runs.len() as u64),
            FAILOVER_CLIENT_REQUESTS,
        )?;
        runs.push(ClientRun {
            start_s,
            end_s: t0.elapsed().as_secs_f64(),
            result,
        });
    }
    Ok(runs)
}

type Probes = (u64, u64, u64);

/// Leader, follower, leader, then two at once. Returns the faults and the probe counts.
fn fault_schedule(bazaar: &Bazaar, t0: Instant) -> Result<(Vec<Fault>, Probes)> {
    thread::sleep(SETTLE);
    let mut faults = Vec::new();
    faults.push(kill_leader(bazaar, t0, "kill -9 the leader")?);
    thread::sleep(SETTLE);
    faults.push(kill_follower(bazaar, t0)?);
    thread::sleep(SETTLE);
    faults.push(kill_leader(bazaar, t0, "kill -9 the (new) leader")?);
    thread::sleep(SETTLE);
    let (fault, probes) = kill_two(bazaar, t0)?;
    faults.push(fault);
    thread::sleep(SETTLE);
    Ok((faults, probes))
}

fn current_leader(bazaar: &Bazaar) -> Result<u32> {
    poll("a leader", FAILOVER_TIMEOUT, || bazaar.target.leader())
}

fn secs_since(t0: Instant, at: Instant) -> f64 {
    at.duration_since(t0).as_secs_f64()
}

fn frontend_retries(bazaar: &Bazaar) -> Option<u64> {
    bazaar.target.health().ok().map(|h| h.retries)
}

fn retries_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

fn kill_leader(bazaar: &Bazaar, t0: Instant, what: &str) -> Result<Fault> {
    let before = current_leader(bazaar)?;
    let retries_before = frontend_retries(bazaar);
    let killed = Instant::now();
    bazaar.kill(before)?;
    let after = poll("a new leader", FAILOVER_TIMEOUT, || {
        bazaar.target.leader().filter(|&l| l != before)
    })?;
    let new_leader_ms = ms_since(killed);
    sleep_until(killed + DOWN_FOR);
    let restarted = Instant::now();
    let catch_up_ms = bazaar.restart(before)?;
    eprintln!(
        "eval fail-over: {what} (order-{before}); order-{after} led after {new_leader_ms:.0} ms"
    );
    Ok(Fault {
        label: "leader killed",
        what: format!(
            "{what} (order-{before}), restarted {:.1} s later",
            restarted.duration_since(killed).as_secs_f64()
        ),
        leader_before: Some(before),
        leader_after: Some(after),
        new_leader_ms: Some(new_leader_ms),
        catch_up_ms,
        frontend_retries: retries_between(retries_before, frontend_retries(bazaar)),
        down_s: secs_since(t0, killed),
        up_s: secs_since(t0, restarted),
    })
}

fn kill_follower(bazaar: &Bazaar, t0: Instant) -> Result<Fault> {
    let leader = current_leader(bazaar)?;
    let follower = bazaar
        .replicas
        .keys()
        .rev()
        .copied()
        .find(|&id| id != leader)
        .unwrap_or(1);
    let retries_before = frontend_retries(bazaar);
    let killed = Instant::now();
    bazaar.kill(follower)?;
    sleep_until(killed + DOWN_FOR);
    let restarted = Instant::now();
    let catch_up_ms = bazaar.restart(follower)?;
    eprintln!("eval fail-over: kill -9 follower order-{follower}");
    Ok(Fault {
        label: "follower killed",
        what: format!(
            "kill -9 a follower (order-{follower}), restarted {:.1} s later",
            restarted.duration_since(killed).as_secs_f64()
        ),
        leader_before: Some(leader),
        leader_after: bazaar.target.leader(),
        new_leader_ms: None,
        catch_up_ms,
        frontend_retries: retries_between(retries_before, frontend_retries(bazaar)),
        down_s: secs_since(t0, killed),
        up_s: secs_since(t0, restarted),
    })
}

/// The leader and a follower down together; probe orders meanwhile.
fn kill_two(bazaar: &Bazaar, t0: Instant) -> Result<(Fault, Probes)> {
    let leader = current_leader(bazaar)?;
    let follower = bazaar
        .replicas
        .keys()
        .rev()
        .copied()
        .find(|&id| id != leader)
        .unwrap_or(1);
    let retries_before = frontend_retries(bazaar);
    let killed = Instant::now();
    bazaar.kill(leader)?;
    bazaar.kill(follower)?;
    let mut probes = (0, 0, 0);
    let mut i = 0;
    while Instant::now() < killed + TWO_DOWN_FOR {
        let order = OrderRequest {
            name: "GameStart".into(),
            quantity: 1,
            kind: if i % 2 == 0 {
                OrderType::Sell
            } else {
                OrderType::Buy
            },
            request_id: Some(new_request_id("eval-probe")),
        };
        i += 1;
        match bazaar.target.client.post::<_, OrderAck>(
            &bazaar.target.addr(),
            "/orders",
            &order,
            PROBE_TIMEOUT,
        ) {
            Ok(_) => probes.0 += 1,
            Err(e) if e.status() == 503 => probes.1 += 1,
            Err(_) => probes.2 += 1,
        }
        thread::sleep(PROBE_PAUSE);
    }
    let leader_during = bazaar.target.leader();
    sleep_until(killed + TWO_DOWN_FOR);
    let restarted = Instant::now();
    let catch_up_ms = bazaar.restart(follower)?.max(bazaar.restart(leader)?);
    eprintln!("eval fail-over: order-{leader} and order-{follower} down together");
    Ok((
        Fault {
            label: "two replicas down",
            what: format!(
                "kill -9 the leader (order-{leader}) and a follower (order-{follower}) together, \
                 restarted {:.1} s later (after at least {} s and the last probe's answer)",
                restarted.duration_since(killed).as_secs_f64(),
                TWO_DOWN_FOR.as_secs()
            ),
            leader_before: Some(leader),
            leader_after: leader_during,
            new_leader_ms: None,
            catch_up_ms,
            frontend_retries: retries_between(retries_before, frontend_retries(bazaar)),
            down_s: secs_since(t0, killed),
            up_s: secs_since(t0, restarted),
        },
        probes,
    ))
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

// ---------------------------------------------------------------------------------------------
// The report: every figure and every comparison from the measurements.

fn report(
    options: &EvalOptions,
    setting: &Setting,
    points: &[Point],
    trace: Option<&[TraceLine]>,
    failover: Option<&Failover>,
    seconds: f64,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Course evaluation\n");
    let load = setting
        .load
        .map(|l| format!(" (1-minute load average {l:.2} when it began)"))
        .unwrap_or_default();
    let where_ = match &options.remote {
        Some(addr) => format!(
            "against the running deployment whose front-end is at `{addr}` (`--host`/`--port`); \
             the clients ran on this machine"
        ),
        None => "every bazaar a fresh private one started with `./run.sh up` on ports chosen \
                 at run time, on this machine together with the clients"
            .to_string(),
    };
    let capacity = setting
        .capacity
        .map(|c| format!("the front-end's cache held {c} entries"))
        .unwrap_or_else(|| "the front-end's cache was off".into());
    let _ = writeln!(
        md,
        "Written by `./run.sh eval` (`src/eval.rs`) in {seconds:.0} s on a {}-core machine{load}, \
         {where_}. {} concurrent clients, {} lookups per client in each run, {} run(s) per point \
         (seeds from {}, the same for cache on and off), p = {}. The catalog listed {} stocks; \
         {capacity}. The contract measured is [docs/spec.md](../spec.md). Re-run with \
         `./run.sh eval` (`./run.sh eval --help` for the sizes and for `--host`/`--port`).\n",
        setting.cores,
        options.clients,
        options.n_request,
        options.repeats,
        options.seed,
        options
            .probs
            .iter()
            .map(|&p| fmt_prob(p))
            .collect::<Vec<_>>()
            .join(", "),
        setting.stocks,
    );
    let _ = writeln!(
        md,
        "Files written: {}.\n",
        written_files(options)
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    latency_report(&mut md, options, setting, points);
    let _ = writeln!(md, "\n## Cache replacement over time\n");
    match trace {
        Some(trace) => trace_report(&mut md, options, setting, trace),
        None => {
            let _ = writeln!(
                md,
                "Not measured: against a deployment the cache dump (`DUMP=1`, one line per \
                 cache event) is written on the front-end's own disk, which this run cannot read."
            );
        }
    }
    let _ = writeln!(md, "\n## Fail-over\n");
    match (failover, &options.remote) {
        (Some(f), _) => failover_report(&mut md, options, f),
        (None, Some(_)) => {
            let _ = writeln!(
                md,
                "Not measured: the faults are `./run.sh kill` and `./run.sh start` on the \
                 machine that runs the replicas, which this run does not control."
            );
        }
        (None, None) => {
            let _ = writeln!(md, "Skipped in this run (`--skip-failover`).");
        }
    }
    md
}

fn latency_report(md: &mut String, options: &EvalOptions, setting: &Setting, points: &[Point]) {
    let settings: Vec<bool> = [true, false]
        .into_iter()
        .filter(|&c| points.iter().any(|p| p.cache == c))
        .collect();
    let heading = match settings.as_slice() {
        [true, false] => "cache on and off".to_string(),
        [c] => format!("cache {} (the deployment's setting)", on_off(*c)),
        _ => "no points".to_string(),
    };
    let _ = writeln!(md, "## Latency against p, {heading}\n");
    let _ = writeln!(md, "![latency against p](latency.svg)\n");
    let _ = writeln!(
        md,
        "Data: [latency.csv](latency.csv), one row per run and request type (`count` is the \
         number of timed requests: refused (409) orders are not timed; rows without samples, \
         orders and order queries at p = 0, are left out; `cache_hits` and `cache_misses` are the \
         front-end's counters over the run, on its lookup row). Below, each figure is the mean \
         over the runs of a point, with the lowest and highest run in parentheses; the hit ratio \
         is hits / (hits + misses) of the front-end over each run.\n"
    );
    let _ = writeln!(
        md,
        "| p | cache | lookup mean ms | lookup p99 ms | order mean ms | order p99 ms | order query mean ms | order query p99 ms | hit ratio | lookups | orders (refused) | errors | s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for pt in points {
        let cell = |kind: usize, stat: Stat| {
            pt.lat(kind, stat)
                .map(|s| ms_text(&s).replace(" ms", ""))
                .unwrap_or_else(|| "–".into())
        };
        let total = pt.total();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {:.1} |",
            fmt_prob(pt.p),
            on_off(pt.cache),
            cell(0, |l| l.mean),
            cell(0, |l| l.p99),
            cell(1, |l| l.mean),
            cell(1, |l| l.p99),
            cell(2, |l| l.mean),
            cell(2, |l| l.p99),
            pt.hit_ratio()
                .map(|s| pct_text(&s))
                .unwrap_or_else(|| "–".into()),
            total.lookups,
            total.orders,
            total.rejected,
            total.errors,
            pt.runs.iter().map(|r| r.seconds).sum::<f64>(),
        );
    }
    let _ = writeln!(md, "\n### What it shows\n");
    for line in latency_analysis(options, setting, points) {
        let _ = writeln!(md, "- {line}");
    }
}

/// The analysis of the latency phase, one bullet per finding, each from the data.
fn latency_analysis(options: &EvalOptions, setting: &Setting, points: &[Point]) -> Vec<String> {
    let mut out = Vec::new();
    let series = |cache: bool, kind: usize| -> Vec<(f64, Spread)> {
        points
            .iter()
            .filter(|p| p.cache == cache)
            .filter_map(|p| p.lat(kind, |l| l.mean).map(|s| (p.p, s)))
            .collect()
    };
    let runs = options.repeats;
    if runs < 2 {
        out.push(
            "One run per point: no run-to-run spread was measured, so every difference below is \
             a single sample's."
                .into(),
        );
    }
    let both = points.iter().any(|p| p.cache) && points.iter().any(|p| !p.cache);
    // The cache against no cache, p by p.
    if both {
        let (on, off) = (series(true, 0), series(false, 0));
        let tally = tally_pairs(&on, &off);
        let avg = |s: &[(f64, Spread)]| {
            s.iter().map(|(_, s)| s.mean).sum::<f64>() / s.len().max(1) as f64
        };
        let (avg_on, avg_off) = (avg(&on), avg(&off));
        let mut text = format!(
            "**The cache and lookups.** {}. Averaged over every p, a lookup took {avg_on:.2} ms \
             with the cache and {avg_off:.2} ms without ({}).",
            tally.describe("a lookup", "with the cache than without"),
            ratio_text(avg_on, avg_off)
        );
        if tally.lower > 0 {
            text.push_str(
                " A hit is answered by the front-end alone; a miss costs one more HTTP hop to the \
                 catalog, which is what the cache saves.",
            );
        } else {
            text.push_str(
                " The hop to the catalog that a hit saves did not show beyond the spread here.",
            );
        }
        out.push(text);
    }
    // The hit ratio.
    let ratios: Vec<(f64, Spread)> = points
        .iter()
        .filter_map(|p| p.hit_ratio().map(|s| (p.p, s)))
        .collect();
    if let (Some(&first), Some(&last)) = (ratios.first(), ratios.last()) {
        let bound = match setting.capacity {
            Some(c) if setting.stocks > 0 && c < setting.stocks => format!(
                "The catalog lists {} stocks and the cache holds {c} entries, so with the \
                 client's uniform choice of stock at most about {c}/{} = {:.0}% of the lookups \
                 can hit, even with no trade.",
                setting.stocks,
                setting.stocks,
                100.0 * c as f64 / setting.stocks as f64
            ),
            Some(c) => format!(
                "The cache holds {c} entries, enough for all {} stocks, so with no trade every \
                 lookup but the first of each stock can hit.",
                setting.stocks
            ),
            None => String::new(),
        };
        let per_p = ratios
            .iter()
            .map(|(p, s)| format!("{} at p = {}", pct_text(s), fmt_prob(*p)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!("**Hit ratio.** {bound} Measured: {per_p}.");
        if ratios.len() > 1 {
            let _ = write!(
                text,
                " From the lowest p to the highest it {}.",
                trend(first, last, pct_text)
            );
            text.push_str(match compare(&first.1, &last.1) {
                Change::Lower => {
                    " Every trade invalidates its stock's entry, so the more orders, the more \
                     lookups miss."
                }
                Change::Higher => " It rose although more trades invalidate more entries.",
                Change::Within => "",
            });
        }
        out.push(text);
    }
    // How p moves lookups and orders.
    for (kind, name) in [(0, "lookup"), (1, "order"), (2, "order query")] {
        let mut parts = Vec::new();
        for cache in [true, false] {
            let s = series(cache, kind);
            if let (Some(&first), Some(&last)) = (s.first(), s.last()) {
                if s.len() > 1 {
                    let with = if both {
                        format!("{} the cache ", if cache { "with" } else { "without" })
                    } else {
                        String::new()
                    };
                    parts.push(format!("{with}it {}", trend(first, last, ms_text)));
                }
            }
        }
        if !parts.is_empty() {
            let title = match kind {
                0 => "**How p moves lookups.**",
                1 => "**How p moves orders.**",
                _ => "**How p moves order queries.**",
            };
            out.push(format!(
                "{title} The mean {name} latency: {}.",
                parts.join("; ")
            ));
        }
    }
    // The cache against the orders.
    if both {
        let tally = tally_pairs(&series(true, 1), &series(false, 1));
        if tally.count() > 0 {
            out.push(format!(
                "**The cache and orders.** The cache is not on the order path. {}.{}",
                tally.describe("an order", "with the cache than without"),
                if tally.lower > tally.count() / 2 {
                    " Without the cache every lookup goes to the catalog too, the service that \
                     also applies every trade, so orders wait behind lookups there."
                } else {
                    ""
                }
            ));
        }
    }
    // Order queries against lookups.
    let query = spread(
        points
            .iter()
            .filter_map(|p| p.lat(2, |l| l.mean).map(|s| s.mean)),
    );
    let uncached = spread(
        points
            .iter()
            .filter(|p| !p.cache)
            .filter_map(|p| p.lat(0, |l| l.mean).map(|s| s.mean)),
    );
    if let (Some(q), Some(l)) = (query, uncached) {
        out.push(format!(
            "**Order queries** (one forward to the leader, answered from its memory) took \
             {:.2} ms on average over every p and cache setting; a lookup without the cache \
             (one forward to the catalog) {:.2} ms: the query took {}.",
            q.mean,
            l.mean,
            ratio_text(q.mean, l.mean).replace("with the cache", "than the lookup")
        ));
    }
    out
}

/// How often a first series was lower, higher or within the spread of a second, p by p.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    lower: usize,
    higher: usize,
    within: usize,
}

impl Tally {
    fn count(&self) -> usize {
        self.lower + self.higher + self.within
    }

    /// E.g. "At 4 of 5 values of p a lookup was faster with the cache than without, beyond
    /// the run-to-run spread; at 1 the difference was within it".
    fn describe(&self, what: &str, how: &str) -> String {
        let n = self.count();
        if n == 0 {
            return format!("No value of p measured {what} both ways");
        }
        let mut parts = Vec::new();
        // The first part names the subject; the others go on with "it".
        let mut subject = format!("{what} was");
        let mut next = |parts: &mut Vec<String>, k: usize, verdict: &str| {
            let at = if parts.is_empty() {
                format!("At {k} of {n} values of p")
            } else {
                format!("at {k}")
            };
            parts.push(format!("{at} {subject} {verdict}"));
            subject = "it was".into();
        };
        if self.lower > 0 {
            next(
                &mut parts,
                self.lower,
                &format!("faster {how}, beyond the run-to-run spread"),
            );
        }
        if self.higher > 0 {
            next(
                &mut parts,
                self.higher,
                &format!("slower {how}, beyond the run-to-run spread"),
            );
        }
        if self.within > 0 {
            let at = if parts.is_empty() {
                format!("At {} of {n} values of p", self.within)
            } else {
                format!("at {}", self.within)
            };
            parts.push(format!(
                "{at} the difference{} was within the run-to-run spread",
                if parts.is_empty() {
                    format!(" for {what}")
                } else {
                    String::new()
                }
            ));
        }
        parts.join("; ")
    }
}

/// `a` against `b` at every p both measured.
fn tally_pairs(a: &[(f64, Spread)], b: &[(f64, Spread)]) -> Tally {
    let mut tally = Tally::default();
    for (p, sa) in a {
        if let Some((_, sb)) = b.iter().find(|(q, _)| q == p) {
            match compare(sb, sa) {
                Change::Lower => tally.lower += 1,
                Change::Higher => tally.higher += 1,
                Change::Within => tally.within += 1,
            }
        }
    }
    tally
}

fn trace_report(md: &mut String, options: &EvalOptions, setting: &Setting, trace: &[TraceLine]) {
    let count = |event: &str| trace.iter().filter(|l| l.event == event).count();
    let (hits, inserts, evicts, invalidates) = (
        count("hit"),
        count("insert"),
        count("evict"),
        count("invalidate"),
    );
    let size = options.trace_cache_size;
    let versus = match size.cmp(&setting.stocks) {
        std::cmp::Ordering::Less => format!("fewer than the {} stocks", setting.stocks),
        std::cmp::Ordering::Equal => format!("as many as the {} stocks", setting.stocks),
        std::cmp::Ordering::Greater => format!("more than the {} stocks", setting.stocks),
    };
    let _ = writeln!(md, "![cache over time](cache-trace.svg)\n");
    let _ = write!(
        md,
        "A front-end with `DUMP=1` and a cache of {size} entries ({versus}), {TRACE_CLIENTS} \
         clients, p = {}, {} lookups each. Each column is one line of the dump \
         (`data/frontend-cache.jsonl`); a filled cell means that stock was in the cache after \
         that event, darker for more recently used. {hits} hits, {inserts} inserts after a miss, \
         {evicts} evictions (red crosses: the least recently used entry makes room) and \
         {invalidates} invalidations (orange triangles: a trade on that stock, sent by the \
         catalog before the trade is acknowledged). Hits per hit or insert: {}.",
        fmt_prob(TRACE_PROB),
        options.trace_requests,
        percent(hits, hits + inserts),
    );
    if evicts > 0 {
        let _ = write!(
            md,
            " The cache filled up and {evicts} misses evicted an entry to make room."
        );
    } else {
        let _ = write!(md, " The cache never filled up: no miss evicted anything.");
    }
    if invalidates > 0 {
        let _ = write!(
            md,
            " An invalidated stock leaves a gap in its row until it is looked up again."
        );
    }
    let _ = writeln!(md);
}

/// What one window of the fail-over phase cost the clients and the probe.
#[derive(Clone, Debug, Default, PartialEq)]
struct WindowCost {
    probe_orders: usize,
    probe_failed: usize,
    probe_slowest_ms: f64,
    client_runs: usize,
    client_longest_ms: f64,
    client_retries: u64,
    client_errors: u64,
}

fn window_cost(
    f: &Failover,
    sample_in: &dyn Fn(&Sample) -> bool,
    run_in: &dyn Fn(&ClientRun) -> bool,
) -> WindowCost {
    let mut cost = WindowCost::default();
    for s in f.timeline.iter().filter(|s| sample_in(s)) {
        cost.probe_orders += 1;
        cost.probe_failed += usize::from(!s.ok);
        cost.probe_slowest_ms = cost.probe_slowest_ms.max(s.ms);
    }
    for r in f.runs.iter().filter(|r| run_in(r)) {
        cost.client_runs += 1;
        cost.client_longest_ms = cost.client_longest_ms.max(r.result.longest_ms());
        cost.client_retries += r.result.retries;
        cost.client_errors += r.result.errors + r.result.mismatches;
    }
    cost
}

/// Each fault's cost, and the cost of the time outside every fault's window.
fn fault_costs(f: &Failover) -> (Vec<WindowCost>, WindowCost) {
    let per_fault = f
        .faults
        .iter()
        .map(|fault| {
            let w = fault.window();
            window_cost(f, &|s| s.overlaps(&w), &|r| r.overlaps(&w))
        })
        .collect();
    let outside = |s: &Sample| !f.faults.iter().any(|x| s.overlaps(&x.window()));
    let quiet = window_cost(f, &outside, &|r| {
        !f.faults.iter().any(|x| r.overlaps(&x.window()))
    });
    (per_fault, quiet)
}

fn failover_report(md: &mut String, options: &EvalOptions, f: &Failover) {
    let _ = writeln!(
        md,
        "{} clients (p = {}) in {} back-to-back `client` runs of {} lookups each, every run \
         reading all its acknowledged orders back, while these faults happened one after the \
         other (health check interval {HEALTH_CHECK_INTERVAL} s; {:.0} s in all):\n",
        options.clients,
        fmt_prob(FAILOVER_PROB),
        f.runs.len(),
        FAILOVER_CLIENT_REQUESTS,
        f.seconds
    );
    let _ = writeln!(
        md,
        "| fault | leader before → after | new leader after | restarted replica caught up after | front-end retries |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let id = |l: Option<u32>| {
        l.map(|l| format!("order-{l}"))
            .unwrap_or_else(|| "none".into())
    };
    for fault in &f.faults {
        let _ = writeln!(
            md,
            "| {} | {} → {} | {} | {:.0} ms | {} |",
            fault.what,
            id(fault.leader_before),
            id(fault.leader_after),
            fault
                .new_leader_ms
                .map(|ms| format!("{ms:.0} ms"))
                .unwrap_or_else(|| "–".into()),
            fault.catch_up_ms,
            fault
                .frontend_retries
                .map(|r| r.to_string())
                .unwrap_or_else(|| "–".into()),
        );
    }
    let _ = writeln!(md, "\n![fail-over timeline](failover.svg)\n");
    let _ = writeln!(
        md,
        "The plot has a log scale, so that orders of a few milliseconds and pauses of seconds are \
         both visible. Blue dots: one probe that placed one order at a time (FishCo, sell and buy \
         in turn, {} ms apart) for the whole phase, {} orders. Green segments: each client run's \
         mean order latency over the run's duration; purple triangles: each run's longest single \
         request, its retries included. The shaded windows run from the kill to the restart. \
         Below, a fault's window runs from the kill until {AFTER_RESTART_S:.0} s after the \
         restart, and a probe order or a client run counts for every window it overlaps (an \
         order sent just before a kill waits for the fail-over).\n",
        TIMELINE_PAUSE.as_millis(),
        f.timeline.len(),
    );
    let (costs, quiet) = fault_costs(f);
    let _ = writeln!(
        md,
        "| window | probe orders (failed) | slowest probe order | client runs | longest client request | client retries | client errors and mismatches |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let rows = f
        .faults
        .iter()
        .map(|x| x.label)
        .zip(&costs)
        .chain([("no fault", &quiet)]);
    for (label, c) in rows {
        let _ = writeln!(
            md,
            "| {label} | {} ({}) | {:.0} ms | {} | {:.0} ms | {} | {} |",
            c.probe_orders,
            c.probe_failed,
            c.probe_slowest_ms,
            c.client_runs,
            c.client_longest_ms,
            c.client_retries,
            c.client_errors
        );
    }
    let c = f.clients();
    let _ = writeln!(md, "\nWhat the clients saw in all:\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let rows: [(&str, String); 10] = [
        (
            "lookups / orders / order queries",
            format!("{} / {} / {}", c.lookups, c.orders, c.order_queries),
        ),
        (
            "refused orders (409, not enough stock)",
            c.rejected.to_string(),
        ),
        (
            "errors (transport failures, 5xx after the client's retries)",
            c.errors.to_string(),
        ),
        (
            "mismatches (an acknowledged order read back differently or not at all)",
            c.mismatches.to_string(),
        ),
        ("retries by the clients", c.retries.to_string()),
        (
            "retries by the front-end (`/health`)",
            f.frontend_retries.to_string(),
        ),
        (
            "leader changes seen by the front-end (`/health` failovers)",
            f.frontend_failovers.to_string(),
        ),
        (
            "longest single request, retries included (the longest pause)",
            format!("{:.0} ms", f.longest_ms()),
        ),
        (
            "probe orders while two replicas were down: acknowledged / 503 / other",
            format!("{} / {} / {}", f.probes_ok, f.probes_503, f.probes_other),
        ),
        (
            "replica files once quiet (`cmp`)",
            format!(
                "{} ({} orders)",
                if f.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                },
                f.orders_in_log
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "\n### Can clients notice failures?\n");
    for line in failover_answer(f, &costs, &quiet) {
        let _ = writeln!(md, "- {line}");
    }
}

/// The direct answer: which faults cost what, as errors or as pauses.
fn failover_answer(f: &Failover, costs: &[WindowCost], quiet: &WindowCost) -> Vec<String> {
    let mut out = Vec::new();
    let c = f.clients();
    let broken = c.errors + c.mismatches;
    if broken == 0 {
        out.push(format!(
            "**Not as errors.** No client saw an error or a wrong answer: 0 errors and 0 \
             mismatches in {} lookups, {} orders and {} order queries. What they can notice is \
             a pause: outside the faults no client request took longer than {:.0} ms and no \
             probe order longer than {:.0} ms.",
            c.lookups, c.orders, c.order_queries, quiet.client_longest_ms, quiet.probe_slowest_ms
        ));
    } else {
        let which: Vec<String> = f
            .faults
            .iter()
            .zip(costs)
            .filter(|(_, cost)| cost.client_errors > 0)
            .map(|(x, cost)| format!("{} in the runs around \"{}\"", cost.client_errors, x.label))
            .collect();
        out.push(format!(
            "**Yes, as errors.** The clients saw {} errors and {} mismatches{}{}.",
            c.errors,
            c.mismatches,
            if which.is_empty() { "" } else { ": " },
            which.join(", ")
        ));
    }
    let probe_failed: Vec<String> = f
        .faults
        .iter()
        .zip(costs)
        .filter(|(_, cost)| cost.probe_failed > 0)
        .map(|(x, cost)| format!("{} around \"{}\"", cost.probe_failed, x.label))
        .collect();
    let probe_failed_total = f.timeline.iter().filter(|s| !s.ok).count();
    if probe_failed_total > 0 {
        out.push(format!(
            "The one-at-a-time probe, which does not retry, had {probe_failed_total} failed \
             order(s) (an error status or no answer): {}{}.",
            if probe_failed.is_empty() {
                "none of them during a fault".to_string()
            } else {
                probe_failed.join(", ")
            },
            if quiet.probe_failed > 0 {
                format!(", {} outside every fault", quiet.probe_failed)
            } else {
                String::new()
            }
        ));
    }
    for (fault, cost) in f.faults.iter().zip(costs) {
        let longest = cost.client_longest_ms.max(cost.probe_slowest_ms);
        let normal = quiet.client_longest_ms.max(quiet.probe_slowest_ms);
        let verdict = if longest > PAUSE_FACTOR * normal {
            format!(
                "a pause of up to {longest:.0} ms, more than {PAUSE_FACTOR:.0}× the longest \
                 outside the faults ({normal:.0} ms)"
            )
        } else {
            format!(
                "no pause beyond the usual: the longest took {longest:.0} ms, against \
                 {normal:.0} ms outside the faults"
            )
        };
        let mut text = format!("**{}**: {verdict}", fault.what);
        if let Some(ms) = fault.new_leader_ms {
            let _ = write!(
                text,
                "; the front-end named a new leader {ms:.0} ms after the kill"
            );
        }
        if let Some(r) = fault.frontend_retries {
            let _ = write!(text, "; the front-end retried {r} forwards");
        }
        let _ = write!(
            text,
            "; the clients retried {} requests and saw {} errors; {} of {} probe orders failed.",
            cost.client_retries, cost.client_errors, cost.probe_failed, cost.probe_orders
        );
        out.push(text);
    }
    if f.faults.iter().any(|x| x.label == "two replicas down") {
        out.push(format!(
            "**With two of {} replicas down**, the probe orders sent one at a time were {} \
             acknowledged, {} answered 503 and {} otherwise. docs/spec.md §4 asks for majority \
             commit (503 while fewer than a majority of replicas are up); {}",
            f.replicas,
            f.probes_ok,
            f.probes_503,
            f.probes_other,
            if f.probes_ok > 0 {
                "some were acknowledged with only one live copy, which breaks that rule."
            } else {
                "none was acknowledged by a single copy, as required."
            }
        ));
    }
    out.push(format!(
        "Once quiet, the {} replica files were {} (`cmp`).",
        f.replicas,
        if f.identical {
            "byte-identical"
        } else {
            "NOT identical"
        }
    ));
    out
}

fn ratio_text(with: f64, without: f64) -> String {
    if with <= 0.0 || without <= 0.0 {
        return "no comparison".into();
    }
    if with < without {
        format!("{:.0}% less with the cache", 100.0 * (1.0 - with / without))
    } else {
        format!("{:.0}% more with the cache", 100.0 * (with / without - 1.0))
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.0}%", 100.0 * part as f64 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(mean: f64) -> Lat {
        Lat {
            mean,
            p50: mean,
            p99: 2.0 * mean,
            max: 3.0 * mean,
        }
    }

    /// A point whose runs have these mean latencies (every request type alike) and, with the
    /// cache on, these hits per 100 lookups.
    fn point(p: f64, cache: bool, orders: u64, means: &[f64], hits: &[u64]) -> Point {
        let runs = means
            .iter()
            .enumerate()
            .map(|(i, &m)| Run {
                result: ClientJson {
                    lookups: 100,
                    orders,
                    order_queries: orders,
                    rejected: 1.min(orders),
                    lookup_ms: lat(m),
                    order_ms: lat(m),
                    query_ms: lat(m),
                    ..ClientJson::default()
                },
                seconds: 1.0,
                cache: cache.then(|| CacheCount {
                    hits: hits.get(i).copied().unwrap_or(50),
                    misses: 100 - hits.get(i).copied().unwrap_or(50),
                }),
            })
            .collect();
        Point { p, cache, runs }
    }

    fn options(probs: &[f64]) -> EvalOptions {
        EvalOptions {
            run_sh: "run.sh".into(),
            client: "client".into(),
            bin_dir: ".".into(),
            out_dir: ".".into(),
            probs: probs.to_vec(),
            repeats: 3,
            clients: 5,
            n_request: 100,
            seed: 42,
            trace_cache_size: 6,
            trace_requests: 60,
            skip_failover: false,
            remote: None,
        }
    }

    fn setting() -> Setting {
        Setting {
            stocks: 20,
            capacity: Some(5),
            cores: 8,
            load: Some(0.5),
        }
    }

    fn s(values: &[f64]) -> Spread {
        spread(values.iter().copied()).unwrap()
    }

    #[test]
    fn probabilities_print_as_given() {
        assert_eq!(fmt_prob(0.25), "0.25");
        assert_eq!(fmt_prob(0.2), "0.2");
        assert_eq!(fmt_prob(0.0), "0");
        assert_eq!(fmt_prob(1.0), "1");
        assert_eq!(fmt_prob(0.125), "0.125");
        assert_eq!(axis_prob(0.25), "0.25");
        assert_eq!(axis_prob(0.2000001), "0.2");
        assert_eq!(axis_prob(0.0), "0");
    }

    #[test]
    fn compare_needs_disjoint_ranges() {
        assert_eq!(compare(&s(&[1.0, 1.2]), &s(&[1.3, 1.5])), Change::Higher);
        assert_eq!(compare(&s(&[1.3, 1.5]), &s(&[1.0, 1.2])), Change::Lower);
        assert_eq!(compare(&s(&[1.0, 1.4]), &s(&[1.3, 1.5])), Change::Within);
        assert_eq!(compare(&s(&[1.0]), &s(&[1.0])), Change::Within);
    }

    #[test]
    fn trend_says_rose_fell_or_within() {
        let (a, b) = (s(&[2.0, 2.1, 2.2]), s(&[3.0, 3.1, 3.2]));
        assert!(trend((0.2, a), (0.8, b), ms_text)
            .starts_with("rose from 2.10 ms (2.00–2.20) at p = 0.2 to 3.10 ms"));
        assert!(trend((0.25, b), (0.5, a), ms_text).starts_with("fell from 3.10 ms"));
        let within = trend((0.25, a), (0.5, s(&[2.05, 2.3])), ms_text);
        assert!(within.ends_with("within the run-to-run spread"), "{within}");
        assert!(within.contains("at p = 0.25"), "{within}");
    }

    #[test]
    fn analysis_follows_the_data() {
        // Lookups and orders fall with p, with and without the cache: the text must say so.
        let points = vec![
            point(0.25, true, 10, &[3.0, 3.1, 3.2], &[30, 31, 29]),
            point(0.5, true, 20, &[2.0, 2.1, 2.2], &[10, 12, 11]),
            point(0.25, false, 10, &[4.0, 4.1, 4.2], &[]),
            point(0.5, false, 20, &[2.1, 2.2, 2.3], &[]),
        ];
        let text = latency_analysis(&options(&[0.25, 0.5]), &setting(), &points).join("\n");
        assert!(!text.contains("rose"), "{text}");
        assert!(
            text.contains("lookup latency: with the cache it fell from 3.10 ms"),
            "{text}"
        );
        assert!(
            text.contains("without the cache it fell from 4.10 ms"),
            "{text}"
        );
        assert!(
            text.contains("20 stocks and the cache holds 5 entries"),
            "{text}"
        );
        assert!(text.contains("5/20 = 25%"), "{text}");
        assert!(text.contains("30% (29–31%) at p = 0.25"), "{text}");
        // Cache on vs off: lower at p = 0.25, within the spread at p = 0.5.
        assert!(
            text.contains("At 1 of 2 values of p a lookup was faster"),
            "{text}"
        );
        assert!(text.contains("at 1 the difference was within"), "{text}");
        assert!(
            !text.contains("14 stocks") && !text.contains("two cores"),
            "{text}"
        );

        // The same with rising latencies.
        let rising = vec![
            point(0.25, true, 10, &[1.0, 1.1], &[]),
            point(0.5, true, 20, &[2.0, 2.1], &[]),
        ];
        let text = latency_analysis(&options(&[0.25, 0.5]), &setting(), &rising).join("\n");
        assert!(text.contains("it rose from 1.05 ms"), "{text}");
        assert!(!text.contains("fell"), "{text}");
    }

    #[test]
    fn tally_names_its_subject_once() {
        let slower = Tally {
            higher: 2,
            ..Tally::default()
        };
        assert_eq!(
            slower.describe("an order", "with the cache than without"),
            "At 2 of 2 values of p an order was slower with the cache than without, beyond the \
             run-to-run spread"
        );
        let mixed = Tally {
            lower: 1,
            higher: 1,
            within: 3,
        };
        assert_eq!(
            mixed.describe("a lookup", "with the cache than without"),
            "At 1 of 5 values of p a lookup was faster with the cache than without, beyond the \
             run-to-run spread; at 1 it was slower with the cache than without, beyond the \
             run-to-run spread; at 3 the difference was within the run-to-run spread"
        );
        let within = Tally {
            within: 2,
            ..Tally::default()
        };
        assert_eq!(
            within.describe("a lookup", "x"),
            "At 2 of 2 values of p the difference for a lookup was within the run-to-run spread"
        );
    }

    #[test]
    fn one_run_per_point_says_there_is_no_spread() {
        let mut o = options(&[0.0, 0.5]);
        o.repeats = 1;
        let points = vec![
            point(0.0, true, 0, &[1.0], &[]),
            point(0.5, true, 4, &[1.0], &[]),
        ];
        let text = latency_analysis(&o, &setting(), &points).join("\n");
        assert!(text.contains("no run-to-run spread"), "{text}");
    }

    #[test]
    fn files_listed_are_the_files_written() {
        let mut o = options(&[0.5]);
        assert_eq!(
            written_files(&o),
            [
                "latency.csv",
                "latency.svg",
                "cache-trace.svg",
                "failover.svg",
                "README.md"
            ]
        );
        o.skip_failover = true;
        assert!(!written_files(&o).contains(&"failover.svg"));
        let points = vec![point(0.5, true, 4, &[1.0], &[])];
        let md = report(&o, &setting(), &points, Some(&[]), None, 1.0);
        assert!(!md.contains("failover.svg"), "{md}");
        assert!(
            md.contains("Skipped in this run (`--skip-failover`)"),
            "{md}"
        );
        o.skip_failover = false;
        o.remote = Some("10.0.0.1:8080".into());
        assert_eq!(
            written_files(&o),
            ["latency.csv", "latency.svg", "README.md"]
        );
        let md = report(&o, &setting(), &points, None, None, 1.0);
        assert!(
            !md.contains("failover.svg") && !md.contains("cache-trace.svg"),
            "{md}"
        );
        assert!(md.contains("`10.0.0.1:8080`"), "{md}");
        assert!(md.contains("cache on (the deployment's setting)"), "{md}");
    }

    #[test]
    fn report_prints_probabilities_and_the_spec_link() {
        let o = options(&[0.25]);
        let points = vec![point(0.25, true, 4, &[1.0, 1.2, 1.1], &[])];
        let md = report(&o, &setting(), &points, Some(&[]), None, 1.0);
        assert!(md.contains("p = 0.25."), "{md}");
        assert!(md.contains("| 0.25 | on |"), "{md}");
        assert!(!md.contains("0.2 |") && !md.contains("0.3 |"), "{md}");
        assert!(md.contains("[docs/spec.md](../spec.md)"), "{md}");
        assert!(
            md.contains("8-core machine (1-minute load average 0.50"),
            "{md}"
        );
        assert!(md.contains("| 1.10 (1.00–1.20) |"), "{md}");
    }

    #[test]
    fn csv_has_one_row_per_run_and_type() {
        let csv = latency_csv(&[
            point(0.0, true, 0, &[1.5], &[40]),
            point(0.25, false, 3, &[1.5, 2.0], &[]),
        ]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            &lines[1..],
            [
                "0,on,1,lookup,1.500,1.500,3.000,4.500,100,40,60",
                "0.25,off,1,lookup,1.500,1.500,3.000,4.500,100,,",
                "0.25,off,1,order,1.500,1.500,3.000,4.500,2,,",
                "0.25,off,1,order_query,1.500,1.500,3.000,4.500,3,,",
                "0.25,off,2,lookup,2.000,2.000,4.000,6.000,100,,",
                "0.25,off,2,order,2.000,2.000,4.000,6.000,2,,",
                "0.25,off,2,order_query,2.000,2.000,4.000,6.000,3,,",
            ]
        );
    }

    #[test]
    fn client_json_parses_the_client_summary() {
        let summary = crate::client::Summary {
            lookups: 7,
            ..crate::client::Summary::default()
        };
        let text = serde_json::to_string(&summary).unwrap();
        let parsed: ClientJson = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.lookups, 7);
    }

    fn failover(errors: u64) -> Failover {
        let run = |start_s: f64, end_s: f64, longest: f64, errors: u64| ClientRun {
            start_s,
            end_s,
            result: ClientJson {
                lookups: 500,
                orders: 250,
                order_queries: 250,
                errors,
                retries: 1,
                order_ms: Lat {
                    mean: 3.0,
                    p50: 3.0,
                    p99: 5.0,
                    max: longest,
                },
                ..ClientJson::default()
            },
        };
        Failover {
            faults: vec![Fault {
                what: "kill -9 the leader (order-3), restarted 3.0 s later".into(),
                label: "leader killed",
                leader_before: Some(3),
                leader_after: Some(2),
                new_leader_ms: Some(800.0),
                catch_up_ms: 50.0,
                frontend_retries: Some(4),
                down_s: 2.0,
                up_s: 5.0,
            }],
            runs: vec![
                run(0.0, 1.0, 9.0, 0),
                run(1.0, 3.0, 900.0, errors),
                run(7.0, 8.0, 8.0, 0),
            ],
            timeline: vec![
                Sample {
                    at_s: 0.5,
                    ms: 4.0,
                    ok: true,
                },
                Sample {
                    at_s: 2.5,
                    ms: 700.0,
                    ok: true,
                },
                // Sent just before the kill, answered after the fail-over: the fault's.
                Sample {
                    at_s: 1.9,
                    ms: 950.0,
                    ok: true,
                },
            ],
            replicas: 3,
            identical: true,
            seconds: 8.0,
            ..Failover::default()
        }
    }

    #[test]
    fn failover_answer_names_pauses_and_errors() {
        let f = failover(0);
        let (costs, quiet) = fault_costs(&f);
        assert_eq!(costs[0].client_runs, 1);
        assert_eq!(costs[0].client_longest_ms, 900.0);
        assert_eq!(quiet.client_runs, 2);
        assert_eq!(quiet.client_longest_ms, 9.0);
        assert_eq!(
            (costs[0].probe_orders, costs[0].probe_slowest_ms),
            (2, 950.0)
        );
        assert_eq!((quiet.probe_orders, quiet.probe_slowest_ms), (1, 4.0));
        let text = failover_answer(&f, &costs, &quiet).join("\n");
        assert!(text.contains("**Not as errors.**"), "{text}");
        assert!(
            text.contains(
                "a pause of up to 950 ms, more than 2× the longest outside the faults (9 ms)"
            ),
            "{text}"
        );
        assert!(text.contains("new leader 800 ms after the kill"), "{text}");
        assert!(text.contains("retried 4 forwards"), "{text}");

        // A fault whose slowest request is barely slower than the quiet time's is no pause.
        let mut calm = failover(0);
        calm.runs[1].result.order_ms.max = 12.0;
        for s in &mut calm.timeline {
            s.ms = 5.0;
        }
        let (costs, quiet) = fault_costs(&calm);
        let text = failover_answer(&calm, &costs, &quiet).join("\n");
        assert!(
            text.contains("no pause beyond the usual: the longest took 12 ms, against 9 ms"),
            "{text}"
        );

        let f = failover(2);
        let (costs, quiet) = fault_costs(&f);
        let text = failover_answer(&f, &costs, &quiet).join("\n");
        assert!(
            text.contains("**Yes, as errors.** The clients saw 2 errors"),
            "{text}"
        );
        assert!(
            text.contains("2 in the runs around \"leader killed\""),
            "{text}"
        );
    }

    #[test]
    fn plots_render_to_svg() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let points = vec![
            point(0.0, true, 0, &[1.0, 1.2], &[]),
            point(0.4, true, 4, &[1.0, 1.1], &[]),
            point(0.0, false, 0, &[1.4, 1.5], &[]),
            point(0.4, false, 4, &[1.4, 1.6], &[]),
        ];
        plot_latency(&points, 5, &dir.join("l.svg")).unwrap();
        let line = |ts_ms, event: &str, key: &str, items: &[&str]| TraceLine {
            ts_ms,
            event: event.into(),
            key: key.into(),
            items: items.iter().map(|s| s.to_string()).collect(),
        };
        let trace = vec![
            line(1, "insert", "AAPL", &["AAPL"]),
            line(2, "insert", "IBM", &["IBM", "AAPL"]),
            line(3, "evict", "AAPL", &["IBM"]),
            line(3, "insert", "GOOG", &["GOOG", "IBM"]),
            line(4, "invalidate", "IBM", &["GOOG"]),
        ];
        plot_trace(&trace, 2, &dir.join("t.svg")).unwrap();
        plot_failover(&failover(0), &dir.join("f.svg")).unwrap();
        for name in ["l.svg", "t.svg", "f.svg"] {
            let svg = fs::read_to_string(dir.join(name)).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{name}");
        }
        let latency = fs::read_to_string(dir.join("l.svg")).unwrap();
        assert!(latency.contains("order query: mean latency"));
        assert!(latency.contains("lowest to highest run"));
        assert!(fs::read_to_string(dir.join("t.svg"))
            .unwrap()
            .contains("GameStart"));
        assert!(fs::read_to_string(dir.join("f.svg"))
            .unwrap()
            .contains("log scale"));
    }
}

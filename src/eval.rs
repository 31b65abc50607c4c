//! The course evaluation (`./run.sh eval`): latency against the order probability with the
//! cache on and off, the cache's replacement over time, and a fail-over experiment, written to
//! `docs/eval/` as a CSV, SVG plots and a README with the numbers and a short analysis.
//!
//! It drives the system only from the outside, the way a student would: every bazaar is a
//! private one started with `./run.sh up` (own ports chosen at run time, own data and run
//! directories under the temporary directory, passed as the environment overrides of docs/spec.md §1),
//! faults are `./run.sh kill` / `./run.sh start`, load and latency come from the `client`
//! binary's `--json` summary, and everything else from the REST API (`GET /health` of the
//! front-end and the replicas, `POST /orders` probes), the front-end's cache dump and `cmp` of
//! the replica files. It never looks inside a service, so it measures whatever order path the
//! replicas implement.
//!
//! Phases, each on a fresh bazaar:
//!
//! 1. **Latency**: for cache on and off, for each p, one `client --clients 5 --prob p` run
//!    with the same seed for on and off; a progress line per point; `latency.csv` and
//!    `latency.svg` (mean and p99 against p, one panel per request type).
//! 2. **Cache trace**: a front-end with `DUMP=1` and a cache smaller than the catalog;
//!    `cache-trace.svg` shows which stocks sit in the cache after every cache event, with
//!    evictions and invalidations marked.
//! 3. **Fail-over**: clients run in back-to-back `client` runs while the leader, a follower and
//!    the leader again are killed and restarted, then two replicas at once; during the double
//!    fault this process sends its own probe orders and counts their answers; throughout, one
//!    more probe places one order at a time and times it (`failover.svg`, the faults shaded).
//!    Then the replica files are compared with `cmp`.
//!
//! Caveats:
//!
//! - Everything runs on one machine, clients included: latencies are loopback latencies and
//!   the clients compete with the services for the same cores, so absolute numbers depend on
//!   the machine and on whatever else runs on it; compare the curves, not single values.
//! - The client times a request including its own retries; a fail-over therefore shows as one
//!   long request (the "longest pause"), not as errors.
//! - Stock quantities carry over from one p to the next within a bazaar (one bazaar per cache
//!   setting), so the share of refused (409) buys can differ slightly between on and off.
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

use plotters::prelude::*;
use serde::Deserialize;

use crate::api::{new_request_id, FrontendHealth, OrderAck, OrderRequest, OrderType};
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
/// How long one client run of the fail-over phase may take before it is killed.
const CLIENT_RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The front-end's leader check interval in every eval bazaar (the shipped config's).
const HEALTH_CHECK_INTERVAL: &str = "1.0";
/// Pause between two orders of the fail-over timeline probe.
const TIMELINE_PAUSE: Duration = Duration::from_millis(20);
/// Bound on the timeline probe's orders (the phase lasts about 20 s).
const MAX_TIMELINE_SAMPLES: usize = 20_000;
/// Attempts at starting a bazaar (a port chosen at run time may be taken before it is bound).
const UP_ATTEMPTS: u32 = 2;

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
}

/// One point of the latency phase: what `client --json` printed.
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

impl ClientJson {
    fn longest_ms(&self) -> f64 {
        self.lookup_ms
            .max
            .max(self.order_ms.max)
            .max(self.query_ms.max)
    }

    /// (type, latency, timed requests) of each request type.
    fn rows(&self) -> [(&'static str, Lat, u64); 3] {
        [
            (
                "lookup",
                self.lookup_ms,
                self.lookups.saturating_sub(self.errors),
            ),
            (
                "order",
                self.order_ms,
                self.orders.saturating_sub(self.rejected),
            ),
            ("query", self.query_ms, self.order_queries),
        ]
    }
}

/// One measured point.
#[derive(Clone, Debug)]
struct Point {
    p: f64,
    cache: bool,
    result: ClientJson,
    seconds: f64,
}

/// One fault of the fail-over phase.
#[derive(Clone, Debug)]
struct Fault {
    what: String,
    /// A few words for the timeline figure.
    label: &'static str,
    leader_before: Option<u32>,
    leader_after: Option<u32>,
    /// From the kill until the front-end named another leader (leader kills only).
    new_leader_ms: Option<f64>,
    /// From the restart until the replica answered as leader or follower again.
    catch_up_ms: f64,
    /// When the replica(s) went down and when they were started again, in seconds since the
    /// phase began.
    down_s: f64,
    up_s: f64,
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

/// What the fail-over phase saw.
#[derive(Clone, Debug, Default)]
struct Failover {
    faults: Vec<Fault>,
    clients: ClientJson,
    client_runs: u64,
    longest_ms: f64,
    probes_ok: u64,
    probes_503: u64,
    probes_other: u64,
    frontend_retries: u64,
    frontend_failovers: u64,
    identical: bool,
    orders_in_log: usize,
    seconds: f64,
    timeline: Vec<Sample>,
}

/// One line of the front-end's cache dump (`src/frontend/cache.rs`).
#[derive(Clone, Debug, Deserialize)]
struct TraceLine {
    ts_ms: u64,
    event: String,
    key: String,
    items: Vec<String>,
}

/// Runs every phase and writes `docs/eval/`. Returns a one-line summary.
pub fn run(options: &EvalOptions) -> Result<String> {
    let started = Instant::now();
    fs::create_dir_all(&options.out_dir)?;
    let work = std::env::temp_dir().join(format!("bazaar-eval-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;

    let points = latency_phase(options, &work)?;
    fs::write(options.out_dir.join("latency.csv"), latency_csv(&points))?;
    plot_latency(&points, &options.out_dir.join("latency.svg"))?;

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
    let seconds = started.elapsed().as_secs_f64();
    let readme = report(options, &points, &trace, failover.as_ref(), seconds);
    fs::write(options.out_dir.join("README.md"), readme)?;
    let _ = fs::remove_dir_all(&work);
    Ok(format!(
        "eval: done in {seconds:.0} s; wrote {}/{{latency.csv,latency.svg,cache-trace.svg,failover.svg,README.md}}",
        options.out_dir.display()
    ))
}

// ---------------------------------------------------------------------------------------------
// A private bazaar, driven through run.sh.

/// A bazaar started with `./run.sh up` on its own ports and directories; `./run.sh down` when
/// dropped.
struct Bazaar {
    run_sh: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    frontend: String,
    replicas: BTreeMap<u32, String>,
    client: Client,
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
            frontend: format!("127.0.0.1:{}", ports[1]),
            replicas,
            client: Client::new(),
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

    fn port(&self) -> &str {
        self.frontend.rsplit(':').next().unwrap_or_default()
    }

    fn health(&self) -> Result<FrontendHealth> {
        self.client.get(&self.frontend, "/health", CALL_TIMEOUT)
    }

    fn leader(&self) -> Option<u32> {
        self.health().ok().and_then(|h| h.leader)
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
            let health: serde_json::Value = self.client.get(addr, "/health", CALL_TIMEOUT).ok()?;
            matches!(health["role"].as_str(), Some("leader" | "follower")).then_some(())
        })?;
        Ok(ms_since(started))
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
            .args(["--host", "127.0.0.1", "--port", self.port(), "--json"])
            .args([
                "--clients",
                &clients.to_string(),
                "--prob",
                &prob.to_string(),
            ])
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

fn latency_phase(options: &EvalOptions, work: &Path) -> Result<Vec<Point>> {
    let total = 2 * options.probs.len();
    let mut points = Vec::with_capacity(total);
    for cache in [true, false] {
        let tag = if cache {
            "latency-cache-on"
        } else {
            "latency-cache-off"
        };
        let spec = BazaarSpec {
            tag,
            cache,
            cache_size: 10,
            dump: false,
        };
        let bazaar = Bazaar::up(options, work, &spec)?;
        for (i, &p) in options.probs.iter().enumerate() {
            let started = Instant::now();
            // The same seed for on and off: both ask the same sequence of lookups and orders.
            let seed = options.seed.wrapping_add(1000 * i as u64);
            let result =
                bazaar.client_run(&options.client, options.clients, p, seed, options.n_request)?;
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "eval [{:>2}/{total}] p={p:.1} cache {:<3}: {} lookups {:.2} ms, {} orders {:.2} ms, \
                 {} queries {:.2} ms (mean); {} errors; {seconds:.1} s",
                points.len() + 1,
                on_off(cache),
                result.lookups,
                result.lookup_ms.mean,
                result.orders,
                result.order_ms.mean,
                result.order_queries,
                result.query_ms.mean,
                result.errors,
            );
            points.push(Point {
                p,
                cache,
                result,
                seconds,
            });
        }
    }
    Ok(points)
}

fn on_off(cache: bool) -> &'static str {
    if cache {
        "on"
    } else {
        "off"
    }
}

/// `p,cache,type,mean_ms,p50_ms,p99_ms,count`, one row per point and request type with samples.
fn latency_csv(points: &[Point]) -> String {
    let mut csv = String::from("p,cache,type,mean_ms,p50_ms,p99_ms,count\n");
    for point in points {
        for (kind, lat, count) in point.result.rows() {
            if count == 0 {
                continue;
            }
            let _ = writeln!(
                csv,
                "{:.1},{},{kind},{:.3},{:.3},{:.3},{count}",
                point.p,
                on_off(point.cache),
                lat.mean,
                lat.p50,
                lat.p99
            );
        }
    }
    csv
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("plot: {e:?}"))
}

/// The legend every plot draws: a light box at `position`.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)
}

/// Cache on in blue, off in red.
const ON_COLOR: RGBColor = RGBColor(31, 119, 180);
const OFF_COLOR: RGBColor = RGBColor(214, 39, 40);

/// Picks one figure (mean, p99) out of a latency summary.
type Stat = fn(&Lat) -> f64;

/// Two rows (mean, p99) by three columns (lookup, order, query), latency against p.
fn plot_latency(points: &[Point], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(
            "Latency against order probability p (5 clients; cache on vs off)",
            ("sans-serif", 22),
        )
        .map_err(plot_err)?;
    let panels = root.split_evenly((2, 3));
    let stats: [(&str, Stat); 2] = [("mean", |l| l.mean), ("p99", |l| l.p99)];
    let kinds = ["lookup", "order", "query"];
    for (row, (stat_name, stat)) in stats.iter().enumerate() {
        for (col, kind) in kinds.iter().enumerate() {
            let series = |cache: bool| -> Vec<(f64, f64)> {
                points
                    .iter()
                    .filter(|pt| pt.cache == cache)
                    .filter_map(|pt| {
                        let (_, lat, count) = pt.result.rows()[col];
                        (count > 0).then(|| (pt.p, stat(&lat)))
                    })
                    .collect()
            };
            let (on, off) = (series(true), series(false));
            let y_max = on
                .iter()
                .chain(&off)
                .map(|&(_, y)| y)
                .fold(0.0, f64::max)
                .max(0.01)
                // Headroom for the legend above the curves.
                * 1.45;
            let mut chart = ChartBuilder::on(&panels[row * 3 + col])
                .caption(format!("{kind}: {stat_name} latency"), ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(38)
                .y_label_area_size(55)
                .build_cartesian_2d(-0.05f64..0.85f64, 0f64..y_max)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("p (order probability)")
                .y_desc("ms")
                .x_labels(6)
                .x_label_formatter(&|x| format!("{x:.1}"))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .draw()
                .map_err(plot_err)?;
            for (data, color, label) in [(on, ON_COLOR, "cache on"), (off, OFF_COLOR, "cache off")]
            {
                chart
                    .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(data.iter().map(|&pt| Circle::new(pt, 4, color.filled())))
                    .map_err(plot_err)?;
            }
            draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
    }
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
    // Two clients and a low p: enough misses to fill and churn a small cache, and some
    // invalidations, in a picture that can still be read event by event.
    let result = bazaar.client_run(
        &options.client,
        2,
        0.2,
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
    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let span_s = match (trace.first(), trace.last()) {
        (Some(a), Some(b)) => b.ts_ms.saturating_sub(a.ts_ms) as f64 / 1000.0,
        _ => 0.0,
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Front-end cache over time (capacity {cache_size} < {} stocks; {} events in {span_s:.2} s)",
                names.len(),
                trace.len()
            ),
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(95)
        // A quarter of empty width on the right holds the legend clear of the cells.
        .build_cartesian_2d(0f64..n * 1.35, -0.5f64..(names.len() as f64 - 0.5))
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
        .map_err(plot_err)?
        .label("in the cache (darker = more recently used)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], ON_COLOR.filled()));
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
        .map_err(plot_err)?
        .label("evicted (least recently used)")
        .legend(|(x, y)| Cross::new((x + 7, y), 6, OFF_COLOR.stroke_width(2)));
    let orange = RGBColor(255, 127, 14);
    chart
        .draw_series(
            marks("invalidate")
                .into_iter()
                .map(|pt| TriangleMarker::new(pt, 6, orange.filled())),
        )
        .map_err(plot_err)?
        .label("invalidated (a trade on that stock)")
        .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 6, orange.filled()));
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 3: fail-over.

fn failover_phase(options: &EvalOptions, work: &Path) -> Result<Failover> {
    let spec = BazaarSpec {
        tag: "failover",
        cache: true,
        cache_size: 10,
        dump: false,
    };
    let bazaar = Bazaar::up(options, work, &spec)?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, client, port) = (
            stop.clone(),
            options.client.clone(),
            bazaar.port().to_string(),
        );
        let (clients, seed) = (options.clients, options.seed);
        let client_bazaar = ClientOnly { port };
        thread::Builder::new()
            .name("eval-load".into())
            .spawn(move || client_bazaar.load(&client, clients, seed, &stop))?
    };
    let probe = {
        let (stop, frontend) = (stop.clone(), bazaar.frontend.clone());
        thread::Builder::new()
            .name("eval-timeline".into())
            .spawn(move || timeline_probe(&frontend, started, &stop))?
    };
    let faults = fault_schedule(&bazaar, started);
    stop.store(true, Ordering::SeqCst);
    let load = load
        .join()
        .map_err(|_| Error::Internal("load thread panicked".into()))?;
    let timeline = probe
        .join()
        .map_err(|_| Error::Internal("timeline thread panicked".into()))?;
    let faults = faults?;
    let (clients, client_runs, longest_ms) = load?;
    let (probes_ok, probes_503, probes_other) = faults.1;
    let health = bazaar.health()?;
    let identical = bazaar.files_identical();
    let orders_in_log = fs::read_to_string(bazaar.data_dir().join("orders-1.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0);
    let failover = Failover {
        faults: faults.0,
        clients,
        client_runs,
        longest_ms,
        probes_ok,
        probes_503,
        probes_other,
        frontend_retries: health.retries,
        frontend_failovers: health.failovers,
        identical,
        orders_in_log,
        seconds: started.elapsed().as_secs_f64(),
        timeline,
    };
    eprintln!(
        "eval fail-over: {} faults, {} client runs, {} errors, {} retries, longest request {:.0} ms; \
         probes with two replicas down: {} acknowledged, {} 503; replica files {}; {:.1} s",
        failover.faults.len(),
        failover.client_runs,
        failover.clients.errors,
        failover.clients.retries,
        failover.longest_ms,
        failover.probes_ok,
        failover.probes_503,
        if identical { "identical" } else { "DIFFER" },
        failover.seconds
    );
    Ok(failover)
}

/// The timeline probe's orders over the phase, with the fault windows shaded.
fn plot_failover(f: &Failover, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = f
        .timeline
        .iter()
        .map(|s| s.at_s)
        .fold(f.seconds, f64::max)
        .max(1.0);
    let y_max = f.timeline.iter().map(|s| s.ms).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "One user's orders during the fail-over experiment (one dot per order)",
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // Empty width on the right for the legend, clear of the fault labels and the dots.
        .build_cartesian_2d(0f64..x_max * 1.3, 0f64..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds since the load started")
        .y_desc("order latency, ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(f.faults.iter().map(|fault| {
            Rectangle::new(
                [(fault.down_s, 0.0), (fault.up_s, y_max)],
                OFF_COLOR.mix(0.12).filled(),
            )
        }))
        .map_err(plot_err)?
        .label("replica(s) down (kill -9 until restart)")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], OFF_COLOR.mix(0.25).filled())
        });
    chart
        .draw_series(f.faults.iter().map(|fault| {
            Text::new(
                fault.label,
                (fault.down_s, y_max * 0.97),
                ("sans-serif", 13).into_font().color(&BLACK),
            )
        }))
        .map_err(plot_err)?;
    let answered: Vec<&Sample> = f.timeline.iter().filter(|s| s.ok).collect();
    let failed: Vec<&Sample> = f.timeline.iter().filter(|s| !s.ok).collect();
    chart
        .draw_series(
            answered
                .iter()
                .map(|s| Circle::new((s.at_s, s.ms), 2, ON_COLOR.filled())),
        )
        .map_err(plot_err)?
        .label("order answered (a number, or 409)")
        .legend(|(x, y)| Circle::new((x + 7, y), 3, ON_COLOR.filled()));
    chart
        .draw_series(
            failed
                .iter()
                .map(|s| Cross::new((s.at_s, s.ms), 5, OFF_COLOR.stroke_width(2))),
        )
        .map_err(plot_err)?
        .label("order failed (5xx or no answer)")
        .legend(|(x, y)| Cross::new((x + 7, y), 5, OFF_COLOR.stroke_width(2)));
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
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
struct ClientOnly {
    port: String,
}

impl ClientOnly {
    fn load(
        &self,
        client: &Path,
        clients: usize,
        seed: u64,
        stop: &AtomicBool,
    ) -> Result<(ClientJson, u64, f64)> {
        let mut total = ClientJson::default();
        let (mut runs, mut longest) = (0u64, 0f64);
        while !stop.load(Ordering::SeqCst) {
            let output = Command::new(client)
                .args(["--host", "127.0.0.1", "--port", &self.port, "--json"])
                .args(["--clients", &clients.to_string(), "--prob", "0.5"])
                .args(["--seed", &seed.wrapping_add(runs).to_string()])
                .args(["--n-request", &FAILOVER_CLIENT_REQUESTS.to_string()])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()?;
            let text = String::from_utf8_lossy(&output.stdout);
            let run: ClientJson = serde_json::from_str(text.trim()).map_err(|e| {
                Error::Internal(format!("client printed no JSON summary ({e}): {text:?}"))
            })?;
            runs += 1;
            longest = longest.max(run.longest_ms());
            total.lookups += run.lookups;
            total.orders += run.orders;
            total.order_queries += run.order_queries;
            total.rejected += run.rejected;
            total.errors += run.errors;
            total.mismatches += run.mismatches;
            total.retries += run.retries;
        }
        Ok((total, runs, longest))
    }
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
    poll("a leader", FAILOVER_TIMEOUT, || bazaar.leader())
}

fn secs_since(t0: Instant, at: Instant) -> f64 {
    at.duration_since(t0).as_secs_f64()
}

fn kill_leader(bazaar: &Bazaar, t0: Instant, what: &str) -> Result<Fault> {
    let before = current_leader(bazaar)?;
    let killed = Instant::now();
    bazaar.kill(before)?;
    let after = poll("a new leader", FAILOVER_TIMEOUT, || {
        bazaar.leader().filter(|&l| l != before)
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
            "{what} (order-{before}), restart after {} s",
            DOWN_FOR.as_secs()
        ),
        leader_before: Some(before),
        leader_after: Some(after),
        new_leader_ms: Some(new_leader_ms),
        catch_up_ms,
        down_s: secs_since(t0, killed),
        up_s: secs_since(t0, restarted),
    })
}

fn kill_follower(bazaar: &Bazaar, t0: Instant) -> Result<Fault> {
    let leader = current_leader(bazaar)?;
    let follower = (1..=3).rev().find(|&id| id != leader).unwrap_or(1);
    let killed = Instant::now();
    bazaar.kill(follower)?;
    sleep_until(killed + DOWN_FOR);
    let restarted = Instant::now();
    let catch_up_ms = bazaar.restart(follower)?;
    eprintln!("eval fail-over: kill -9 follower order-{follower}");
    Ok(Fault {
        label: "follower killed",
        what: format!(
            "kill -9 a follower (order-{follower}), restart after {} s",
            DOWN_FOR.as_secs()
        ),
        leader_before: Some(leader),
        leader_after: bazaar.leader(),
        new_leader_ms: None,
        catch_up_ms,
        down_s: secs_since(t0, killed),
        up_s: secs_since(t0, restarted),
    })
}

/// The leader and a follower down together; probe orders meanwhile.
fn kill_two(bazaar: &Bazaar, t0: Instant) -> Result<(Fault, Probes)> {
    let leader = current_leader(bazaar)?;
    let follower = (1..=3).rev().find(|&id| id != leader).unwrap_or(1);
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
        match bazaar
            .client
            .post::<_, OrderAck>(&bazaar.frontend, "/orders", &order, PROBE_TIMEOUT)
        {
            Ok(_) => probes.0 += 1,
            Err(e) if e.status() == 503 => probes.1 += 1,
            Err(_) => probes.2 += 1,
        }
        thread::sleep(PROBE_PAUSE);
    }
    let leader_during = bazaar.leader();
    sleep_until(killed + TWO_DOWN_FOR);
    let restarted = Instant::now();
    let catch_up_ms = bazaar.restart(follower)?.max(bazaar.restart(leader)?);
    eprintln!("eval fail-over: order-{leader} and order-{follower} down together");
    Ok((
        Fault {
            label: "two replicas down",
            what: format!(
                "kill -9 the leader (order-{leader}) and a follower (order-{follower}) together, restart after {} s",
                TWO_DOWN_FOR.as_secs()
            ),
            leader_before: Some(leader),
            leader_after: leader_during,
            new_leader_ms: None,
            catch_up_ms,
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
// The report.

fn mean_of(points: &[Point], cache: bool, f: impl Fn(&ClientJson) -> f64) -> f64 {
    let values: Vec<f64> = points
        .iter()
        .filter(|p| p.cache == cache)
        .map(|p| f(&p.result))
        .collect();
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn report(
    options: &EvalOptions,
    points: &[Point],
    trace: &[TraceLine],
    failover: Option<&Failover>,
    seconds: f64,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Course evaluation\n");
    let _ = writeln!(
        md,
        "Written by `./run.sh eval` (`src/eval.rs`) in {seconds:.0} s on a {}-core machine, \
         shared with other work; every bazaar was a fresh private one started with `./run.sh up` \
         on ports chosen at run time. {} concurrent clients, {} lookups per client at each point, \
         seed {} (the same for cache on and off), p = {}. Re-run with `./run.sh eval` (see \
         `./run.sh eval --help` for the sizes).\n",
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        options.clients,
        options.n_request,
        options.seed,
        options
            .probs
            .iter()
            .map(|p| format!("{p:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let _ = writeln!(md, "## Latency against p, cache on and off\n");
    let _ = writeln!(md, "![latency against p](latency.svg)\n");
    let _ = writeln!(
        md,
        "Data: [latency.csv](latency.csv) (`count` is the number of timed requests: refused \
         (409) orders are not timed; rows without samples, orders and queries at p = 0, are left \
         out).\n"
    );
    let _ = writeln!(
        md,
        "| p | cache | lookup mean / p99 ms | order mean / p99 ms | query mean / p99 ms | lookups | orders (refused) | errors | s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for pt in points {
        let r = &pt.result;
        let lat = |l: &Lat, count: u64| {
            if count == 0 {
                "–".to_string()
            } else {
                format!("{:.2} / {:.2}", l.mean, l.p99)
            }
        };
        let _ = writeln!(
            md,
            "| {:.1} | {} | {} | {} | {} | {} | {} ({}) | {} | {:.1} |",
            pt.p,
            on_off(pt.cache),
            lat(&r.lookup_ms, r.lookups),
            lat(&r.order_ms, r.orders),
            lat(&r.query_ms, r.order_queries),
            r.lookups,
            r.orders,
            r.rejected,
            r.errors,
            pt.seconds
        );
    }
    let on_lookup = mean_of(points, true, |r| r.lookup_ms.mean);
    let off_lookup = mean_of(points, false, |r| r.lookup_ms.mean);
    let lookup_at = |cache: bool, first: bool| {
        let mut it = points.iter().filter(|p| p.cache == cache);
        let pt = if first { it.next() } else { it.next_back() };
        pt.map(|p| (p.p, p.result.lookup_ms.mean))
            .unwrap_or_default()
    };
    let (p_lo, on_lo) = lookup_at(true, true);
    let (p_hi, on_hi) = lookup_at(true, false);
    let (_, off_lo) = lookup_at(false, true);
    let (_, off_hi) = lookup_at(false, false);
    let order_range = |cache: bool| {
        let mut it = points
            .iter()
            .filter(|p| p.cache == cache && p.result.orders > 0);
        let first = it.next().map(|p| (p.p, p.result.order_ms.mean));
        let last = it.next_back().map(|p| (p.p, p.result.order_ms.mean));
        match (first, last) {
            (Some((p0, m0)), Some((p1, m1))) => {
                format!("{m0:.2} ms at p = {p0:.1} to {m1:.2} ms at p = {p1:.1}")
            }
            (Some((p0, m0)), None) => format!("{m0:.2} ms at p = {p0:.1}"),
            _ => "no orders".into(),
        }
    };
    let _ = writeln!(md, "\n### What it shows\n");
    let _ = writeln!(
        md,
        "- **The cache and lookups.** Averaged over every p, a lookup took {on_lookup:.2} ms with \
         the cache and {off_lookup:.2} ms without ({}). A hit is answered by the front-end alone; \
         a miss costs one more HTTP hop to the catalog, which is what the cache saves. With a \
         uniform choice among 14 stocks and 10 cache entries, at most about 10/14 of the \
         lookups can hit even when nothing is traded.",
        ratio_text(on_lookup, off_lookup)
    );
    let _ = writeln!(
        md,
        "- **How p moves lookups.** With the cache, the mean lookup went from {on_lo:.2} ms at \
         p = {p_lo:.1} to {on_hi:.2} ms at p = {p_hi:.1}; without it from {off_lo:.2} ms to \
         {off_hi:.2} ms. Every trade invalidates its stock's entry, so the higher p, the more \
         lookups miss and the smaller the cache's gain; and every order also takes CPU from the \
         same two cores (the replicas' fsyncs, the catalog's rewrite), which slows all requests \
         alike."
    );
    let _ = writeln!(
        md,
        "- **Orders** are the expensive request: the mean went from {} with the cache and \
         from {} without. An order passes the front-end, the leading replica, the catalog (the \
         trade and its invalidation) and the replication with its fsyncs; with more orders in \
         flight they queue behind each other's disk writes, so the mean grows with p. {} \
         **Order queries** are one forward to the leader, answered from memory, and cost about \
         as much as an uncached lookup.",
        order_range(true),
        order_range(false),
        order_cache_effect(points)
    );
    // Cache trace.
    let count = |event: &str| trace.iter().filter(|l| l.event == event).count();
    let (hits, inserts, evicts, invalidates) = (
        count("hit"),
        count("insert"),
        count("evict"),
        count("invalidate"),
    );
    let _ = writeln!(md, "\n## Cache replacement over time\n");
    let _ = writeln!(md, "![cache over time](cache-trace.svg)\n");
    let _ = writeln!(
        md,
        "A front-end with `DUMP=1` and a cache of {} entries (fewer than the 14 stocks), 2 \
         clients, p = 0.2, {} lookups each. Each column is one line of the dump \
         (`data/frontend-cache.jsonl`); a filled cell means that stock was in the cache after \
         that event, darker for more recently used. {hits} hits, {inserts} inserts after a miss, \
         {evicts} evictions (red crosses: the least recently used entry makes room) and \
         {invalidates} invalidations (orange triangles: a trade on that stock, sent by the catalog \
         before the trade is acknowledged). Hit rate here: {}. Once the cache is full every miss \
         evicts, and an invalidated stock leaves a gap until it is looked up again.",
        options.trace_cache_size,
        options.trace_requests,
        percent(hits, hits + inserts),
    );
    // Fail-over.
    let _ = writeln!(md, "\n## Fail-over\n");
    match failover {
        None => {
            let _ = writeln!(md, "Skipped in this run (`--skip-failover`).");
        }
        Some(f) => failover_report(&mut md, options, f),
    }
    md
}

fn failover_report(md: &mut String, options: &EvalOptions, f: &Failover) {
    let _ = writeln!(
        md,
        "{} clients (p = 0.5) in {} back-to-back `client` runs of {} lookups each, every run \
         reading all its acknowledged orders back, while these faults happened one after the \
         other (health check interval {HEALTH_CHECK_INTERVAL} s; {:.0} s in all):\n",
        options.clients, f.client_runs, FAILOVER_CLIENT_REQUESTS, f.seconds
    );
    let _ = writeln!(
        md,
        "| fault | leader before → after | new leader after | restarted replica caught up after |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    let id = |l: Option<u32>| {
        l.map(|l| format!("order-{l}"))
            .unwrap_or_else(|| "none".into())
    };
    for fault in &f.faults {
        let _ = writeln!(
            md,
            "| {} | {} → {} | {} | {:.0} ms |",
            fault.what,
            id(fault.leader_before),
            id(fault.leader_after),
            fault
                .new_leader_ms
                .map(|ms| format!("{ms:.0} ms"))
                .unwrap_or_else(|| "–".into()),
            fault.catch_up_ms
        );
    }
    let failed = f.timeline.iter().filter(|s| !s.ok).count();
    let slowest = f
        .timeline
        .iter()
        .copied()
        .max_by(|a, b| a.ms.total_cmp(&b.ms));
    let _ = writeln!(md, "\n![fail-over timeline](failover.svg)\n");
    let _ = writeln!(
        md,
        "Besides the clients, one probe placed one order at a time (FishCo, sell and buy in turn, \
         {} ms apart) for the whole phase and timed each: {} orders, {failed} failed{}. The \
         shaded windows run from the kill to the restart; the table splits the orders by when \
         they were sent.",
        TIMELINE_PAUSE.as_millis(),
        f.timeline.len(),
        slowest
            .map(|s| format!(
                "; the slowest took {:.0} ms, sent {:.1} s into the phase",
                s.ms, s.at_s
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(md, "\n{}", timeline_windows(f));
    let c = &f.clients;
    let _ = writeln!(md, "\nWhat the clients saw:\n");
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
            format!("{:.0} ms", f.longest_ms),
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
    let _ = writeln!(md, "\n### What a fail-over costs\n");
    let slowest = f
        .faults
        .iter()
        .filter_map(|x| x.new_leader_ms)
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "- A crash of the leader is not an error for the clients: the front-end notices it on \
         the failed forward (or at its next health check), selects the highest live replica, \
         and re-sends the order with the same request id, so it is traded once. It named a new \
         leader at most {slowest:.0} ms after a kill. The slowest single client request, its \
         retries included, took {:.0} ms; compare the timeline table for when such pauses \
         happened: during the faults, or while a restarted replica catches up and the three \
         replicas share the machine's cores again.",
        f.longest_ms
    );
    let _ = writeln!(
        md,
        "- A follower's crash should cost nothing visible (see its window in the timeline): the \
         leader goes on, and the restarted replica catches up from its peers before it answers \
         `Ping`, so it never leads while behind."
    );
    let _ = writeln!(
        md,
        "- With two of three replicas down, the probe orders were {} acknowledged and {} \
         answered 503. docs/spec.md §4 asks for majority commit (503 while fewer than two replicas \
         are up); {}",
        f.probes_ok,
        f.probes_503,
        if f.probes_ok > 0 {
            "the replicas measured here still acknowledge with the one live copy: this is the \
             order path that the majority-commit redesign replaces, and this experiment is the \
             one to re-run once it lands."
        } else {
            "no probe was acknowledged by a single copy, as required."
        }
    );
    let _ = writeln!(
        md,
        "- Once quiet, the three replica files were {} (`cmp`).",
        if f.identical {
            "byte-identical"
        } else {
            "NOT identical"
        }
    );
}

/// Whether the cache changed the orders' latency, and the reason when it did.
fn order_cache_effect(points: &[Point]) -> String {
    let with_orders = |p: &Point| p.result.orders > 0;
    let mean = |cache: bool| {
        let values: Vec<f64> = points
            .iter()
            .filter(|p| p.cache == cache && with_orders(p))
            .map(|p| p.result.order_ms.mean)
            .collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let (on, off) = (mean(true), mean(false));
    if on <= 0.0 || off <= 0.0 {
        return String::new();
    }
    if off > 1.1 * on {
        format!(
            "The cache is not on the order path, yet orders took {on:.2} ms with it and \
             {off:.2} ms without (mean over p): without the cache every lookup goes to the \
             catalog too, the same service that applies every trade, so orders wait behind \
             lookups there and on the shared cores."
        )
    } else {
        format!(
            "The cache is not on the order path, and orders took about as long with it \
             ({on:.2} ms) as without ({off:.2} ms, mean over p)."
        )
    }
}

/// After a restart, how long the timeline counts as "just after" it.
const AFTER_RESTART_S: f64 = 1.0;

/// The timeline's slowest order while replicas were down, just after a restart, and
/// otherwise: where the cost of a fault actually shows.
fn timeline_windows(f: &Failover) -> String {
    let down = |s: &Sample| {
        f.faults
            .iter()
            .any(|x| (x.down_s..x.up_s).contains(&s.at_s))
    };
    let after = |s: &Sample| {
        f.faults
            .iter()
            .any(|x| (x.up_s..x.up_s + AFTER_RESTART_S).contains(&s.at_s))
    };
    let worst = |keep: &dyn Fn(&Sample) -> bool| {
        let picked: Vec<f64> = f
            .timeline
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.ms)
            .collect();
        let max = picked.iter().copied().fold(0.0, f64::max);
        let mean = picked.iter().sum::<f64>() / picked.len().max(1) as f64;
        format!(
            "{} orders, mean {mean:.1} ms, slowest {max:.0} ms",
            picked.len()
        )
    };
    format!(
        "| timeline orders sent | |\n|---|---|\n\
         | while replicas were down | {} |\n\
         | in the {AFTER_RESTART_S:.0} s after a restart | {} |\n\
         | at any other time | {} |",
        worst(&|s| down(s)),
        worst(&|s| !down(s) && after(s)),
        worst(&|s| !down(s) && !after(s)),
    )
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

    fn point(p: f64, cache: bool, orders: u64) -> Point {
        let lat = Lat {
            mean: 1.5,
            p50: 1.0,
            p99: 4.25,
            max: 5.0,
        };
        Point {
            p,
            cache,
            result: ClientJson {
                lookups: 10,
                orders,
                order_queries: orders,
                rejected: 1.min(orders),
                lookup_ms: lat,
                order_ms: lat,
                query_ms: lat,
                ..ClientJson::default()
            },
            seconds: 1.0,
        }
    }

    #[test]
    fn csv_has_the_header_and_skips_empty_rows() {
        let csv = latency_csv(&[point(0.0, true, 0), point(0.2, false, 3)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "p,cache,type,mean_ms,p50_ms,p99_ms,count");
        assert_eq!(
            &lines[1..],
            [
                "0.0,on,lookup,1.500,1.000,4.250,10",
                "0.2,off,lookup,1.500,1.000,4.250,10",
                "0.2,off,order,1.500,1.000,4.250,2",
                "0.2,off,query,1.500,1.000,4.250,3",
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

    #[test]
    fn plots_render_to_svg() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let points = vec![
            point(0.0, true, 0),
            point(0.4, true, 4),
            point(0.0, false, 0),
            point(0.4, false, 4),
        ];
        plot_latency(&points, &dir.join("l.svg")).unwrap();
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
        for name in ["l.svg", "t.svg"] {
            let svg = fs::read_to_string(dir.join(name)).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{name}");
        }
        assert!(fs::read_to_string(dir.join("t.svg"))
            .unwrap()
            .contains("GameStart"));
    }
}

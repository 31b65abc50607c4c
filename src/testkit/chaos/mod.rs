//! `./run.sh chaos`: clients under load while replicas are killed, frozen and restarted, then
//! every invariant of docs/spec.md §5 checked.
//!
//! A run starts a fresh [`Cluster`] (its own ports and temporary data directory), then three
//! things at once:
//!
//! - `client` threads: a [`Load`] of [`crate::client::run`] with `clients` sessions (p = `prob`) until the duration
//!   is over; they verify every order they placed at the end.
//! - the stale-read probe ([`crate::testkit::probe`]): trades one share of `PROBE_STOCK` (which
//!   the clients never trade) at a time and looks the stock up right after each
//!   acknowledgement. Since nothing else trades it, the expected quantity is exact, so any
//!   stale lookup (docs/spec.md §5.5) is caught.
//! - `order_reader`: reads `GET /orders/<n>` through the front-end for random numbers up to a
//!   little past the highest it has seen; every order it was answered must be the one at that
//!   number in the final log (a read of an uncommitted order, replaced after a fail-over, would
//!   not be).
//! - the fault loop (this thread, `faults`): one fault per round (`Fault`). Even rounds hit the leader:
//!   SIGKILL it and restart it after a pause, SIGSTOP it for longer than the health check
//!   interval, or pause every follower and kill the leader the moment they wake (the
//!   sequence that once lost acknowledged orders). Odd rounds hit anything: a random replica killed or frozen, the catalog or the
//!   front-end killed and restarted or frozen, a majority of the replicas (two of three) frozen
//!   at once. Both kinds of round may also hit a replica's disk while it is down
//!   (`crate::testkit::storage`): its log and hard state wiped, or one digit changed in one
//!   line of its log (the quantity of an order, usually not the last line, sometimes the last).
//!   `replicas` (`--replicas N`, default 3) sets how many replicas the bazaar has. Before the next
//!   round it waits until a replica whose disk was hit says `"recovering": false` on `/health`
//!   (repaired), and until every replica answers `Ping` again (has caught up).
//! - a [`Sampler`]: the catalog's `/stocks` and every replica's `/health` every
//!   [`crate::testkit::cluster::SAMPLE_INTERVAL`], so that invariant 4 is checked at every sampled
//!   moment (each sample = initial + a prefix of the final log) and no epoch is seen led by
//!   two replicas.
//!
//! Then the load stops, the run waits for quiet and prints one line per invariant and the
//! totals (orders, fail-overs, retries, longest pause a client saw).
//!
//! Caveats: the seed fixes the fault schedule and the clients' choices, not the interleaving,
//! so two runs with the same seed are alike, not identical. Two replicas frozen at once, or the
//! catalog or the front-end down, are not single faults: clients may wait, and retry, but the
//! "no error" line still holds them to their 15 s retry deadline, which these faults stay well
//! under. Storage faults stay within the fault model of docs/replication.md: at most one replica
//! has a wiped or damaged disk at a time (the next storage fault waits until the last one's
//! replica reports `"recovering": false`, and becomes a plain kill while it does not), and every
//! other replica's copy is intact, so each entry keeps a majority of intact copies.

mod faults;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::api::{FrontendHealth, Order};
use crate::client::{ClientOptions, Summary};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::testkit::cluster::{
    two_leaders_in_one_epoch, Binaries, CatalogView, Cluster, ClusterOptions, Invariant,
    LeaderSamples, Sampler, CALL_TIMEOUT, QUIET_TIMEOUT, STOCKS,
};
use crate::testkit::load::Load;
pub(crate) use crate::testkit::load::PROBE_STOCK;
use crate::testkit::probe::{Patience, Probe};
use faults::{fault_rounds, Storage};

/// The prefix of the probe's request ids.
const PROBE_TAG: &str = "chaos";
/// How long the probe insists on one call: the clients' own retry deadline.
const PROBE_PATIENCE: Duration = Duration::from_secs(15);

/// How long a killed replica stays down, at most.
pub(crate) const MAX_DOWNTIME: Duration = Duration::from_millis(2000);

/// How long a frozen replica stays stopped, at least and at most: over the health-check
/// interval, so that the front-end notices, and over the replicas' pause threshold.
pub(crate) const MIN_FREEZE: Duration = Duration::from_millis(2500);
pub(crate) const MAX_FREEZE: Duration = Duration::from_millis(4000);

/// How long the catalog or the front-end stays frozen, at most, and two replicas frozen at
/// once; and how long both followers are paused before the leader is killed.
pub(crate) const MAX_SHORT_FREEZE: Duration = Duration::from_millis(2500);
pub(crate) const MIN_SHORT_FREEZE: Duration = Duration::from_millis(800);

/// Quiet time between two faults.
pub(crate) const BETWEEN_ROUNDS: Duration = Duration::from_millis(700);

/// How long a replica whose disk was wiped or damaged may take to say `"recovering": false`
/// once restarted: a wiped one copies the whole log (tens of thousands of orders) from the
/// leader, on a loaded machine.
pub(crate) const REPAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// One damaged line in this many is the log's last line (a different case for the replica:
/// nothing after it vouches for it); the others are older lines.
const LAST_LINE_ONE_IN: usize = 4;

/// The order reader's numbers come from its own seed: the run's seed drives the faults.
const READER_SEED: u64 = 15;
/// After a failed read (404 past the end, 503 in a fail-over) the reader waits this long.
const READ_PAUSE: Duration = Duration::from_millis(20);
/// The reader keeps at most this many answers.
const MAX_READS: usize = 200_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    pub prob: f64,
    /// Order replicas of the bazaar (odd; 3 unless `--replicas` says otherwise).
    pub replicas: u32,
    pub binaries: Binaries,
    /// Set from a signal handler: stop injecting faults, check what there is, clean up (the
    /// cluster's processes are killed when it is dropped, frozen ones included).
    pub interrupted: Arc<AtomicBool>,
}

/// What a run found.
#[derive(Debug)]
pub struct ChaosReport {
    pub(crate) faults: Vec<String>,
    pub(crate) invariants: Vec<Invariant>,
    pub(crate) summary: Summary,
    pub(crate) probes: u64,
    /// Orders read through `GET /orders/<n>` during the faults.
    pub(crate) reads: usize,
    pub(crate) failovers: u64,
    pub(crate) frontend_retries: u64,
    pub(crate) logged: usize,
    /// Replicas whose log and hard state were deleted while down.
    pub(crate) wipes: usize,
    /// Replicas with one digit changed in their log while down.
    pub(crate) damages: usize,
}

impl ChaosReport {
    pub fn ok(&self) -> bool {
        self.invariants.iter().all(|i| i.violation.is_none())
    }

    /// One line per invariant, then the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for inv in &self.invariants {
            match &inv.violation {
                None => out.push_str(&format!("ok    {}\n", inv.name)),
                Some(v) => out.push_str(&format!("FAIL  {}: {v}\n", inv.name)),
            }
        }
        let s = &self.summary;
        out.push_str(&format!(
            "totals: {} faults; {} orders logged ({} acknowledged to clients, {} rejected), \
             {} lookups, {} probe trades, {} order reads; fail-overs {}; retries {} by clients, {} by the front-end; \
             longest client-visible pause {:.0} ms; storage faults: {} wipes, {} damaged lines\n",
            self.faults.len(),
            self.logged,
            s.acknowledged.len(),
            s.rejected,
            s.lookups,
            self.probes,
            self.reads,
            self.failovers,
            s.retries,
            self.frontend_retries,
            s.longest_ms(),
            self.wipes,
            self.damages,
        ));
        out
    }
}

/// Runs one chaos experiment to the end: a fresh cluster, the load, the fault rounds, then the
/// verdicts once the load has stopped and the cluster is quiet.
pub fn run(options: &ChaosOptions) -> Result<ChaosReport> {
    let mut cluster = Cluster::start(
        options.binaries.clone(),
        ClusterOptions {
            log_level: "info".into(),
            replicas: options.replicas,
            ..ClusterOptions::default()
        },
    )?;
    // Its ports are chosen at run time, so say where to watch it.
    eprintln!("chaos: live page at http://{}/", cluster.frontend);
    let deadline = Instant::now() + options.duration;
    let load = Beside::start(&cluster, options, deadline)?;
    let (faults, storage) = fault_rounds(&mut cluster, options, deadline)?;
    let outcome = load.finish(&cluster)?;
    let report = judge(&cluster, faults, storage, outcome)?;
    // Keep the evidence (logs, files) of a run that broke something.
    cluster.keep_dir = !report.ok();
    Ok(report)
}

/// What runs beside the faults: the clients, the stale-read probe, the order reader and the
/// sampler.
struct Beside {
    clients: Load,
    probe: Probe,
    reader: JoinHandle<Vec<Order>>,
    stop_reader: Arc<AtomicBool>,
    sampler: Sampler,
}

/// What the load saw, once stopped.
struct Outcome {
    /// The front-end's `/health` right after the load stopped (fail-overs, retries).
    health: FrontendHealth,
    summary: Summary,
    probes: u64,
    stale: Option<String>,
    /// Every order read through `GET /orders/<n>` during the faults.
    reads: Vec<Order>,
    samples: Vec<CatalogView>,
    leaders: LeaderSamples,
}

impl Beside {
    /// Starts the sampler first, so that its first sample is of the catalog before any trade.
    fn start(cluster: &Cluster, options: &ChaosOptions, deadline: Instant) -> Result<Beside> {
        let sampler = Sampler::start(cluster);
        let (host, port) = split_addr(&cluster.frontend)?;
        let client_options = ClientOptions {
            prob: options.prob,
            seed: options.seed,
            n_request: usize::MAX,
            clients: options.clients,
            deadline: Some(deadline),
            stop: Some(options.interrupted.clone()),
            // The probe's stock is left to the probe, so that it knows its exact quantity.
            stocks: Some(
                STOCKS
                    .iter()
                    .filter(|s| s.as_str() != PROBE_STOCK)
                    .cloned()
                    .collect(),
            ),
            ..ClientOptions::new(&host, port)
        };
        let clients = Load::sessions(client_options)?;
        let probe = Probe::start(
            &cluster.frontend,
            &cluster.frontend,
            PROBE_TAG,
            Patience::For(PROBE_PATIENCE),
        )?;
        let stop_reader = Arc::new(AtomicBool::new(false));
        let reader = {
            let (frontend, stop) = (cluster.frontend.clone(), stop_reader.clone());
            thread::Builder::new()
                .name("reader".into())
                .spawn(move || order_reader(&frontend, &stop))?
        };
        Ok(Beside {
            clients,
            probe,
            reader,
            stop_reader,
            sampler,
        })
    }

    /// Waits for the clients (they stop at the deadline), stops the probe and the reader,
    /// waits for quiet and stops the sampler.
    fn finish(self, cluster: &Cluster) -> Result<Outcome> {
        let summary = self.clients.summary()?;
        let probe = self.probe.finish();
        self.stop_reader.store(true, Ordering::SeqCst);
        let reads = self
            .reader
            .join()
            .map_err(|_| Error::Internal("reader panicked".into()))?;
        let health = cluster.frontend_health()?;
        // Quiet first, so that the last samples are of the quiet catalog. Files that never
        // agree are judged (and reported) by the invariant checks, not here.
        let _ = cluster.wait_logs_identical(QUIET_TIMEOUT);
        let (samples, leaders) = self.sampler.finish();
        Ok(Outcome {
            health,
            summary,
            probes: probe.acked.len() as u64,
            stale: probe.stale,
            reads,
            samples,
            leaders,
        })
    }
}

/// Every invariant: the cluster's own checks on the files and the samples, then what only a
/// chaos run sees (leaders sampled, the probe, the clients' verdicts).
fn judge(
    cluster: &Cluster,
    faults: Vec<String>,
    storage: Storage,
    outcome: Outcome,
) -> Result<ChaosReport> {
    let Outcome {
        health,
        summary,
        probes,
        stale,
        reads,
        samples,
        leaders,
    } = outcome;
    let (log, mut invariants) = cluster.check_all(&summary.acknowledged, &samples);
    invariants.push(Invariant {
        name: "every order read during the faults is the committed one",
        violation: reads
            .iter()
            .find(|r| log.get(r.number as usize).map(Order::from).as_ref() != Some(*r))
            .map(|r| {
                format!(
                    "{} reads; order {} was read as {r:?}",
                    reads.len(),
                    r.number
                )
            }),
    });
    invariants.push(Invariant {
        name: "every wiped or damaged replica repaired by itself",
        violation: (!storage.late.is_empty()).then(|| storage.late.join("; ")),
    });
    invariants.push(Invariant {
        name: "no epoch led by two replicas (sampled /health)",
        violation: two_leaders_in_one_epoch(&leaders),
    });
    invariants.push(Invariant {
        name: "no stale lookup after an acknowledged trade",
        violation: stale,
    });
    invariants.push(Invariant {
        name: "clients saw no error and no mismatch",
        violation: (!summary.ok()).then(|| {
            format!(
                "{} errors, {} mismatches",
                summary.errors, summary.mismatches
            )
        }),
    });
    Ok(ChaosReport {
        faults,
        invariants,
        summary,
        probes,
        reads: reads.len(),
        failovers: health.failovers,
        frontend_retries: health.retries,
        logged: log.len(),
        wipes: storage.wipes,
        damages: storage.damages,
    })
}

/// Reads `GET /orders/<n>` through the front-end for numbers up to a little past the highest
/// seen, until stopped: every order answered, to be compared with the final log (a read of an
/// order that was not committed, or that a fail-over replaced, shows up there).
fn order_reader(frontend: &str, stop: &AtomicBool) -> Vec<Order> {
    let client = Client::new();
    let mut rng = fastrand::Rng::with_seed(READER_SEED);
    let mut reads = Vec::new();
    let mut highest = 0;
    while !stop.load(Ordering::SeqCst) && reads.len() < MAX_READS {
        let n = rng.u64(0..=highest + 5);
        match client.get::<Order>(frontend, &format!("/orders/{n}"), CALL_TIMEOUT) {
            Ok(order) => {
                highest = highest.max(order.number);
                reads.push(order);
            }
            // 404 beyond the end, 503 during a fail-over: nothing to compare.
            Err(_) => thread::sleep(READ_PAUSE),
        }
    }
    reads
}

fn split_addr(addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| Error::Internal(format!("bad address {addr}")))?;
    let port = port
        .parse()
        .map_err(|_| Error::Internal(format!("bad port in {addr}")))?;
    Ok((host.to_string(), port))
}

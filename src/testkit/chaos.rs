//! `./run.sh chaos`: clients under load while replicas are killed, frozen and restarted, then
//! every invariant of docs/spec.md §5 checked.
//!
//! A run starts a fresh [`Cluster`] (its own ports and temporary data directory), then three
//! things at once:
//!
//! - `client` threads: [`client::run`] with `clients` sessions (p = `prob`) until the duration
//!   is over; they verify every order they placed at the end.
//! - `stale_read_probe`: trades one share of `PROBE_STOCK` (which the clients never trade) at
//!   a time and looks the stock up right after each acknowledgement. Since nothing else trades
//!   it, the expected quantity is exact, so any stale lookup (docs/spec.md §5.5) is caught.
//! - `order_reader`: reads `GET /orders/<n>` through the front-end for random numbers up to a
//!   little past the highest it has seen; every order it was answered must be the one at that
//!   number in the final log (a read of an uncommitted order, replaced after a fail-over, would
//!   not be).
//! - the fault loop (this thread): one fault per round (`Fault`). Even rounds hit the leader:
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::api::{new_request_id, FrontendHealth, Order, OrderAck, OrderRequest, OrderType, Stock};
use crate::client::{self, ClientOptions, Summary};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::testkit::cluster::{
    two_leaders_in_one_epoch, Binaries, CatalogView, Cluster, ClusterOptions, Invariant,
    LeaderSamples, Process, Sampler, CALL_TIMEOUT, QUIET_TIMEOUT, REPLICA_READ_TIMEOUT, STOCKS,
};
use crate::testkit::storage;

/// The stock only the probe trades.
pub(crate) const PROBE_STOCK: &str = "MenhirCo";

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
    let load = Load::start(&cluster, options, deadline)?;
    let (faults, storage) = fault_rounds(&mut cluster, options, deadline)?;
    let outcome = load.finish(&cluster)?;
    let report = judge(&cluster, faults, storage, outcome)?;
    // Keep the evidence (logs, files) of a run that broke something.
    cluster.keep_dir = !report.ok();
    Ok(report)
}

/// What runs beside the faults: the clients, the stale-read probe and the sampler.
struct Load {
    clients: JoinHandle<Summary>,
    probe: JoinHandle<(u64, Option<String>)>,
    reader: JoinHandle<Vec<Order>>,
    stop_probe: Arc<AtomicBool>,
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

impl Load {
    /// Starts the sampler first, so that its first sample is of the catalog before any trade.
    fn start(cluster: &Cluster, options: &ChaosOptions, deadline: Instant) -> Result<Load> {
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
        let clients = thread::Builder::new()
            .name("clients".into())
            .spawn(move || client::run(&client_options))?;
        let stop_probe = Arc::new(AtomicBool::new(false));
        let probe = {
            let (frontend, stop) = (cluster.frontend.clone(), stop_probe.clone());
            thread::Builder::new()
                .name("probe".into())
                .spawn(move || stale_read_probe(&frontend, &stop))?
        };
        let reader = {
            let (frontend, stop) = (cluster.frontend.clone(), stop_probe.clone());
            thread::Builder::new()
                .name("reader".into())
                .spawn(move || order_reader(&frontend, &stop))?
        };
        Ok(Load {
            clients,
            probe,
            reader,
            stop_probe,
            sampler,
        })
    }

    /// Waits for the clients (they stop at the deadline), stops the probe, waits for quiet
    /// and stops the sampler.
    fn finish(self, cluster: &Cluster) -> Result<Outcome> {
        let summary = self
            .clients
            .join()
            .map_err(|_| Error::Internal("client threads panicked".into()))?;
        self.stop_probe.store(true, Ordering::SeqCst);
        let (probes, stale) = self
            .probe
            .join()
            .map_err(|_| Error::Internal("probe panicked".into()))?;
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
            probes,
            stale,
            reads,
            samples,
            leaders,
        })
    }
}

/// The storage faults of a run: counts, the replica whose disk was hit last until it reports
/// it is repaired, and the repairs that did not come in time.
#[derive(Debug, Default)]
struct Storage {
    wipes: usize,
    damages: usize,
    /// The replica whose disk was hit and that has not yet said `"recovering": false`.
    unrepaired: Option<u32>,
    late: Vec<String>,
}

impl Storage {
    /// Whether a disk may be hit now: the last one hit has been repaired. Asks that replica
    /// again if it had not said so yet.
    fn may_hit(&mut self, cluster: &Cluster) -> bool {
        if let Some(id) = self.unrepaired {
            if recovering(cluster, id) == Some(false) {
                self.unrepaired = None;
            }
        }
        self.unrepaired.is_none()
    }

    /// Waits until replica `id`, whose disk was hit, says `"recovering": false`; a replica
    /// still recovering after [`REPAIR_TIMEOUT`] is recorded and blocks further storage faults
    /// until it says so.
    fn wait_repaired(&mut self, cluster: &Cluster, id: u32, what: &str) {
        self.unrepaired = Some(id);
        let started = Instant::now();
        let repaired = crate::local::poll("a repaired replica", REPAIR_TIMEOUT, || {
            (recovering(cluster, id) == Some(false)).then_some(())
        });
        match repaired {
            Ok(()) => {
                self.unrepaired = None;
                log::info!("order-{id} repaired {:?} after {what}", started.elapsed());
            }
            Err(_) => self.late.push(format!(
                "order-{id} not repaired {REPAIR_TIMEOUT:?} after {what} (last /health {:?})",
                replica_health_json(cluster, id)
            )),
        }
    }
}

/// Replica `id`'s `/health` as JSON: its `recovering` field is not in [`crate::api::ReplicaHealth`]
/// of every version.
fn replica_health_json(cluster: &Cluster, id: u32) -> Option<serde_json::Value> {
    let addr = &cluster.replicas.get(&id)?.0;
    cluster
        .client
        .get(addr, "/health", REPLICA_READ_TIMEOUT)
        .ok()
}

/// What replica `id` says of `recovering`; `None` when it does not answer or say.
fn recovering(cluster: &Cluster, id: u32) -> Option<bool> {
    replica_health_json(cluster, id)?
        .get("recovering")?
        .as_bool()
}

/// One fault per round until there is no time left for the longest one before `deadline`,
/// or until interrupted. Returns what each round did, and the storage faults.
fn fault_rounds(
    cluster: &mut Cluster,
    options: &ChaosOptions,
    deadline: Instant,
) -> Result<(Vec<String>, Storage)> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut faults = Vec::new();
    let mut storage = Storage::default();
    let mut round = 0u32;
    while Instant::now() + MAX_FREEZE < deadline && !options.interrupted.load(Ordering::SeqCst) {
        let fault = inject_fault(cluster, &mut rng, round, &mut storage)?;
        log::info!("chaos round {round}: {fault}");
        eprintln!("round {round}: {fault}");
        faults.push(fault);
        round += 1;
        thread::sleep(BETWEEN_ROUNDS);
    }
    Ok((faults, storage))
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

/// The kinds of fault a round injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    KillReplica,
    FreezeReplica,
    /// Both followers paused, woken, and the leader killed at once.
    PauseFollowersThenKillLeader,
    KillCatalog,
    FreezeCatalog,
    KillFrontend,
    FreezeFrontend,
    /// Two replicas frozen at the same time.
    FreezeTwoReplicas,
    /// A replica killed, its log and hard state deleted, restarted.
    WipeReplica,
    /// A replica killed, one digit of one line of its log changed, restarted.
    DamageReplica,
}

/// Faults of the leader's rounds, and of the other rounds.
const LEADER_FAULTS: &[Fault] = &[
    Fault::KillReplica,
    Fault::FreezeReplica,
    Fault::PauseFollowersThenKillLeader,
    Fault::WipeReplica,
    Fault::DamageReplica,
];
const OTHER_FAULTS: &[Fault] = &[
    Fault::KillReplica,
    Fault::FreezeReplica,
    Fault::WipeReplica,
    Fault::DamageReplica,
    Fault::KillCatalog,
    Fault::FreezeCatalog,
    Fault::KillFrontend,
    Fault::FreezeFrontend,
    Fault::FreezeTwoReplicas,
];

fn millis_between(rng: &mut fastrand::Rng, low: Duration, high: Duration) -> Duration {
    Duration::from_millis(rng.u64(low.as_millis() as u64..=high.as_millis() as u64))
}

/// One round: a fault of [`LEADER_FAULTS`] on even rounds (aimed at the leader), of
/// [`OTHER_FAULTS`] on odd ones; then everything back up and every replica caught up.
/// Returns what was done.
fn inject_fault(
    cluster: &mut Cluster,
    rng: &mut fastrand::Rng,
    round: u32,
    storage: &mut Storage,
) -> Result<String> {
    let leader = cluster.wait_leader()?;
    let on_leader = round.is_multiple_of(2);
    let mut fault = if on_leader {
        LEADER_FAULTS[rng.usize(..LEADER_FAULTS.len())]
    } else {
        OTHER_FAULTS[rng.usize(..OTHER_FAULTS.len())]
    };
    // One damaged disk at a time: while the last one is not repaired, a kill instead.
    if matches!(fault, Fault::WipeReplica | Fault::DamageReplica) && !storage.may_hit(cluster) {
        fault = Fault::KillReplica;
    }
    let ids = cluster.replica_ids();
    let target = if on_leader {
        leader
    } else {
        ids[rng.usize(..ids.len())]
    };
    let role = |id: u32| if id == leader { " (leader)" } else { "" };
    let followers: Vec<u32> = ids.iter().copied().filter(|&id| id != leader).collect();
    let names = |list: &[u32]| {
        list.iter()
            .map(|id| format!("order-{id}{}", role(*id)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let what = match fault {
        Fault::WipeReplica | Fault::DamageReplica => {
            let down = millis_between(rng, Duration::from_millis(200), MAX_DOWNTIME);
            let service = Process::Order(target);
            cluster.kill(service);
            let done = if fault == Fault::WipeReplica {
                storage::wipe_replica(cluster, target)?;
                storage.wipes += 1;
                "log and hard state deleted".to_string()
            } else {
                match damage_one_line(cluster, target, rng) {
                    Ok(done) => {
                        storage.damages += 1;
                        done
                    }
                    Err(e) => format!("no line damaged ({e})"),
                }
            };
            thread::sleep(down);
            cluster.start_service(service)?;
            let what = format!(
                "kill -9 order-{target}{}, {done}, restarted after {} ms",
                role(target),
                down.as_millis()
            );
            storage.wait_repaired(cluster, target, &what);
            what
        }
        Fault::KillReplica => {
            let down = millis_between(rng, Duration::from_millis(200), MAX_DOWNTIME);
            let service = Process::Order(target);
            cluster.kill(service);
            thread::sleep(down);
            cluster.start_service(service)?;
            format!(
                "kill -9 order-{target}{}, restarted after {} ms",
                role(target),
                down.as_millis()
            )
        }
        Fault::FreezeReplica => {
            let frozen = millis_between(rng, MIN_FREEZE, MAX_FREEZE);
            let service = Process::Order(target);
            cluster.signal(service, "STOP")?;
            thread::sleep(frozen);
            cluster.signal(service, "CONT")?;
            format!(
                "kill -STOP order-{target}{} for {} ms",
                role(target),
                frozen.as_millis()
            )
        }
        Fault::PauseFollowersThenKillLeader => {
            let paused = millis_between(rng, MIN_SHORT_FREEZE, MAX_SHORT_FREEZE);
            let down = millis_between(rng, Duration::from_millis(200), MAX_DOWNTIME);
            for id in &followers {
                cluster.signal(Process::Order(*id), "STOP")?;
            }
            thread::sleep(paused);
            for id in &followers {
                cluster.signal(Process::Order(*id), "CONT")?;
            }
            cluster.kill(Process::Order(leader));
            thread::sleep(down);
            cluster.start_service(Process::Order(leader))?;
            format!(
                "kill -STOP {} for {} ms, then kill -9 order-{leader} (leader), \
                 restarted after {} ms",
                names(&followers),
                paused.as_millis(),
                down.as_millis()
            )
        }
        Fault::FreezeTwoReplicas => {
            let frozen = millis_between(rng, MIN_SHORT_FREEZE, MAX_SHORT_FREEZE);
            // A majority frozen at once (two of three): orders wait, nothing may break.
            let mut pair = ids.clone();
            rng.shuffle(&mut pair);
            pair.truncate(cluster.majority());
            pair.sort_unstable();
            for id in &pair {
                cluster.signal(Process::Order(*id), "STOP")?;
            }
            thread::sleep(frozen);
            for id in &pair {
                cluster.signal(Process::Order(*id), "CONT")?;
            }
            format!(
                "kill -STOP {} together for {} ms",
                names(&pair),
                frozen.as_millis()
            )
        }
        Fault::KillCatalog | Fault::KillFrontend => {
            let service = if fault == Fault::KillCatalog {
                Process::Catalog
            } else {
                Process::FRONTEND
            };
            let down = millis_between(rng, Duration::from_millis(200), MAX_DOWNTIME);
            cluster.kill(service);
            thread::sleep(down);
            cluster.start_service(service)?;
            format!(
                "kill -9 {}, restarted after {} ms",
                service.name(),
                down.as_millis()
            )
        }
        Fault::FreezeCatalog | Fault::FreezeFrontend => {
            let service = if fault == Fault::FreezeCatalog {
                Process::Catalog
            } else {
                Process::FRONTEND
            };
            let frozen = millis_between(rng, MIN_SHORT_FREEZE, MAX_SHORT_FREEZE);
            cluster.signal(service, "STOP")?;
            thread::sleep(frozen);
            cluster.signal(service, "CONT")?;
            format!(
                "kill -STOP {} for {} ms",
                service.name(),
                frozen.as_millis()
            )
        }
    };
    for id in ids {
        cluster.wait_ready(id)?;
    }
    cluster.wait_leader()?;
    Ok(what)
}

/// Changes one digit (an order's quantity) in one line of stopped replica `id`'s log: the last
/// line one time in [`LAST_LINE_ONE_IN`], an older one otherwise. Returns what it did.
fn damage_one_line(cluster: &Cluster, id: u32, rng: &mut fastrand::Rng) -> Result<String> {
    let path = cluster.log_path(id);
    let numbers = storage::logged_numbers(&path)?;
    let Some((&last, older)) = numbers.split_last() else {
        return Err(Error::NotFound(format!("order-{id}'s log is empty")));
    };
    let number = if older.is_empty() || rng.usize(..LAST_LINE_ONE_IN) == 0 {
        last
    } else {
        older[rng.usize(..older.len())]
    };
    let old = storage::order_quantity(&path, number)?;
    let new = storage::other_quantity(old, rng);
    storage::set_order_quantity(&path, number, new)?;
    let which = if number == last {
        "the last line"
    } else {
        "an older line"
    };
    Ok(format!(
        "order {number}'s quantity {old} changed to {new} in its log ({which}, of {})",
        numbers.len()
    ))
}

/// Trades [`PROBE_STOCK`] one share at a time and checks that the lookup right after each
/// acknowledgement shows the new quantity. Returns the trades made and the first violation.
fn stale_read_probe(frontend: &str, stop: &AtomicBool) -> (u64, Option<String>) {
    let client = Client::new();
    let mut retries = 0;
    let lookup = |retries: &mut u64| {
        client::retrying(retries, || {
            client.get::<Stock>(frontend, &format!("/stocks/{PROBE_STOCK}"), CALL_TIMEOUT)
        })
    };
    let mut expected = match lookup(&mut retries) {
        Ok(stock) => stock.quantity,
        Err(e) => return (0, Some(format!("probe cannot look {PROBE_STOCK} up: {e}"))),
    };
    let mut trades = 0;
    while !stop.load(Ordering::SeqCst) {
        let kind = if expected > 50 {
            OrderType::Buy
        } else {
            OrderType::Sell
        };
        let order = OrderRequest {
            name: PROBE_STOCK.into(),
            quantity: 1,
            kind,
            request_id: Some(new_request_id("probe")),
        };
        let ack = client::retrying(&mut retries, || {
            client.post::<_, OrderAck>(frontend, "/orders", &order, CALL_TIMEOUT)
        });
        if let Err(e) = ack {
            return (trades, Some(format!("probe order failed: {e}")));
        }
        trades += 1;
        expected = match kind {
            OrderType::Buy => expected - 1,
            OrderType::Sell => expected + 1,
        };
        match lookup(&mut retries) {
            Ok(stock) if stock.quantity == expected => {}
            Ok(stock) => {
                return (
                    trades,
                    Some(format!(
                        "after trade {trades} the lookup showed {} not {expected}",
                        stock.quantity
                    )),
                )
            }
            Err(e) => return (trades, Some(format!("probe lookup failed: {e}"))),
        }
    }
    (trades, None)
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

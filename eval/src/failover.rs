//! Phase 3: fail-over. Clients run in back-to-back `client` runs while the leader, a follower
//! and the leader again are killed and restarted, then the leader and a follower together;
//! during the double fault this process sends its own probe orders and counts their answers;
//! throughout, one more probe places one order at a time and times it. Then the replica files
//! are compared with `cmp`.
//!
//! Caveats:
//!
//! - The client times a request including its own retries; a fail-over therefore shows as one
//!   long request (the "longest pause"), not as errors.
//! - Kills are `./run.sh kill` (SIGKILL) of a private bazaar: nothing here can fault a remote
//!   deployment.
//! - The phase takes about 30 s of faults whatever the sizes: the schedule is fixed
//!   ([`SETTLE`], [`DOWN_FOR`], [`TWO_DOWN_FOR`]).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bazaar::api::{new_request_id, OrderAck, OrderRequest, OrderType};
use bazaar::error::{Error, Result};
use bazaar::http::Client;
use bazaar::local::poll;

use crate::driver::{ms_since, Bazaar, BazaarSpec, Target, CACHE_SIZE};
use crate::options::EvalOptions;
use crate::stats::ClientJson;

/// How long the front-end may take to name a new leader after the leader was killed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two probe orders of the double fault.
const PROBE_PAUSE: Duration = Duration::from_millis(200);
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
pub(crate) const FAILOVER_CLIENT_REQUESTS: usize = 100;
/// Order probability of the fail-over phase's clients.
pub(crate) const FAILOVER_PROB: f64 = 0.5;
/// Pause between two orders of the fail-over timeline probe.
pub(crate) const TIMELINE_PAUSE: Duration = Duration::from_millis(20);
/// Bound on the timeline probe's orders (the phase lasts about 30 s).
const MAX_TIMELINE_SAMPLES: usize = 20_000;
/// Bound on the fail-over phase's back-to-back client runs (each takes a fraction of a second).
const MAX_FAILOVER_RUNS: u64 = 10_000;
/// After a restart, how long a fault's window stays open: a restarted replica catching up may
/// still slow the others.
pub(crate) const AFTER_RESTART_S: f64 = 1.0;

/// One fault of the fail-over phase.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub(crate) what: String,
    /// A few words for the timeline figure and the tables.
    pub(crate) label: &'static str,
    pub(crate) leader_before: Option<u32>,
    pub(crate) leader_after: Option<u32>,
    /// From the kill until the front-end named another leader (leader kills only).
    pub(crate) new_leader_ms: Option<f64>,
    /// From the restart until the replica answered as leader or follower again.
    pub(crate) catch_up_ms: f64,
    /// The front-end's retried forwards from just before the kill until the replica(s)
    /// caught up (`None` when `/health` did not answer).
    pub(crate) frontend_retries: Option<u64>,
    /// When the replica(s) went down and when they were started again, in seconds since the
    /// phase began.
    pub(crate) down_s: f64,
    pub(crate) up_s: f64,
}

impl Fault {
    /// The window in which this fault can have cost anything.
    pub(crate) fn window(&self) -> std::ops::Range<f64> {
        self.down_s..self.up_s + AFTER_RESTART_S
    }
}

/// One order of the timeline probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// When it was sent, in seconds since the phase began.
    pub(crate) at_s: f64,
    pub(crate) ms: f64,
    /// Answered with a number or a correct refusal (409).
    pub(crate) ok: bool,
}

impl Sample {
    /// Whether the order was under way during the window: one sent just before a kill can
    /// wait for the whole fail-over.
    pub(crate) fn overlaps(&self, window: &std::ops::Range<f64>) -> bool {
        self.at_s < window.end && self.at_s + self.ms / 1000.0 > window.start
    }
}

/// One `client` run of the fail-over phase.
#[derive(Clone, Debug)]
pub(crate) struct ClientRun {
    pub(crate) start_s: f64,
    pub(crate) end_s: f64,
    pub(crate) result: ClientJson,
}

impl ClientRun {
    pub(crate) fn overlaps(&self, window: &std::ops::Range<f64>) -> bool {
        self.start_s < window.end && self.end_s > window.start
    }
}

/// What the fail-over phase saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct Failover {
    pub(crate) faults: Vec<Fault>,
    pub(crate) runs: Vec<ClientRun>,
    pub(crate) probes_ok: u64,
    pub(crate) probes_503: u64,
    pub(crate) probes_other: u64,
    pub(crate) frontend_retries: u64,
    pub(crate) frontend_failovers: u64,
    pub(crate) identical: bool,
    pub(crate) replicas: usize,
    pub(crate) orders_in_log: usize,
    pub(crate) seconds: f64,
    pub(crate) timeline: Vec<Sample>,
}

impl Failover {
    pub(crate) fn clients(&self) -> ClientJson {
        let mut total = ClientJson::default();
        for run in &self.runs {
            total.add(&run.result);
        }
        total
    }

    pub(crate) fn longest_ms(&self) -> f64 {
        self.runs
            .iter()
            .map(|r| r.result.longest_ms())
            .fold(0.0, f64::max)
    }
}

pub(crate) fn failover_phase(options: &EvalOptions, work: &Path) -> Result<Failover> {
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

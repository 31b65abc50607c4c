//! `./run.sh chaos`: clients under load while replicas are killed, frozen and restarted, then
//! every invariant of SPEC §5 checked.
//!
//! A run starts a fresh [`Cluster`] (its own ports and temporary data directory), then three
//! things at once:
//!
//! - `client` threads: [`client::run`] with `clients` sessions (p = `prob`) until the duration
//!   is over; they verify every order they placed at the end.
//! - `stale_read_probe`: trades one share of [`PROBE_STOCK`] (which the clients never trade) at
//!   a time and looks the stock up right after each acknowledgement. Since nothing else trades
//!   it, the expected quantity is exact, so any stale lookup (SPEC §5.5) is caught.
//! - the fault loop (this thread): one fault per round, the leader at least every other round:
//!   SIGKILL a replica and restart it after a pause, or SIGSTOP it for longer than the health
//!   check interval and SIGCONT it. Before the next round it waits until the replica answers
//!   `Ping` again (has caught up), so there is never more than one replica down: that is the
//!   case in which clients must see no error (SPEC §5.6).
//!
//! Then the load stops, the run waits for quiet and prints one line per invariant and the
//! totals (orders, fail-overs, retries, longest pause a client saw).
//!
//! Caveats: faults hit replicas only (the catalog and front-end restarts have their own
//! end-to-end tests); the seed fixes the fault schedule and the clients' choices, not the
//! interleaving, so two runs with the same seed are alike, not identical.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::api::{OrderAck, OrderRequest, OrderType, Stock};
use crate::client::{self, ClientOptions, Summary};
use crate::cluster::{Binaries, Cluster, ClusterOptions, Invariant, Service, CALL_TIMEOUT, STOCKS};
use crate::error::{Error, Result};
use crate::http::Client;

/// The stock only the probe trades.
pub const PROBE_STOCK: &str = "MenhirCo";

/// How long a killed replica stays down, at most.
pub const MAX_DOWNTIME: Duration = Duration::from_millis(2000);

/// How long a frozen replica stays stopped, at least and at most: over the health-check
/// interval, so that the front-end notices, and over the replicas' pause threshold.
pub const MIN_FREEZE: Duration = Duration::from_millis(2500);
pub const MAX_FREEZE: Duration = Duration::from_millis(4000);

/// Quiet time between two faults.
pub const BETWEEN_ROUNDS: Duration = Duration::from_millis(700);

/// What to run.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    pub prob: f64,
    pub binaries: Binaries,
    /// Set from a signal handler: stop injecting faults, check what there is, clean up (the
    /// cluster's processes are killed when it is dropped, frozen ones included).
    pub interrupted: Arc<AtomicBool>,
}

/// What a run found.
#[derive(Debug)]
pub struct ChaosReport {
    pub faults: Vec<String>,
    pub invariants: Vec<Invariant>,
    pub summary: Summary,
    pub probes: u64,
    pub failovers: u64,
    pub frontend_retries: u64,
    pub logged: usize,
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
             {} lookups, {} probe trades; fail-overs {}; retries {} by clients, {} by the front-end; \
             longest client-visible pause {:.0} ms\n",
            self.faults.len(),
            self.logged,
            s.acknowledged.len(),
            s.rejected,
            s.lookups,
            self.probes,
            self.failovers,
            s.retries,
            self.frontend_retries,
            s.longest_ms(),
        ));
        out
    }
}

/// Runs one chaos experiment to the end.
pub fn run(options: &ChaosOptions) -> Result<ChaosReport> {
    let mut cluster = Cluster::start(
        options.binaries.clone(),
        ClusterOptions {
            log_level: "info".into(),
            ..ClusterOptions::default()
        },
    )?;
    // Its ports are chosen at run time, so say where to watch it.
    eprintln!("chaos: live page at http://{}/", cluster.frontend);
    let deadline = Instant::now() + options.duration;
    let stop = Arc::new(AtomicBool::new(false));

    let (host, port) = split_addr(&cluster.frontend)?;
    let client_options = ClientOptions {
        prob: options.prob,
        seed: options.seed,
        n_request: usize::MAX,
        clients: options.clients,
        deadline: Some(deadline),
        stop: Some(options.interrupted.clone()),
        stocks: Some(
            STOCKS
                .iter()
                .filter(|s| **s != PROBE_STOCK)
                .map(|s| s.to_string())
                .collect(),
        ),
        ..ClientOptions::new(&host, port)
    };
    let clients = thread::Builder::new()
        .name("clients".into())
        .spawn(move || client::run(&client_options))?;
    let probe = {
        let (frontend, stop) = (cluster.frontend.clone(), stop.clone());
        thread::Builder::new()
            .name("probe".into())
            .spawn(move || stale_read_probe(&frontend, &stop))?
    };

    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut faults = Vec::new();
    let mut round = 0u32;
    while Instant::now() + MAX_FREEZE < deadline && !options.interrupted.load(Ordering::SeqCst) {
        let fault = inject_fault(&mut cluster, &mut rng, round)?;
        log::info!("chaos round {round}: {fault}");
        eprintln!("round {round}: {fault}");
        faults.push(fault);
        round += 1;
        thread::sleep(BETWEEN_ROUNDS);
    }

    let summary = clients
        .join()
        .map_err(|_| Error::Internal("client threads panicked".into()))?;
    stop.store(true, Ordering::SeqCst);
    let (probes, stale) = probe
        .join()
        .map_err(|_| Error::Internal("probe panicked".into()))?;
    let health = cluster.frontend_health()?;
    let (log, mut invariants) = cluster.check_invariants(&summary.acknowledged);
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
    let report = ChaosReport {
        faults,
        invariants,
        summary,
        probes,
        failovers: health.failovers,
        frontend_retries: health.retries,
        logged: log.len(),
    };
    cluster.keep_dir = !report.ok();
    Ok(report)
}

/// One round: kill or freeze a replica (the leader on even rounds), bring it back and wait until
/// it has caught up. Returns what was done.
fn inject_fault(cluster: &mut Cluster, rng: &mut fastrand::Rng, round: u32) -> Result<String> {
    let leader = cluster.wait_leader()?;
    let target = if round.is_multiple_of(2) {
        leader
    } else {
        rng.u32(1..=3)
    };
    let role = if target == leader { " (leader)" } else { "" };
    let service = Service::Order(target);
    let what = if rng.bool() {
        let down = Duration::from_millis(rng.u64(200..=MAX_DOWNTIME.as_millis() as u64));
        cluster.kill(service);
        thread::sleep(down);
        cluster.start_service(service)?;
        format!(
            "kill -9 order-{target}{role}, restarted after {} ms",
            down.as_millis()
        )
    } else {
        let frozen = Duration::from_millis(
            rng.u64(MIN_FREEZE.as_millis() as u64..=MAX_FREEZE.as_millis() as u64),
        );
        cluster.signal(service, "STOP")?;
        thread::sleep(frozen);
        cluster.signal(service, "CONT")?;
        format!(
            "kill -STOP order-{target}{role} for {} ms",
            frozen.as_millis()
        )
    };
    cluster.wait_ready(target)?;
    Ok(what)
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
            request_id: Some(format!("probe-{}-{trades}", std::process::id())),
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

fn split_addr(addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| Error::Internal(format!("bad address {addr}")))?;
    let port = port
        .parse()
        .map_err(|_| Error::Internal(format!("bad port in {addr}")))?;
    Ok((host.to_string(), port))
}

//! The fault rounds of a chaos run: one fault per round, aimed at the leader on even rounds
//! and at anything on odd ones (see the doc of [`super`]), then everything back up and caught
//! up; and the storage faults' bookkeeping ([`Storage`]), so that at most one replica's disk is
//! damaged at a time.
//!
//! Caveats: the seed fixes which fault and which target, not the interleaving with the load;
//! a storage fault whose replica is not repaired in time is recorded as a violation and turns
//! the next storage faults into plain kills until it is.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::{
    ChaosOptions, BETWEEN_ROUNDS, LAST_LINE_ONE_IN, MAX_DOWNTIME, MAX_FREEZE, MAX_SHORT_FREEZE,
    MIN_FREEZE, MIN_SHORT_FREEZE, REPAIR_TIMEOUT,
};
use crate::error::{Error, Result};
use crate::testkit::cluster::{Cluster, Process, REPLICA_READ_TIMEOUT};
use crate::testkit::storage;

/// The storage faults of a run: counts, the replica whose disk was hit last until it reports
/// it is repaired, and the repairs that did not come in time.
#[derive(Debug, Default)]
pub(super) struct Storage {
    pub(super) wipes: usize,
    pub(super) damages: usize,
    /// The replica whose disk was hit and that has not yet said `"recovering": false`.
    unrepaired: Option<u32>,
    pub(super) late: Vec<String>,
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

/// Replica `id`'s `/health` as JSON: a replica of a version without the `recovering` field
/// must read as "does not say", not as `false` (which [`crate::api::ReplicaHealth`] defaults it
/// to).
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
pub(super) fn fault_rounds(
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
            disk_fault(cluster, rng, storage, fault, target, role(target))?
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
            pause_followers_then_kill_leader(cluster, rng, leader, &followers, &names(&followers))?
        }
        Fault::FreezeTwoReplicas => freeze_a_majority(cluster, rng, &ids, &names)?,
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

/// A wiped or damaged disk: the replica is killed, its files changed, restarted, and waited
/// for until it is repaired.
fn disk_fault(
    cluster: &mut Cluster,
    rng: &mut fastrand::Rng,
    storage: &mut Storage,
    fault: Fault,
    target: u32,
    role: &str,
) -> Result<String> {
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
        role,
        down.as_millis()
    );
    storage.wait_repaired(cluster, target, &what);
    Ok(what)
}

/// The followers paused, then the leader killed while they catch up.
fn pause_followers_then_kill_leader(
    cluster: &mut Cluster,
    rng: &mut fastrand::Rng,
    leader: u32,
    followers: &[u32],
    followers_named: &str,
) -> Result<String> {
    let paused = millis_between(rng, MIN_SHORT_FREEZE, MAX_SHORT_FREEZE);
    let down = millis_between(rng, Duration::from_millis(200), MAX_DOWNTIME);
    for id in followers {
        cluster.signal(Process::Order(*id), "STOP")?;
    }
    thread::sleep(paused);
    for id in followers {
        cluster.signal(Process::Order(*id), "CONT")?;
    }
    cluster.kill(Process::Order(leader));
    thread::sleep(down);
    cluster.start_service(Process::Order(leader))?;
    Ok(format!(
        "kill -STOP {} for {} ms, then kill -9 order-{leader} (leader), \
         restarted after {} ms",
        followers_named,
        paused.as_millis(),
        down.as_millis()
    ))
}

/// A majority of replicas frozen together: orders wait, nothing may break.
fn freeze_a_majority(
    cluster: &mut Cluster,
    rng: &mut fastrand::Rng,
    ids: &[u32],
    names: &dyn Fn(&[u32]) -> String,
) -> Result<String> {
    let frozen = millis_between(rng, MIN_SHORT_FREEZE, MAX_SHORT_FREEZE);
    // A majority frozen at once (two of three): orders wait, nothing may break.
    let mut pair = ids.to_vec();
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
    Ok(format!(
        "kill -STOP {} together for {} ms",
        names(&pair),
        frozen.as_millis()
    ))
}

//! The `/health` bodies of every service, and the live page's view of the bazaar
//! (`GET /cluster` on the front-end, drawn by `frontend/page/index.html`).
//!
//! A replica's `/health` ([`ReplicaHealth`]) is read by the front-end (is its leader still
//! leading?), by the live page, by the tests and the tools; its `role` is a [`Role`], so that
//! nobody compares strings. One type serves the replica that writes it and every reader:
//! readers are tolerant (fields added later default when missing, an unknown role parses as
//! [`Role::Unknown`]), so a front-end never fails on an older or a newer replica's health.
//!
//! `recovering` is not a role: it is a flag next to the role, true while the replica's disk,
//! found wiped or damaged, is being repaired by a leader (docs/replication.md, "Storage
//! faults"). A repairing replica is a follower that does not vote, campaign or answer `Ping`
//! with `OK`.
//!
//! Caveats:
//! - [`ReplicaView::role`] stays a string: the page shows a replica that does not answer as
//!   `"down"`, which is no role a replica reports; and a role this version does not know shows
//!   as `"unknown"`, not as the newer replica's word for it.
//! - The page's numbers (`latest`, `commit`, `applied`) keep −1 for "none yet" and `null` for
//!   "not reported", as the page's script tells them apart.

use serde::{Deserialize, Serialize};

use super::client::StockRecord;

/// `GET /health` on the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Health {
    pub(crate) status: String,
}

/// `GET /health` on the front-end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendHealth {
    pub(crate) status: String,
    /// The leading replica's id, `null` while none leads.
    pub leader: Option<u32>,
    /// Forwards to a replica that were retried after a failure.
    pub retries: u64,
    /// Leader selections that changed the leader.
    pub failovers: u64,
}

/// `GET /health` on an order replica, as it writes it and as everyone reads it (the
/// front-end's health check, the live page, the tests and tools).
///
/// A reader needs only `role`, `epoch` and `latest`, which every version has sent; every other
/// field defaults when missing, so that a replica of a version without it still parses
/// (`commit` and `applied` are then `None`, which the page shows as "not reported", unlike −1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaHealth {
    /// `"ok"` from a replica that answers.
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub id: u32,
    pub role: Role,
    /// The highest epoch this replica has granted or led.
    pub epoch: u64,
    /// The leader as this replica last heard of it.
    #[serde(default)]
    pub leader: Option<u32>,
    /// Highest order number held, -1 when the log is empty.
    pub latest: i64,
    /// Highest order number known committed (on a majority), -1 when none; always reported by
    /// this version.
    #[serde(default)]
    pub commit: Option<i64>,
    /// Highest order number the catalog has applied, as the leader last heard (-1: unknown);
    /// always reported by this version.
    #[serde(default)]
    pub applied: Option<i64>,
    /// A flag next to the role, not a role: its disk was found wiped or damaged and no leader
    /// has repaired it yet. Meanwhile it is a follower that votes for nobody, does not campaign
    /// and answers `Ping` with `WAIT` (docs/replication.md, "Storage faults").
    #[serde(default)]
    pub recovering: bool,
}

/// What a replica is doing in the leader protocol (docs/replication.md): the `role` of its
/// `/health`, the label of its `bazaar_replica_role` metric, and the role its core reports.
/// On the wire it is the lowercase name, `"follower"`, `"candidate"` or `"leader"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Follower,
    Candidate,
    Leader,
    /// A role this version does not know, from a replica of a newer one: read, never written
    /// by a replica of this version (it would write `"unknown"`).
    #[serde(other)]
    Unknown,
}

impl Role {
    /// The wire name, e.g. for a metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Unknown => "unknown",
        }
    }
}

/// `GET /cluster` on the front-end: everything the live page at `/` draws, gathered in one go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterView {
    /// When this was gathered, milliseconds since the Unix epoch.
    pub(crate) now_ms: u64,
    /// The leading replica as this front-end sees it, `null` while none leads.
    pub(crate) leader: Option<u32>,
    /// The leader's epoch, `null` while none leads.
    pub(crate) epoch: Option<u64>,
    /// Forwards retried after a failure, and selections that changed the leader.
    pub(crate) retries: u64,
    pub(crate) failovers: u64,
    /// Every configured replica, in config order.
    pub(crate) replicas: Vec<ReplicaView>,
    pub(crate) catalog: CatalogView,
    pub(crate) cache: CacheStats,
    pub(crate) traffic: Traffic,
    /// The most recent leader changes, oldest first.
    pub(crate) leader_changes: Vec<LeaderChange>,
}

/// One replica on the live page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaView {
    pub(crate) id: u32,
    /// Its HTTP address.
    pub(crate) addr: String,
    /// False when its `/health` did not answer in time.
    pub(crate) up: bool,
    /// Its [`Role`] as it reports it (`"leader"`, `"candidate"`, `"follower"`, `"unknown"`),
    /// or `"down"`.
    pub(crate) role: String,
    /// True for the replica this front-end forwards orders to.
    pub(crate) is_leader: bool,
    pub(crate) epoch: Option<u64>,
    pub(crate) latest: Option<i64>,
    pub(crate) commit: Option<i64>,
    pub(crate) applied: Option<i64>,
    /// How many orders it holds fewer than the leader (`null` when either is unknown).
    pub(crate) behind: Option<i64>,
    /// Why it shows as down.
    pub(crate) error: Option<String>,
}

/// The catalog on the live page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CatalogView {
    pub(crate) up: bool,
    pub(crate) stocks: Vec<StockRecord>,
    pub(crate) error: Option<String>,
}

/// The front-end's cache with its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub capacity: usize,
    /// Most recently used first.
    pub items: Vec<String>,
    pub hits: u64,
    pub misses: u64,
    /// Entries pushed out by a newer one (the cache was full).
    #[serde(default)]
    pub evictions: u64,
    /// Entries dropped by an invalidation (invalidations of absent keys are not counted).
    #[serde(default)]
    pub invalidations: u64,
}

/// Requests the front-end handled: totals since it started and the last seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Traffic {
    pub(crate) orders: u64,
    pub(crate) lookups: u64,
    /// One sample per whole second, oldest first, ending with the last complete second.
    pub(crate) per_second: Vec<RateSample>,
}

/// Requests in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateSample {
    /// The second, in seconds since the Unix epoch.
    pub(crate) t: u64,
    pub(crate) orders: u64,
    pub(crate) lookups: u64,
}

/// A change of leader as the front-end saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaderChange {
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The leader before, `null` when there was none.
    pub(crate) from: Option<u32>,
    /// The new leader, `null` when no replica answered the selection.
    pub(crate) to: Option<u32>,
    /// The new leader's epoch (`null` with `to`).
    pub(crate) epoch: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica's `/health` is written exactly as before the role was typed, and read back.
    #[test]
    fn replica_health_on_the_wire() {
        let health = ReplicaHealth {
            status: "ok".into(),
            id: 2,
            role: Role::Leader,
            epoch: 5,
            leader: Some(2),
            latest: 41,
            commit: Some(40),
            applied: Some(-1),
            recovering: false,
        };
        let json = r#"{"status":"ok","id":2,"role":"leader","epoch":5,"leader":2,"latest":41,"commit":40,"applied":-1,"recovering":false}"#;
        assert_eq!(serde_json::to_string(&health).unwrap(), json);
        assert_eq!(serde_json::from_str::<ReplicaHealth>(json).unwrap(), health);
        for role in [Role::Follower, Role::Candidate, Role::Leader] {
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
    }

    /// Older replicas (no `commit`, `applied`, `recovering`, ...) and newer ones (a role this
    /// version does not know, fields it does not know) both parse.
    #[test]
    fn replica_health_readers_are_tolerant() {
        let old: ReplicaHealth =
            serde_json::from_str(r#"{"role":"follower","epoch":3,"latest":-1}"#).unwrap();
        assert_eq!((old.role, old.epoch, old.latest), (Role::Follower, 3, -1));
        assert_eq!(
            (old.commit, old.applied, old.recovering),
            (None, None, false)
        );
        let new: ReplicaHealth = serde_json::from_str(
            r#"{"status":"ok","id":1,"role":"observer","epoch":3,"latest":7,"witness":true}"#,
        )
        .unwrap();
        assert_eq!(new.role, Role::Unknown);
        assert!(serde_json::from_str::<ReplicaHealth>(r#"{"role":"leader","epoch":3}"#).is_err());
    }
}

//! A replica's Prometheus metrics (`GET /metrics`, `crate::metrics`): the status the core
//! publishes, copied into gauges at each scrape, the leaderships counted as they happen, and
//! the group-commit histograms the file store feeds.
//!
//! Caveats: the gauges show the status as of the last flush, like `/health`; a scrape never
//! goes through the core, so it costs the replication path nothing and may be one round old.

use prometheus::{IntCounter, IntGauge, IntGaugeVec};

use super::core::RoleName;
use super::driver::Shared;
use super::store::SyncMetrics;
use crate::api::minus_one;
use crate::error::Result;
use crate::http::Response;
use crate::metrics::{gauge_value, Metrics};

/// Buckets of one sync's write + fdatasync, seconds.
const FSYNC_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Buckets of the orders one sync writes (group commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A replica's own metrics: the published status is copied in at each scrape, the rest is
/// counted as it happens (`crate::metrics`).
pub(super) struct ReplicaMetrics {
    role: IntGaugeVec,
    epoch: IntGauge,
    last: IntGauge,
    commit: IntGauge,
    applied: IntGauge,
    pub(super) leaderships: IntCounter,
}

impl ReplicaMetrics {
    /// The replica's gauges and counter, and the histograms its store feeds.
    pub(super) fn new(m: &Metrics) -> Result<(ReplicaMetrics, SyncMetrics)> {
        let own = ReplicaMetrics {
            role: m.gauge_vec(
                "bazaar_replica_role",
                "1 for the role the replica has now (follower, candidate, leader), else 0.",
                "role",
            )?,
            epoch: m.gauge("bazaar_replica_epoch", "The replica's current epoch.")?,
            last: m.gauge(
                "bazaar_replica_last_number",
                "The highest order number the replica holds durably (-1: none).",
            )?,
            commit: m.gauge(
                "bazaar_replica_commit_number",
                "The highest order number the replica knows committed (-1: none).",
            )?,
            applied: m.gauge(
                "bazaar_replica_applied_number",
                "The highest order number the replica knows the catalog applied (-1: none).",
            )?,
            leaderships: m.counter(
                "bazaar_replica_leaderships_total",
                "Times this replica started leading (fail-overs to it, and the first election).",
            )?,
        };
        let sync = SyncMetrics {
            seconds: m.histogram(
                "bazaar_replica_fsync_seconds",
                "Time of one group commit: the log write and its fdatasync.",
                FSYNC_BUCKETS,
            )?,
            orders: m.histogram(
                "bazaar_replica_sync_batch_orders",
                "Orders written by one group commit.",
                BATCH_BUCKETS,
            )?,
        };
        Ok((own, sync))
    }
}

impl Shared {
    /// `GET /metrics` (`crate::metrics`; no secret, see there).
    pub(super) fn metrics(&self) -> Response {
        self.metrics.render(|| {
            let s = self.status();
            for role in [RoleName::Follower, RoleName::Candidate, RoleName::Leader] {
                self.own
                    .role
                    .with_label_values(&[role.as_str()])
                    .set(i64::from(s.role == role));
            }
            self.own.epoch.set(gauge_value(s.epoch));
            self.own.last.set(minus_one::encode(s.latest));
            self.own.commit.set(minus_one::encode(s.commit));
            self.own.applied.set(minus_one::encode(s.applied));
        })
    }
}

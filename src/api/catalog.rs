//! Leader ↔ catalog ↔ front-end bodies: the leader announcing itself ([`LeaderHello`]) and
//! applying committed orders ([`ApplyBatch`]), the catalog's state it answers with
//! ([`CatalogState`]), and the catalog's cache invalidations to the front-ends
//! ([`InvalidateBatch`], [`Invalidated`]).
//!
//! Every endpoint that takes these bodies requires the deployment's secret (docs/spec.md §2);
//! the types themselves carry none.
//!
//! Caveats:
//! - [`CatalogState::applied`] stays an `i64` with −1 for none, unlike the replica bodies'
//!   `Option<u64>` (`api::replication::minus_one`): the catalog counts in `i64` and refuses
//!   order numbers beyond `i64::MAX` when it checks a batch.
//! - An [`ApplyBatch`] carries no `prev`: the catalog applies in number order and tells the
//!   leader where to resume (`applied`), so only the batch's own numbering is checked here
//!   ([`ApplyBatch::first_gap`]).

use serde::{Deserialize, Serialize};

use super::client::StockRecord;
use super::replication::{first_gap, LogEntry};

/// `POST /invalidation/<name>` on the front-end: `{"invalidated":"<name>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidated {
    pub invalidated: String,
}

/// `POST /leader` on the catalog: a new leader of `epoch` announces itself and reads where the
/// catalog stands. The catalog raises its fence to `epoch` (refusing applies from lower ones)
/// and persists that before it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHello {
    pub epoch: u64,
    pub leader: u32,
}

/// The catalog's state: `GET /state`, and the answer to [`LeaderHello`] and [`ApplyBatch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    /// The highest leader epoch the catalog has seen; it refuses applies from lower epochs.
    pub epoch: u64,
    /// The last order number applied, -1 before the first.
    pub applied: i64,
    /// The epoch of the leader that applied `applied` (0 before the first).
    pub(crate) applied_epoch: u64,
    /// Every stock after applying orders `0..=applied`, in catalog order.
    pub(crate) stocks: Vec<StockRecord>,
}

/// `POST /apply` on the catalog: committed orders, applied strictly in number order, each once.
/// Entries the catalog has already applied are skipped; if `entries[0]` is past the next number
/// it expects, nothing is applied and the answer's `applied` says where to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyBatch {
    pub epoch: u64,
    pub leader: u32,
    pub entries: Vec<LogEntry>,
}

impl ApplyBatch {
    /// Where the entries stop being numbered one after the other (from whatever `entries[0]`
    /// is: the catalog decides against its state whether that is where it stands): the index
    /// of the first entry out of place, `None` when all are in place.
    pub(crate) fn first_gap(&self) -> Option<usize> {
        first_gap(self.entries.first().map(|e| e.number), &self.entries)
    }
}

/// `POST /invalidation` on a front-end (from the catalog): drop these stocks from the cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateBatch {
    pub names: Vec<String>,
}

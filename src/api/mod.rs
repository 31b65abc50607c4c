//! Wire types: every JSON body any service sends or receives, defined once and grouped by who
//! reads it:
//!
//! - `client`: the public REST API of the front-end (stocks, orders, acknowledgements, the
//!   `{"data": ...}` and `{"error": ...}` envelopes) and the rules a client's order obeys;
//! - `replication`: replica ↔ replica (log entries, propagate, votes, log pages, sync state,
//!   the `minus_one` adapter for −1 on the wire);
//! - `catalog`: leader ↔ catalog ↔ front-end (leader hello, apply batches, the catalog's
//!   state, cache invalidations);
//! - `health`: the `/health` bodies of every service, the replica's [`Role`], and what the
//!   live page draws (`GET /cluster`).
//!
//! Everything is re-exported here, so a type is always named `api::X`, whichever file holds
//! it: the services, the client, the tests, the benches and the evaluation use these paths.
//!
//! Caveats:
//! - The types are the contract (docs/spec.md): a field renamed or retyped here changes the
//!   wire for every service and every older peer. Readers of bodies written by other versions
//!   (a replica's `/health`, the replica messages) use serde defaults for fields added later.
//! - The grouping is by audience, not by who defines the body: a [`LogEntry`] is replicated,
//!   applied by the catalog and paged to peers, and lives in `replication`.

mod catalog;
mod client;
mod health;
mod replication;

pub use self::catalog::{ApplyBatch, CatalogState, InvalidateBatch, Invalidated, LeaderHello};
pub(crate) use self::client::{decimal_param, parse_decimal, Data, ErrorBody};
pub use self::client::{
    new_request_id, CacheView, Order, OrderAck, OrderRequest, OrderType, Stock, StockRecord, RESEND,
};
// Only tests outside `api` need it (ids built to the limit).
#[cfg(test)]
pub(crate) use self::client::MAX_REQUEST_ID_LEN;
pub use self::health::{CacheStats, FrontendHealth, ReplicaHealth, Role};
pub(crate) use self::health::{
    CatalogView, ClusterView, Health, LeaderChange, RateSample, ReplicaView, Traffic,
};
pub(crate) use self::replication::{
    minus_one, LogPage, LogPosition, Propagate, PropagateAck, VoteReply, VoteRequest,
};
pub use self::replication::{LogEntry, SyncState};

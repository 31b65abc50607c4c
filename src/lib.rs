//! Stock Bazaar: a small replicated stock-trading system.
//!
//! ```text
//!  client ──HTTP──▶ frontend ──HTTP──▶ catalog ──POST /invalidation──▶ frontend
//!                      │  (LRU cache)     ▲
//!                      │                  │ trade (idempotent by request id)
//!                      ├──HTTP──▶ order leader ──POST /propagate──▶ order followers
//!                      └──TCP (Ping / You win / <id>)──▶ every order replica
//! ```
//!
//! Modules, each owning one thing:
//!
//! - [`config`]: the one YAML deployment file, its environment overrides and validation.
//! - [`api`]: every JSON body on the wire, shared by services, client and tests.
//! - [`error`]: the one error enum and its mapping to HTTP statuses.
//! - [`http`]: the blocking HTTP server (thread per connection, fixed handler pool) and the
//!   shared keep-alive HTTP client.
//! - [`catalog`]: stocks and trades, persisted atomically, trades idempotent by request id.
//! - [`frontend`]: the REST API, the LRU cache with race-free invalidation, leader tracking,
//!   retried forwarding of orders, and the live page of the whole bazaar at `/`.
//! - [`election`]: the TCP line protocol of leader selection (front-end and replica sides).
//! - [`order`]: an order replica: the fsynced CSV log, group commit, replication, catch-up.
//! - [`client`]: the load generator and verifier.
//! - [`cluster`]: a bazaar of real processes on one machine, for end-to-end tests and chaos.
//! - [`chaos`]: kills, freezes and restarts replicas under load and checks the invariants.
//! - [`eval`]: the course evaluation (`./run.sh eval`): latency, cache and fail-over figures
//!   in `docs/eval/`, measured from the outside through `run.sh`, the client and the REST API.
//! - [`cli`]: what every binary does before handing off (config, logging, signals).
//!
//! How an order flows: the front-end validates it and gives it a request id, then forwards it to
//! the leader; the leader has the catalog apply the trade (once per request id; the catalog
//! invalidates the front-end's cache entry before it answers), appends the order to its log with
//! one fsync per batch, waits until every live follower stored it, and answers. Any failure on
//! the way makes the front-end re-select a leader and re-send the same request, which the
//! catalog and the replicas recognise. `docs/replication.md` has the whole protocol.

pub mod api;
pub mod catalog;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod election;
pub mod error;
pub mod eval;
pub mod frontend;
pub mod http;
pub mod order;

#[cfg(test)]
mod fuzz_tests;

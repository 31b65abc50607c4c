//! Stock Bazaar: a small replicated stock-trading system.
//!
//! ```text
//!  client ──HTTP──▶ frontend ──HTTP──▶ catalog ──POST /invalidation──▶ every frontend
//!                      │  (LRU cache)     ▲
//!                      │                  │ POST /leader, POST /apply (committed orders, in order)
//!                      ├──HTTP──▶ order leader ──POST /propagate, /vote──▶ order followers
//!                      └──TCP (Ping / You win <hint> <secret> / <id> <epoch> <secret>)
//! ```
//!
//! Modules, each owning one thing:
//!
//! - [`config`]: the one YAML deployment file, its environment overrides and validation, and
//!   the resolved values that scripts read from `frontend --print-config`.
//! - [`api`]: every JSON body on the wire, shared by services, client and tests.
//! - `checksum`: the CRC32C seal on every record read back from disk.
//! - `durable`: atomic, durable replacement of a whole file (catalog snapshot, replica state).
//! - [`error`]: the one error enum and its mapping to HTTP statuses.
//! - [`http`]: the blocking HTTP server (thread per connection, fixed handler pool) and the
//!   shared keep-alive HTTP client.
//! - [`catalog`]: the view of the committed order log: applies it in number order, once, fenced
//!   by the leader's epoch, persisted in a journal; invalidates every front-end.
//! - [`frontend`]: the REST API, the LRU cache with race-free invalidation, leader tracking,
//!   retried forwarding of orders, and the live page of the whole bazaar at `/`.
//! - [`selection`]: the TCP line protocol of leader selection (front-end and replica sides).
//! - [`order`]: an order replica. Every rule (majority-granted epochs, majority commit, the
//!   catalog's apply path) is in `order::core`, a state machine with no network, threads or clock; the rest of the
//!   module is the fsynced CSV log and the threads that move bytes.
//! - [`client`]: the load generator and verifier.
//! - [`startup`]: what every binary does around its service (config, the refusal of a published
//!   secret off loopback, `--probe` for health checks, logging, graceful stop on
//!   SIGINT/SIGTERM).
//! - `metrics`: `GET /metrics` of every service in the Prometheus text format, one registry
//!   per service instance.
//! - `timing`: every protocol timeout, lease and interval, grouped by who relies on them, and
//!   the relations between them as `const` assertions.
//! - [`local`]: waiting with a deadline and free ports, for everything that drives bazaars from
//!   the outside (the evaluation, the test harness, the tests).
//! - `testkit` (feature `testkit`, on for tests and benches): the test harness, a bazaar of
//!   real processes on one machine (`testkit::cluster`) and the chaos run (`testkit::chaos`).
//!
//! Not here: the course evaluation (`./run.sh eval`: latency, cache and fail-over figures in
//! `docs/eval/`) is the workspace member `eval/` (package `bazaar-eval`, binary `eval`). It
//! drives bazaars only from the outside, through `run.sh`, the client and this crate's public
//! API, so that its plotting crate is compiled into no service.
//!
//! Where each part of the contract (`docs/spec.md`) lives:
//!
//! | spec | what | where |
//! |---|---|---|
//! | §1 | processes, the config file, env overrides, the secret | [`config`], [`startup`], `bin/` |
//! | §2 | the catalog, fenced apply, invalidation | [`catalog`] |
//! | §3 | the REST API, the cache | [`frontend`] (bodies in [`api`]), [`http`] |
//! | §4 | replicas: majority commit, epochs, the log | `order::core` (every rule), [`order`] (files, threads), [`selection`] |
//! | §5 | the invariants | checked by `testkit::cluster` in `tests/`, and by `./run.sh chaos` |
//! | §6 | the command line | `run.sh`, [`client`], `eval/` (the `bazaar-eval` crate), `testkit::chaos` |
//!
//! What you may touch from outside the crate is what `cargo doc` shows: the services' start
//! functions and handles, the config, the wire types, the client and the helpers the evaluation
//! (`eval/`) drives bazaars with. Everything else is `pub(crate)`; the harness is behind the
//! `testkit` feature (on for tests and benches through a self dev-dependency, off in the shipped
//! binaries).
//!
//! How an order flows: the front-end validates it and gives it a request id, then forwards it to
//! the leader. The leader decides it (404/409) against the catalog's state plus its own log,
//! numbers and appends it (one fsync per batch), replicates it, and once a majority holds it
//! durably has the catalog apply the committed log in order; the catalog invalidates every
//! front-end before it answers, and only then is the order acknowledged. Any failure on the way
//! makes the front-end re-select a leader and re-send the same request id, which the leader
//! finds in its log however late. `docs/replication.md` has the whole protocol and its safety
//! arguments.

pub mod api;
pub mod catalog;
mod checksum;
pub mod client;
pub mod config;
mod durable;
pub mod error;
pub mod frontend;
pub mod http;
pub mod local;
mod metrics;
pub mod order;
pub mod selection;
pub mod startup;
#[cfg(feature = "testkit")]
pub mod testkit;
pub(crate) mod timing;

#[cfg(test)]
mod fuzz_tests;

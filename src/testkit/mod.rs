//! The test harness: whole bazaars of real processes on one machine, the load and probes run
//! against them, the oracle that judges them, and the chaos run built on all of it. Only
//! compiled with the `testkit` feature, so that nothing here ships in the services; the
//! integration tests and benches get it through the crate's dev-dependency on itself, and
//! `./run.sh chaos` builds the `chaos` binary with `--features testkit`.
//!
//! - [`cluster`]: start, fault and inspect a bazaar ([`cluster::Cluster`]); its parts:
//!   [`process`] (the supervisor: spawn, signal, kill), [`config`] (the knobs and the config a
//!   test bazaar is written from), [`oracle`] (the invariants of docs/spec.md §5) and
//!   [`sampler`] (the catalog and the replicas' roles sampled during a run).
//! - `proxy`: a TCP proxy per directed replica link, so that tests can cut single links.
//! - [`load`]: client threads placing orders (or whole client sessions) until stopped;
//!   [`probe`]: the stale-read probe of docs/spec.md §5.5.
//! - [`raw`]: a raw HTTP/1.1 client for tests that must see exact bytes, and the burst check;
//!   [`servers`]: the two fixed-answer servers the HTTP benches compare.
//! - [`harness`]: the helpers every test uses (waits, raw requests, assertions).
//! - [`chaos`]: kills, freezes and restarts services under load, then checks every invariant.
//! - [`storage`]: storage faults on a stopped service's files (a wiped replica, a changed
//!   digit in a replica's log or the catalog's newest state), for the tests and `chaos`.
//!
//! Caveats: everything here is test code run on one machine: addresses are loopback, ports
//! are found free at run time, and the helpers of [`harness`] fail the calling test by
//! panicking, which is their job.

pub mod chaos;
pub mod cluster;
pub mod config;
pub mod harness;
pub mod load;
pub mod oracle;
pub mod probe;
pub mod process;
pub(crate) mod proxy;
pub mod raw;
pub mod sampler;
pub mod servers;
pub mod storage;

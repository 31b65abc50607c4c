//! The test harness: whole bazaars of real processes on one machine, and the chaos run built on
//! them. Only compiled with the `testkit` feature, so that nothing here ships in the services;
//! the integration tests and benches get it through the crate's dev-dependency on itself, and
//! `./run.sh chaos` builds the `chaos` binary with `--features testkit`.
//!
//! - [`cluster`]: start, fault and inspect a bazaar ([`cluster::Cluster`]), and the invariant
//!   checks of docs/spec.md §5 read off its files and samples.
//! - `proxy`: a TCP proxy per directed replica link, so that tests can cut single links.
//! - [`chaos`]: kills, freezes and restarts services under load, then checks every invariant.
//! - [`storage`]: storage faults on a stopped service's files (a wiped replica, a changed
//!   digit in a replica's log or the catalog's newest state), for the tests and `chaos`.

pub mod chaos;
pub mod cluster;
pub(crate) mod proxy;
pub mod storage;

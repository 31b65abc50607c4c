//! Hostile input on real processes: intruders without the deployment secret, junk on
//! every HTTP and line port, bad values on every POST, overload, and broken state on start.
//! Each test prints how many cases it tried.

//!
//! Layout: one file per area (`intruders.rs`, `junk.rs`, `bad_values.rs`, `overload.rs`,
//! `damaged_state.rs`, `full_disk.rs`); this file holds what they share: a quiet cluster,
//! snapshots of everything that must not change, raw requests (on the testkit's raw client,
//! [`bazaar::testkit::raw`]) and the replicas' line protocol.
//!
//! Caveats: every area starts its own bazaar; the overload and full-disk areas are heavy, so
//! run the file with `--test-threads=2` at most on two cores.

mod bad_values;
mod damaged_state;
mod full_disk;
mod intruders;
mod junk;
mod overload;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bazaar::api::{Order, OrderType};
use bazaar::selection;
use bazaar::testkit::cluster::Cluster;
use bazaar::testkit::harness as common;
use bazaar::testkit::raw::{parse_response, read_one_response};
use common::{raw, Options, Process};
use serde_json::{json, Value};

/// One request's timeout in the overload and slow-reader tests.
const CALL: Duration = Duration::from_secs(10);

fn secret(c: &Cluster) -> String {
    let text = std::fs::read_to_string(&c.config_path).unwrap();
    let config = bazaar::config::Config::from_yaml(&text, &|_| None).unwrap();
    config.secret
}

/// One raw request with extra header lines: status and JSON body.
fn raw_with(addr: &str, method: &str, target: &str, headers: &str, body: &str) -> (u16, Value) {
    common::raw_with(addr, method, target, headers, body, CALL)
}

/// Every file of the data directory with its bytes.
fn files(c: &Cluster) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(c.data_dir()).unwrap().flatten() {
        if entry.path().is_file() {
            out.insert(entry.path(), std::fs::read(entry.path()).unwrap());
        }
    }
    out
}

/// What must not change: every data file, each replica's position, the catalog's stocks and
/// state, the front-end's cache.
fn snapshot(c: &Cluster) -> (BTreeMap<PathBuf, Vec<u8>>, Vec<Value>) {
    let mut views = Vec::new();
    for id in 1..=3 {
        let h = c.replica_health(id).unwrap();
        views.push(json!([
            id, h.role, h.epoch, h.leader, h.latest, h.commit, h.applied
        ]));
    }
    views.push(raw(&c.catalog, "GET", "/state", "").1);
    views.push(raw(&c.frontend, "GET", "/cache", "").1);
    (files(c), views)
}

fn assert_unchanged(what: &str, before: &(BTreeMap<PathBuf, Vec<u8>>, Vec<Value>), c: &Cluster) {
    let after = snapshot(c);
    assert_eq!(before.1, after.1, "{what}: a view changed");
    assert_eq!(
        before.0.keys().collect::<Vec<_>>(),
        after.0.keys().collect::<Vec<_>>(),
        "{what}: files"
    );
    for (path, bytes) in &before.0 {
        assert!(
            after.0[path] == *bytes,
            "{what}: {} changed",
            path.display()
        );
    }
}

fn line(addr: &str, text: &str) -> String {
    selection::exchange(addr, text, selection::YOU_WIN_TIMEOUT)
        .unwrap_or_else(|| panic!("no answer to {text:?} on {addr}"))
}

/// A quiet cluster: a leader, every replica applied what it holds, cache warm for one stock.
fn quiet_cluster() -> Cluster {
    let c = common::start(Options {
        log_level: "info".into(),
        ..Options::default()
    });
    let (status, _) = raw(
        &c.frontend,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(status, 200);
    common::wait_for("logs identical", CALL, || c.wait_logs_identical(CALL).ok());
    // Followers learn the commit with the next heartbeat; only the leader hears the catalog.
    common::wait_for("every replica knows order 0 committed", CALL, || {
        (1..=3)
            .all(|id| c.replica_health(id).is_ok_and(|h| h.commit == Some(0)))
            .then_some(())
    });
    assert_eq!(raw(&c.frontend, "GET", "/stocks/GameStart", "").0, 200);
    c
}

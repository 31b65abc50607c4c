//! The helpers every end-to-end test uses: a started bazaar of the binaries cargo built
//! ([`start`]), raw-HTTP requests that see exact statuses and bodies ([`raw`], on
//! [`crate::testkit::raw`]), the one way to wait for something ([`poll`] and what is built on
//! it: a check repeated at a fixed interval, bounded in time and in count, never a sleep
//! standing in for a synchronisation), and the assertions on invariants, errors and client
//! runs. The flat tests reach it as `common::` (tests/common re-exports it); the directory
//! tests (`tests/NAME/main.rs`) as `bazaar::testkit::harness`.
//!
//! Caveats: unlike the rest of the library, every helper here fails the calling test by
//! panicking when what it waits for or asserts does not happen (that is its job); only tests
//! and benches call it. The binaries are found beside the running test executable
//! ([`Binaries::of_cargo_test`]), so a test must run from cargo's target directory.

use std::time::Duration;

use crate::api::{LogEntry, Order, OrderType};
use crate::testkit::cluster::Binaries;
pub use crate::testkit::cluster::{Cluster, ClusterOptions as Options, Process, CALL_TIMEOUT};

/// The binaries cargo built for this test run.
pub fn binaries() -> Binaries {
    Binaries::of_cargo_test().expect("find the binaries cargo built")
}

/// A started bazaar with a leader.
pub fn start(options: Options) -> Cluster {
    Cluster::start(binaries(), options).expect("start a bazaar")
}

/// How often [`wait_for`] and [`eventually`] look again: the harness's own interval.
pub const POLL: Duration = crate::local::POLL_INTERVAL;

/// Calls `f` every `interval` until it gives `Some`, for at most `timeout` and at most the
/// number of intervals that fit in it (plus the first call): `None` when time or count runs
/// out. Every other wait of the tests is built on this one.
pub fn poll<T>(timeout: Duration, interval: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    crate::local::poll_every("a test condition", timeout, interval, f).ok()
}

/// Polls until `f` gives `Some`, failing the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, POLL, f)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls until `check` holds, every `interval`, for at most `timeout`: whether it held.
pub fn eventually(timeout: Duration, interval: Duration, mut check: impl FnMut() -> bool) -> bool {
    poll(timeout, interval, || check().then_some(())).is_some()
}

/// Asserts every invariant of docs/spec.md §5 that the files and the catalog show; returns the log.
pub fn assert_invariants(cluster: &Cluster, acknowledged: &[Order]) -> Vec<LogEntry> {
    let (log, verdicts) = cluster.check_invariants(acknowledged);
    assert_verdicts(verdicts);
    log
}

/// Asserts that no verdict names a violation.
pub fn assert_verdicts(verdicts: Vec<crate::testkit::cluster::Invariant>) {
    for verdict in verdicts {
        assert!(
            verdict.violation.is_none(),
            "{}: {}",
            verdict.name,
            verdict.violation.unwrap_or_default()
        );
    }
}

/// The entries of an order log file.
pub fn parse(path: &std::path::Path) -> Vec<LogEntry> {
    crate::testkit::cluster::parse_log(&std::fs::read(path).unwrap_or_default()).unwrap()
}

/// Reads a file to a string, empty when missing.
pub fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One raw HTTP/1.1 request on a fresh connection: status and JSON body (`Null` if none).
pub fn raw(addr: &str, method: &str, target: &str, body: &str) -> (u16, serde_json::Value) {
    raw_within(addr, method, target, body, CALL_TIMEOUT)
}

/// [`raw`] with its own read timeout; panics when no status came back within it.
pub fn raw_within(
    addr: &str,
    method: &str,
    target: &str,
    body: &str,
    timeout: Duration,
) -> (u16, serde_json::Value) {
    raw_with(addr, method, target, JSON_HEADER, body, timeout)
}

/// The header line [`raw`] sends.
pub const JSON_HEADER: &str = "Content-Type: application/json\r\n";

/// One raw request with extra header lines (each ending in `\r\n`): status and JSON body;
/// panics when no status came back within `timeout`.
pub fn raw_with(
    addr: &str,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
    timeout: Duration,
) -> (u16, serde_json::Value) {
    crate::testkit::raw::request(addr, method, target, headers, body, timeout)
        .unwrap_or_else(|e| panic!("{method} {addr}{target}: {e}"))
}

/// Asserts a response is the docs/spec.md §3 error body with this code.
pub fn assert_error(what: &str, got: &(u16, serde_json::Value), code: u16) {
    assert_eq!(got.0, code, "{what}: status (body {})", got.1);
    assert_eq!(
        got.1["error"]["code"], code,
        "{what}: error.code in {}",
        got.1
    );
    assert!(
        got.1["error"]["message"].is_string(),
        "{what}: error.message in {}",
        got.1
    );
}

/// How long a test waits for orders to keep being logged.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `clients` client sessions ([`crate::testkit::load::Load::sessions`]: every lookup
/// followed by an order, `n_request` each) against the front-end in the background;
/// [`crate::testkit::load::Load::summary`] waits for them.
pub fn load(
    b: &Cluster,
    clients: usize,
    n_request: usize,
    seed: u64,
) -> crate::testkit::load::Load {
    let (host, port) = b.frontend.rsplit_once(':').unwrap();
    let options = crate::client::ClientOptions {
        prob: 1.0,
        seed,
        n_request,
        clients,
        ..crate::client::ClientOptions::new(host, port.parse().unwrap())
    };
    crate::testkit::load::Load::sessions(options).expect("start the clients")
}

/// Orders in replica `id`'s log file right now.
pub fn logged(b: &Cluster, id: u32) -> usize {
    read(&b.log_path(id)).lines().count().saturating_sub(1)
}

/// Waits until replica `id`'s log file holds at least `at_least` orders.
pub fn wait_logged(b: &Cluster, id: u32, at_least: usize) {
    wait_for(
        &format!("{at_least} orders in replica {id}'s log"),
        PROGRESS_TIMEOUT,
        || (logged(b, id) >= at_least).then_some(()),
    );
}

/// How long an order is re-sent (same request id) before a test gives up on it: a fail-over
/// (lease, vote, catch-up) on a busy machine fits well within it.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(40);

/// Pause between re-sends of one order (the front-end already retries for 6 s itself).
pub const RESEND_PAUSE: Duration = Duration::from_millis(200);

/// Places an order through front-end `fe` under request id `rid`, re-sending it while the
/// answer is a 5xx or a 421, until acknowledged; panics after [`ACK_TIMEOUT`].
pub fn place_acked(
    b: &Cluster,
    fe: usize,
    name: &str,
    quantity: u64,
    kind: OrderType,
    rid: &str,
) -> Order {
    place_acked_within(b, fe, name, quantity, kind, rid, ACK_TIMEOUT)
}

/// [`place_acked`], giving up (panicking) after `timeout` instead of [`ACK_TIMEOUT`]: for
/// "orders flow again within a few seconds".
pub fn place_acked_within(
    b: &Cluster,
    fe: usize,
    name: &str,
    quantity: u64,
    kind: OrderType,
    rid: &str,
    timeout: Duration,
) -> Order {
    let req = crate::testkit::cluster::order_request(name, quantity, kind, Some(rid));
    let mut last = None;
    let ack = poll(timeout, RESEND_PAUSE, || match b.place_order(fe, &req) {
        Ok(ack) => Some(ack),
        Err(e) => {
            assert!(
                e.status() >= 500 || e.status() == 421,
                "order {rid} refused for good: {e}"
            );
            last = Some(e);
            None
        }
    })
    .unwrap_or_else(|| panic!("order {rid} not acknowledged within {timeout:?}: {last:?}"));
    Order {
        number: ack.transaction_number,
        name: name.into(),
        kind,
        quantity,
    }
}

/// Replica `id`'s `GET /health` as JSON (so that fields this harness's types do not know,
/// such as `recovering`, are seen), or `None` when it does not answer.
pub fn replica_health_json(b: &Cluster, id: u32) -> Option<serde_json::Value> {
    b.client
        .get(&b.replicas[&id].0, "/health", Duration::from_secs(2))
        .ok()
}

/// Waits until replica `id` says `"recovering": false` on `/health`, failing the test after
/// `timeout` with the last answer. A replica whose `/health` has no `recovering` field at all
/// (the code before storage-fault recovery) counts once it answers `Ping` as ready, so that
/// a test goes on to show the failure it is about; [`assert_not_recovering`] then insists on
/// the field.
pub fn wait_recovered(b: &Cluster, id: u32, timeout: Duration) {
    let mut last = None;
    let health_port = b.replicas[&id].2.clone();
    let done = poll(timeout, POLL, || {
        last = replica_health_json(b, id);
        match last.as_ref()?.get("recovering") {
            Some(serde_json::Value::Bool(false)) => Some(()),
            Some(_) => None,
            None => {
                crate::selection::ping(&health_port, crate::selection::PING_TIMEOUT).then_some(())
            }
        }
    });
    assert!(
        done.is_some(),
        "order-{id} still recovering (or silent) after {timeout:?}: last /health {last:?}"
    );
}

/// Asserts that replica `id`'s `/health` says `"recovering": false`.
pub fn assert_not_recovering(b: &Cluster, id: u32) {
    let health = replica_health_json(b, id);
    assert_eq!(
        health.as_ref().and_then(|h| h.get("recovering")),
        Some(&serde_json::Value::Bool(false)),
        "order-{id}'s /health: {health:?}"
    );
}

/// `GET /orders/<n>` through front-end `fe`, asked again while the answer is a 5xx or a 421 (a
/// fail-over under way) for at most [`ACK_TIMEOUT`]: the order, or the last error.
pub fn read_order(b: &Cluster, fe: usize, n: u64) -> Result<Order, String> {
    let mut last = String::new();
    poll(ACK_TIMEOUT, RESEND_PAUSE, || {
        match b
            .client
            .get::<Order>(&b.frontends[fe], &format!("/orders/{n}"), CALL_TIMEOUT)
        {
            Ok(order) => Some(Ok(order)),
            Err(e) if e.status() >= 500 || e.status() == 421 => {
                last = e.to_string();
                None
            }
            Err(e) => Some(Err(e.to_string())),
        }
    })
    .unwrap_or(Err(last))
}

/// Asserts that every acknowledged order reads back through the default front-end exactly as
/// it was acknowledged.
pub fn assert_read_back(b: &Cluster, acknowledged: &[Order]) {
    for order in acknowledged {
        let got = read_order(b, 0, order.number);
        assert_eq!(
            got.as_ref(),
            Ok(order),
            "order {} read back through the front-end",
            order.number
        );
    }
}

/// The clients of a load run saw no error and no mismatch (the report says what they saw).
pub fn assert_clients_clean(summary: &crate::client::Summary) {
    assert_eq!(
        summary.errors,
        0,
        "clients saw errors: {}",
        summary.report()
    );
    assert_eq!(
        summary.mismatches,
        0,
        "clients saw mismatches: {}",
        summary.report()
    );
}

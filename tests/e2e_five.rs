//! End to end with FIVE order replicas (`ClusterOptions::replicas`, as in conf/five.yaml), on
//! real processes. Orders commit on a majority, 3 of 5, so:
//!
//! - two replicas killed under client load, the leader among them, cost the clients no error,
//!   and once they return every invariant of docs/spec.md §5 holds (the harness's
//!   `check_all`, with catalog samples taken during the run, and no epoch led twice);
//! - with three down an order is answered 503 (re-send), and once a majority is back the
//!   re-sent order is acknowledged under its request id and nothing acknowledged is lost.

mod common;

use std::collections::BTreeSet;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bazaar::api::{Order, OrderType};
use bazaar::client::{ClientOptions, Summary};
use bazaar::testkit::cluster::{order_request, two_leaders_in_one_epoch, CatalogView, Sampler};
use common::{wait_for, Cluster, Options, Process, CALL_TIMEOUT};

/// The replicas of this bazaar.
const REPLICAS: u32 = 5;

/// How long the test waits for progress (orders logged, a new leader) after a fault: a
/// fail-over (lease, vote, catch-up) on a busy machine fits well within it.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an order is re-sent (same request id) before the test gives up on it.
const ACK_TIMEOUT: Duration = Duration::from_secs(40);

/// Pause between re-sends of one order (the front-end already retries for 6 s itself).
const RESEND_PAUSE: Duration = Duration::from_millis(200);

/// How long an order sent without a majority may take to be answered 503: the front-end's
/// forward deadline (6 s) plus slack for a loaded machine.
const NO_MAJORITY_ANSWER: Duration = Duration::from_secs(20);

/// Read timeout of the raw order sent without a majority: longer than [`NO_MAJORITY_ANSWER`],
/// so that a slow answer is measured rather than cut off.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /orders` on a fresh connection: the status and the JSON body (`Null` if none), the
/// status 0 when no answer came within [`RAW_TIMEOUT`]. (The harness's client would report a
/// timeout of its own as 503, which is what this test must tell apart.)
fn post_order_raw(addr: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(RAW_TIMEOUT)).unwrap();
    let request = format!(
        "POST /orders HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Starts `clients` clients (every lookup followed by an order) in the background.
fn load(b: &Cluster, clients: usize, n_request: usize, seed: u64) -> JoinHandle<Summary> {
    let (host, port) = b.frontend.rsplit_once(':').unwrap();
    let options = ClientOptions {
        prob: 1.0,
        seed,
        n_request,
        clients,
        ..ClientOptions::new(host, port.parse().unwrap())
    };
    thread::spawn(move || bazaar::client::run(&options))
}

/// Orders in replica `id`'s log file right now.
fn logged(b: &Cluster, id: u32) -> usize {
    common::read(&b.log_path(id))
        .lines()
        .count()
        .saturating_sub(1)
}

fn wait_logged(b: &Cluster, id: u32, at_least: usize) {
    wait_for(
        &format!("{at_least} orders in replica {id}'s log"),
        PROGRESS_TIMEOUT,
        || (logged(b, id) >= at_least).then_some(()),
    );
}

/// Waits until the front-end reports a leader other than `not`.
fn wait_new_leader(b: &Cluster, not: u32) -> u32 {
    wait_for(
        &format!("a leader other than order-{not}"),
        PROGRESS_TIMEOUT,
        || b.frontend_health().ok()?.leader.filter(|&l| l != not),
    )
}

/// Sends `rid` until it is acknowledged; only 5xx and 421 (try again) are tolerated.
fn place_acked(b: &Cluster, name: &str, quantity: u64, kind: OrderType, rid: &str) -> Order {
    let req = order_request(name, quantity, kind, Some(rid));
    let mut last = None;
    let ack = common::poll(ACK_TIMEOUT, RESEND_PAUSE, || match b.place_order(0, &req) {
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
    .unwrap_or_else(|| panic!("order {rid} not acknowledged within {ACK_TIMEOUT:?}: {last:?}"));
    Order {
        number: ack.transaction_number,
        name: name.into(),
        kind,
        quantity,
    }
}

/// Asserts [`Cluster::check_all`]: docs/spec.md §5 on the files and the catalog, and every
/// catalog sample a prefix of the log.
fn assert_all_hold(b: &Cluster, acknowledged: &[Order], samples: &[CatalogView]) {
    let (_, verdicts) = b.check_all(acknowledged, samples);
    for verdict in verdicts {
        assert!(
            verdict.violation.is_none(),
            "{}: {}",
            verdict.name,
            verdict.violation.unwrap_or_default()
        );
    }
}

#[test]
fn five_replicas_survive_two_failures_and_lose_nothing_with_three_down() {
    let mut b = common::start(Options {
        replicas: REPLICAS,
        ..Options::default()
    });
    assert_eq!(b.majority(), 3);
    // The live page's data lists every configured replica, not three.
    let page: serde_json::Value = b.client.get(&b.frontend, "/cluster", CALL_TIMEOUT).unwrap();
    let ids: Vec<u64> = page["replicas"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "/cluster: {page}");
    let first = b.wait_leader().unwrap();
    assert_eq!(first, REPLICAS, "the highest id leads at start");

    // Two killed under load, the leader first: the clients see no error.
    let sampler = Sampler::start(&b);
    let run = load(&b, 4, 150, 55);
    let witness = 1;
    wait_logged(&b, witness, 10);
    b.kill(Process::Order(first));
    let second = wait_new_leader(&b, first);
    let follower = (1..=REPLICAS)
        .find(|&id| id != first && id != second && id != witness)
        .unwrap();
    let at = logged(&b, witness);
    wait_logged(&b, witness, at + 10);
    b.kill(Process::Order(follower));
    let at = logged(&b, witness);
    wait_logged(&b, witness, at + 10);
    let summary = run.join().unwrap();
    assert_eq!(
        summary.errors,
        0,
        "clients saw errors: {}",
        summary.report()
    );
    assert_eq!(summary.mismatches, 0, "mismatches: {}", summary.report());
    assert!(!summary.acknowledged.is_empty(), "no order went through");
    for id in [first, follower] {
        b.start_service(Process::Order(id)).unwrap();
    }
    let (samples, leaders) = sampler.finish();
    assert_all_hold(&b, &summary.acknowledged, &samples);
    assert_eq!(two_leaders_in_one_epoch(&leaders), None);
    let mut acknowledged = summary.acknowledged.clone();

    // Three down (the leader among them): an order is answered 503, not acknowledged.
    let leader = b.wait_leader().unwrap();
    let down: BTreeSet<u32> = std::iter::once(leader)
        .chain((1..=REPLICAS).filter(|&id| id != leader).take(2))
        .collect();
    for &id in &down {
        b.kill(Process::Order(id));
    }
    let req = order_request("FishCo", 3, OrderType::Buy, Some("five-three-down"));
    let body = serde_json::to_string(&req).unwrap();
    let started = Instant::now();
    let got = post_order_raw(&b.frontend, &body);
    eprintln!(
        "three of five down: {} after {:?}",
        got.0,
        started.elapsed()
    );
    assert_eq!(got.0, 503, "an order with three of five down: {}", got.1);
    assert!(
        got.1["error"]["message"].is_string(),
        "a JSON error body: {}",
        got.1
    );
    assert!(
        started.elapsed() < NO_MAJORITY_ANSWER,
        "503 took {:?}",
        started.elapsed()
    );
    // One back makes a majority again: the re-sent order is acknowledged.
    let mut returning = down.iter().copied();
    let back = returning.next().unwrap();
    b.start_service(Process::Order(back)).unwrap();
    acknowledged.push(place_acked(
        &b,
        "FishCo",
        3,
        OrderType::Buy,
        "five-three-down",
    ));
    acknowledged.push(place_acked(&b, "BoarCo", 2, OrderType::Sell, "five-after"));
    for id in returning {
        b.start_service(Process::Order(id)).unwrap();
    }
    // Nothing acknowledged is lost, and all five files end identical.
    common::assert_invariants(&b, &acknowledged);
}

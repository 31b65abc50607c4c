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
use std::time::{Duration, Instant};

use bazaar::api::{Order, OrderType};
use bazaar::testkit::cluster::{order_request, two_leaders_in_one_epoch, CatalogView, Sampler};
use common::{
    load, logged, place_acked, raw_within, wait_for, wait_logged, Cluster, Options, Process,
    CALL_TIMEOUT, PROGRESS_TIMEOUT,
};

/// The replicas of this bazaar.
const REPLICAS: u32 = 5;

/// How long an order sent without a majority may take to be answered 503: the front-end's
/// forward deadline (6 s) plus slack for a loaded machine.
const NO_MAJORITY_ANSWER: Duration = Duration::from_secs(20);

/// Read timeout of the raw order sent without a majority: longer than [`NO_MAJORITY_ANSWER`],
/// so that a slow answer is measured rather than cut off.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the front-end reports a leader other than `not`.
fn wait_new_leader(b: &Cluster, not: u32) -> u32 {
    wait_for(
        &format!("a leader other than order-{not}"),
        PROGRESS_TIMEOUT,
        || b.frontend_health().ok()?.leader.filter(|&l| l != not),
    )
}

/// Asserts [`Cluster::check_all`]: docs/spec.md §5 on the files and the catalog, and every
/// catalog sample a prefix of the log.
fn assert_all_hold(b: &Cluster, acknowledged: &[Order], samples: &[CatalogView]) {
    common::assert_verdicts(b.check_all(acknowledged, samples).1);
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
    let summary = run.summary().unwrap();
    common::assert_clients_clean(&summary);
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
    let got = raw_within(&b.frontend, "POST", "/orders", &body, RAW_TIMEOUT);
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
        0,
        "FishCo",
        3,
        OrderType::Buy,
        "five-three-down",
    ));
    acknowledged.push(place_acked(
        &b,
        0,
        "BoarCo",
        2,
        OrderType::Sell,
        "five-after",
    ));
    for id in returning {
        b.start_service(Process::Order(id)).unwrap();
    }
    // Nothing acknowledged is lost, and all five files end identical.
    common::assert_invariants(&b, &acknowledged);
}

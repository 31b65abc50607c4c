//! End to end, on real processes: one disk that vanishes or lies (issue "One disk may vanish
//! or lie"). Each test damages a stopped service's files with `bazaar::testkit::storage`, lets
//! the bazaar recover by itself, and ends with every check of docs/spec.md §5
//! ([`common::assert_invariants`] or `check_all`) plus every acknowledged order read back
//! through the front-end's `GET /orders/<n>` exactly as it was acknowledged.
//!
//! - `a_wiped_follower_and_a_crash_wait_instead_of_losing_orders`: order-2 loses its disk while
//!   order-3 (which holds the 40 newest orders with it) is down and order-1 is stale; no leader
//!   may be elected and no order acknowledged until order-3 returns, then orders flow again.
//! - `a_changed_digit_in_a_followers_log_is_repaired_not_served`: order #30's quantity 1 → 7 in
//!   a follower's file; that follower then leads; #30 must still read `sell 1`.
//! - `a_changed_digit_in_the_old_leaders_log_is_repaired_before_it_leads_again`: the same in
//!   the killed leader's file; it is made to lead again.
//! - `a_changed_digit_in_the_catalog_journal_is_rebuilt_from_the_log` and
//!   `..._catalog_snapshot_...`: a stock's quantity changed in the catalog's newest state; the
//!   catalog must serve what the log gives, never the changed number, at any sampled moment.
//! - `deleted_catalog_files_are_rebuilt_from_the_log`: what already worked, kept.
//! - `a_wiped_follower_is_whole_again_while_orders_go_on`: a follower wiped under load.
//!
//! What the tests assume of the recovery: `GET /health` on a replica has `"recovering"`
//! (false once repaired); a replica that lost or found damage in its files neither votes nor
//! leads until a leader elected after the damage has repaired it (so the leader it served
//! before steps down and a newer epoch begins); the catalog rebuilds from the
//! committed log when its own files do not check.

mod common;

use std::time::{Duration, Instant};

use bazaar::api::{Order, OrderType};
use bazaar::testkit::cluster::{order_request, Sampler, QUIET_TIMEOUT, STOCKS};
use bazaar::testkit::storage::{set_catalog_quantity, set_order_quantity, wipe_replica};
use common::{
    assert_invariants, assert_not_recovering, assert_read_back, assert_verdicts, load, logged,
    place_acked, place_acked_within, read_order, wait_for, wait_logged, wait_recovered, Cluster,
    Options, Process,
};

/// How long a wiped or damaged replica may take to be repaired, and orders to flow again once
/// a replica holding the data is back: "within seconds", with slack for a loaded 2-core
/// machine (a fail-over alone takes about 1 s there).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the test watches that no leader is elected while only a stale replica and a
/// wiped one are up: several election rounds (a vote round is under a second; the front-end
/// checks every 0.25 s).
const NO_LEADER_WINDOW: Duration = Duration::from_secs(5);

/// How long a new leader may take to be seen by the front-end after the old one is killed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The order whose quantity the digit tests change, and the quantities: acknowledged as
/// `sell 1`, damaged to `sell 7` (one digit, so the line keeps its length).
const DAMAGED_ORDER: u64 = 30;
const ACKED_QUANTITY: u64 = 1;
const DAMAGED_QUANTITY: u64 = 7;

/// The catalog tests trade this stock down to 90 and change it to 95 in the catalog's file:
/// with volume 10, (95, 10) is a state no prefix of the log gives.
const CATALOG_STOCK: &str = "MenhirCo";
const CATALOG_BUYS: u64 = 10;
const CATALOG_DAMAGED: u64 = 95;

/// Places orders `range` one at a time, each acknowledged, under request ids `<tag>-<i>`: one
/// share each, sells on even `i` and buys on odd, over the stocks in turn. In a fresh bazaar
/// order `i` gets number `i` (checked), so order 30 is `sell 1`.
fn place_numbered(b: &Cluster, range: std::ops::Range<u64>, tag: &str) -> Vec<Order> {
    range
        .map(|i| {
            let kind = if i % 2 == 0 {
                OrderType::Sell
            } else {
                OrderType::Buy
            };
            let stock = STOCKS[i as usize % STOCKS.len()].as_str();
            let order = place_acked(b, 0, stock, ACKED_QUANTITY, kind, &format!("{tag}-{i}"));
            assert_eq!(order.number, i, "order {tag}-{i} numbered");
            order
        })
        .collect()
}

/// Waits until the front-end reports a leader other than `not`; returns it.
fn wait_new_leader(b: &Cluster, not: u32) -> u32 {
    wait_for(
        &format!("a leader other than order-{not}"),
        FAILOVER_TIMEOUT,
        || b.frontend_health().ok()?.leader.filter(|&l| l != not),
    )
}

/// The end of every test: §5 on the files and the catalog, and every acknowledged order read
/// back through the front-end.
fn finish(b: &Cluster, acked: &[Order]) {
    assert_invariants(b, acked);
    assert_read_back(b, acked);
}

/// Reproduction 1. A wiped follower plus a crash: order-2, with an empty disk, must not vote
/// as if it had never voted, so order-1 (stale) cannot lead and lose the 40 orders order-3 and
/// order-2 acknowledged.
#[test]
fn a_wiped_follower_and_a_crash_wait_instead_of_losing_orders() {
    let mut b = common::start(Options::default());
    assert_eq!(b.wait_leader().unwrap(), 3, "the first leader");
    let mut acked = place_numbered(&b, 0..20, "wipe");
    b.kill(Process::Order(1));
    acked.extend(place_numbered(&b, 20..60, "wipe"));
    b.kill(Process::Order(3));
    b.kill(Process::Order(2));
    wipe_replica(&b, 2).unwrap();
    b.start_service(Process::Order(1)).unwrap();
    b.start_service(Process::Order(2)).unwrap();

    // order-2 is recovering and votes for nobody; order-1 alone is no majority.
    let leader = common::poll(NO_LEADER_WINDOW, common::POLL, || b.leading_replica());
    if let Some(h) = leader {
        panic!(
            "order-{} leads epoch {} (its log ends at {}) with order-3 down and order-2 wiped: \
             the 40 orders only order-3 still holds would be lost",
            h.id, h.epoch, h.latest
        );
    }
    // Nothing wrong is acknowledged meanwhile: the front-end answers 503 "re-send".
    let meanwhile = order_request("FishCo", 1, OrderType::Sell, Some("wipe-meanwhile"));
    match b.place_order(0, &meanwhile) {
        Ok(ack) => panic!(
            "an order was acknowledged as number {} with order-3 down and order-2 wiped",
            ack.transaction_number
        ),
        Err(e) => assert_eq!(e.status(), 503, "the order placed meanwhile: {e}"),
    }

    b.start_service(Process::Order(3)).unwrap();
    let started = Instant::now();
    // The same request id again: acknowledged once, whether or not the first attempt committed.
    acked.push(place_acked_within(
        &b,
        0,
        "FishCo",
        1,
        OrderType::Sell,
        "wipe-meanwhile",
        RECOVERY_TIMEOUT,
    ));
    eprintln!(
        "orders flow again {:?} after order-3 returned",
        started.elapsed()
    );
    acked.push(place_acked_within(
        &b,
        0,
        "GameStart",
        1,
        OrderType::Buy,
        "wipe-after",
        RECOVERY_TIMEOUT,
    ));
    wait_recovered(&b, 2, RECOVERY_TIMEOUT);
    finish(&b, &acked);
    assert_not_recovering(&b, 2);
}

/// Reproduction 2. Order #30's quantity changed from 1 to 7 in a stopped follower's file (line
/// length kept, checksum column left as it was); once that follower leads, #30 must read as
/// acknowledged, and the files converge.
#[test]
fn a_changed_digit_in_a_followers_log_is_repaired_not_served() {
    let mut b = common::start(Options::default());
    assert_eq!(b.wait_leader().unwrap(), 3, "the first leader");
    let mut acked = place_numbered(&b, 0..40, "digit-f");
    b.wait_logs_identical(QUIET_TIMEOUT).unwrap();
    let served = health_epoch(&b, 2);
    b.kill(Process::Order(2));
    let old = set_order_quantity(&b.log_path(2), DAMAGED_ORDER, DAMAGED_QUANTITY).unwrap();
    assert_eq!(old, ACKED_QUANTITY);
    b.start_service(Process::Order(2)).unwrap();
    wait_recovered(&b, 2, RECOVERY_TIMEOUT);
    // It acknowledged #30..#39 to epoch `served`'s leader: only a newer leader may repair it.
    let repaired_in = health_epoch(&b, 2);
    assert!(
        repaired_in > served,
        "order-2 was repaired in epoch {repaired_in}, the epoch it served before the damage"
    );

    b.kill(Process::Order(3));
    let leader = wait_new_leader(&b, 3);
    eprintln!("order-{leader} leads after order-3");
    let got = read_order(&b, 0, DAMAGED_ORDER);
    assert_eq!(
        got.as_ref(),
        Ok(&acked[DAMAGED_ORDER as usize]),
        "order {DAMAGED_ORDER} through the front-end with order-{leader} leading \
         (order-2's file said quantity {DAMAGED_QUANTITY})"
    );
    acked.push(place_acked(
        &b,
        0,
        "FishCo",
        1,
        OrderType::Sell,
        "digit-f-after",
    ));
    b.start_service(Process::Order(3)).unwrap();
    wait_recovered(&b, 3, RECOVERY_TIMEOUT);
    finish(&b, &acked);
    assert_not_recovering(&b, 2);
}

/// Replica `id`'s epoch on `GET /health`.
fn health_epoch(b: &Cluster, id: u32) -> u64 {
    let health = common::replica_health_json(b, id);
    let epoch = health.as_ref().and_then(|h| h.get("epoch")?.as_u64());
    epoch.unwrap_or_else(|| panic!("order-{id}'s /health has no epoch: {health:?}"))
}

/// Reproduction 3. The same damage in the old leader's file while it is down: restarted, it
/// is repaired, and when it leads again (the others killed in turn and restarted) #30 reads
/// as acknowledged.
#[test]
fn a_changed_digit_in_the_old_leaders_log_is_repaired_before_it_leads_again() {
    /// Fail-overs tried to bring order-3 back to leading: the front-end picks the highest
    /// ready id, so one is enough unless the machine is slow.
    const MAX_HANDOVERS: usize = 4;

    let mut b = common::start(Options::default());
    assert_eq!(b.wait_leader().unwrap(), 3, "the first leader");
    let mut acked = place_numbered(&b, 0..40, "digit-l");
    b.wait_logs_identical(QUIET_TIMEOUT).unwrap();
    b.kill(Process::Order(3));
    let old = set_order_quantity(&b.log_path(3), DAMAGED_ORDER, DAMAGED_QUANTITY).unwrap();
    assert_eq!(old, ACKED_QUANTITY);
    wait_new_leader(&b, 3);
    acked.push(place_acked(
        &b,
        0,
        "FishCo",
        1,
        OrderType::Sell,
        "digit-l-40",
    ));
    b.start_service(Process::Order(3)).unwrap();
    wait_recovered(&b, 3, RECOVERY_TIMEOUT);

    let mut leader = b.wait_leader().unwrap();
    for handover in 0..MAX_HANDOVERS {
        if leader == 3 {
            break;
        }
        b.kill(Process::Order(leader));
        let next = wait_new_leader(&b, leader);
        acked.push(place_acked(
            &b,
            0,
            "FishCo",
            1,
            OrderType::Sell,
            &format!("digit-l-handover-{handover}"),
        ));
        b.start_service(Process::Order(leader)).unwrap();
        wait_recovered(&b, leader, RECOVERY_TIMEOUT);
        leader = next;
    }
    assert_eq!(
        leader, 3,
        "order-3 leads again after {MAX_HANDOVERS} hand-overs"
    );
    let got = read_order(&b, 0, DAMAGED_ORDER);
    assert_eq!(
        got.as_ref(),
        Ok(&acked[DAMAGED_ORDER as usize]),
        "order {DAMAGED_ORDER} through the front-end with order-3 leading again \
         (its file said quantity {DAMAGED_QUANTITY})"
    );
    finish(&b, &acked);
    assert_not_recovering(&b, 3);
}

/// Trades [`CATALOG_STOCK`] down by [`CATALOG_BUYS`] and a few other orders; waits until the
/// catalog shows it.
fn trade_catalog_stock(b: &Cluster, tag: &str) -> Vec<Order> {
    let mut acked = Vec::new();
    for i in 0..CATALOG_BUYS {
        acked.push(place_acked(
            b,
            0,
            CATALOG_STOCK,
            1,
            OrderType::Buy,
            &format!("{tag}-{i}"),
        ));
        acked.push(place_acked(
            b,
            0,
            "FishCo",
            1,
            OrderType::Sell,
            &format!("{tag}-f{i}"),
        ));
    }
    let want = 100 - CATALOG_BUYS;
    wait_for(
        &format!("the catalog to show {CATALOG_STOCK} at {want}"),
        RECOVERY_TIMEOUT,
        || (b.stocks().ok()?[CATALOG_STOCK].quantity == want).then_some(()),
    );
    acked
}

/// The catalog restarted on a damaged newest state: it must serve what the log gives (here
/// 90 after ten buys), through itself and through the front-end, and no sampled moment may
/// show a state no prefix of the log gives (the damaged 95 with volume 10).
fn catalog_rebuilds_from_the_log(b: &mut Cluster, mut acked: Vec<Order>) {
    let sampler = Sampler::start(b);
    b.start_service(Process::Catalog).unwrap();
    // An order of another stock: the leader applies it, and finds where the catalog stands.
    acked.push(place_acked(
        b,
        0,
        "FishCo",
        1,
        OrderType::Sell,
        "catalog-after",
    ));
    let want = 100 - CATALOG_BUYS;
    let mut last = None;
    let rebuilt = common::poll(RECOVERY_TIMEOUT, common::POLL, || {
        let stock = b.stocks().ok()?.remove(CATALOG_STOCK)?;
        let ok = stock.quantity == want;
        last = Some(stock);
        ok.then_some(())
    });
    assert!(
        rebuilt.is_some(),
        "the catalog serves {last:?} after {RECOVERY_TIMEOUT:?}; the log gives quantity {want} \
         (its file was changed to {CATALOG_DAMAGED})"
    );
    wait_for(
        &format!("the front-end to show {CATALOG_STOCK} at {want}"),
        RECOVERY_TIMEOUT,
        || {
            let got: bazaar::api::Stock = b
                .client
                .get(
                    &b.frontend,
                    &format!("/stocks/{CATALOG_STOCK}"),
                    common::CALL_TIMEOUT,
                )
                .ok()?;
            (got.quantity == want).then_some(())
        },
    );
    b.wait_logs_identical(QUIET_TIMEOUT).unwrap();
    let (samples, _) = sampler.finish();
    let (_, verdicts) = b.check_all(&acked, &samples);
    assert_verdicts(verdicts);
    assert_read_back(b, &acked);
}

/// Reproduction 4, in the journal: the catalog's newest state is the journal's last line.
#[test]
fn a_changed_digit_in_the_catalog_journal_is_rebuilt_from_the_log() {
    let mut b = common::start(Options::default());
    let acked = trade_catalog_stock(&b, "journal");
    b.kill(Process::Catalog);
    let damage = set_catalog_quantity(&b, CATALOG_STOCK, CATALOG_DAMAGED).unwrap();
    assert_eq!(damage.old, 100 - CATALOG_BUYS);
    assert!(
        damage.file.ends_with("catalog.journal"),
        "changed {}",
        damage.file.display()
    );
    catalog_rebuilds_from_the_log(&mut b, acked);
}

/// Reproduction 4, in the snapshot: restarted once, the catalog folds its journal into
/// catalog.json, which is then the newest state.
#[test]
fn a_changed_digit_in_the_catalog_snapshot_is_rebuilt_from_the_log() {
    let mut b = common::start(Options::default());
    let acked = trade_catalog_stock(&b, "snapshot");
    b.kill(Process::Catalog);
    b.start_service(Process::Catalog).unwrap();
    b.kill(Process::Catalog);
    let damage = set_catalog_quantity(&b, CATALOG_STOCK, CATALOG_DAMAGED).unwrap();
    assert_eq!(damage.old, 100 - CATALOG_BUYS);
    assert!(
        damage.file.ends_with("catalog.json"),
        "changed {}",
        damage.file.display()
    );
    catalog_rebuilds_from_the_log(&mut b, acked);
}

/// What already worked before checksums, kept: the catalog's files deleted, it rebuilds from
/// the log.
#[test]
fn deleted_catalog_files_are_rebuilt_from_the_log() {
    let mut b = common::start(Options::default());
    let acked = trade_catalog_stock(&b, "deleted");
    b.kill(Process::Catalog);
    for file in ["catalog.json", "catalog.journal"] {
        let path = b.data_dir().join(file);
        if path.exists() {
            std::fs::remove_file(path).unwrap();
        }
    }
    catalog_rebuilds_from_the_log(&mut b, acked);
}

/// A wiped follower with the others healthy: the bazaar keeps taking orders throughout (the
/// clients see no error), and the wiped replica is whole again within seconds, by itself.
#[test]
fn a_wiped_follower_is_whole_again_while_orders_go_on() {
    /// Orders the leader must log while the wiped follower is down, and again while it is
    /// being repaired: orders go on throughout.
    const PROGRESS: usize = 50;

    let mut b = common::start(Options::default());
    assert_eq!(b.wait_leader().unwrap(), 3, "the first leader");
    let run = load(&b, 4, 1000, 21);
    wait_logged(&b, 3, 50);
    b.kill(Process::Order(1));
    wipe_replica(&b, 1).unwrap();
    let wiped_at = logged(&b, 3);
    wait_logged(&b, 3, wiped_at + PROGRESS);
    b.start_service(Process::Order(1)).unwrap();
    let started = Instant::now();
    let restarted_at = logged(&b, 3);
    wait_recovered(&b, 1, RECOVERY_TIMEOUT);
    b.wait_ready(1).unwrap();
    eprintln!(
        "order-1 whole again {:?} after its restart ({} orders logged meanwhile)",
        started.elapsed(),
        logged(&b, 3) - restarted_at
    );
    let mut acked = vec![place_acked_within(
        &b,
        0,
        "FishCo",
        1,
        OrderType::Sell,
        "wiped-after",
        RECOVERY_TIMEOUT,
    )];
    let summary = run.summary().unwrap();
    common::assert_clients_clean(&summary);
    acked.extend(summary.acknowledged);
    finish(&b, &acked);
    assert_not_recovering(&b, 1);
}

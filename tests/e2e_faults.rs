//! End to end, on real processes: crashes, freezes and restarts under load, one fault
//! at a time. After each, the invariants of docs/spec.md §5 are checked by
//! [`common::assert_invariants`], including that every order the clients had acknowledged is in
//! the replicas' identical logs with the same contents. The load is client sessions
//! ([`common::load`], a [`Load`] of the shipped client).

mod common;

use std::time::{Duration, Instant};

use bazaar::api::{Order, OrderRequest, OrderType, Role, SyncState};
use bazaar::client::Summary;
use bazaar::selection;
use bazaar::testkit::load::Load;
use common::{
    assert_error, load, logged, raw, wait_for, wait_logged, Cluster, Options, Process, CALL_TIMEOUT,
};

fn sync_state(b: &Cluster, id: u32) -> Option<SyncState> {
    b.client
        .get(&b.replicas[&id].0, "/synchronize", Duration::from_secs(1))
        .ok()
}

/// Waits for the clients, then checks the run.
fn finish(b: &Cluster, run: Load) {
    check_run(b, &run.summary().unwrap());
}

/// docs/spec.md §5 on the files, every acknowledged order in them, and the clients saw no error and
/// no mismatch.
fn check_run(b: &Cluster, summary: &Summary) {
    common::assert_invariants(b, &summary.acknowledged);
    common::assert_clients_clean(summary);
    assert!(!summary.acknowledged.is_empty(), "no order went through");
}

/// Restarts replica `id` and checks that it does not answer `Ping` before it holds at least
/// the orders the rest had when it started.
fn restart_and_check_catch_up(b: &mut Cluster, id: u32, leader: u32) {
    let before = sync_state(b, leader).expect("leader answers").latest;
    b.start_service(Process::Order(id)).unwrap();
    let health = b.replicas[&id].2.clone();
    wait_for(
        &format!("replica {id} to answer Ping"),
        Duration::from_secs(30),
        || selection::ping(&health, selection::PING_TIMEOUT).then_some(()),
    );
    let after = sync_state(b, id).expect("restarted replica answers").latest;
    assert!(
        after >= before,
        "replica {id} answered Ping at {after:?}, behind {before:?}"
    );
}

#[test]
fn killing_the_leader_mid_run_loses_nothing_and_restart_converges() {
    let mut b = common::start(Options::default());
    assert_eq!(b.wait_leader().unwrap(), 3);
    let run = load(&b, 5, 60, 11);
    wait_logged(&b, 3, 20);
    b.kill(Process::Order(3));
    let summary = run.summary().unwrap();
    assert_ne!(b.wait_leader().unwrap(), 3);
    restart_and_check_catch_up(&mut b, 3, 2);
    check_run(&b, &summary);
    assert!(b.frontend_health().unwrap().failovers >= 1);
}

#[test]
fn a_killed_follower_catches_up_before_it_answers_ping() {
    let mut b = common::start(Options::default());
    let run = load(&b, 4, 400, 12);
    wait_logged(&b, 3, 10);
    b.kill(Process::Order(1));
    // Far enough behind that catching it up takes more than one replication batch.
    let down_at = logged(&b, 3);
    wait_logged(&b, 3, down_at + 1200);
    restart_and_check_catch_up(&mut b, 1, 3);
    finish(&b, run);
}

#[test]
fn double_failover_then_both_return() {
    let mut b = common::start(Options::default());
    let run = load(&b, 4, 400, 13);
    wait_logged(&b, 3, 15);
    // One fault at a time, twice: the leader dies, comes back as a follower, then the new
    // leader dies. (Two replicas down at once stop all orders: e2e_sequences tests that.)
    b.kill(Process::Order(3));
    let t = Instant::now();
    wait_for("replica 2 to lead", Duration::from_secs(20), || {
        (b.frontend_health().ok()?.leader == Some(2)).then_some(())
    });
    let n = logged(&b, 2);
    wait_logged(&b, 2, n + 10);
    eprintln!("replica 2 took over after {:?}", t.elapsed());
    restart_and_check_catch_up(&mut b, 3, 2);
    b.kill(Process::Order(2));
    wait_for("a second new leader", Duration::from_secs(20), || {
        matches!(b.frontend_health().ok()?.leader, Some(l) if l != 2).then_some(())
    });
    let leader = b.frontend_health().unwrap().leader.unwrap();
    // The load may be over by now: an order of our own shows that orders go on.
    let got = raw(
        &b.frontend,
        "POST",
        "/orders",
        r#"{"name":"IBM","quantity":1,"type":"sell"}"#,
    );
    assert_eq!(got.0, 200, "an order after the second fail-over: {}", got.1);
    restart_and_check_catch_up(&mut b, 2, leader);
    finish(&b, run);
}

#[test]
fn a_frozen_leader_is_replaced_and_never_leads_again_when_woken() {
    let mut b = common::start(Options::default());
    let run = load(&b, 4, 400, 14);
    wait_logged(&b, 3, 10);
    b.signal(Process::Order(3), "STOP").unwrap();
    wait_for("a new leader", Duration::from_secs(20), || {
        matches!(b.frontend_health().ok()?.leader, Some(l) if l != 3).then_some(())
    });
    let n = logged(&b, 2);
    wait_logged(&b, 2, n + 10);
    b.signal(Process::Order(3), "CONT").unwrap();
    let old = b.replicas[&3].0.clone();
    wait_for(
        "the woken replica to stop leading",
        Duration::from_secs(20),
        || (b.replica_health(3).ok()?.role != Role::Leader).then_some(()),
    );
    let req = OrderRequest {
        name: "IBM".into(),
        quantity: 1,
        kind: OrderType::Buy,
        request_id: None,
    };
    let got = raw(
        &old,
        "POST",
        "/orders",
        &serde_json::to_string(&req).unwrap(),
    );
    assert_error("order sent to the woken old leader", &got, 421);
    finish(&b, run);
    b.kill(Process::Order(3));
}

#[test]
fn everything_restarts_and_nothing_acknowledged_is_lost() {
    let mut b = common::start(Options::default());
    let summary = load(&b, 3, 30, 15).summary().unwrap();
    assert_eq!(summary.errors, 0);
    for service in [
        Process::Order(1),
        Process::Order(2),
        Process::Order(3),
        Process::Catalog,
    ] {
        b.kill(service);
    }
    b.start_service(Process::Catalog).unwrap();
    for id in [2, 1, 3] {
        b.start_service(Process::Order(id)).unwrap();
    }
    b.wait_leader().unwrap();
    check_run(&b, &summary);
    for order in &summary.acknowledged {
        let got: Order = b
            .client
            .get(
                &b.frontend,
                &format!("/orders/{}", order.number),
                CALL_TIMEOUT,
            )
            .unwrap();
        assert_eq!(&got, order);
    }
}

#[test]
fn a_restarted_frontend_reselects_and_loses_nothing() {
    let mut b = common::start(Options::default());
    let run = load(&b, 3, 60, 16);
    wait_logged(&b, 3, 10);
    b.kill(Process::FRONTEND);
    b.start_service(Process::FRONTEND).unwrap();
    b.wait_leader().unwrap();
    finish(&b, run);
}

#[test]
fn catalog_down_gives_a_clear_503_and_cached_lookups_keep_working_for_their_lease() {
    let mut b = common::start(Options::default());
    let fe = b.frontend.clone();
    assert_eq!(raw(&fe, "GET", "/stocks/GameStart", "").0, 200);
    b.kill(Process::Catalog);
    // A cached entry is served for its lease (timing::CACHE_LEASE) from the lookup
    // that fetched it, not longer: past that, the catalog may have traded it.
    assert_eq!(
        raw(&fe, "GET", "/stocks/GameStart", "").0,
        200,
        "cached lookup"
    );
    let started = Instant::now();
    let got = raw(
        &fe,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_error("order while the catalog is down", &got, 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 took {:?}",
        started.elapsed()
    );
    assert_error(
        "uncached lookup",
        &raw(&fe, "GET", "/stocks/FishCo", ""),
        503,
    );
    assert!(
        got.1.to_string().contains(bazaar::api::RESEND),
        "the 503 says the order may still commit: {}",
        got.1
    );
    b.start_service(Process::Catalog).unwrap();
    let got = raw(
        &fe,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(got.0, 200, "{}", got.1);
    // The first order was committed while the catalog was away: the catalog applies it (once)
    // when it returns, so the log and the catalog agree either way.
    let log = common::assert_invariants(&b, &[]);
    assert!((1..=2).contains(&log.len()), "{} orders logged", log.len());
}

/// Crash points inside the leader's order path (docs/spec.md §4). Replica 3 leads
/// and aborts at the fail point; the front-end's retry on replica 2 must neither lose nor
/// double the trade; replica 3 comes back (without the fail point) and converges.
#[test]
fn crash_points_in_the_leader_neither_lose_nor_double_a_trade() {
    for point in [
        "after-catalog-trade",
        "after-log-append",
        "after-replicate-one",
        "before-reply",
    ] {
        let mut options = Options::default();
        options
            .replica_env
            .insert(3, vec![("BAZAAR_FAILPOINT".into(), format!("{point}:3"))]);
        let mut b = common::start(options);
        let fe = b.frontend.clone();
        let mut numbers = Vec::new();
        for i in 0..5 {
            let req = OrderRequest {
                name: "FishCo".into(),
                quantity: 2,
                kind: OrderType::Buy,
                request_id: Some(format!("{point}-{i}")),
            };
            let got = raw(
                &fe,
                "POST",
                "/orders",
                &serde_json::to_string(&req).unwrap(),
            );
            assert_eq!(got.0, 200, "{point}: order {i}: {}", got.1);
            numbers.push(got.1["data"]["transaction_number"].as_u64().unwrap());
        }
        assert_eq!(numbers, vec![0, 1, 2, 3, 4], "{point}");
        wait_for(
            &format!("{point}: replica 3 to crash"),
            Duration::from_secs(10),
            || b.has_exited(Process::Order(3)).then_some(()),
        );
        b.reap(Process::Order(3));
        if point == "after-log-append" {
            // The dead leader holds order 2; the new leader holds it too, either because the
            // propagate reached the followers before the crash (same epoch) or because the
            // retry logged it again (newer epoch, and the restart below replaces the old line).
            let old = common::parse(&b.log_path(3));
            let new = common::parse(&b.log_path(2));
            assert_eq!(old[2].request_id, new[2].request_id, "{point}");
            assert!(
                old[2].epoch <= new[2].epoch,
                "{point}: {:?} vs {:?}",
                old[2],
                new[2]
            );
        }
        b.options.replica_env.clear();
        b.start_service(Process::Order(3)).unwrap();
        let log = common::assert_invariants(&b, &[]);
        assert_eq!(log.len(), 5, "{point}: {log:?}");
        assert_eq!(b.stocks().unwrap()["FishCo"].quantity, 90, "{point}");
        assert!(
            b.frontend_health().unwrap().retries >= 1,
            "{point}: the front-end retried"
        );
    }
}

#[test]
fn torn_log_lines_and_catalog_temp_files_are_repaired_on_start() {
    let mut b = common::start(Options::default());
    let summary = load(&b, 2, 15, 17).summary().unwrap();
    assert_eq!(summary.errors, 0);
    b.kill(Process::Order(1));
    let path = b.log_path(1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"999,Game");
    std::fs::write(&path, bytes).unwrap();
    b.kill(Process::Catalog);
    let tmp = b.data_dir().join("catalog.json.tmp");
    std::fs::write(&tmp, b"{\"stocks\":[{\"na").unwrap();
    b.start_service(Process::Catalog).unwrap();
    b.start_service(Process::Order(1)).unwrap();
    check_run(&b, &summary);
    assert!(!tmp.exists(), "the torn temp file was left behind");
}

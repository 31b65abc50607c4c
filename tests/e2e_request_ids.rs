//! End to end, on real processes: what a request id may contain (docs/spec.md §3: 1 to 128
//! bytes of printable ASCII), and that logs written before that rule — request ids of control
//! characters, six bytes of JSON each — still replicate to a follower that missed them and are
//! applied by the catalog, in batches that fit the request body limit, instead of wedging
//! replication with 413s.

mod common;

use std::fs;
use std::time::Duration;

use bazaar::api::{LogEntry, Order, OrderAck, OrderType};
use bazaar::order::logfile::{encode, PLAIN_HEADER};
use bazaar::testkit::cluster::{order_request, two_leaders_in_one_epoch, Sampler, STOCKS};
use common::{assert_error, raw, wait_for, Cluster, Options, Process};

/// How many legacy orders the prepared logs hold: more than two full batches by count, and a
/// full batch by count of them would be over 100 KiB of JSON.
const LEGACY_ORDERS: u64 = 300;

/// How long the empty follower and the catalog may take to catch up with the legacy log.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// A legacy request id: 128 bytes, all but the last three control characters.
fn control_id(i: u64) -> String {
    format!("{}{i:03}", "\u{1}".repeat(125))
}

fn quiet() -> Options {
    Options {
        log_level: "info".into(),
        ..Options::default()
    }
}

/// (a) Orders whose request id breaks the rule get 400 naming it, at every entrance (the
/// front-end's JSON route, its compatibility route, a replica's own `POST /orders`), and change
/// nothing: no number is used up, no replica logs anything, the catalog is untouched.
#[test]
fn request_ids_outside_printable_ascii_are_refused_and_change_nothing() {
    let c = common::start(quiet());
    let first: OrderAck = c
        .place_order(
            0,
            &order_request("GameStart", 1, OrderType::Buy, Some("ok-1")),
        )
        .unwrap();
    assert_eq!(first.transaction_number, 0);
    let leader = c.wait_leader().unwrap();
    let bad_ids = [
        r#""\u0001abc""#,
        r#""tab\there""#,
        r#""new\nline""#,
        r#""del\u007f""#,
        r#""caf\u00e9""#,
        r#""""#,
    ];
    let long = format!("\"{}\"", "x".repeat(129));
    let mut tried = 0;
    for id in bad_ids.iter().copied().chain([long.as_str()]) {
        let body = format!(r#"{{"name":"GameStart","quantity":1,"type":"buy","request_id":{id}}}"#);
        for (what, addr) in [
            ("front-end", c.frontend.clone()),
            ("leader", c.http_addr(Process::Order(leader))),
        ] {
            let got = raw(&addr, "POST", "/orders", &body);
            assert_error(&format!("{what} {id}"), &got, 400);
            let message = got.1["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("printable ASCII"),
                "{what} {id}: {message}"
            );
            tried += 1;
        }
    }
    for query in ["%01abc", "a%09b", "%7F", "caf%C3%A9"] {
        let target = format!("/order?stock=GameStart&quantity=1&type=buy&request_id={query}");
        assert_error(
            &format!("compat {query}"),
            &raw(&c.frontend, "POST", &target, ""),
            400,
        );
        tried += 1;
    }
    println!("request ids: {tried} bad ids refused");
    for id in 1..=3 {
        assert_eq!(c.replica_health(id).unwrap().latest, 0, "replica {id}");
    }
    assert_eq!(c.stocks().unwrap()["GameStart"].quantity, 99);
    // The next good order takes the next number: nothing was used up.
    let next: OrderAck = c
        .place_order(
            0,
            &order_request("GameStart", 1, OrderType::Sell, Some("ok ~2")),
        )
        .unwrap();
    assert_eq!(next.transaction_number, 1);
    let acknowledged = [
        Order {
            number: 0,
            name: "GameStart".into(),
            kind: OrderType::Buy,
            quantity: 1,
        },
        Order {
            number: 1,
            name: "GameStart".into(),
            kind: OrderType::Sell,
            quantity: 1,
        },
    ];
    common::assert_invariants(&c, &acknowledged);
}

/// The legacy log: [`LEGACY_ORDERS`] orders of epoch 1, a buy then a sell of 1 on each stock in
/// turn, with control-character request ids.
fn legacy_log() -> Vec<LogEntry> {
    (0..LEGACY_ORDERS)
        .map(|i| LogEntry {
            number: i,
            name: STOCKS[(i / 2) as usize % STOCKS.len()].clone(),
            kind: if i % 2 == 0 {
                OrderType::Buy
            } else {
                OrderType::Sell
            },
            quantity: 1,
            epoch: 1,
            request_id: control_id(i),
        })
        .collect()
}

/// (b) A bazaar started from files an older version wrote: replicas 2 and 3 hold the legacy
/// log (epoch 1, led by 3), replica 1's files are missing (its disk was replaced: it recovers
/// from the leader), and the
/// catalog starts from the config (applied nothing). The empty follower catches up, the
/// catalog applies the whole log, new orders are acknowledged, and every check of docs/spec.md
/// §5 holds. Before batches were bounded by bytes, every propagate to replica 1 and every
/// apply (128 entries, over 100 KiB) got 413 and was re-sent forever.
#[test]
fn a_legacy_log_of_control_character_ids_replicates_and_is_applied() {
    let mut c = Cluster::configure(common::binaries(), quiet()).unwrap();
    let data = c.data_dir();
    fs::create_dir_all(&data).unwrap();
    let log = legacy_log();
    let mut file = PLAIN_HEADER.as_bytes().to_vec();
    for entry in &log {
        file.extend(encode(entry).unwrap());
    }
    for id in [2, 3] {
        fs::write(c.log_path(id), &file).unwrap();
        fs::write(
            data.join(format!("orders-{id}.state.json")),
            r#"{"epoch":1,"voted_for":3,"log_epoch":1}"#,
        )
        .unwrap();
    }
    let sampler = Sampler::start(&c);
    c.start_service(Process::Catalog).unwrap();
    for id in 1..=3 {
        c.start_service(Process::Order(id)).unwrap();
    }
    // Replica 1 lost its files: it recovers (not ready) until the leader has repaired it.
    for id in [2, 3] {
        c.wait_ready(id).unwrap();
    }
    c.start_service(Process::FRONTEND).unwrap();
    c.wait_leader().unwrap();
    c.wait_ready(1).unwrap();

    let last = LEGACY_ORDERS as i64 - 1;
    wait_for("replica 1 to hold the legacy log", CATCH_UP_TIMEOUT, || {
        (c.replica_health(1).ok()?.latest >= last).then_some(())
    });
    wait_for(
        "the catalog to apply the legacy log",
        CATCH_UP_TIMEOUT,
        || {
            let leader = c.leading_replica()?;
            (leader.applied >= Some(last)).then_some(())
        },
    );
    let mut acknowledged: Vec<Order> = log.iter().map(Order::from).collect();
    for (i, kind) in [OrderType::Buy, OrderType::Sell].into_iter().enumerate() {
        let order = order_request("FishCo", 2, kind, Some(&format!("after-legacy-{i}")));
        let ack: OrderAck = c.place_order(0, &order).unwrap();
        assert_eq!(ack.transaction_number, LEGACY_ORDERS + i as u64);
        acknowledged.push(Order {
            number: ack.transaction_number,
            name: order.name,
            kind,
            quantity: 2,
        });
    }
    let (samples, leaders) = sampler.finish();
    if let Some(v) = two_leaders_in_one_epoch(&leaders) {
        panic!("{v}");
    }
    let (log, verdicts) = c.check_all(&acknowledged, &samples);
    for verdict in verdicts {
        assert!(
            verdict.violation.is_none(),
            "{}: {}",
            verdict.name,
            verdict.violation.unwrap_or_default()
        );
    }
    assert_eq!(log.len() as u64, LEGACY_ORDERS + 2);
    assert_eq!(
        log[7].request_id,
        control_id(7),
        "legacy ids kept as they were"
    );
    println!(
        "legacy log: {LEGACY_ORDERS} control-character orders replicated and applied, \
         {} catalog samples",
        samples.len()
    );
}

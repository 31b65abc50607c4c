//! End to end, on real processes: the REST contract of docs/spec.md §3, the cache, the compatibility
//! routes and concurrent buyers.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bazaar::api::{CacheView, Order, OrderAck, OrderRequest, OrderType, Stock};
use bazaar::error::Error;
use common::{assert_error, raw, Options, CALL_TIMEOUT};
use serde_json::json;

fn order(name: &str, quantity: u64, kind: OrderType) -> OrderRequest {
    OrderRequest {
        name: name.into(),
        quantity,
        kind,
        request_id: None,
    }
}

/// Every order the REST contract refuses, with its status: the 400 cases of docs/spec.md §3, an
/// unknown stock and more than there is.
const BAD_ORDERS: [(&str, &str, u16); 12] = [
    ("malformed JSON", r#"{"name":"GameStart","quantity":1"#, 400),
    ("not an object", r#"[1]"#, 400),
    ("missing name", r#"{"quantity":1,"type":"buy"}"#, 400),
    (
        "missing quantity",
        r#"{"name":"GameStart","type":"buy"}"#,
        400,
    ),
    ("missing type", r#"{"name":"GameStart","quantity":1}"#, 400),
    (
        "quantity zero",
        r#"{"name":"GameStart","quantity":0,"type":"buy"}"#,
        400,
    ),
    (
        "quantity negative",
        r#"{"name":"GameStart","quantity":-1,"type":"buy"}"#,
        400,
    ),
    (
        "quantity float",
        r#"{"name":"GameStart","quantity":1.5,"type":"buy"}"#,
        400,
    ),
    (
        "quantity string",
        r#"{"name":"GameStart","quantity":"1","type":"buy"}"#,
        400,
    ),
    (
        "type hold",
        r#"{"name":"GameStart","quantity":1,"type":"hold"}"#,
        400,
    ),
    (
        "unknown stock",
        r#"{"name":"NoSuch","quantity":1,"type":"buy"}"#,
        404,
    ),
    (
        "too many",
        r#"{"name":"GameStart","quantity":1000,"type":"buy"}"#,
        409,
    ),
];

/// Places the first order of a fresh bazaar, GameStart buy 1, and checks it is number 0.
fn first_order(fe: &str) {
    let (status, body) = raw(
        fe,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(
        (status, body),
        (200, json!({"data": {"transaction_number": 0}}))
    );
}

#[test]
fn lookups_answer_the_stock_or_404() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    let (status, body) = raw(fe, "GET", "/stocks/GameStart", "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"name": "GameStart", "price": 10.5, "quantity": 100}})
    );
    assert_error("unknown stock", &raw(fe, "GET", "/stocks/NoSuch", ""), 404);
}

/// Orders are numbered from 0 up by one, and a refused order changes nothing: neither the
/// numbering nor any stock.
#[test]
fn orders_are_numbered_and_refused_ones_change_nothing() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    first_order(fe);
    let (status, body) = raw(
        fe,
        "POST",
        "/orders",
        r#"{"name":"FishCo","quantity":3,"type":"sell"}"#,
    );
    assert_eq!(
        (status, body),
        (200, json!({"data": {"transaction_number": 1}}))
    );

    for (what, body, code) in BAD_ORDERS {
        assert_error(what, &raw(fe, "POST", "/orders", body), code);
    }

    // The rejected orders changed nothing: the next number is 2, the stock shows 99.
    let ack: OrderAck = b
        .client
        .post(
            fe,
            "/orders",
            &order("GameStart", 2, OrderType::Buy),
            CALL_TIMEOUT,
        )
        .unwrap();
    assert_eq!(ack.transaction_number, 2);
    let stock: Stock = b.client.get(fe, "/stocks/GameStart", CALL_TIMEOUT).unwrap();
    assert_eq!(stock.quantity, 97);
    let (status, body) = raw(fe, "GET", "/stocks", "");
    assert_eq!(status, 200);
    let list = body["data"].as_array().expect("a list");
    let fish = list.iter().find(|s| s["name"] == "FishCo").unwrap();
    assert_eq!(
        (fish["quantity"].as_u64(), fish["volume"].as_u64()),
        (Some(103), Some(3))
    );
    common::assert_invariants(&b, &[]);
}

#[test]
fn order_queries_answer_the_order_400_or_404() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    first_order(fe);
    let (status, body) = raw(fe, "GET", "/orders/0", "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"number": 0, "name": "GameStart", "type": "buy", "quantity": 1}})
    );
    for bad in ["/orders/abc", "/orders/-1", "/orders/1.5"] {
        assert_error(bad, &raw(fe, "GET", bad, ""), 400);
    }
    assert_error("no such order", &raw(fe, "GET", "/orders/999", ""), 404);
}

#[test]
fn listing_cache_and_health() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    let (status, body) = raw(fe, "GET", "/stocks", "");
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().expect("a list").len(), 14);
    let (status, body) = raw(fe, "GET", "/cache", "");
    assert_eq!(status, 200);
    assert_eq!(body["data"]["enabled"], true);
    assert_eq!(body["data"]["capacity"], 10);
    let (status, body) = raw(fe, "GET", "/health", "");
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "ok");
    assert_eq!(body["data"]["leader"], 3);
}

/// Invalidation is for the catalog: 401 without the deployment secret.
#[test]
fn invalidation_needs_the_deployment_secret() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    assert_error(
        "invalidation without the secret",
        &raw(fe, "POST", "/invalidation/GameStart", ""),
        401,
    );
    let secret = bazaar::config::Config::load(&b.config_path).unwrap().secret;
    let invalidated: bazaar::api::Invalidated = bazaar::http::Client::with_secret(&secret)
        .post(fe, "/invalidation/GameStart", &json!({}), CALL_TIMEOUT)
        .unwrap();
    assert_eq!(invalidated.invalidated, "GameStart");
}

/// Unknown paths, wrong methods and oversized bodies get their status, and the front-end
/// still serves after them.
#[test]
fn unknown_paths_wrong_methods_and_oversized_bodies() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    assert_error("unknown path", &raw(fe, "GET", "/nope", ""), 404);
    assert_error(
        "wrong method",
        &raw(fe, "DELETE", "/stocks/GameStart", ""),
        405,
    );
    assert_error(
        "wrong method",
        &raw(fe, "GET", "/invalidation/GameStart", ""),
        405,
    );
    let huge = format!(
        r#"{{"name":"{}","quantity":1,"type":"buy"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_error("body over 64 KiB", &raw(fe, "POST", "/orders", &huge), 413);

    // Still serving after all that, with the stock untouched.
    let stock: Stock = b.client.get(fe, "/stocks/GameStart", CALL_TIMEOUT).unwrap();
    assert_eq!(stock.quantity, 100);
    common::assert_invariants(&b, &[]);
}

#[test]
fn compatibility_routes_of_the_reference_client() {
    let b = common::start(Options::default());
    let fe = b.frontend.as_str();
    let (status, body) = raw(fe, "GET", "/lookup?stock=MenhirCo", "");
    assert_eq!((status, &body["data"]["name"]), (200, &json!("MenhirCo")));
    assert_error(
        "lookup unknown",
        &raw(fe, "GET", "/lookup?stock=Nope", ""),
        404,
    );

    let (status, body) = raw(
        fe,
        "POST",
        "/order?stock=MenhirCo&amp;quantity=2&amp;type=buy",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let number = body["data"]["transaction_number"]
        .as_u64()
        .expect("a number");
    let (status, body) = raw(fe, "POST", "/order?stock=MenhirCo&quantity=1&type=sell", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["transaction_number"].as_u64(),
        Some(number + 1)
    );
    assert_error(
        "bad quantity",
        &raw(
            fe,
            "POST",
            "/order?stock=MenhirCo&amp;quantity=x&amp;type=buy",
            "",
        ),
        400,
    );
    assert_error(
        "bad type",
        &raw(
            fe,
            "POST",
            "/order?stock=MenhirCo&amp;quantity=1&amp;type=hold",
            "",
        ),
        400,
    );

    let (status, body) = raw(fe, "GET", &format!("/order?order_number={number}"), "");
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"number": number, "name": "MenhirCo", "type": "buy", "quantity": 2})
    );
    assert_error(
        "bad order number",
        &raw(fe, "GET", "/order?order_number=x", ""),
        400,
    );
    common::assert_invariants(&b, &[]);
}

#[test]
fn a_trade_invalidates_the_cache_and_lru_evicts_the_oldest() {
    let b = common::start(Options {
        cache_size: 3,
        ..Options::default()
    });
    let fe = b.frontend.as_str();
    let cache = || -> CacheView { b.client.get(fe, "/cache", CALL_TIMEOUT).unwrap() };
    let lookup = |name: &str| -> Stock {
        b.client
            .get(fe, &format!("/stocks/{name}"), CALL_TIMEOUT)
            .unwrap()
    };
    assert!(cache().items.is_empty(), "the cache starts empty");
    for name in ["AAPL", "GOOG", "MSFT"] {
        lookup(name);
    }
    assert_eq!(cache().items, vec!["MSFT", "GOOG", "AAPL"]);
    lookup("AAPL");
    assert_eq!(
        cache().items,
        vec!["AAPL", "MSFT", "GOOG"],
        "a hit makes AAPL most recent"
    );
    lookup("IBM");
    assert_eq!(
        cache().items,
        vec!["IBM", "AAPL", "MSFT"],
        "GOOG was least recent"
    );

    let _: OrderAck = b
        .client
        .post(
            fe,
            "/orders",
            &order("MSFT", 4, OrderType::Buy),
            CALL_TIMEOUT,
        )
        .unwrap();
    assert!(
        !cache().items.contains(&"MSFT".to_string()),
        "the trade invalidated MSFT"
    );
    assert_eq!(lookup("MSFT").quantity, 96);
    assert_eq!(cache().items[0], "MSFT");
}

#[test]
fn racing_buyers_never_oversell() {
    let b = common::start(Options::default());
    let fe = b.frontend.clone();
    let barrier = Arc::new(Barrier::new(40));
    let buyers: Vec<_> = (0..40)
        .map(|_| {
            let (fe, barrier, client) = (fe.clone(), barrier.clone(), b.client.clone());
            thread::spawn(move || {
                barrier.wait();
                client.post::<_, OrderAck>(
                    &fe,
                    "/orders",
                    &order("BoarCo", 10, OrderType::Buy),
                    CALL_TIMEOUT,
                )
            })
        })
        .collect();
    let results: Vec<_> = buyers.into_iter().map(|t| t.join().unwrap()).collect();
    let filled = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict(_))))
        .count();
    assert_eq!((filled, refused), (10, 30), "{results:?}");
    let mut numbers: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|a| a.transaction_number)
        .collect();
    numbers.sort();
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
    let stock: Stock = b.client.get(&fe, "/stocks/BoarCo", CALL_TIMEOUT).unwrap();
    assert_eq!(stock.quantity, 0);
    let log = common::assert_invariants(&b, &[]);
    assert_eq!(log.len(), 10);
}

/// docs/spec.md §5.5: a lookup that starts after an acknowledged trade never shows the pre-trade
/// quantity, even while other lookups keep missing and refilling the cache concurrently.
#[test]
fn no_stale_lookup_after_an_acknowledged_trade() {
    let b = common::start(Options::default());
    let fe = b.frontend.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let (fe, stop, client) = (fe.clone(), stop.clone(), bazaar::http::Client::new());
            thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                    let _ = client.get::<Stock>(&fe, "/stocks/GameStart", Duration::from_secs(5));
                    n += 1;
                }
            })
        })
        .collect();
    for k in 1..=60u64 {
        let _: OrderAck = b
            .client
            .post(
                &fe,
                "/orders",
                &order("GameStart", 1, OrderType::Buy),
                CALL_TIMEOUT,
            )
            .unwrap();
        let seen: Stock = b
            .client
            .get(&fe, "/stocks/GameStart", CALL_TIMEOUT)
            .unwrap();
        assert_eq!(seen.quantity, 100 - k, "lookup after trade {k} is stale");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hammers {
        h.join().unwrap();
    }
}

#[test]
fn the_client_verifies_its_orders() {
    let b = common::start(Options::default());
    let port: u16 = b.frontend.rsplit(':').next().unwrap().parse().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .args([
            "--port",
            &port.to_string(),
            "--clients",
            "5",
            "--seed",
            "7",
            "--prob",
            "0.5",
        ])
        .args(["--n_request", "20", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "lookups",
        "orders",
        "order_queries",
        "rejected",
        "errors",
        "mismatches",
    ] {
        assert!(summary[key].is_u64(), "{key} missing in {summary}");
    }
    for key in ["lookup_ms", "order_ms", "query_ms"] {
        for stat in ["mean", "p50", "p99"] {
            assert!(
                summary[key][stat].is_number(),
                "{key}.{stat} missing in {summary}"
            );
        }
    }
    assert_eq!(summary["lookups"], 100);
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["mismatches"], 0);
    let log = common::assert_invariants(&b, &[]);
    let orders = summary["orders"].as_u64().unwrap() - summary["rejected"].as_u64().unwrap();
    assert_eq!(log.len() as u64, orders);
    let first: Order = b
        .client
        .get(&b.frontend, "/orders/0", CALL_TIMEOUT)
        .unwrap();
    assert_eq!(Order::from(&log[0]), first);
}

/// The leader logs each batch in the order the catalog traded it, so without a fail-over a
/// replay of the log never takes a stock below zero, even while buyers and sellers race on a
/// nearly sold-out stock.
#[test]
fn the_log_replays_through_the_catalogs_states() {
    let b = common::start(Options::default());
    let barrier = Arc::new(Barrier::new(24));
    let traders: Vec<_> = (0..24)
        .map(|i| {
            let (fe, barrier, client) = (b.frontend.clone(), barrier.clone(), b.client.clone());
            thread::spawn(move || {
                barrier.wait();
                for round in 0..10 {
                    let kind = if (i + round) % 3 == 0 {
                        OrderType::Sell
                    } else {
                        OrderType::Buy
                    };
                    let _ = client.post::<_, OrderAck>(
                        &fe,
                        "/orders",
                        &order("CPQ", 9, kind),
                        CALL_TIMEOUT,
                    );
                }
            })
        })
        .collect();
    for t in traders {
        t.join().unwrap();
    }
    let log = common::assert_invariants(&b, &[]);
    let mut quantity: i64 = 100;
    for entry in log.iter().filter(|e| e.name == "CPQ") {
        quantity += match entry.kind {
            OrderType::Buy => -(entry.quantity as i64),
            OrderType::Sell => entry.quantity as i64,
        };
        assert!(
            quantity >= 0,
            "replaying the log reaches {quantity} at order {}",
            entry.number
        );
    }
    assert!(
        log.len() > 30,
        "too few trades went through to mean anything: {}",
        log.len()
    );
}

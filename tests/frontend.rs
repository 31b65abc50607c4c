//! The real catalog and front-end in this process, talking HTTP on 127.0.0.1 ports chosen at
//! run time, with every order replica on a closed port: lookups, the cache and its trace,
//! invalidation, and applies sent as a leader would send them.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bazaar::api::{
    ApplyBatch, CacheView, CatalogState, InvalidateBatch, LeaderHello, LogEntry, OrderType, Stock,
    StockRecord,
};
use bazaar::config::Config;
use bazaar::frontend::Frontend;
use bazaar::http::{Client, Server};
use serde_json::Value;

const SHIPPED: &str = include_str!("../conf/bazaar.yaml");

/// How long each call of these tests waits for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A port nothing listens on (bound, then released).
fn closed_port() -> u32 {
    bazaar::local::free_ports(1).unwrap()[0].into()
}

/// A catalog and a front-end on 127.0.0.1 ports chosen at run time, their data in a temporary
/// directory, every order replica on a closed port. `tweak` adjusts the config first.
fn catalog_and_frontend(
    tweak: impl FnOnce(&mut Config),
) -> (Server, Frontend, Config, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("bazaar-fe-")
        .tempdir()
        .unwrap();
    let catalog_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let frontend_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
    config.output_dir = dir.path().to_path_buf();
    config.catalog.port = catalog_listener.local_addr().unwrap().port().into();
    config.frontend.port = frontend_listener.local_addr().unwrap().port().into();
    for r in &mut config.order.replicas {
        (r.port, r.leader_broadcast_port, r.health_check_port) =
            (closed_port(), closed_port(), closed_port());
    }
    tweak(&mut config);
    let catalog = bazaar::catalog::start_with_listener(config.clone(), catalog_listener).unwrap();
    let frontend =
        bazaar::frontend::start_with_listener(config.clone(), frontend_listener).unwrap();
    (catalog, frontend, config, dir)
}

/// `POST /apply` with the one committed order `number`, as a leader of `epoch` sends it.
fn apply_batch(epoch: u64, number: u64, name: &str, kind: OrderType, quantity: u64) -> ApplyBatch {
    ApplyBatch {
        epoch,
        leader: 3,
        entries: vec![LogEntry {
            number,
            name: name.into(),
            kind,
            quantity,
            epoch,
            request_id: format!("r{number}"),
        }],
    }
}

/// No order replica runs: only lookups, the cache and invalidation.
#[test]
fn catalog_and_frontend_in_process() {
    let (catalog, frontend, config, _dir) = catalog_and_frontend(|config| {
        config.frontend.cache_size = 2;
        config.frontend.dump = true;
        config.catalog.threads = 2;
        config.frontend.threads = 2;
    });
    let (fe, cat) = (frontend.local_addr().to_string(), config.catalog_addr());
    let client = Client::new();
    let wait = CALL_TIMEOUT;
    let lookup = |target: &str| client.get::<Stock>(&fe, target, wait);
    let items = || client.get::<CacheView>(&fe, "/cache", wait).unwrap().items;

    assert_eq!(lookup("/stocks/GameStart").unwrap().quantity, 100);
    assert_eq!(lookup("/lookup?stock=FishCo").unwrap().name, "FishCo");
    assert_eq!(items(), ["FishCo", "GameStart"]);
    assert_eq!(lookup("/stocks/GameStart").unwrap().quantity, 100); // a hit
    assert_eq!(items(), ["GameStart", "FishCo"]);
    // Invalidation without the secret: 401, and the cache keeps the stock.
    let names = InvalidateBatch {
        names: vec!["GameStart".into()],
    };
    let err = client
        .post::<_, InvalidateBatch>(&fe, "/invalidation", &names, wait)
        .unwrap_err();
    assert_eq!(err.status(), 401, "{err}");
    assert_eq!(items(), ["GameStart", "FishCo"]);

    // A committed order as the leader would apply it: the catalog invalidates before it
    // answers, so the very next lookup reads the new quantity.
    let leader = Client::with_secret(&config.secret);
    let hello = LeaderHello {
        epoch: 1,
        leader: 3,
    };
    let state: CatalogState = leader.post(&cat, "/leader", &hello, wait).unwrap();
    assert_eq!((state.epoch, state.applied), (1, -1));
    let buy = apply_batch(1, 0, "GameStart", OrderType::Buy, 5);
    let applied: CatalogState = leader.post(&cat, "/apply", &buy, wait).unwrap();
    assert_eq!(applied.applied, 0);
    assert_eq!(items(), ["FishCo"]);
    // Re-sent: applied once only.
    let again: CatalogState = leader.post(&cat, "/apply", &buy, wait).unwrap();
    assert_eq!(again.applied, 0);
    assert_eq!(lookup("/stocks/GameStart").unwrap().quantity, 95);
    // Without the secret: 401, and nothing changes.
    let err = client
        .post::<_, CatalogState>(
            &cat,
            "/apply",
            &apply_batch(1, 1, "GameStart", OrderType::Buy, 5),
            wait,
        )
        .unwrap_err();
    assert_eq!(err.status(), 401, "{err}");
    let state: CatalogState = client.get(&cat, "/state", wait).unwrap();
    assert_eq!(state.applied, 0);

    // Capacity 2: a third stock evicts the least recently used.
    assert_eq!(lookup("/stocks/BoarCo").unwrap().quantity, 100);
    assert_eq!(items(), ["BoarCo", "GameStart"]);
    assert_eq!(
        client
            .get::<Vec<StockRecord>>(&fe, "/stocks", wait)
            .unwrap()
            .len(),
        14
    );
    assert_eq!(lookup("/stocks/NoSuch").unwrap_err().status(), 404);

    // Catalog down: cached stocks keep answering, others get a clear 503.
    catalog.shutdown();
    assert_eq!(lookup("/stocks/GameStart").unwrap().quantity, 95);
    let err = lookup("/stocks/MenhirCo").unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert!(err.message().contains("catalog"), "{err}");
    frontend.shutdown();

    let trace = std::fs::read_to_string(config.cache_log_path()).unwrap();
    let events: Vec<String> = trace
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for event in ["start", "insert", "hit", "invalidate", "evict"] {
        assert!(
            events.iter().any(|e| e == event),
            "no {event} in {events:?}"
        );
    }
}

/// docs/spec.md §5.4 under concurrency: while applies (sells, so the quantity only grows) hit the
/// catalog, lookups through the caching front-end never return less than the quantity of
/// the last apply acknowledged before the lookup started.
#[test]
fn no_stale_lookup_after_an_acknowledged_trade() {
    let (catalog, frontend, config, _dir) = catalog_and_frontend(|_| {});
    let (fe, cat) = (frontend.local_addr().to_string(), config.catalog_addr());
    let wait = CALL_TIMEOUT;
    let acked = Arc::new(AtomicU64::new(100));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (fe, acked, done) = (fe.clone(), acked.clone(), done.clone());
            std::thread::spawn(move || {
                let client = Client::new();
                let mut lookups = 0;
                while !done.load(Ordering::SeqCst) {
                    let floor = acked.load(Ordering::SeqCst);
                    let got = client.get::<Stock>(&fe, "/stocks/GameStart", wait).unwrap();
                    assert!(
                        got.quantity >= floor,
                        "stale lookup: {} < {floor}",
                        got.quantity
                    );
                    lookups += 1;
                }
                lookups
            })
        })
        .collect();
    let leader = Client::with_secret(&config.secret);
    for i in 0..60 {
        let sell = apply_batch(1, i, "GameStart", OrderType::Sell, 1);
        let r: CatalogState = leader.post(&cat, "/apply", &sell, wait).unwrap();
        assert_eq!(r.applied, i as i64);
        acked.store(100 + i + 1, Ordering::SeqCst);
    }
    let stock: StockRecord = leader.get(&cat, "/stocks/GameStart", wait).unwrap();
    assert_eq!((stock.quantity, stock.volume), (160, 60));
    done.store(true, Ordering::SeqCst);
    let lookups: u64 = readers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(lookups > 0);
    assert_eq!(acked.load(Ordering::SeqCst), 160);
    frontend.shutdown();
    catalog.shutdown();
}

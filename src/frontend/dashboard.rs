//! The front-end's live page: `GET /` (one HTML file with its CSS and JavaScript, compiled in)
//! and `GET /cluster`, the JSON the page polls about once a second.
//!
//! `/cluster` ([`gather`]) asks every order replica's `/health` and the catalog's `/stocks` at
//! the same time, each on its own scoped thread with a short timeout
//! ([`REPLICA_PROBE_TIMEOUT`], [`CATALOG_PROBE_TIMEOUT`]), so one frozen or unreachable process
//! costs the page at most one timeout and never an error: a replica that does not answer is
//! shown with role `"down"`, a catalog that does not answer with `up: false`. The rest comes from
//! the front-end's own memory: the leader and epoch it forwards to, the last leader changes
//! (kept by the leader tracker), the cache (MRU → LRU with hit and miss counters) and the
//! request counters of [`Traffic`].
//!
//! [`Traffic`] counts lookups and orders in a ring of per-second buckets, so a page opened in the
//! middle of a run draws the last [`RATE_WINDOW_S`] seconds at once and every viewer sees the
//! same figures.
//!
//! Replica health is decoded leniently (`api::ReplicaHealth` defaults what an older replica
//! does not send): replicas that report their commit point and the catalog's applied number
//! show them, older ones show the rest.
//!
//! The page itself (`page/index.html`) is plain HTML, CSS and JavaScript: no CDN, no build step,
//! it works offline. It draws the chart on a canvas and keeps the last good answer on screen
//! (marked stale) when the front-end itself stops answering.
//!
//! Caveats:
//! - The figures are the front-end's view: "leader" is the replica this front-end forwards to,
//!   and the rates count the requests this front-end handled (other front-ends have their own
//!   page). A replica's own `role` is shown next to it, so a disagreement is visible.
//! - The probes run at the same time but are not one snapshot: a follower asked a moment before
//!   the leader may show as one or two orders behind under load.
//! - Every request to `/cluster` probes every process; it is meant for a few viewers at about
//!   one request a second, not for monitoring at scale. It runs on the front-end's handler pool
//!   and holds one pool thread for at most about one probe timeout.
//! - The traffic ring takes a short lock on every lookup and order (next to the cache's own
//!   lock); the buckets use wall-clock seconds, so a clock step makes a gap or a spike in the
//!   chart, never a wrong total.

use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::api::{
    CatalogView, ClusterView, RateSample, ReplicaHealth, ReplicaView, Role, StockRecord,
};
use crate::config::ReplicaConfig;
use crate::error::{Error, Result};
use crate::http::Response;
use crate::selection::Leadership;
use crate::timing::{CATALOG_PROBE_TIMEOUT, REPLICA_PROBE_TIMEOUT};

use super::FrontendApi;

/// Seconds of request rates kept and shown in the chart.
pub(crate) const RATE_WINDOW_S: u64 = 60;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page/index.html");

/// `GET /`: the live page.
pub(super) fn page() -> Response {
    Response::static_body("text/html; charset=utf-8", PAGE.as_bytes())
}

/// `GET /cluster`: probes the replicas and the catalog in parallel and adds the front-end's
/// own state.
pub(super) fn gather(service: &FrontendApi) -> ClusterView {
    let replicas = service.leader.replicas();
    let client = &service.client;
    let (healths, stocks) = thread::scope(|scope| {
        let probes: Vec<_> = replicas
            .iter()
            .map(|replica| {
                let addr = replica.http_addr();
                let probe =
                    move || client.probe::<ReplicaHealth>(&addr, "/health", REPLICA_PROBE_TIMEOUT);
                // Without a thread (out of resources) the probe runs here: slower, still right.
                thread::Builder::new()
                    .name("page-probe".into())
                    .spawn_scoped(scope, probe.clone())
                    .map_err(|_| probe())
            })
            .collect();
        let stocks = client.probe::<Vec<StockRecord>>(
            &service.catalog_addr,
            "/stocks",
            CATALOG_PROBE_TIMEOUT,
        );
        let healths: Vec<Result<ReplicaHealth>> = probes
            .into_iter()
            .map(|probe| match probe {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("the probe panicked".into()))),
                Err(answer) => answer,
            })
            .collect();
        (healths, stocks)
    });
    let leader = service.leader.view().leader;
    ClusterView {
        now_ms: now_ms(),
        leader: leader.map(|l| l.id),
        epoch: leader.map(|l| l.epoch),
        retries: service.leader.retries(),
        failovers: service.leader.failovers(),
        replicas: replica_views(replicas, leader, healths),
        catalog: match stocks {
            Ok(stocks) => CatalogView {
                up: true,
                stocks,
                error: None,
            },
            Err(e) => CatalogView {
                up: false,
                stocks: Vec::new(),
                error: Some(e.to_string()),
            },
        },
        cache: service.cache.stats(),
        traffic: service.traffic.snapshot(),
        leader_changes: service.leader.changes(),
    }
}

/// One view per configured replica, with how far each is behind the leader's log.
fn replica_views(
    replicas: &[ReplicaConfig],
    leader: Option<Leadership>,
    healths: Vec<Result<ReplicaHealth>>,
) -> Vec<ReplicaView> {
    let reported = |id: u32| {
        replicas
            .iter()
            .zip(&healths)
            .find(|(r, _)| r.id == id)
            .and_then(|(_, h)| h.as_ref().ok())
    };
    // The front-end's leader if it answered, else whichever replica says it leads.
    let leader_latest = leader
        .and_then(|l| reported(l.id))
        .or_else(|| healths.iter().flatten().find(|h| h.role == Role::Leader))
        .map(|h| h.latest);
    replicas
        .iter()
        .zip(healths)
        .map(|(replica, health)| {
            let is_leader = leader.is_some_and(|l| l.id == replica.id);
            match health {
                Ok(h) => ReplicaView {
                    id: replica.id,
                    addr: replica.http_addr(),
                    up: true,
                    role: h.role.as_str().into(),
                    is_leader,
                    epoch: Some(h.epoch),
                    latest: Some(h.latest),
                    commit: h.commit,
                    applied: h.applied,
                    behind: leader_latest.map(|l| (l - h.latest).max(0)),
                    error: None,
                },
                Err(e) => ReplicaView {
                    id: replica.id,
                    addr: replica.http_addr(),
                    up: false,
                    role: "down".into(),
                    is_leader,
                    epoch: None,
                    latest: None,
                    commit: None,
                    applied: None,
                    behind: None,
                    error: Some(why_down(&e)),
                },
            }
        })
        .collect()
}

/// A short reason for the page: the full error names URLs and OS error numbers.
fn why_down(err: &Error) -> String {
    let message = err.message().to_ascii_lowercase();
    if message.contains("refused") {
        "connection refused".into()
    } else if message.contains("timed out") || message.contains("timeout") {
        format!("no answer within {} ms", REPLICA_PROBE_TIMEOUT.as_millis())
    } else {
        err.message()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_s() -> u64 {
    now_ms() / 1000
}

/// Lookups and orders the front-end handled: totals and per-second buckets.
#[derive(Default)]
pub(crate) struct Traffic {
    inner: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    orders: u64,
    lookups: u64,
    /// Indexed by second modulo the length; a bucket whose `t` is not the second asked for is
    /// stale (nothing happened in that second).
    ring: Vec<RateSample>,
}

/// What a request was.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Order,
    Lookup,
}

impl Traffic {
    /// A lookup (`GET /stocks/<name>` or `/lookup`), hit or miss.
    pub(crate) fn count_lookup(&self) {
        self.count_at(now_s(), Kind::Lookup);
    }

    /// An order placed (valid enough to be forwarded), whatever its outcome.
    pub(crate) fn count_order(&self) {
        self.count_at(now_s(), Kind::Order);
    }

    fn count_at(&self, t: u64, kind: Kind) {
        let mut guard = self.inner.lock();
        let Buckets {
            orders,
            lookups,
            ring,
        } = &mut *guard;
        if ring.is_empty() {
            // One spare bucket: the second being counted while the window is read.
            *ring = vec![RateSample::default(); RATE_WINDOW_S as usize + 1];
        }
        let len = ring.len() as u64;
        let bucket = &mut ring[(t % len) as usize];
        if bucket.t != t {
            *bucket = RateSample {
                t,
                ..RateSample::default()
            };
        }
        match kind {
            Kind::Order => {
                bucket.orders += 1;
                *orders += 1;
            }
            Kind::Lookup => {
                bucket.lookups += 1;
                *lookups += 1;
            }
        }
    }

    fn snapshot(&self) -> crate::api::Traffic {
        self.snapshot_at(now_s())
    }

    /// Totals, and one sample for each of the [`RATE_WINDOW_S`] whole seconds before `now`.
    fn snapshot_at(&self, now: u64) -> crate::api::Traffic {
        let b = self.inner.lock();
        let per_second = (now.saturating_sub(RATE_WINDOW_S)..now)
            .map(|t| {
                let len = b.ring.len() as u64;
                b.ring
                    .get((t % len.max(1)) as usize)
                    .filter(|s| s.t == t)
                    .copied()
                    .unwrap_or(RateSample {
                        t,
                        ..RateSample::default()
                    })
            })
            .collect();
        crate::api::Traffic {
            orders: b.orders,
            lookups: b.lookups,
            per_second,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use super::*;
    use crate::config::Config;
    use crate::frontend::leader::LeaderTracker;
    use crate::http::{Request, Server, ServerOptions};

    const SHIPPED: &str = include_str!("../../conf/bazaar.yaml");

    /// A fake HTTP service answering each of `routes`' paths with `{"data": data}`.
    fn fake(routes: Vec<(&'static str, Value)>) -> Server {
        let handler = move |req: &Request| {
            routes
                .iter()
                .find(|(path, _)| req.path == *path)
                .map(|(_, data)| Response::ok(data.clone()))
                .ok_or_else(|| Error::NotFound("fake".into()))
        };
        let config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        Server::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            ServerOptions::new("fake", 2, &config.http),
            Arc::new(handler),
        )
        .unwrap()
    }

    fn closed_port() -> u32 {
        crate::local::free_ports(1).unwrap()[0].into()
    }

    /// A front-end service whose replicas and catalog are on `replica_ports` and
    /// `catalog_port`, with replica `leader` selected in epoch 5.
    fn service(replica_ports: [u32; 3], catalog_port: u32, leader: u32) -> FrontendApi {
        let mut config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        config.catalog.port = catalog_port;
        for (r, port) in config.order.replicas.iter_mut().zip(replica_ports) {
            r.port = port;
        }
        let tracker = LeaderTracker::with_selector(
            config.order.replicas.clone(),
            Box::new(move |_: &[ReplicaConfig], _: u64| {
                Some(Leadership {
                    id: leader,
                    epoch: 5,
                })
            }),
        );
        let s = FrontendApi::with_leader_tracker(&config, tracker).unwrap();
        s.check_leader();
        s
    }

    fn cluster_json(s: &FrontendApi) -> Value {
        let resp = s
            .route(&Request::new("GET", "/cluster", Vec::new()))
            .unwrap();
        assert_eq!(resp.content_type, crate::http::JSON);
        serde_json::from_slice::<Value>(&resp.body).unwrap()["data"].clone()
    }

    #[test]
    fn cluster_shows_every_replica_and_a_down_one_as_down() {
        // Replica 2 leads and reports the majority-commit fields; replica 3 is an older build
        // without them; replica 1 is not running.
        let r2 = fake(vec![(
            "/health",
            json!({"status":"ok","id":2,"role":"leader","epoch":5,"latest":41,"commit":40,"applied":39}),
        )]);
        let r3 = fake(vec![(
            "/health",
            json!({"status":"ok","id":3,"role":"follower","epoch":5,"latest":37}),
        )]);
        let catalog = fake(vec![
            (
                "/stocks",
                json!([{"name":"GameStart","price":15.99,"quantity":97,"volume":3}]),
            ),
            (
                "/stocks/GameStart",
                json!({"name":"GameStart","price":15.99,"quantity":97,"volume":3}),
            ),
        ]);
        let port = |s: &Server| u32::from(s.local_addr().port());
        let s = service([closed_port(), port(&r2), port(&r3)], port(&catalog), 2);
        s.lookup("GameStart").unwrap();
        s.lookup("GameStart").unwrap();

        let data = cluster_json(&s);
        assert_eq!(
            (data["leader"].clone(), data["epoch"].clone()),
            (json!(2), json!(5))
        );
        let replicas = data["replicas"].as_array().unwrap();
        let ids: Vec<_> = replicas.iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [1, 2, 3]);
        let [r1v, r2v, r3v] = [&replicas[0], &replicas[1], &replicas[2]];
        assert_eq!(
            (r1v["up"].clone(), r1v["role"].clone()),
            (json!(false), json!("down"))
        );
        assert!(r1v["error"] == "connection refused", "{r1v}");
        assert_eq!(r1v["latest"], Value::Null);
        assert_eq!(
            [
                &r2v["role"],
                &r2v["is_leader"],
                &r2v["latest"],
                &r2v["commit"],
                &r2v["applied"],
                &r2v["behind"]
            ],
            [
                &json!("leader"),
                &json!(true),
                &json!(41),
                &json!(40),
                &json!(39),
                &json!(0)
            ]
        );
        assert_eq!(
            [
                &r3v["role"],
                &r3v["is_leader"],
                &r3v["commit"],
                &r3v["applied"],
                &r3v["behind"]
            ],
            [
                &json!("follower"),
                &json!(false),
                &Value::Null,
                &Value::Null,
                &json!(4)
            ]
        );
        assert_eq!(data["catalog"]["up"], true);
        assert_eq!(data["catalog"]["stocks"][0]["volume"], 3);
        // The first lookup missed (and was cached), the second hit.
        let cache = &data["cache"];
        assert_eq!(
            [
                &cache["items"],
                &cache["hits"],
                &cache["misses"],
                &cache["capacity"]
            ],
            [&json!(["GameStart"]), &json!(1), &json!(1), &json!(10)]
        );
        assert_eq!(data["traffic"]["lookups"], 2);
        assert_eq!(data["traffic"]["per_second"].as_array().unwrap().len(), 60);
        let changes = data["leader_changes"].as_array().unwrap();
        assert_eq!((changes.len(), changes[0]["to"].clone()), (1, json!(2)));
        for key in ["now_ms", "retries", "failovers"] {
            assert!(data[key].is_u64(), "{key} in {data}");
        }
        for server in [r2, r3, catalog] {
            server.shutdown();
        }
    }

    /// Listeners that accept connections (the kernel does) but never answer: frozen processes.
    #[test]
    fn frozen_processes_cost_one_timeout_not_one_each() {
        let frozen: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |l: &TcpListener| u32::from(l.local_addr().unwrap().port());
        let s = service(
            [port(&frozen[0]), port(&frozen[1]), port(&frozen[2])],
            port(&frozen[3]),
            3,
        );
        let started = Instant::now();
        let data = cluster_json(&s);
        let took = started.elapsed();
        // One after the other they would take 3 × 300 + 500 ms.
        let serial = 3 * REPLICA_PROBE_TIMEOUT + CATALOG_PROBE_TIMEOUT;
        assert!(took < serial - Duration::from_millis(300), "took {took:?}");
        let roles: Vec<_> = data["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["role"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(roles, ["down", "down", "down"]);
        assert_eq!(data["replicas"][0]["error"], "no answer within 300 ms");
        assert_eq!(data["catalog"]["up"], false);
        // The front-end's leader stays marked even while it does not answer.
        assert_eq!(data["replicas"][2]["is_leader"], true);
        assert_eq!(data["leader"], 3);
    }

    #[test]
    fn the_page_is_served_as_html_and_polls_cluster() {
        let s = service(
            [closed_port(), closed_port(), closed_port()],
            closed_port(),
            1,
        );
        let resp = s.route(&Request::new("GET", "/", Vec::new())).unwrap();
        assert_eq!(resp.status, 200);
        assert!(resp.content_type.starts_with("text/html"));
        let html = String::from_utf8(resp.body).unwrap();
        assert!(
            html.contains("fetch(\"/cluster\""),
            "the page polls /cluster"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resource"
        );
        for (method, target) in [("POST", "/"), ("POST", "/cluster")] {
            let err = s
                .route(&Request::new(method, target, Vec::new()))
                .unwrap_err();
            assert_eq!(err.status(), 405, "{method} {target}");
        }
    }

    #[test]
    fn traffic_keeps_per_second_buckets_for_the_window() {
        let traffic = Traffic::default();
        let t0 = 1_000_000;
        for _ in 0..3 {
            traffic.count_at(t0, Kind::Lookup);
        }
        traffic.count_at(t0, Kind::Order);
        traffic.count_at(t0 + 2, Kind::Order);
        let snap = traffic.snapshot_at(t0 + 3);
        assert_eq!((snap.orders, snap.lookups), (2, 3));
        assert_eq!(snap.per_second.len(), RATE_WINDOW_S as usize);
        let last: Vec<_> = snap.per_second[snap.per_second.len() - 3..]
            .iter()
            .map(|s| (s.t, s.orders, s.lookups))
            .collect();
        assert_eq!(last, [(t0, 1, 3), (t0 + 1, 0, 0), (t0 + 2, 1, 0)]);
        // A whole window later the old buckets are reused and read as empty.
        let later = t0 + 2 + RATE_WINDOW_S + 1;
        traffic.count_at(later, Kind::Lookup);
        let snap = traffic.snapshot_at(later + 1);
        assert!(snap.per_second[..RATE_WINDOW_S as usize - 1]
            .iter()
            .all(|s| s.orders == 0 && s.lookups == 0));
        assert_eq!(
            snap.per_second.last().map(|s| (s.t, s.lookups)),
            Some((later, 1))
        );
        assert_eq!((snap.orders, snap.lookups), (2, 4));
        assert!(snap.per_second.windows(2).all(|w| w[0].t + 1 == w[1].t));
    }

    #[test]
    fn an_empty_traffic_snapshot_is_all_zero() {
        let snap = Traffic::default().snapshot_at(500);
        assert_eq!(snap.per_second.len(), RATE_WINDOW_S as usize);
        assert!(snap
            .per_second
            .iter()
            .all(|s| s.orders == 0 && s.lookups == 0));
        assert_eq!(snap.per_second[0].t, 500 - RATE_WINDOW_S);
    }
}

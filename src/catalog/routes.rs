//! The catalog's HTTP face: the [`ROUTES`] table, the secret on the leader's calls, the
//! invalidation of every front-end before an apply is answered, and the settling that keeps a
//! new leader's hello from overtaking an apply still under way.
//!
//! **Settling.** A hello answers only once the applies already under way have been answered
//! (each may wait out a cache lease for a front-end that did not confirm its invalidation), so
//! a new leader never learns of a trade that some front-end may still hide. An apply whose
//! invalidation some running front-end did not confirm is answered only one cache lease
//! ([`CACHE_LEASE`]) after the change became visible: that front-end serves no entry older than
//! that.
//!
//! Caveats:
//! - While a front-end stays paused, every apply that changes stocks costs up to one cache
//!   lease, and a hello waits for it (at most [`HELLO_SETTLE_LIMIT`], then 503 and the leader
//!   says hello again).
//! - `/apply` answers carry no stocks (`stocks: []`), to keep the hot path small; `/leader`
//!   and `GET /state` carry them.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use prometheus::IntGauge;

use super::invalidation::Invalidator;
use super::store::Catalog;
use crate::api::{ApplyBatch, Health, LeaderHello};
use crate::error::{Error, Result};
use crate::http::Runs::{Inline, OnPool};
use crate::http::{self, decode_segment, Handler, Request, Response, Route};
use crate::metrics::{gauge_value, Metrics};
use crate::timing::{CACHE_LEASE, HELLO_SETTLE_LIMIT};

impl Handler for CatalogApi {
    fn handle(&self, req: &Request) -> Result<Response> {
        self.route(req)
    }

    /// Lookups read memory and applies come one at a time from the leader: running them on
    /// the connection's thread saves two thread hand-offs each (`docs/http-server.md`).
    fn runs_inline(&self, req: &Request) -> bool {
        http::runs_inline(ROUTES, req)
    }
}

/// Every route of the catalog: lookups for the front-ends, the leader's hello and applies,
/// and the state for tests and the live page.
const ROUTES: &[Route<CatalogApi>] = &[
    ("GET", &["stocks"], OnPool, |s, _, _| {
        Ok(Response::ok(s.catalog.list()))
    }),
    ("GET", &["stocks", "*"], Inline, |s, _, path| {
        s.catalog.lookup(&decode_segment(path[1])).map(Response::ok)
    }),
    ("GET", &["state"], OnPool, |s, _, _| {
        Ok(Response::ok(s.catalog.state()))
    }),
    ("GET", &["health"], OnPool, |_, _, _| {
        Ok(Response::ok(Health {
            status: "ok".into(),
        }))
    }),
    ("GET", &["metrics"], OnPool, |s, _, _| Ok(s.metrics())),
    ("POST", &["leader"], Inline, |s, req, _| s.hello(req)),
    ("POST", &["apply"], Inline, |s, req, _| s.apply(req)),
];

/// The catalog's HTTP face: the data plus the front-ends to invalidate.
pub(crate) struct CatalogApi {
    catalog: Catalog,
    /// Every front-end, told to drop what an apply changed before it is answered.
    invalidator: Invalidator,
    secret: String,
    /// Applies not yet answered, and until when a front-end that did not confirm may still
    /// serve what it cached before the last change: a hello waits for both (see `hello`).
    settling: Mutex<Settling>,
    settled: Condvar,
    metrics: Metrics,
    own: CatalogMetrics,
}

/// The catalog's own metrics, copied in at each scrape (`crate::metrics`).
struct CatalogMetrics {
    epoch: IntGauge,
    applied: IntGauge,
    journal_lines: IntGauge,
    journal_bytes: IntGauge,
}

impl CatalogMetrics {
    fn new(m: &Metrics) -> Result<CatalogMetrics> {
        Ok(CatalogMetrics {
            epoch: m.gauge(
                "bazaar_catalog_epoch",
                "The fence: the highest leader epoch the catalog has seen.",
            )?,
            applied: m.gauge(
                "bazaar_catalog_applied_number",
                "The last order number applied (-1 before the first).",
            )?,
            journal_lines: m.gauge(
                "bazaar_catalog_journal_lines",
                "Lines in catalog.journal since the last snapshot.",
            )?,
            journal_bytes: m.gauge(
                "bazaar_catalog_journal_bytes",
                "Bytes in catalog.journal since the last snapshot.",
            )?,
        })
    }
}

#[derive(Clone, Copy)]
struct Settling {
    in_flight: u32,
    stale_until: Instant,
}

/// Counts one apply as in flight until it is dropped (also when it fails or panics).
struct InFlight<'a>(&'a CatalogApi);

impl<'a> InFlight<'a> {
    fn enter(api: &'a CatalogApi) -> InFlight<'a> {
        api.settling.lock().in_flight += 1;
        InFlight(api)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.settling.lock().in_flight -= 1;
        self.0.settled.notify_all();
    }
}

impl CatalogApi {
    pub(crate) fn new(
        catalog: Catalog,
        frontends: Vec<String>,
        secret: &str,
    ) -> Result<CatalogApi> {
        let metrics = Metrics::new()?;
        let own = CatalogMetrics::new(&metrics)?;
        Ok(CatalogApi {
            metrics,
            own,
            catalog,
            invalidator: Invalidator::new(frontends, secret),
            secret: secret.to_string(),
            settling: Mutex::new(Settling {
                in_flight: 0,
                stale_until: Instant::now(),
            }),
            settled: Condvar::new(),
        })
    }

    /// The one router of the catalog: the table `ROUTES`.
    pub(crate) fn route(&self, req: &Request) -> Result<Response> {
        http::dispatch(ROUTES, self, &self.metrics, req)
    }

    /// `GET /metrics` (`crate::metrics`; no secret, see there).
    fn metrics(&self) -> Response {
        self.metrics.render(|| {
            let (epoch, applied) = self.catalog.numbers();
            let (lines, bytes) = self.catalog.journal_size();
            self.own.epoch.set(gauge_value(epoch));
            self.own.applied.set(applied);
            self.own.journal_lines.set(gauge_value(lines));
            self.own.journal_bytes.set(gauge_value(bytes));
        })
    }

    /// `POST /apply`: applies a batch of committed orders, then has every front-end drop what
    /// changed before the leader hears of it.
    fn apply(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.secret)?;
        let batch: ApplyBatch = req.json()?;
        // Counted before the state lock is taken, so that no hello can slip in between the
        // change and this count.
        let _in_flight = InFlight::enter(self);
        let applied = self.catalog.apply(&batch)?;
        if !self.invalidator.invalidate(applied.names) {
            // A running front-end did not confirm (paused, or cut off): whatever it
            // cached before this change expires one cache lease after the change.
            let until = self.catalog.changed_at() + CACHE_LEASE;
            {
                let mut s = self.settling.lock();
                s.stale_until = s.stale_until.max(until);
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        Ok(Response::ok(applied.state))
    }

    /// `POST /leader`: raises the fence (so no apply of an older epoch starts after it), then
    /// answers only once every apply already under way has been answered and no front-end can
    /// still serve a quantity from before the last change. Otherwise a new leader would learn
    /// an `applied` number that includes a trade some front-end may not have dropped yet, and
    /// could acknowledge a retry of that order at once (docs/spec.md §5.5).
    fn hello(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.secret)?;
        let hello: LeaderHello = req.json()?;
        let state = self.catalog.hello(&hello)?;
        let give_up = Instant::now() + HELLO_SETTLE_LIMIT;
        let mut s = self.settling.lock();
        loop {
            let now = Instant::now();
            if s.in_flight == 0 && now >= s.stale_until {
                break;
            }
            if now >= give_up {
                return Err(Error::Unavailable(
                    "an earlier apply has not settled yet; say hello again".into(),
                ));
            }
            let wake = if s.in_flight == 0 {
                s.stale_until.min(give_up)
            } else {
                give_up
            };
            self.settled.wait_until(&mut s, wake);
        }
        Ok(Response::ok(state))
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::*;
    use crate::api::InvalidateBatch;
    use crate::api::LogEntry;
    use crate::api::OrderType::{Buy, Sell};
    use crate::catalog::test_support::{batch, entry, hello, holdings, stocks, TempDir};
    use crate::config::Config;
    use crate::http::{Server, ServerOptions};
    use crate::timing::INVALIDATION_BUDGET;

    const SECRET: &str = "test-secret";

    fn with_secret(mut req: Request) -> Request {
        req.headers
            .push(("authorization".into(), format!("Bearer {SECRET}")));
        req
    }

    #[test]
    fn metrics_name_the_applied_number_and_journal() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service = CatalogApi::new(catalog, Vec::new(), SECRET).unwrap();
        let resp = service
            .route(&apply_request(1, vec![entry(0, "A", Buy, 1)]))
            .unwrap();
        assert_eq!(resp.status, 200);
        let resp = service
            .route(&Request::new("GET", "/metrics", Vec::new()))
            .unwrap();
        crate::metrics::tests::assert_exposes(
            &resp,
            &[
                "bazaar_http_requests_total",
                "bazaar_catalog_epoch",
                "bazaar_catalog_applied_number",
                "bazaar_catalog_journal_lines",
                "bazaar_catalog_journal_bytes",
            ],
        );
        let text = String::from_utf8_lossy(&resp.body);
        for line in [
            "bazaar_catalog_applied_number 0",
            "bazaar_catalog_journal_lines 1",
            r#"bazaar_http_requests_total{route="POST /apply",status="200"} 1"#,
        ] {
            assert!(text.contains(line), "no {line} in:\n{text}");
        }
    }

    #[test]
    fn route_table() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service = CatalogApi::new(catalog, Vec::new(), SECRET).unwrap();
        let apply = r#"{"epoch":1,"leader":3,"entries":[{"number":0,"name":"A","type":"buy","quantity":2,"epoch":1,"request_id":"x"}]}"#;
        // (method, target, body, with the secret, status, part of the answer)
        let cases: &[(&str, &str, &str, bool, u16, &str)] = &[
            (
                "GET",
                "/stocks/A",
                "",
                false,
                200,
                r#"{"data":{"name":"A","price":1.5,"quantity":100,"volume":0}}"#,
            ),
            ("GET", "/stocks/Z", "", false, 404, "no such stock"),
            ("POST", "/apply", apply, false, 401, "secret"),
            (
                "POST",
                "/leader",
                r#"{"epoch":1,"leader":3}"#,
                false,
                401,
                "secret",
            ),
            (
                "GET",
                "/state",
                "",
                false,
                200,
                r#"{"data":{"epoch":0,"applied":-1,"applied_epoch":0,"stocks":[{"name":"A""#,
            ),
            (
                "POST",
                "/leader",
                r#"{"epoch":1,"leader":3}"#,
                true,
                200,
                r#"{"data":{"epoch":1,"applied":-1,"applied_epoch":0,"stocks":[{"name":"A""#,
            ),
            (
                "POST",
                "/apply",
                apply,
                true,
                200,
                r#"{"data":{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[]}}"#,
            ),
            ("GET", "/stocks/A", "", false, 200, r#""quantity":98"#),
            ("POST", "/apply", "{", true, 400, "malformed JSON"),
            (
                "POST",
                "/leader",
                r#"{"epoch":0,"leader":1}"#,
                true,
                409,
                "epoch 0",
            ),
            ("GET", "/stocks", "", false, 200, r#"{"name":"B""#),
            (
                "GET",
                "/health",
                "",
                false,
                200,
                r#"{"data":{"status":"ok"}}"#,
            ),
            ("DELETE", "/stocks/A", "", false, 405, "method"),
            ("GET", "/apply", "", false, 405, "method"),
            ("GET", "/leader", "", false, 405, "method"),
            ("POST", "/state", "", false, 405, "method"),
            (
                "POST",
                "/trades",
                r#"{"orders":[]}"#,
                true,
                404,
                "no such route",
            ),
            (
                "POST",
                "/orders",
                r#"{"name":"A","quantity":1,"type":"buy"}"#,
                true,
                404,
                "no such route",
            ),
            ("GET", "/elsewhere", "", false, 404, "no such route"),
        ];
        for (method, target, body, secret, want, part) in cases {
            let mut req = Request::new(method, target, body.as_bytes().to_vec());
            if *secret {
                req = with_secret(req);
            }
            let resp: Response = service.route(&req).into();
            let text = String::from_utf8_lossy(&resp.body);
            assert_eq!(resp.status, *want, "{method} {target}: {text}");
            assert!(
                text.contains(part),
                "{method} {target}: {text} lacks {part}"
            );
        }
        // The refused (401) apply changed nothing: only the one with the secret applied.
        assert_eq!(service.catalog.state().applied, 0);
        assert_eq!(service.catalog.lookup("A").unwrap().volume, 2);
    }

    /// A fake front-end's record of `POST /invalidation` calls.
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<(Vec<String>, Option<String>)>>,
        arrived: Condvar,
    }

    /// How long a fake front-end waits for its peer's request before giving up (only reached
    /// when the invalidations are not sent in parallel).
    const PEER_WAIT: Duration = Duration::from_secs(2);

    /// A fake front-end: records each invalidation and its Authorization header. With
    /// `peer`, it answers only once the peer fake has a request too (so both must be in
    /// flight at once); with `release`, it holds every answer until the test sends on it.
    fn fake_frontend(
        seen: Arc<Seen>,
        peer: Option<Arc<Seen>>,
        release: Option<Mutex<mpsc::Receiver<()>>>,
    ) -> Server {
        let handler = move |req: &Request| {
            let names = req.json::<InvalidateBatch>()?.names;
            let auth = req.header("authorization").map(String::from);
            let mine = {
                let mut calls = seen.calls.lock();
                calls.push((names.clone(), auth));
                calls.len()
            };
            seen.arrived.notify_all();
            if let Some(peer) = &peer {
                // The n-th call answers only once the peer has its n-th call too.
                let give_up = Instant::now() + PEER_WAIT;
                let mut calls = peer.calls.lock();
                while calls.len() < mine {
                    if peer.arrived.wait_until(&mut calls, give_up).timed_out() {
                        return Err(Error::Internal("the peer front-end got nothing".into()));
                    }
                }
            }
            if let Some(release) = &release {
                let _ = release.lock().recv_timeout(PEER_WAIT);
            }
            Ok(Response::ok(InvalidateBatch { names }))
        };
        let config = Config::from_yaml(include_str!("../../conf/bazaar.yaml"), &|_| None).unwrap();
        Server::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            ServerOptions::new("fake-frontend", 1, &config.http),
            Arc::new(handler),
        )
        .unwrap()
    }

    fn apply_request(epoch: u64, entries: Vec<LogEntry>) -> Request {
        with_secret(Request::new(
            "POST",
            "/apply",
            serde_json::to_vec(&batch(epoch, entries)).unwrap(),
        ))
    }

    #[test]
    fn invalidation_reaches_every_frontend_in_parallel() {
        let (one, two) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        // Each fake answers only once the other has its request too.
        let fe1 = fake_frontend(one.clone(), Some(two.clone()), None);
        let fe2 = fake_frontend(two.clone(), Some(one.clone()), None);
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let addrs = vec![fe1.local_addr().to_string(), fe2.local_addr().to_string()];
        let service = CatalogApi::new(catalog, addrs, SECRET).unwrap();
        let resp = service
            .route(&apply_request(
                1,
                vec![
                    entry(0, "A", Buy, 1),
                    entry(1, "B", Buy, 1),
                    entry(2, "A", Sell, 1),
                ],
            ))
            .unwrap();
        assert_eq!(resp.status, 200);
        let want = (
            vec!["A".to_string(), "B".to_string()],
            Some(format!("Bearer {SECRET}")),
        );
        for seen in [&one, &two] {
            // One call per front-end, with the distinct names and the secret.
            assert_eq!(*seen.calls.lock(), std::slice::from_ref(&want));
        }
        // Both confirm in time only if both calls are in flight at once: each fake holds its
        // answer until the other has the request (a one-after-the-other fan-out gets one
        // confirmation at most).
        assert!(service.invalidator.invalidate(vec!["A".into()]));
        assert_eq!(one.calls.lock().len(), 2);
        fe1.shutdown();
        fe2.shutdown();
    }

    #[test]
    fn a_dead_frontend_costs_nothing_and_a_silent_one_one_cache_lease() {
        let (fast, slow) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let (release, held) = mpsc::channel();
        let fe_fast = fake_frontend(fast.clone(), None, None);
        let fe_slow = fake_frontend(slow.clone(), None, Some(Mutex::new(held)));
        let dead = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let dead_addr = dead.clone();
        let addrs = vec![
            dead,
            fe_slow.local_addr().to_string(),
            fe_fast.local_addr().to_string(),
        ];
        let service = CatalogApi::new(catalog, addrs, SECRET).unwrap();
        let started = Instant::now();
        let resp = service
            .route(&apply_request(
                1,
                vec![
                    entry(0, "A", Buy, 1),
                    entry(1, "B", Buy, 1),
                    entry(2, "A", Sell, 2),
                ],
            ))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status, 200);
        // The silent front-end may still serve what it cached before the trade: the answer
        // waits until that has expired (one cache lease), and not much longer.
        assert!(
            took >= CACHE_LEASE && took < CACHE_LEASE + INVALIDATION_BUDGET,
            "the apply took {took:?}"
        );
        assert_eq!(
            *fast.calls.lock(),
            [(
                vec!["A".to_string(), "B".to_string()],
                Some(format!("Bearer {SECRET}"))
            )]
        );
        assert_eq!(holdings(&service.catalog), [(101, 3), (2, 1)]);
        let _ = release.send(());
        // Without the silent one: a front-end that is not running has no cache to drop, so
        // the fan-out costs one budget at most, well under the lease.
        let addrs = vec![dead_addr, fe_fast.local_addr().to_string()];
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service = CatalogApi::new(catalog, addrs, SECRET).unwrap();
        let started = Instant::now();
        let resp = service
            .route(&apply_request(2, vec![entry(3, "A", Buy, 1)]))
            .unwrap();
        assert_eq!(resp.status, 200);
        let took = started.elapsed();
        assert!(
            took < INVALIDATION_BUDGET + Duration::from_millis(250),
            "the apply took {took:?}"
        );
        fe_fast.shutdown();
        fe_slow.shutdown();
    }

    /// A new leader's hello must not learn that an order was applied while a front-end that
    /// did not confirm the invalidation may still serve the pre-trade quantity: it waits until
    /// the apply under way has been answered (one cache lease after the change).
    #[test]
    fn a_hello_waits_for_an_apply_that_waits_out_a_cache_lease() {
        let silent = Arc::new(Seen::default());
        let (release, held) = mpsc::channel();
        let fe = fake_frontend(silent.clone(), None, Some(Mutex::new(held)));
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service =
            Arc::new(CatalogApi::new(catalog, vec![fe.local_addr().to_string()], SECRET).unwrap());
        let applier = service.clone();
        let started = Instant::now();
        let apply = std::thread::spawn(move || {
            applier.route(&apply_request(1, vec![entry(0, "A", Buy, 1)]))
        });
        // Wait until the apply is visible (the front-end was asked), then say hello.
        let visible = Instant::now() + Duration::from_secs(5);
        while service.catalog.state().applied < 0 {
            assert!(Instant::now() < visible, "the apply never became visible");
            std::thread::yield_now();
        }
        let body = serde_json::to_vec(&hello(2)).unwrap();
        let resp = service
            .route(&with_secret(Request::new("POST", "/leader", body)))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status, 200);
        assert!(
            took >= CACHE_LEASE,
            "the hello answered {took:?} after the trade, inside the cache lease"
        );
        assert_eq!(apply.join().unwrap().unwrap().status, 200);
        let _ = release.send(());
        fe.shutdown();
    }
}

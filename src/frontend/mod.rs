//! The front-end: the only service clients talk to (docs/spec.md §3).
//!
//! Lookups (`GET /stocks/<name>`) are served from the LRU `cache` when caching is on; a miss
//! takes an invalidation ticket, asks the catalog and inserts the answer only if no
//! invalidation of that stock happened meanwhile. The catalog calls `POST /invalidation` (an
//! `InvalidateBatch` of names; `POST /invalidation/<name>` for one name is kept) after every
//! apply, before it answers the apply, and the front-end also invalidates the
//! stock itself after every order it forwards, before answering the client. Together these
//! make "a lookup that starts after an acknowledged trade never shows the pre-trade quantity"
//! hold (see the cache's module doc for the race this closes).
//!
//! Orders (`POST /orders`, `GET /orders/<n>`) go to the leading order replica, tracked by
//! `leader::LeaderTracker`, and are retried under the same request id when the leader fails
//! or moves (`forward`).
//!
//! Reads (`GET /orders/<n>`) are forwarded like orders: only a leader holding its lease
//! answers them (anything else says 421 and the front-end re-selects), so a front-end that
//! still points at a deposed leader does not read its stale log.
//!
//! The running service (`service`: [`start`], [`Frontend`]) is the HTTP server over this
//! handler plus the health-check thread that selects the leader and re-checks it.
//!
//! The reference client's routes are accepted too: `GET /lookup?stock=X`,
//! `GET /order?order_number=N`, `POST /order?stock=X&quantity=N&type=T` (with `&amp;`
//! separators); the order's query parameters are turned into the same JSON object the JSON
//! route takes and validated by the same `OrderRequest::parse`, so every 400 matches.
//!
//! Both invalidation routes require the deployment secret (401 without it) and are answered on
//! their connection's thread, not the
//! handler pool ([`Handler::runs_inline`]): every pool thread may be busy forwarding an order
//! whose trade is waiting for exactly that invalidation.
//!
//! `GET /` is a live page of the whole bazaar and `GET /cluster` the JSON behind it; both live
//! in `dashboard`.
//!
//! `GET /metrics` (no secret, see `crate::metrics`) gives the cache's hits, misses, evictions
//! and invalidations, and the forwards' retries and fail-overs, copied from the counters the
//! cache and the leader tracker keep when a scrape asks.
//!
//! Caveats:
//! - Stock names in paths are percent-decoded here and percent-encoded on the way out
//!   (`http::encode_segment`, `http::decode_segment`) so that odd names reach the catalog intact.

pub(crate) mod cache;
mod dashboard;
mod forward;
pub(crate) mod leader;
mod service;

use log::debug;
use serde_json::Value;

use crate::api::{
    decimal_param, CacheView, FrontendHealth, InvalidateBatch, Invalidated, OrderRequest, Stock,
    StockRecord,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::Runs::{Inline, OnPool};
use crate::http::{
    self, decode_segment, encode_segment, Client, Handler, Request, Response, Route,
};
use crate::metrics::{gauge_value, mirror, Metrics};
use crate::timing::FRONTEND_CATALOG_TIMEOUT;
use prometheus::{IntCounter, IntGauge};

use cache::{Cache, Lookup};
use leader::LeaderTracker;

pub use service::{start, start_with_listener, Frontend};

/// The front-end's request handling, usable without any thread or socket (tests call
/// [`FrontendApi::route`] directly).
pub(crate) struct FrontendApi {
    catalog_addr: String,
    client: Client,
    cache: Cache,
    leader: LeaderTracker,
    /// The deployment secret, required on the catalog's invalidation calls.
    secret: String,
    /// Lookups and orders per second, for the live page.
    traffic: dashboard::Traffic,
    metrics: Metrics,
    own: FrontendMetrics,
}

/// The front-end's own metrics: copies of the totals the cache and the leader tracker keep,
/// taken at each scrape (`crate::metrics`).
struct FrontendMetrics {
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    cache_evictions: IntCounter,
    cache_invalidations: IntCounter,
    cache_items: IntGauge,
    retries: IntCounter,
    failovers: IntCounter,
}

impl FrontendMetrics {
    fn new(m: &Metrics) -> Result<FrontendMetrics> {
        Ok(FrontendMetrics {
            cache_hits: m.counter(
                "bazaar_frontend_cache_hits_total",
                "Lookups answered from the cache.",
            )?,
            cache_misses: m.counter(
                "bazaar_frontend_cache_misses_total",
                "Lookups that asked the catalog.",
            )?,
            cache_evictions: m.counter(
                "bazaar_frontend_cache_evictions_total",
                "Cache entries pushed out by a newer one (the cache was full).",
            )?,
            cache_invalidations: m.counter(
                "bazaar_frontend_cache_invalidations_total",
                "Cache entries dropped by the catalog's invalidations.",
            )?,
            cache_items: m.gauge("bazaar_frontend_cache_items", "Entries in the cache now.")?,
            retries: m.counter(
                "bazaar_frontend_order_retries_total",
                "Forwards of an order or order query re-sent after a failure.",
            )?,
            failovers: m.counter(
                "bazaar_frontend_failovers_total",
                "Times the front-end moved to a different leader.",
            )?,
        })
    }
}

impl Handler for FrontendApi {
    fn handle(&self, req: &Request) -> Result<Response> {
        self.route(req)
    }

    /// The hot routes run on the connection's thread: invalidations (orders in the pool
    /// may be waiting for them), lookups (memory, or one catalog call) and orders (one
    /// forward, waiting): the pool hop costs two thread hand-offs each and would cap the
    /// orders in flight to the leader at the pool's size (`docs/http-server.md`).
    fn runs_inline(&self, req: &Request) -> bool {
        http::runs_inline(ROUTES, req)
    }
}

/// Every route of the front-end: the REST API, the reference client's query-string API
/// (`/lookup`, `/order`), the catalog's invalidations and the live page. Where each runs: see
/// `runs_inline`.
const ROUTES: &[Route<FrontendApi>] = &[
    ("GET", &["stocks"], OnPool, |s, _, _| {
        s.list_stocks().map(Response::ok)
    }),
    ("GET", &["stocks", "*"], Inline, |s, _, path| {
        s.lookup(&decode_segment(path[1])).map(Response::ok)
    }),
    ("POST", &["orders"], Inline, |s, req, _| {
        s.place_order(OrderRequest::parse(&req.body)?)
            .map(Response::ok)
    }),
    ("GET", &["orders", "*"], Inline, |s, _, path| {
        s.query_order(decimal_param(path[1], "order number")?)
            .map(Response::ok)
    }),
    ("GET", &["cache"], OnPool, |s, _, _| {
        Ok(Response::ok(s.cache_view()))
    }),
    ("GET", &["health"], OnPool, |s, _, _| {
        Ok(Response::ok(s.health()))
    }),
    ("POST", &["invalidation"], Inline, |s, req, _| {
        req.require_secret(&s.secret)?;
        let batch: InvalidateBatch = req.json()?;
        for name in &batch.names {
            s.invalidate(name);
        }
        Ok(Response::ok(batch))
    }),
    ("POST", &["invalidation", "*"], Inline, |s, req, path| {
        req.require_secret(&s.secret)?;
        Ok(Response::ok(s.invalidate(&decode_segment(path[1]))))
    }),
    ("GET", &[], OnPool, |_, _, _| Ok(dashboard::page())),
    ("GET", &["metrics"], OnPool, |s, _, _| Ok(s.metrics())),
    ("GET", &["cluster"], OnPool, |s, _, _| {
        Ok(Response::ok(dashboard::gather(s)))
    }),
    ("GET", &["lookup"], Inline, |s, req, _| {
        s.lookup(&required_param(req, "stock")?).map(Response::ok)
    }),
    ("GET", &["order"], Inline, |s, req, _| {
        let number = decimal_param(&required_param(req, "order_number")?, "order number")?;
        s.query_order(number).map(Response::ok)
    }),
    ("POST", &["order"], Inline, |s, req, _| {
        s.place_order(compat_order(req)?).map(Response::ok)
    }),
];

impl FrontendApi {
    /// Builds the service from the config: an empty cache (opening the trace file when dump
    /// and caching are on) and no leader yet.
    pub(crate) fn new(config: &Config) -> Result<FrontendApi> {
        FrontendApi::with_leader_tracker(
            config,
            LeaderTracker::new(config.order.replicas.clone(), &config.secret),
        )
    }

    /// [`FrontendApi::new`] with a given leader tracker (tests pass one with a stub selector).
    pub(crate) fn with_leader_tracker(
        config: &Config,
        leader: LeaderTracker,
    ) -> Result<FrontendApi> {
        let trace = config.frontend.dump.then(|| config.cache_log_path());
        let cache = Cache::new(
            config.frontend.cache,
            config.frontend.cache_size,
            trace.as_deref(),
        )
        .map_err(|e| {
            Error::Config(format!(
                "frontend.cache_log_path: cannot open the cache trace: {e}"
            ))
        })?;
        let metrics = Metrics::new()?;
        let own = FrontendMetrics::new(&metrics)?;
        Ok(FrontendApi {
            metrics,
            own,
            catalog_addr: config.catalog_addr(),
            client: Client::new(),
            cache,
            leader,
            secret: config.secret.clone(),
            traffic: dashboard::Traffic::default(),
        })
    }

    /// The one router of the front-end: the table `ROUTES`.
    pub(crate) fn route(&self, req: &Request) -> Result<Response> {
        http::dispatch(ROUTES, self, &self.metrics, req)
    }

    /// `GET /metrics` (`crate::metrics`; no secret, see there).
    fn metrics(&self) -> Response {
        self.metrics.render(|| {
            let stats = self.cache.stats();
            mirror(&self.own.cache_hits, stats.hits);
            mirror(&self.own.cache_misses, stats.misses);
            mirror(&self.own.cache_evictions, stats.evictions);
            mirror(&self.own.cache_invalidations, stats.invalidations);
            self.own
                .cache_items
                .set(gauge_value(stats.items.len() as u64));
            mirror(&self.own.retries, self.leader.retries());
            mirror(&self.own.failovers, self.leader.failovers());
        })
    }

    /// A stock, from the cache or else from the catalog.
    fn lookup(&self, name: &str) -> Result<Stock> {
        self.traffic.count_lookup();
        let ticket = match self.cache.lookup(name) {
            Lookup::Hit(stock) => return Ok(stock),
            Lookup::Miss(ticket) => ticket,
        };
        let path = format!("/stocks/{}", encode_segment(name));
        let record: StockRecord = self
            .client
            .get(&self.catalog_addr, &path, FRONTEND_CATALOG_TIMEOUT)
            .map_err(catalog_error)?;
        let stock = Stock::from(&record);
        self.cache.insert(ticket, stock.clone());
        Ok(stock)
    }

    fn list_stocks(&self) -> Result<Vec<StockRecord>> {
        self.client
            .get(&self.catalog_addr, "/stocks", FRONTEND_CATALOG_TIMEOUT)
            .map_err(catalog_error)
    }

    fn invalidate(&self, name: &str) -> Invalidated {
        debug!("invalidating {name}");
        self.cache.invalidate(name);
        Invalidated {
            invalidated: name.to_string(),
        }
    }

    fn cache_view(&self) -> CacheView {
        self.cache.view()
    }

    fn health(&self) -> FrontendHealth {
        FrontendHealth {
            status: "ok".into(),
            leader: self.leader.view().leader.map(|l| l.id),
            retries: self.leader.retries(),
            failovers: self.leader.failovers(),
        }
    }
}

/// A transport failure to the catalog is a clear 503; its real answers pass through.
fn catalog_error(err: Error) -> Error {
    match err {
        Error::Unreachable(m) => Error::Unavailable(format!("catalog unavailable: {m}")),
        other => other,
    }
}

fn required_param(req: &Request, name: &str) -> Result<String> {
    req.query_param(name)
        .ok_or_else(|| Error::BadRequest(format!("missing query parameter {name:?}")))
}

/// The reference client's `POST /order?stock=X&quantity=N&type=T` as an [`OrderRequest`]: the
/// parameters become the JSON object of the JSON route (numbers stay numbers, anything else a
/// string) and go through the same validation. Without a query string the body is used.
fn compat_order(req: &Request) -> Result<OrderRequest> {
    if req.query.as_deref().is_none_or(str::is_empty) && !req.body.is_empty() {
        return OrderRequest::parse(&req.body);
    }
    let mut object = serde_json::Map::new();
    for (param, field) in [
        ("stock", "name"),
        ("quantity", "quantity"),
        ("type", "type"),
        ("request_id", "request_id"),
    ] {
        if let Some(value) = req.query_param(param) {
            let json = match serde_json::from_str::<Value>(value.trim()) {
                Ok(number @ Value::Number(_)) if field == "quantity" => number,
                _ => Value::String(value),
            };
            object.insert(field.to_string(), json);
        }
    }
    OrderRequest::parse(&serde_json::to_vec(&Value::Object(object))?)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::forward::give_up;
    use super::*;
    use crate::api::{Order, OrderAck, RESEND};
    use crate::http::{Server, ServerOptions};
    use crate::selection::Leadership;

    const SHIPPED: &str = include_str!("../../conf/bazaar.yaml");

    fn service() -> FrontendApi {
        let config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        FrontendApi::new(&config).unwrap()
    }

    fn call(service: &FrontendApi, method: &str, target: &str, body: &str) -> Result<Response> {
        service.route(&Request::new(method, target, body.as_bytes().to_vec()))
    }

    fn status(result: Result<Response>) -> u16 {
        match result {
            Ok(resp) => resp.status,
            Err(err) => err.status(),
        }
    }

    /// Requests answered before any network call: their status and a part of the error.
    #[test]
    fn route_table_without_network() {
        let s = service();
        let cases: &[(&str, &str, &str, u16, &str)] = &[
            ("GET", "/orders/abc", "", 400, "non-negative integer"),
            ("GET", "/orders/-1", "", 400, "non-negative integer"),
            ("GET", "/orders/1.5", "", 400, "non-negative integer"),
            ("GET", "/orders/+3", "", 400, "non-negative integer"),
            (
                "GET",
                "/orders/99999999999999999999999",
                "",
                400,
                "non-negative integer",
            ),
            ("GET", "/order", "", 400, "order_number"),
            (
                "GET",
                "/order?order_number=x",
                "",
                400,
                "non-negative integer",
            ),
            (
                "GET",
                "/order?stock=A&amp;order_number=-4",
                "",
                400,
                "non-negative integer",
            ),
            ("GET", "/lookup", "", 400, "stock"),
            ("POST", "/orders", "{", 400, "malformed JSON"),
            (
                "POST",
                "/orders",
                r#"{"name":"A","quantity":0,"type":"buy"}"#,
                400,
                "positive integer",
            ),
            (
                "POST",
                "/order?stock=A&amp;quantity=2&amp;type=hold",
                "",
                400,
                "buy",
            ),
            (
                "POST",
                "/order?stock=A&amp;quantity=abc&amp;type=buy",
                "",
                400,
                "positive integer",
            ),
            (
                "POST",
                "/order?stock=A&quantity=1.5&type=buy",
                "",
                400,
                "positive integer",
            ),
            (
                "POST",
                "/order?stock=A&amp;type=buy",
                "",
                400,
                "missing field \"quantity\"",
            ),
            (
                "POST",
                "/order?quantity=1&amp;type=buy",
                "",
                400,
                "missing field \"name\"",
            ),
            ("POST", "/order", "", 400, "missing field"),
            ("DELETE", "/orders", "", 405, "method"),
            ("PUT", "/orders/3", "", 405, "method"),
            ("POST", "/stocks/A", "", 405, "method"),
            ("POST", "/stocks", "", 405, "method"),
            ("GET", "/invalidation/A", "", 405, "method"),
            ("POST", "/cache", "", 405, "method"),
            ("DELETE", "/health", "", 405, "method"),
            ("POST", "/lookup?stock=A", "", 405, "method"),
            ("DELETE", "/order", "", 405, "method"),
            ("GET", "/stocks/A/B", "", 404, "no such route"),
            ("GET", "/nope", "", 404, "no such route"),
        ];
        for (method, target, body, want, part) in cases {
            let err = call(&s, method, target, body).expect_err(target);
            assert_eq!(err.status(), *want, "{method} {target}: {err}");
            assert!(
                err.to_string().contains(part),
                "{method} {target}: {err} lacks {part:?}"
            );
        }
    }

    #[test]
    fn compat_order_matches_the_json_route() {
        let req = |target: &str| Request::new("POST", target, Vec::new());
        let order =
            compat_order(&req("/order?stock=GameStart&amp;quantity=3&amp;type=sell")).unwrap();
        let json =
            OrderRequest::parse(br#"{"name":"GameStart","quantity":3,"type":"sell"}"#).unwrap();
        assert_eq!(order, json);
        let order = compat_order(&req(
            "/order?stock=Fish%43o&quantity=1&type=buy&request_id=r-1",
        ))
        .unwrap();
        assert_eq!(order.name, "FishCo");
        assert_eq!(order.request_id.as_deref(), Some("r-1"));
        let from_body = compat_order(&Request::new(
            "POST",
            "/order",
            br#"{"name":"A","quantity":1,"type":"buy"}"#.to_vec(),
        ))
        .unwrap();
        assert_eq!(from_body.name, "A");
    }

    #[test]
    fn metrics_name_the_cache_and_leader_counters() {
        let s = service();
        call(&s, "GET", "/cache", "").unwrap();
        let resp = call(&s, "GET", "/metrics", "").unwrap();
        crate::metrics::tests::assert_exposes(
            &resp,
            &[
                "bazaar_http_requests_total",
                "bazaar_http_request_duration_seconds",
                "bazaar_frontend_cache_hits_total",
                "bazaar_frontend_cache_misses_total",
                "bazaar_frontend_cache_evictions_total",
                "bazaar_frontend_cache_invalidations_total",
                "bazaar_frontend_cache_items",
                "bazaar_frontend_order_retries_total",
                "bazaar_frontend_failovers_total",
            ],
        );
        let text = String::from_utf8_lossy(&resp.body);
        assert!(
            text.contains(r#"bazaar_http_requests_total{route="GET /cache",status="200"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn local_routes() {
        let s = service();
        let health: serde_json::Value =
            serde_json::from_slice(&call(&s, "GET", "/health", "").unwrap().body).unwrap();
        assert_eq!(
            health,
            serde_json::json!({"data":{"status":"ok","leader":null,"retries":0,"failovers":0}})
        );
        let cache: serde_json::Value =
            serde_json::from_slice(&call(&s, "GET", "/cache", "").unwrap().body).unwrap();
        assert_eq!(
            cache,
            serde_json::json!({"data":{"enabled":true,"capacity":10,"items":[]}})
        );
        // Invalidations are for the catalog only: without the secret, 401 and nothing happens.
        let secret = Config::from_yaml(SHIPPED, &|_| None).unwrap().secret;
        let with_secret = |target: &str, body: &str| {
            let mut req = Request::new("POST", target, body.as_bytes().to_vec());
            req.headers
                .push(("authorization".into(), format!("Bearer {secret}")));
            s.route(&req)
        };
        assert_eq!(status(call(&s, "POST", "/invalidation/X", "")), 401);
        let batch = r#"{"names":["A","B"]}"#;
        assert_eq!(status(call(&s, "POST", "/invalidation", batch)), 401);
        assert!(s.runs_inline(&Request::new("POST", "/invalidation", Vec::new())));
        let inv = with_secret("/invalidation/Fish%43o", "").unwrap();
        assert_eq!(inv.body, br#"{"data":{"invalidated":"FishCo"}}"#);
        assert_eq!(status(with_secret("/invalidation/X", "{}")), 200);
        let inv = with_secret("/invalidation", batch).unwrap();
        assert_eq!(inv.body, br#"{"data":{"names":["A","B"]}}"#);
        assert_eq!(status(with_secret("/invalidation", "{")), 400);
        assert_eq!(status(call(&s, "GET", "/invalidation", "")), 405);
    }

    #[test]
    fn request_ids_are_unique_and_bounded() {
        let s = service();
        let a = s.next_request_id();
        let b = s.next_request_id();
        assert_ne!(a, b);
        assert!(a.starts_with("fe-") && a.len() <= crate::api::MAX_REQUEST_ID_LEN);
    }

    /// A port nothing listens on (bound, then released).
    fn closed_port() -> u32 {
        crate::local::free_ports(1).unwrap()[0].into()
    }

    // The forwarding tests below run fake replicas on sockets yet stay here: they drive the
    // private `FrontendApi::check_leader` and read `FrontendApi::health` directly. The catalog and
    // front-end on sockets, which need only the public API, are in `tests/frontend.rs`.

    /// A fake order replica: answers `POST /orders` with `answer`, records the request ids,
    /// and serves `GET /orders/<n>`.
    fn fake_replica(answer: Result<OrderAck>, seen: Arc<Mutex<Vec<String>>>) -> Server {
        fake_replica_reading(answer, seen, None)
    }

    /// [`fake_replica`] whose `GET /orders/<n>` answers `read_error` when given, and records
    /// the read as `read <n>` in `seen`.
    fn fake_replica_reading(
        answer: Result<OrderAck>,
        seen: Arc<Mutex<Vec<String>>>,
        read_error: Option<Error>,
    ) -> Server {
        let handler = move |req: &Request| match (req.method.as_str(), req.segments().as_slice()) {
            ("POST", ["orders"]) => {
                seen.lock().push(
                    OrderRequest::parse(&req.body)?
                        .request_id
                        .unwrap_or_default(),
                );
                answer.clone().map(Response::ok)
            }
            ("GET", ["orders", _]) if read_error.is_some() => {
                seen.lock().push(format!("read {}", req.path));
                Err(read_error
                    .clone()
                    .unwrap_or(Error::Internal("unreachable".into())))
            }
            ("GET", ["orders", n]) => Ok(Response::ok(Order {
                number: n.parse().map_err(|_| Error::BadRequest("n".into()))?,
                name: "A".into(),
                kind: crate::api::OrderType::Sell,
                quantity: 2,
            })),
            _ => Err(Error::NotFound("fake".into())),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        Server::start(
            listener,
            ServerOptions::new("fake", 2, &config.http),
            Arc::new(handler),
        )
        .unwrap()
    }

    #[test]
    fn forwarding_fails_over_and_retries_the_same_request_id() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Replica 1 is down, replica 3 no longer leads, replica 2 is the real leader.
        let r3 = fake_replica(
            Err(Error::NotLeader("replica 3 follows".into())),
            seen.clone(),
        );
        let r2 = fake_replica(
            Ok(OrderAck {
                transaction_number: 7,
            }),
            seen.clone(),
        );
        let mut config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        let ports = [
            closed_port(),
            r2.local_addr().port().into(),
            r3.local_addr().port().into(),
        ];
        for (r, port) in config.order.replicas.iter_mut().zip(ports) {
            r.port = port;
        }
        let outcomes = Mutex::new(vec![
            Leadership { id: 2, epoch: 3 },
            Leadership { id: 3, epoch: 2 },
            Leadership { id: 1, epoch: 1 },
        ]);
        let tracker = LeaderTracker::with_selector(
            config.order.replicas.clone(),
            Box::new(move |_: &[crate::config::ReplicaConfig], _: u64| outcomes.lock().pop()),
        );
        let s = FrontendApi::with_leader_tracker(&config, tracker).unwrap();
        s.check_leader(); // what the health-check thread does first: replica 1 is chosen
        assert_eq!(s.health().leader, Some(1));

        let body = r#"{"name":"GameStart","quantity":1,"type":"buy"}"#;
        let resp = call(&s, "POST", "/orders", body).unwrap();
        assert_eq!(resp.body, br#"{"data":{"transaction_number":7}}"#);
        let health = s.health();
        assert_eq!(
            (health.leader, health.retries, health.failovers),
            (Some(2), 2, 2)
        );
        // Replica 3 and replica 2 saw the same, front-end assigned, request id.
        let ids = seen.lock().clone();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids[0].starts_with("fe-") && ids[0] == ids[1], "{ids:?}");

        // A client's own request id is kept; order queries go to the leader too.
        call(
            &s,
            "POST",
            "/order?stock=A&amp;quantity=2&amp;type=sell&amp;request_id=mine",
            "",
        )
        .unwrap();
        assert_eq!(seen.lock().last().map(String::as_str), Some("mine"));
        let order = call(&s, "GET", "/order?order_number=5", "").unwrap();
        assert_eq!(
            order.body,
            br#"{"data":{"number":5,"name":"A","type":"sell","quantity":2}}"#
        );
        assert_eq!(s.health().retries, 2);
        r2.shutdown();
        r3.shutdown();
    }

    /// A front-end whose replicas are `servers` (ids 1.., in order) and whose selections
    /// return `outcomes` from the last.
    fn with_replicas(servers: &[&Server], outcomes: Vec<Leadership>) -> FrontendApi {
        let mut config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        config.order.replicas.truncate(servers.len());
        for (r, server) in config.order.replicas.iter_mut().zip(servers) {
            r.port = server.local_addr().port().into();
        }
        let outcomes = Mutex::new(outcomes);
        let tracker = LeaderTracker::with_selector(
            config.order.replicas.clone(),
            Box::new(move |_: &[crate::config::ReplicaConfig], _: u64| outcomes.lock().pop()),
        );
        FrontendApi::with_leader_tracker(&config, tracker).unwrap()
    }

    /// A read that a replica answers 421 (a follower, or a leader without its lease) is not
    /// the answer: the front-end re-selects and reads from the new leader.
    #[test]
    fn a_read_answered_not_leader_reselects_and_retries() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let deposed = fake_replica_reading(
            Err(Error::NotLeader("x".into())),
            seen.clone(),
            Some(Error::NotLeader("replica 1 holds no lease".into())),
        );
        let leader = fake_replica(Err(Error::NotLeader("x".into())), seen.clone());
        let s = with_replicas(
            &[&deposed, &leader],
            vec![
                Leadership { id: 2, epoch: 6 },
                Leadership { id: 1, epoch: 5 },
            ],
        );
        s.check_leader();
        assert_eq!(s.health().leader, Some(1));
        let order = call(&s, "GET", "/orders/4", "").unwrap();
        assert_eq!(
            order.body,
            br#"{"data":{"number":4,"name":"A","type":"sell","quantity":2}}"#
        );
        assert_eq!(*seen.lock(), vec!["read /orders/4".to_string()]);
        let health = s.health();
        assert_eq!((health.leader, health.retries), (Some(2), 1));
        deposed.shutdown();
        leader.shutdown();
    }

    /// The leader's own 503 on a read (an order it holds but has not committed in time) is its
    /// answer: passed back once, without "re-send" (a read has no request id), not retried.
    #[test]
    fn a_read_answered_503_by_the_leader_is_passed_back() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let uncommitted = Error::Unavailable("order 3 is not committed yet".into());
        let leader = fake_replica_reading(
            Err(Error::NotLeader("x".into())),
            seen.clone(),
            Some(uncommitted.clone()),
        );
        let s = with_replicas(&[&leader], vec![Leadership { id: 1, epoch: 1 }]);
        s.check_leader();
        let resp = Response::from(call(&s, "GET", "/orders/3", ""));
        assert_eq!(resp, Response::error(&uncommitted));
        assert_eq!(resp.request_id, None);
        assert_eq!((seen.lock().len(), s.health().retries), (1, 0));
        leader.shutdown();
    }

    /// A leader's 503 "re-send" (with the order's id, as a replica sends it) is retried under
    /// the same id, here until the second try commits it.
    #[test]
    fn an_order_answered_resend_is_retried_under_its_id() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let handler = move |req: &Request| {
            let id = OrderRequest::parse(&req.body)?
                .request_id
                .unwrap_or_default();
            let mut log = log.lock();
            log.push(id.clone());
            if log.len() == 1 {
                return Err(Error::Resend {
                    message: format!("not committed in time; {RESEND}"),
                    request_id: id,
                });
            }
            Ok(Response::ok(OrderAck {
                transaction_number: 4,
            }))
        };
        let config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
        let leader = Server::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            ServerOptions::new("fake", 2, &config.http),
            Arc::new(handler),
        )
        .unwrap();
        // After the 503 the front-end re-selects (the leader may have stepped down): it is
        // re-confirmed.
        let s = with_replicas(&[&leader], vec![Leadership { id: 1, epoch: 1 }; 2]);
        s.check_leader();
        let resp = call(
            &s,
            "POST",
            "/orders",
            r#"{"name":"A","quantity":1,"type":"buy"}"#,
        );
        assert_eq!(resp.unwrap().body, br#"{"data":{"transaction_number":4}}"#);
        let ids = seen.lock().clone();
        assert!(
            ids.len() == 2 && ids[0] == ids[1] && ids[0].starts_with("fe-"),
            "{ids:?}"
        );
        leader.shutdown();
    }

    /// Giving up on an order names the request id to re-send with; on a read there is none.
    #[test]
    fn giving_up_on_an_order_carries_its_request_id() {
        let failure = Error::Unreachable("refused".into());
        let order = give_up(3, &failure, Some("fe-9"));
        assert_eq!(order.status(), 503);
        assert_eq!(order.request_id(), Some("fe-9"));
        assert!(order.message().contains(RESEND), "{order}");
        let resp = Response::error(&order);
        assert_eq!(resp.request_id.as_deref(), Some("fe-9"));
        let body: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["error"]["request_id"], "fe-9");
        let read = give_up(3, &failure, None);
        assert_eq!((read.status(), read.request_id()), (503, None));
        assert!(!read.message().contains(RESEND), "{read}");
    }

    #[test]
    fn leader_errors_other_than_failover_go_straight_back() {
        let cases = [
            Error::Conflict("not enough stock".into()),
            Error::NotFound("no such stock".into()),
            Error::Unavailable("catalog unavailable".into()),
        ];
        for err in cases {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let r1 = fake_replica(Err(err.clone()), seen.clone());
            let mut config = Config::from_yaml(SHIPPED, &|_| None).unwrap();
            config.order.replicas.retain(|r| r.id == 1);
            config.order.replicas[0].port = r1.local_addr().port().into();
            let tracker = LeaderTracker::with_selector(
                config.order.replicas.clone(),
                Box::new(|_: &[crate::config::ReplicaConfig], _: u64| {
                    Some(Leadership { id: 1, epoch: 1 })
                }),
            );
            let s = FrontendApi::with_leader_tracker(&config, tracker).unwrap();
            s.check_leader();
            let got = call(
                &s,
                "POST",
                "/orders",
                r#"{"name":"A","quantity":1,"type":"buy"}"#,
            )
            .unwrap_err();
            assert_eq!(got, err);
            assert_eq!((seen.lock().len(), s.health().retries), (1, 0), "{err}");
            r1.shutdown();
        }
    }

    #[test]
    fn segments_round_trip() {
        let cases = [
            ("GameStart", "GameStart"),
            ("A B", "A%20B"),
            ("x/y", "x%2Fy"),
            ("é", "%C3%A9"),
            ("a.b-c_d~", "a.b-c_d~"),
        ];
        for (raw, encoded) in cases {
            assert_eq!(encode_segment(raw), encoded);
            assert_eq!(decode_segment(encoded), raw);
        }
        assert_eq!(decode_segment("100%"), "100%");
        assert_eq!(decode_segment("%zz%4"), "%zz%4");
    }
}

//! HTTP plumbing, written once and used by every service.
//!
//! - `server`: a blocking HTTP/1.1 server on `std::net`, requests parsed with `httparse`,
//!   one thread per connection (with idle and request read timeouts and a connection cap),
//!   every parsed request run on a fixed `threadpool`. Why not tiny_http: `docs/http-server.md`.
//! - `client`: outbound calls through one shared pool of keep-alive connections per process.
//!
//! A service is a [`Handler`]: one `route()` from [`Request`] to [`Response`] or [`Error`]; the
//! server turns errors into the JSON error body and a panic into a 500. Each service lists its
//! routes once, as a table of `Route` rows (method, path, where it runs, handler); `dispatch`
//! answers from it, with a 405 for a listed path under another method and a 404 for the rest.
//! The 405 carries an `Allow` header listing the path's methods, from the same table.
//! `dispatch` also counts every request in the service's `metrics::Metrics`, by route pattern
//! and status (`GET /metrics`). A 503
//! "re-send with the same request_id" carries that id in its body and a `Request-Id` header.

pub(crate) mod client;
pub(crate) mod server;

use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{Data, ErrorBody};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub use client::Client;
pub use server::{Server, ServerOptions, REQUEST_ID_HEADER};

/// Largest request body accepted; larger ones get 413 (docs/spec.md §3).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A parsed request, body fully read.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// The path without the query string, e.g. `/stocks/GameStart`.
    pub path: String,
    /// The raw query string after `?`, if any.
    pub(crate) query: Option<String>,
    /// Header names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// An HTTP/1.0 request: its connection closes unless it asks for keep-alive.
    pub(crate) http_1_0: bool,
}

impl Request {
    /// Builds a request from a method and a target such as `/lookup?stock=X`.
    pub(crate) fn new(method: &str, target: &str, body: Vec<u8>) -> Request {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        Request {
            method: method.to_ascii_uppercase(),
            path,
            query,
            headers: Vec::new(),
            body,
            http_1_0: false,
        }
    }

    /// The non-empty path segments: `/stocks/GameStart` → `["stocks", "GameStart"]`.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// A query parameter. The reference client separates parameters with a literal `&amp;`,
    /// which splitting on `&` turns into a leading `amp;`: that is stripped.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let pair = pair.strip_prefix("amp;").unwrap_or(pair);
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| decode_segment(&value.replace('+', " ")))
        })
    }

    /// The first header with this (case-insensitive) name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Checks that the request carries the deployment's secret (`Authorization: Bearer ..`),
    /// for the endpoints that only services call. The comparison takes the same time wherever
    /// the first wrong byte is, so the secret cannot be guessed byte by byte from timings.
    pub(crate) fn require_secret(&self, secret: &str) -> Result<()> {
        let given = self
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if secret_matches(given, secret) {
            return Ok(());
        }
        log::warn!(
            "refused {} {}: missing or wrong deployment secret",
            self.method,
            self.path
        );
        Err(Error::Unauthorized(
            "this endpoint is for the bazaar's services: the deployment secret is missing or wrong"
                .into(),
        ))
    }

    /// Decodes the JSON body; a bad body is a 400 that says why.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::BadRequest(format!("malformed JSON body: {e}")))
    }
}

/// True if `given` is `secret`. The comparison takes the same time wherever the first wrong
/// byte is, so the secret cannot be guessed byte by byte from timings. Used for the HTTP
/// header ([`Request::require_secret`]) and the leader-selection lines alike.
/// Not the `subtle` crate's `ConstantTimeEq`: on slices it returns at once when the lengths
/// differ, and it would be a dependency for these eight lines, which also walk the longer of
/// the two.
pub(crate) fn secret_matches(given: &str, secret: &str) -> bool {
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes of a path segment; invalid escapes are kept as they are.
pub(crate) fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response ready to be written: status and body (JSON, except the front-end's page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// The `Allow` header of a 405: the methods the path has.
    pub allow: Option<String>,
    /// The `Request-Id` header of a 503 "re-send" ([`Error::Resend`]): the id to re-send with.
    pub request_id: Option<String>,
}

/// The content type of every API answer.
pub const JSON: &str = "application/json";

impl Response {
    /// 200 with `{"data": data}`.
    pub fn ok<T: Serialize>(data: T) -> Response {
        match serde_json::to_vec(&Data { data }) {
            Ok(body) => Response {
                status: 200,
                body,
                content_type: JSON,
                allow: None,
                request_id: None,
            },
            Err(e) => Response::error(&Error::Internal(format!("cannot encode response: {e}"))),
        }
    }

    /// The error's status with `{"error":{"code":C,"message":"..."}}` (and `"request_id"` in
    /// the body and a `Request-Id` header for an [`Error::Resend`]).
    pub(crate) fn error(err: &Error) -> Response {
        let body = serde_json::to_vec(&ErrorBody::from(err)).unwrap_or_else(|_| {
            br#"{"error":{"code":500,"message":"cannot encode error"}}"#.to_vec()
        });
        let allow = match err {
            Error::MethodNotAllowed(methods) if !methods.is_empty() => Some(methods.clone()),
            _ => None,
        };
        Response {
            status: err.status(),
            body,
            content_type: JSON,
            allow,
            request_id: err.request_id().map(str::to_string),
        }
    }

    /// 200 with a static body of another type (the front-end's HTML page).
    pub(crate) fn static_body(content_type: &'static str, body: &[u8]) -> Response {
        Response {
            status: 200,
            body: body.to_vec(),
            content_type,
            allow: None,
            request_id: None,
        }
    }
}

impl From<Result<Response>> for Response {
    fn from(result: Result<Response>) -> Self {
        result.unwrap_or_else(|e| Response::error(&e))
    }
}

/// Where a route's handler runs (see [`Handler::runs_inline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Runs {
    /// On the connection's thread: cheap, or must never queue behind slow requests.
    Inline,
    /// On the server's fixed pool.
    OnPool,
}

/// One row of a service's route table: method, path segments (`*` stands for any one
/// segment), where the handler runs, and the handler. The handler gets the service, the
/// request and the request's path segments, so `["stocks", "*"]` finds the name at index 1.
///
/// Each service has one table; routing, the 405 for a known path with another method, the 404
/// for an unknown path and [`Handler::runs_inline`] are all read from it, so a route is added
/// or removed in one place.
pub(crate) type Route<S> = (&'static str, &'static [&'static str], Runs, RouteFn<S>);

/// The handler of a [`Route`].
pub(crate) type RouteFn<S> = fn(&S, &Request, &[&str]) -> Result<Response>;

/// What a route table holds for a method and path.
enum Found<'t, S> {
    Route(&'t Route<S>),
    /// Rows have this path, none with this method: 405, with the methods they have.
    OtherMethod(Vec<&'static str>),
    /// No row has this path: 404.
    NoPath,
}

fn find<'t, S>(routes: &'t [Route<S>], method: &str, segments: &[&str]) -> Found<'t, S> {
    let mut allowed = Vec::new();
    for route in routes {
        let (m, path, _, _) = route;
        let same_path = path.len() == segments.len()
            && path.iter().zip(segments).all(|(p, s)| *p == "*" || p == s);
        if same_path {
            if *m == method {
                return Found::Route(route);
            }
            allowed.push(*m);
        }
    }
    if allowed.is_empty() {
        Found::NoPath
    } else {
        Found::OtherMethod(allowed)
    }
}

/// Answers `req` from the table `routes` of `service`, and counts it in `metrics` under its
/// route pattern (`GET /stocks/*`; `other` for a 404 or 405: never the raw path, whose values
/// a client chooses without bound).
pub(crate) fn dispatch<S>(
    routes: &[Route<S>],
    service: &S,
    metrics: &Metrics,
    req: &Request,
) -> Result<Response> {
    let started = Instant::now();
    let segments = req.segments();
    let (route, result) = match find(routes, &req.method, &segments) {
        Found::Route((method, path, _, handler)) => (
            format!("{method} /{}", path.join("/")),
            handler(service, req, &segments),
        ),
        Found::OtherMethod(allowed) => (
            "other".to_string(),
            Err(Error::MethodNotAllowed(allowed.join(", "))),
        ),
        Found::NoPath => (
            "other".to_string(),
            Err(Error::NotFound(format!("no such route: {}", req.path))),
        ),
    };
    let status = match &result {
        Ok(resp) => resp.status,
        Err(e) => e.status(),
    };
    metrics.observe_request(&route, status, started.elapsed());
    result
}

/// Whether the table runs `req` on its connection's thread; errors (404, 405) do not.
pub(crate) fn runs_inline<S>(routes: &[Route<S>], req: &Request) -> bool {
    let segments = req.segments();
    matches!(
        find(routes, &req.method, &segments),
        Found::Route((_, _, Runs::Inline, _))
    )
}

/// A service: one function from request to response. Implemented by each service's `route()`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> Result<Response>;

    /// True for a request that only touches memory and must never queue behind slow ones: it
    /// is answered on its connection's thread instead of the pool. The front-end uses it for
    /// the catalog's cache invalidations, which would otherwise wait for a pool thread held by
    /// an order that is itself waiting for that very invalidation.
    fn runs_inline(&self, _req: &Request) -> bool {
        false
    }
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Result<Response> + Send + Sync + 'static,
{
    fn handle(&self, req: &Request) -> Result<Response> {
        self(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_derives_405_with_allow_and_404() {
        const ROUTES: &[Route<()>] = &[
            ("GET", &["stocks", "*"], Runs::Inline, |_, _, path| {
                Ok(Response::ok(path[1]))
            }),
            ("POST", &["stocks", "*"], Runs::OnPool, |_, _, _| {
                Ok(Response::ok(()))
            }),
            ("GET", &[], Runs::OnPool, |_, _, _| Ok(Response::ok("page"))),
        ];
        let metrics = Metrics::new().unwrap();
        let call =
            |method, target| dispatch(ROUTES, &(), &metrics, &Request::new(method, target, vec![]));
        assert_eq!(call("GET", "/stocks/A").unwrap().body, br#"{"data":"A"}"#);
        assert_eq!(call("GET", "/").unwrap().body, br#"{"data":"page"}"#);
        let err = call("DELETE", "/stocks/A").unwrap_err();
        assert_eq!(err, Error::MethodNotAllowed("GET, POST".into()));
        assert_eq!(Response::error(&err).allow.as_deref(), Some("GET, POST"));
        assert_eq!(Response::error(&err).status, 405);
        let err = call("GET", "/stocks").unwrap_err();
        assert_eq!(err, Error::NotFound("no such route: /stocks".into()));
        assert_eq!(Response::error(&err).allow, None);
        let inline = |method, target| runs_inline(ROUTES, &Request::new(method, target, vec![]));
        assert!(inline("GET", "/stocks/A"));
        assert!(
            !inline("POST", "/stocks/A") && !inline("PUT", "/stocks/A") && !inline("GET", "/x")
        );
        let text = String::from_utf8_lossy(&metrics.render(|| {}).body).into_owned();
        for line in [
            r#"bazaar_http_requests_total{route="GET /stocks/*",status="200"} 1"#,
            r#"bazaar_http_requests_total{route="GET /",status="200"} 1"#,
            r#"bazaar_http_requests_total{route="other",status="405"} 1"#,
            r#"bazaar_http_requests_total{route="other",status="404"} 1"#,
        ] {
            assert!(text.contains(line), "no {line} in:\n{text}");
        }
    }

    #[test]
    fn query_params_table() {
        let cases = [
            ("/lookup?stock=GameStart", "stock", Some("GameStart")),
            (
                "/order?stock=X&amp;quantity=3&amp;type=buy",
                "quantity",
                Some("3"),
            ),
            (
                "/order?stock=X&amp;quantity=3&amp;type=buy",
                "type",
                Some("buy"),
            ),
            ("/order?stock=X&quantity=3&type=sell", "type", Some("sell")),
            ("/order?stock=Fish%43o", "stock", Some("FishCo")),
            ("/order?stock=a+b", "stock", Some("a b")),
            ("/order?stock=100%", "stock", Some("100%")),
            ("/order?stock=%zz", "stock", Some("%zz")),
            ("/order?stock=X", "type", None),
            ("/order", "stock", None),
        ];
        for (target, key, want) in cases {
            let req = Request::new("GET", target, Vec::new());
            assert_eq!(req.query_param(key).as_deref(), want, "{target} {key}");
        }
    }

    #[test]
    fn secret_matches_only_the_same_bytes() {
        assert!(secret_matches("s3cret", "s3cret"));
        for given in ["", "s3cre", "s3cret ", "S3cret", "s3cret\0", "x"] {
            assert!(!secret_matches(given, "s3cret"), "{given:?}");
        }
    }

    #[test]
    fn segments_skip_empty_parts() {
        let req = Request::new("get", "//stocks/GameStart/", Vec::new());
        assert_eq!(req.method, "GET");
        assert_eq!(req.segments(), vec!["stocks", "GameStart"]);
    }
}

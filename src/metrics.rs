//! `GET /metrics`: what every service tells an operator, in the Prometheus text format
//! (`text/plain; version=0.0.4`), written by the `prometheus` crate's encoder.
//!
//! Protocol: a plain `GET /metrics` on each service's HTTP port answers 200 with every metric
//! of that service instance. Each service instance owns one [`Metrics`] (its own registry, not
//! the crate's global one: tests run several services in one process). Every service counts
//! its requests in `http::dispatch`:
//!
//! - `bazaar_http_requests_total{route, status}`: requests answered, by route pattern
//!   (`GET /stocks/*`, never the raw path, so that the label's values stay few; `other` for a
//!   404 or 405) and HTTP status;
//! - `bazaar_http_request_duration_seconds{route}`: how long the handler took.
//!
//! and adds its own (README "Metrics" lists them): a replica's role, epoch, numbers, fsync and
//! batch-size histograms and leaderships; the catalog's applied number and journal size; the
//! front-end's cache counters, retries and fail-overs.
//!
//! Values that the services already keep (the replica's published status, the cache's
//! counters, the catalog's journal) are copied into the registry when a scrape asks
//! ([`Metrics::render`]), so the hot paths pay nothing for them; only the request counters,
//! the replica's two group-commit histograms and its leaderships are updated as things
//! happen (atomic adds, no lock held across I/O).
//!
//! **No secret.** `/metrics` is service information, not client data: counts, numbers and
//! timings, no order contents, no request ids, no stock names. The front-end's `/health`,
//! `/cache` and `/cluster` already show as much (and the replicas' `/health` more) without the
//! secret, and a Prometheus server would otherwise need the deployment secret in its config
//! file, which would spread it to one more place for nothing. An operator who does not want
//! the counts public keeps the ports unpublished, as for the rest of the services' ports.
//!
//! Caveats: the duration is the handler's time only (not the time waiting for a pool thread
//! or reading the request); a handler that panics (answered 500 by the server) is not
//! counted; counters start from zero at every restart, as Prometheus expects.

use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::error::{Error, Result};
use crate::http::Response;

/// The content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Buckets of request durations, seconds: from a memory read (~50 µs) to the front-end's
/// whole forwarding deadline (6 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One service instance's registry and request metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Scrapes one at a time: copying a counter (see [`mirror`]) reads then adds.
    scrape: Mutex<()>,
}

fn metric_error(e: prometheus::Error) -> Error {
    Error::Internal(format!("metrics: {e}"))
}

impl Metrics {
    /// A registry with the request metrics every service has.
    pub(crate) fn new() -> Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "bazaar_http_requests_total",
                "HTTP requests answered, by route pattern and status.",
            ),
            &["route", "status"],
        )
        .map_err(metric_error)?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "bazaar_http_request_duration_seconds",
                "Time the handler took, by route pattern.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .map_err(metric_error)?;
        let metrics = Metrics {
            registry,
            requests,
            latency,
            scrape: Mutex::new(()),
        };
        metrics.register(metrics.requests.clone())?;
        metrics.register(metrics.latency.clone())?;
        Ok(metrics)
    }

    fn register<C: prometheus::core::Collector + 'static>(&self, c: C) -> Result<()> {
        self.registry.register(Box::new(c)).map_err(metric_error)
    }

    /// A new gauge in this registry.
    pub(crate) fn gauge(&self, name: &str, help: &str) -> Result<IntGauge> {
        let g = IntGauge::new(name, help).map_err(metric_error)?;
        self.register(g.clone())?;
        Ok(g)
    }

    /// A new gauge with one label in this registry.
    pub(crate) fn gauge_vec(&self, name: &str, help: &str, label: &str) -> Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), &[label]).map_err(metric_error)?;
        self.register(g.clone())?;
        Ok(g)
    }

    /// A new counter in this registry.
    pub(crate) fn counter(&self, name: &str, help: &str) -> Result<IntCounter> {
        let c = IntCounter::new(name, help).map_err(metric_error)?;
        self.register(c.clone())?;
        Ok(c)
    }

    /// A new histogram in this registry.
    pub(crate) fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram> {
        let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .map_err(metric_error)?;
        self.register(h.clone())?;
        Ok(h)
    }

    /// Counts one answered request.
    pub(crate) fn observe_request(&self, route: &str, status: u16, took: Duration) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The text of every metric, after `refresh` has copied the service's current values in.
    pub(crate) fn render(&self, refresh: impl FnOnce()) -> Response {
        let text = {
            let _one = self.scrape.lock();
            refresh();
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&self.registry.gather(), &mut buf)
                .map(|()| buf)
        };
        match text {
            Ok(body) => Response::static_body(CONTENT_TYPE, &body),
            Err(e) => Response::error(&metric_error(e)),
        }
    }
}

/// Sets a counter to `value`, a total the service keeps itself (totals only grow, so the
/// difference is never negative; a smaller value, which cannot happen, leaves it as it is).
pub(crate) fn mirror(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

/// Converts a count to a gauge value (numbers here are far below `i64::MAX`).
pub(crate) fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Asserts that `resp` is a 200 in the text format naming every one of `names`.
    pub(crate) fn assert_exposes(resp: &Response, names: &[&str]) {
        assert_eq!(resp.status, 200);
        assert_eq!(resp.content_type, CONTENT_TYPE);
        let text = String::from_utf8_lossy(&resp.body);
        for name in names {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# TYPE {name} "))),
                "no {name} in:\n{text}"
            );
        }
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = Metrics::new().unwrap();
        m.observe_request("GET /stocks/*", 200, Duration::from_millis(2));
        m.observe_request("GET /stocks/*", 200, Duration::from_millis(3));
        m.observe_request("other", 404, Duration::from_millis(1));
        let c = m.counter("bazaar_test_total", "a test").unwrap();
        mirror(&c, 7);
        mirror(&c, 9);
        let resp = m.render(|| {});
        assert_exposes(
            &resp,
            &[
                "bazaar_http_requests_total",
                "bazaar_http_request_duration_seconds",
                "bazaar_test_total",
            ],
        );
        let text = String::from_utf8_lossy(&resp.body);
        assert!(
            text.contains(r#"bazaar_http_requests_total{route="GET /stocks/*",status="200"} 2"#)
        );
        assert!(text.contains(r#"bazaar_http_requests_total{route="other",status="404"} 1"#));
        assert!(text.contains("bazaar_test_total 9"));
    }
}

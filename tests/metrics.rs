//! `GET /metrics` end to end, on real processes (docs/spec.md §1).
//!
//! - `every_service_answers_metrics`: each of the five services answers 200 in the Prometheus
//!   text format with its own metric names; the leader's show its role, its group commits
//!   and the orders placed.
//! - `prometheus_scrapes_every_service`: a real Prometheus server (Debian's `prometheus`)
//!   scrapes the five services on their run-time ports and answers queries for a replica
//!   metric and a front-end metric through its HTTP API. Skipped, saying so, when the
//!   `prometheus` binary is absent, unless `BAZAAR_REQUIRE_PROMETHEUS=1` (set by `.ci/run`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bazaar::api::OrderType;
use bazaar::testkit::cluster::order_request;
use common::{Cluster, Options, Process, CALL_TIMEOUT};

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// How often the test's Prometheus scrapes (its config's `scrape_interval`).
const SCRAPE_INTERVAL: &str = "1s";

/// How long Prometheus may take to start and answer `/-/ready` on a loaded machine.
const PROMETHEUS_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a query may take to show the scraped values (a few scrape intervals, plus slack).
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to poll Prometheus between attempts.
const PROMETHEUS_POLL: Duration = Duration::from_millis(250);

/// Timeout of one call to Prometheus's HTTP API.
const PROMETHEUS_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Orders the tests place.
const ORDERS: u64 = 3;

/// `GET target` on a fresh connection: status, content type and body.
fn get(addr: &str, target: &str) -> (u16, String, String) {
    let got = bazaar::testkit::raw::exchange(addr, "GET", target, "", "", CALL_TIMEOUT)
        .unwrap_or_else(|e| panic!("GET {addr}{target}: {e}"));
    let content_type = got.header("content-type").unwrap_or_default().to_string();
    (
        got.status,
        content_type,
        String::from_utf8_lossy(&got.body).into_owned(),
    )
}

/// A bazaar with a leader, `ORDERS` orders placed and one stock looked up twice.
fn busy_bazaar() -> Cluster {
    let cluster = common::start(Options::default());
    let stocks = cluster.stocks().expect("stocks");
    let name = stocks.keys().next().expect("a stock").clone();
    for _ in 0..ORDERS {
        cluster
            .place_order(0, &order_request(&name, 1, OrderType::Sell, None))
            .expect("order");
    }
    let fe = cluster.http_addr(Process::FRONTEND);
    for _ in 0..2 {
        assert_eq!(get(&fe, &format!("/stocks/{name}")).0, 200);
    }
    cluster
}

/// The value of the sample line `series` (exact name and labels) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn every_service_answers_metrics() {
    let cluster = busy_bazaar();
    let leader = cluster.wait_leader().expect("leader");
    let common_names = [
        "bazaar_http_requests_total",
        "bazaar_http_request_duration_seconds",
    ];
    for process in Process::ALL {
        let own: &[&str] = match process {
            Process::Frontend(_) => &[
                "bazaar_frontend_cache_hits_total",
                "bazaar_frontend_cache_misses_total",
                "bazaar_frontend_cache_evictions_total",
                "bazaar_frontend_cache_invalidations_total",
                "bazaar_frontend_order_retries_total",
                "bazaar_frontend_failovers_total",
            ],
            Process::Catalog => &[
                "bazaar_catalog_applied_number",
                "bazaar_catalog_journal_lines",
                "bazaar_catalog_journal_bytes",
            ],
            Process::Order(_) => &[
                "bazaar_replica_role",
                "bazaar_replica_epoch",
                "bazaar_replica_last_number",
                "bazaar_replica_commit_number",
                "bazaar_replica_applied_number",
                "bazaar_replica_fsync_seconds",
                "bazaar_replica_sync_batch_orders",
                "bazaar_replica_leaderships_total",
            ],
        };
        let (status, content_type, text) = get(&cluster.http_addr(process), "/metrics");
        assert_eq!(status, 200, "{process:?}: {text}");
        assert_eq!(content_type, TEXT_FORMAT, "{process:?}");
        for name in common_names.iter().chain(own) {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{process:?} has no {name}:\n{text}"
            );
        }
    }
    let last = (ORDERS - 1) as f64;
    let (_, _, text) = get(&cluster.http_addr(Process::Order(leader)), "/metrics");
    assert_eq!(
        sample(&text, r#"bazaar_replica_role{role="leader"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "bazaar_replica_last_number"),
        Some(last),
        "{text}"
    );
    assert!(
        sample(&text, "bazaar_replica_leaderships_total") >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "bazaar_replica_fsync_seconds_count") >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"bazaar_http_requests_total{route="POST /orders",status="200"}"#
        ) >= Some(ORDERS as f64),
        "{text}"
    );
    let (_, _, text) = get(&cluster.http_addr(Process::Catalog), "/metrics");
    assert_eq!(
        sample(&text, "bazaar_catalog_applied_number"),
        Some(last),
        "{text}"
    );
    let (_, _, text) = get(&cluster.http_addr(Process::FRONTEND), "/metrics");
    // Two lookups: the first a miss; the second a hit unless the cache lease (1 s) ran out
    // in between on a loaded machine.
    let hits = sample(&text, "bazaar_frontend_cache_hits_total");
    let misses = sample(&text, "bazaar_frontend_cache_misses_total");
    assert!(misses >= Some(1.0), "{text}");
    assert_eq!(hits.zip(misses).map(|(h, m)| h + m), Some(2.0), "{text}");
    assert!(
        sample(
            &text,
            r#"bazaar_http_requests_total{route="GET /stocks/*",status="200"}"#
        ) == Some(2.0),
        "{text}"
    );
}

/// A Prometheus server of the test, killed and reaped on drop.
struct Prometheus {
    child: Child,
    addr: String,
    /// Holds its config, its TSDB and its log until the end.
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping each of `targets` (job name, address), or `None` when the
    /// binary is not installed.
    fn start(targets: &[(String, String)]) -> Option<Prometheus> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config =
            format!("global:\n  scrape_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n");
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let port = bazaar::local::free_ports(1).expect("a free port")[0];
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let spawned = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("cannot start prometheus: {e}"),
        };
        Some(Prometheus { child, addr, dir })
    }

    fn log(&self) -> String {
        common::read(&self.dir.path().join("prometheus.log"))
    }

    /// The body of `GET path` on its HTTP API, `None` on any failure.
    fn call(&self, path: &str) -> Option<String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(PROMETHEUS_CALL_TIMEOUT))
            .build()
            .new_agent();
        let mut resp = agent
            .get(format!("http://{}{path}", self.addr))
            .call()
            .ok()?;
        resp.body_mut().read_to_string().ok()
    }

    /// The values an instant query answers (one per series), `None` on any failure.
    fn query(&self, query: &str) -> Option<Vec<f64>> {
        let body = self.call(&format!("/api/v1/query?query={}", encode(query)))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        if json["status"] != "success" {
            return None;
        }
        json["data"]["result"]
            .as_array()?
            .iter()
            .map(|r| r["value"][1].as_str()?.parse().ok())
            .collect()
    }
}

/// Percent-encodes a query for the query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn installed(binary: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| Path::new(&d).join(binary).is_file())
    })
}

#[test]
fn prometheus_scrapes_every_service() {
    if !installed("prometheus") {
        assert!(
            !std::env::var("BAZAAR_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1"),
            "BAZAAR_REQUIRE_PROMETHEUS=1 but no prometheus binary is on PATH"
        );
        eprintln!("skipped: no prometheus binary on PATH (apt-get install prometheus)");
        return;
    }
    let cluster = busy_bazaar();
    let targets: Vec<(String, String)> = Process::ALL
        .iter()
        .map(|p| (p.name(), cluster.http_addr(*p)))
        .collect();
    let prometheus = Prometheus::start(&targets).expect("prometheus is on PATH");
    let ready = common::poll(PROMETHEUS_READY_TIMEOUT, PROMETHEUS_POLL, || {
        prometheus.call("/-/ready")
    });
    assert!(
        ready.is_some(),
        "prometheus not ready:\n{}",
        prometheus.log()
    );

    // Every one of the five targets scraped successfully.
    let up = common::poll(QUERY_TIMEOUT, PROMETHEUS_POLL, || {
        prometheus
            .query("sum(up)")
            .filter(|v| v == &[targets.len() as f64])
    });
    assert!(
        up.is_some(),
        "not all {} targets up: {:?}\n{}",
        targets.len(),
        prometheus.query("up"),
        prometheus.log()
    );
    // A replica metric: some replica holds the orders placed.
    let last = (ORDERS - 1) as f64;
    let replica = common::poll(QUERY_TIMEOUT, PROMETHEUS_POLL, || {
        prometheus
            .query("max(bazaar_replica_last_number)")
            .filter(|v| v == &[last])
    });
    assert!(
        replica.is_some(),
        "no replica metric: {:?}",
        prometheus.query("bazaar_replica_last_number")
    );
    // A front-end metric: its cache counted the two lookups (hits plus misses).
    let frontend = common::poll(QUERY_TIMEOUT, PROMETHEUS_POLL, || {
        prometheus
            .query(concat!(
                r#"bazaar_frontend_cache_hits_total{job="frontend"}"#,
                r#" + bazaar_frontend_cache_misses_total{job="frontend"}"#
            ))
            .filter(|v| v == &[2.0])
    });
    assert!(
        frontend.is_some(),
        "no front-end metric: {:?}",
        prometheus.query(r#"{__name__=~"bazaar_frontend_cache_.*"}"#)
    );
}

//! Test data shared by the modules' unit tests: latency points, options, a setting, a
//! fail-over phase with one fault.
//!
//! Caveats: the figures are made up to exercise the report's wording (rising and falling
//! means, overlapping ranges); they are not measurements.

use crate::failover::{ClientRun, Failover, Fault, Sample};
use crate::options::EvalOptions;
use crate::stats::{spread, CacheCount, ClientJson, Lat, Point, Run, Spread};
use crate::Setting;

pub(crate) fn lat(mean: f64) -> Lat {
    Lat {
        mean,
        p50: mean,
        p99: 2.0 * mean,
        max: 3.0 * mean,
    }
}

/// A point whose runs have these mean latencies (every request type alike) and, with the
/// cache on, these hits per 100 lookups.
pub(crate) fn point(p: f64, cache: bool, orders: u64, means: &[f64], hits: &[u64]) -> Point {
    let runs = means
        .iter()
        .enumerate()
        .map(|(i, &m)| Run {
            result: ClientJson {
                lookups: 100,
                orders,
                order_queries: orders,
                rejected: 1.min(orders),
                lookup_ms: lat(m),
                order_ms: lat(m),
                query_ms: lat(m),
                ..ClientJson::default()
            },
            seconds: 1.0,
            cache: cache.then(|| CacheCount {
                hits: hits.get(i).copied().unwrap_or(50),
                misses: 100 - hits.get(i).copied().unwrap_or(50),
            }),
        })
        .collect();
    Point { p, cache, runs }
}

pub(crate) fn options(probs: &[f64]) -> EvalOptions {
    EvalOptions {
        run_sh: "run.sh".into(),
        client: "client".into(),
        bin_dir: ".".into(),
        out_dir: ".".into(),
        probs: probs.to_vec(),
        repeats: 3,
        clients: 5,
        n_request: 100,
        seed: 42,
        trace_cache_size: 6,
        trace_requests: 60,
        skip_failover: false,
        remote: None,
    }
}

pub(crate) fn setting() -> Setting {
    Setting {
        stocks: 20,
        capacity: Some(5),
        cores: 8,
        load: Some(0.5),
    }
}

pub(crate) fn s(values: &[f64]) -> Spread {
    spread(values.iter().copied()).unwrap()
}

pub(crate) fn failover(errors: u64) -> Failover {
    let run = |start_s: f64, end_s: f64, longest: f64, errors: u64| ClientRun {
        start_s,
        end_s,
        result: ClientJson {
            lookups: 500,
            orders: 250,
            order_queries: 250,
            errors,
            retries: 1,
            order_ms: Lat {
                mean: 3.0,
                p50: 3.0,
                p99: 5.0,
                max: longest,
            },
            ..ClientJson::default()
        },
    };
    Failover {
        faults: vec![Fault {
            what: "kill -9 the leader (order-3), restarted 3.0 s later".into(),
            label: "leader killed",
            leader_before: Some(3),
            leader_after: Some(2),
            new_leader_ms: Some(800.0),
            catch_up_ms: 50.0,
            frontend_retries: Some(4),
            down_s: 2.0,
            up_s: 5.0,
        }],
        runs: vec![
            run(0.0, 1.0, 9.0, 0),
            run(1.0, 3.0, 900.0, errors),
            run(7.0, 8.0, 8.0, 0),
        ],
        timeline: vec![
            Sample {
                at_s: 0.5,
                ms: 4.0,
                ok: true,
            },
            Sample {
                at_s: 2.5,
                ms: 700.0,
                ok: true,
            },
            // Sent just before the kill, answered after the fail-over: the fault's.
            Sample {
                at_s: 1.9,
                ms: 950.0,
                ok: true,
            },
        ],
        replicas: 3,
        identical: true,
        seconds: 8.0,
        ..Failover::default()
    }
}

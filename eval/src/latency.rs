//! Phase 1: latency against the order probability p, with the cache on and off (or, against a
//! remote deployment, with its own setting): `repeats` client runs per (p, cache) point, the
//! same seeds for on and off, and the front-end's hit and miss counters before and after each
//! run; a progress line per run on stderr; `latency.csv`, one row per run and request type.
//!
//! Caveats:
//!
//! - Stock quantities carry over from one run to the next within a bazaar (one bazaar per cache
//!   setting), so the share of refused (409) buys can differ slightly between on and off.
//! - The hit ratio comes from the front-end's counters, which count every lookup it served:
//!   against a deployment that others use at the same time, it includes their lookups.
//! - Rows with no sample (orders and order queries at p = 0) are left out of the CSV.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use bazaar::error::Result;

use crate::driver::{Bazaar, BazaarSpec, Target, CACHE_SIZE};
use crate::options::{fmt_prob, EvalOptions};
use crate::stats::{CacheCount, Point, Run, KINDS};
use crate::Setting;

pub(crate) fn latency_phase(
    options: &EvalOptions,
    work: &Path,
    setting: &mut Setting,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    if let Some(addr) = &options.remote {
        let target = Target::new(addr);
        let stats = target.cache_stats()?;
        setting.stocks = target.stock_count()?;
        setting.capacity = stats.enabled.then_some(stats.capacity);
        let total = options.probs.len() * options.repeats;
        measure_series(options, &target, stats.enabled, total, &mut points)?;
        return Ok(points);
    }
    let total = 2 * options.probs.len() * options.repeats;
    for cache in [true, false] {
        let spec = BazaarSpec {
            tag: if cache {
                "latency-cache-on"
            } else {
                "latency-cache-off"
            },
            cache,
            cache_size: CACHE_SIZE,
            dump: false,
        };
        let bazaar = Bazaar::up(options, work, &spec)?;
        if cache {
            setting.stocks = bazaar.target.stock_count()?;
            setting.capacity = Some(bazaar.target.cache_stats()?.capacity);
        }
        measure_series(options, &bazaar.target, cache, total, &mut points)?;
    }
    Ok(points)
}

/// Every p, `repeats` runs each, against one front-end; appends one point per p.
fn measure_series(
    options: &EvalOptions,
    target: &Target,
    cache: bool,
    total: usize,
    points: &mut Vec<Point>,
) -> Result<()> {
    let done = points.iter().map(|p| p.runs.len()).sum::<usize>();
    for (i, &p) in options.probs.iter().enumerate() {
        let mut runs = Vec::with_capacity(options.repeats);
        for repeat in 0..options.repeats {
            // The same seeds for on and off: both ask the same sequences of lookups and orders.
            let seed = options
                .seed
                .wrapping_add(1000 * i as u64)
                .wrapping_add(repeat as u64);
            let before = target.cache_stats().ok();
            let started = Instant::now();
            let result =
                target.client_run(&options.client, options.clients, p, seed, options.n_request)?;
            let seconds = started.elapsed().as_secs_f64();
            let after = target.cache_stats().ok();
            let counts = before.zip(after).map(|(b, a)| CacheCount {
                hits: a.hits.saturating_sub(b.hits),
                misses: a.misses.saturating_sub(b.misses),
            });
            eprintln!(
                "eval [{:>2}/{total}] p={} cache {:<3} run {}: {} lookups {:.2} ms, {} orders {:.2} ms, \
                 {} order queries {:.2} ms (mean); hit ratio {}; {} errors; {seconds:.1} s",
                done + i * options.repeats + repeat + 1,
                fmt_prob(p),
                on_off(cache),
                repeat + 1,
                result.lookups,
                result.lookup_ms.mean,
                result.orders,
                result.order_ms.mean,
                result.order_queries,
                result.query_ms.mean,
                counts
                    .filter(|_| cache)
                    .and_then(CacheCount::ratio)
                    .map(|r| format!("{:.0}%", 100.0 * r))
                    .unwrap_or_else(|| "–".into()),
                result.errors,
            );
            runs.push(Run {
                result,
                seconds,
                cache: counts,
            });
        }
        points.push(Point { p, cache, runs });
    }
    Ok(())
}

pub(crate) fn on_off(cache: bool) -> &'static str {
    if cache {
        "on"
    } else {
        "off"
    }
}

/// The CSV's header: one row per run and request type with samples; the cache's hits and
/// misses of the run are on its lookup row.
const CSV_HEADER: &str =
    "p,cache,run,type,mean_ms,p50_ms,p99_ms,max_ms,count,cache_hits,cache_misses";

pub(crate) fn latency_csv(points: &[Point]) -> String {
    let mut csv = format!("{CSV_HEADER}\n");
    for point in points {
        for (run_index, run) in point.runs.iter().enumerate() {
            for (kind, (lat, count)) in run.result.rows().into_iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let (hits, misses) = match (kind, run.cache) {
                    (0, Some(c)) => (c.hits.to_string(), c.misses.to_string()),
                    _ => (String::new(), String::new()),
                };
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{count},{hits},{misses}",
                    fmt_prob(point.p),
                    on_off(point.cache),
                    run_index + 1,
                    KINDS[kind].1,
                    lat.mean,
                    lat.p50,
                    lat.p99,
                    lat.max,
                );
            }
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::point;

    #[test]
    fn csv_has_one_row_per_run_and_type() {
        let csv = latency_csv(&[
            point(0.0, true, 0, &[1.5], &[40]),
            point(0.25, false, 3, &[1.5, 2.0], &[]),
        ]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            &lines[1..],
            [
                "0,on,1,lookup,1.500,1.500,3.000,4.500,100,40,60",
                "0.25,off,1,lookup,1.500,1.500,3.000,4.500,100,,",
                "0.25,off,1,order,1.500,1.500,3.000,4.500,2,,",
                "0.25,off,1,order_query,1.500,1.500,3.000,4.500,3,,",
                "0.25,off,2,lookup,2.000,2.000,4.000,6.000,100,,",
                "0.25,off,2,order,2.000,2.000,4.000,6.000,2,,",
                "0.25,off,2,order_query,2.000,2.000,4.000,6.000,3,,",
            ]
        );
    }
}

//! The latency section of the report: the table of every (p, cache) point and "What it
//! shows", one bullet per finding (the cache against no cache, the hit ratio and its bound,
//! how p moves each request type, the cache and orders, order queries against lookups).
//!
//! Caveats:
//!
//! - Each bullet is written only when its data exists (both cache settings, more than one p,
//!   a hit ratio); with one run per point the section says there is no spread first.
//! - "Averaged over every p" is the plain mean of the points' means, not weighted by requests.

use std::fmt::Write as _;

use super::ratio_text;
use crate::latency::on_off;
use crate::options::{fmt_prob, EvalOptions};
use crate::stats::{compare, ms_text, pct_text, spread, trend, Change, Point, Spread, Stat};
use crate::Setting;

pub(crate) fn latency_report(
    md: &mut String,
    options: &EvalOptions,
    setting: &Setting,
    points: &[Point],
) {
    let settings: Vec<bool> = [true, false]
        .into_iter()
        .filter(|&c| points.iter().any(|p| p.cache == c))
        .collect();
    let heading = match settings.as_slice() {
        [true, false] => "cache on and off".to_string(),
        [c] => format!("cache {} (the deployment's setting)", on_off(*c)),
        _ => "no points".to_string(),
    };
    let _ = writeln!(md, "## Latency against p, {heading}\n");
    let _ = writeln!(md, "![latency against p](latency.svg)\n");
    let _ = writeln!(
        md,
        "Data: [latency.csv](latency.csv), one row per run and request type (`count` is the \
         number of timed requests: refused (409) orders are not timed; rows without samples, \
         orders and order queries at p = 0, are left out; `cache_hits` and `cache_misses` are the \
         front-end's counters over the run, on its lookup row). Below, each figure is the mean \
         over the runs of a point, with the lowest and highest run in parentheses; the hit ratio \
         is hits / (hits + misses) of the front-end over each run.\n"
    );
    let _ = writeln!(
        md,
        "| p | cache | lookup mean ms | lookup p99 ms | order mean ms | order p99 ms | order query mean ms | order query p99 ms | hit ratio | lookups | orders (refused) | errors | s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for pt in points {
        let cell = |kind: usize, stat: Stat| {
            pt.lat(kind, stat)
                .map(|s| ms_text(&s).replace(" ms", ""))
                .unwrap_or_else(|| "–".into())
        };
        let total = pt.total();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {:.1} |",
            fmt_prob(pt.p),
            on_off(pt.cache),
            cell(0, |l| l.mean),
            cell(0, |l| l.p99),
            cell(1, |l| l.mean),
            cell(1, |l| l.p99),
            cell(2, |l| l.mean),
            cell(2, |l| l.p99),
            pt.hit_ratio()
                .map(|s| pct_text(&s))
                .unwrap_or_else(|| "–".into()),
            total.lookups,
            total.orders,
            total.rejected,
            total.errors,
            pt.runs.iter().map(|r| r.seconds).sum::<f64>(),
        );
    }
    let _ = writeln!(md, "\n### What it shows\n");
    for line in latency_analysis(options, setting, points) {
        let _ = writeln!(md, "- {line}");
    }
}

/// The analysis of the latency phase, one bullet per finding, each from the data.
fn latency_analysis(options: &EvalOptions, setting: &Setting, points: &[Point]) -> Vec<String> {
    let mut out = Vec::new();
    let runs = options.repeats;
    if runs < 2 {
        out.push(
            "One run per point: no run-to-run spread was measured, so every difference below is \
             a single sample's."
                .into(),
        );
    }
    let both = points.iter().any(|p| p.cache) && points.iter().any(|p| !p.cache);
    if both {
        out.push(cache_and_lookups(points));
    }
    out.extend(hit_ratio(setting, points));
    out.extend(how_p_moves(points, both));
    if both {
        out.extend(cache_and_orders(points));
    }
    out.extend(queries_and_lookups(points));
    out
}

/// The mean latency of one request type at every p measured with this cache setting.
fn mean_series(points: &[Point], cache: bool, kind: usize) -> Vec<(f64, Spread)> {
    points
        .iter()
        .filter(|p| p.cache == cache)
        .filter_map(|p| p.lat(kind, |l| l.mean).map(|s| (p.p, s)))
        .collect()
}

/// The cache against no cache for lookups, p by p and on average.
fn cache_and_lookups(points: &[Point]) -> String {
    let (on, off) = (mean_series(points, true, 0), mean_series(points, false, 0));
    let tally = tally_pairs(&on, &off);
    let avg =
        |s: &[(f64, Spread)]| s.iter().map(|(_, s)| s.mean).sum::<f64>() / s.len().max(1) as f64;
    let (avg_on, avg_off) = (avg(&on), avg(&off));
    let mut text = format!(
        "**The cache and lookups.** {}. Averaged over every p, a lookup took {avg_on:.2} ms \
         with the cache and {avg_off:.2} ms without ({}).",
        tally.describe("a lookup", "with the cache than without"),
        ratio_text(avg_on, avg_off)
    );
    if tally.lower > 0 {
        text.push_str(
            " A hit is answered by the front-end alone; a miss costs one more HTTP hop to the \
             catalog, which is what the cache saves.",
        );
    } else {
        text.push_str(
            " The hop to the catalog that a hit saves did not show beyond the spread here.",
        );
    }
    text
}

/// The hit ratio at each p, against the bound the cache's size sets, and its trend.
fn hit_ratio(setting: &Setting, points: &[Point]) -> Option<String> {
    let ratios: Vec<(f64, Spread)> = points
        .iter()
        .filter_map(|p| p.hit_ratio().map(|s| (p.p, s)))
        .collect();
    let (Some(&first), Some(&last)) = (ratios.first(), ratios.last()) else {
        return None;
    };
    let bound = match setting.capacity {
        Some(c) if setting.stocks > 0 && c < setting.stocks => format!(
            "The catalog lists {} stocks and the cache holds {c} entries, so with the \
             client's uniform choice of stock at most about {c}/{} = {:.0}% of the lookups \
             can hit, even with no trade.",
            setting.stocks,
            setting.stocks,
            100.0 * c as f64 / setting.stocks as f64
        ),
        Some(c) => format!(
            "The cache holds {c} entries, enough for all {} stocks, so with no trade every \
             lookup but the first of each stock can hit.",
            setting.stocks
        ),
        None => String::new(),
    };
    let per_p = ratios
        .iter()
        .map(|(p, s)| format!("{} at p = {}", pct_text(s), fmt_prob(*p)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!("**Hit ratio.** {bound} Measured: {per_p}.");
    if ratios.len() > 1 {
        let _ = write!(
            text,
            " From the lowest p to the highest it {}.",
            trend(first, last, pct_text)
        );
        text.push_str(match compare(&first.1, &last.1) {
            Change::Lower => {
                " Every trade invalidates its stock's entry, so the more orders, the more \
                 lookups miss."
            }
            Change::Higher => " It rose although more trades invalidate more entries.",
            Change::Within => "",
        });
    }
    Some(text)
}

/// How p moves the mean latency of each request type, with and without the cache.
fn how_p_moves(points: &[Point], both: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, name) in [(0, "lookup"), (1, "order"), (2, "order query")] {
        let mut parts = Vec::new();
        for cache in [true, false] {
            let s = mean_series(points, cache, kind);
            if let (Some(&first), Some(&last)) = (s.first(), s.last()) {
                if s.len() > 1 {
                    let with = if both {
                        format!("{} the cache ", if cache { "with" } else { "without" })
                    } else {
                        String::new()
                    };
                    parts.push(format!("{with}it {}", trend(first, last, ms_text)));
                }
            }
        }
        if !parts.is_empty() {
            let title = match kind {
                0 => "**How p moves lookups.**",
                1 => "**How p moves orders.**",
                _ => "**How p moves order queries.**",
            };
            out.push(format!(
                "{title} The mean {name} latency: {}.",
                parts.join("; ")
            ));
        }
    }
    out
}

/// The cache against no cache for orders (it is not on their path).
fn cache_and_orders(points: &[Point]) -> Option<String> {
    let tally = tally_pairs(
        &mean_series(points, true, 1),
        &mean_series(points, false, 1),
    );
    if tally.count() == 0 {
        return None;
    }
    Some(format!(
        "**The cache and orders.** The cache is not on the order path. {}.{}",
        tally.describe("an order", "with the cache than without"),
        if tally.lower > tally.count() / 2 {
            " Without the cache every lookup goes to the catalog too, the service that \
             also applies every trade, so orders wait behind lookups there."
        } else {
            ""
        }
    ))
}

/// Order queries (answered by the leader) against lookups without the cache (by the catalog).
fn queries_and_lookups(points: &[Point]) -> Option<String> {
    let query = spread(
        points
            .iter()
            .filter_map(|p| p.lat(2, |l| l.mean).map(|s| s.mean)),
    );
    let uncached = spread(
        points
            .iter()
            .filter(|p| !p.cache)
            .filter_map(|p| p.lat(0, |l| l.mean).map(|s| s.mean)),
    );
    let (Some(q), Some(l)) = (query, uncached) else {
        return None;
    };
    Some(format!(
        "**Order queries** (one forward to the leader, answered from its memory) took \
         {:.2} ms on average over every p and cache setting; a lookup without the cache \
         (one forward to the catalog) {:.2} ms: the query took {}.",
        q.mean,
        l.mean,
        ratio_text(q.mean, l.mean).replace("with the cache", "than the lookup")
    ))
}

/// How often a first series was lower, higher or within the spread of a second, p by p.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    lower: usize,
    higher: usize,
    within: usize,
}

impl Tally {
    fn count(&self) -> usize {
        self.lower + self.higher + self.within
    }

    /// E.g. "At 4 of 5 values of p a lookup was faster with the cache than without, beyond
    /// the run-to-run spread; at 1 the difference was within it".
    fn describe(&self, what: &str, how: &str) -> String {
        let n = self.count();
        if n == 0 {
            return format!("No value of p measured {what} both ways");
        }
        let mut parts = Vec::new();
        // The first part names the subject; the others go on with "it".
        let mut subject = format!("{what} was");
        let mut next = |parts: &mut Vec<String>, k: usize, verdict: &str| {
            let at = if parts.is_empty() {
                format!("At {k} of {n} values of p")
            } else {
                format!("at {k}")
            };
            parts.push(format!("{at} {subject} {verdict}"));
            subject = "it was".into();
        };
        if self.lower > 0 {
            next(
                &mut parts,
                self.lower,
                &format!("faster {how}, beyond the run-to-run spread"),
            );
        }
        if self.higher > 0 {
            next(
                &mut parts,
                self.higher,
                &format!("slower {how}, beyond the run-to-run spread"),
            );
        }
        if self.within > 0 {
            let at = if parts.is_empty() {
                format!("At {} of {n} values of p", self.within)
            } else {
                format!("at {}", self.within)
            };
            parts.push(format!(
                "{at} the difference{} was within the run-to-run spread",
                if parts.is_empty() {
                    format!(" for {what}")
                } else {
                    String::new()
                }
            ));
        }
        parts.join("; ")
    }
}

/// `a` against `b` at every p both measured.
fn tally_pairs(a: &[(f64, Spread)], b: &[(f64, Spread)]) -> Tally {
    let mut tally = Tally::default();
    for (p, sa) in a {
        if let Some((_, sb)) = b.iter().find(|(q, _)| q == p) {
            match compare(sb, sa) {
                Change::Lower => tally.lower += 1,
                Change::Higher => tally.higher += 1,
                Change::Within => tally.within += 1,
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{options, point, setting};

    #[test]
    fn analysis_follows_the_data() {
        // Lookups and orders fall with p, with and without the cache: the text must say so.
        let points = vec![
            point(0.25, true, 10, &[3.0, 3.1, 3.2], &[30, 31, 29]),
            point(0.5, true, 20, &[2.0, 2.1, 2.2], &[10, 12, 11]),
            point(0.25, false, 10, &[4.0, 4.1, 4.2], &[]),
            point(0.5, false, 20, &[2.1, 2.2, 2.3], &[]),
        ];
        let text = latency_analysis(&options(&[0.25, 0.5]), &setting(), &points).join("\n");
        assert!(!text.contains("rose"), "{text}");
        assert!(
            text.contains("lookup latency: with the cache it fell from 3.10 ms"),
            "{text}"
        );
        assert!(
            text.contains("without the cache it fell from 4.10 ms"),
            "{text}"
        );
        assert!(
            text.contains("20 stocks and the cache holds 5 entries"),
            "{text}"
        );
        assert!(text.contains("5/20 = 25%"), "{text}");
        assert!(text.contains("30% (29–31%) at p = 0.25"), "{text}");
        // Cache on vs off: lower at p = 0.25, within the spread at p = 0.5.
        assert!(
            text.contains("At 1 of 2 values of p a lookup was faster"),
            "{text}"
        );
        assert!(text.contains("at 1 the difference was within"), "{text}");
        assert!(
            !text.contains("14 stocks") && !text.contains("two cores"),
            "{text}"
        );

        // The same with rising latencies.
        let rising = vec![
            point(0.25, true, 10, &[1.0, 1.1], &[]),
            point(0.5, true, 20, &[2.0, 2.1], &[]),
        ];
        let text = latency_analysis(&options(&[0.25, 0.5]), &setting(), &rising).join("\n");
        assert!(text.contains("it rose from 1.05 ms"), "{text}");
        assert!(!text.contains("fell"), "{text}");
    }

    #[test]
    fn tally_names_its_subject_once() {
        let slower = Tally {
            higher: 2,
            ..Tally::default()
        };
        assert_eq!(
            slower.describe("an order", "with the cache than without"),
            "At 2 of 2 values of p an order was slower with the cache than without, beyond the \
             run-to-run spread"
        );
        let mixed = Tally {
            lower: 1,
            higher: 1,
            within: 3,
        };
        assert_eq!(
            mixed.describe("a lookup", "with the cache than without"),
            "At 1 of 5 values of p a lookup was faster with the cache than without, beyond the \
             run-to-run spread; at 1 it was slower with the cache than without, beyond the \
             run-to-run spread; at 3 the difference was within the run-to-run spread"
        );
        let within = Tally {
            within: 2,
            ..Tally::default()
        };
        assert_eq!(
            within.describe("a lookup", "x"),
            "At 2 of 2 values of p the difference for a lookup was within the run-to-run spread"
        );
    }

    #[test]
    fn one_run_per_point_says_there_is_no_spread() {
        let mut o = options(&[0.0, 0.5]);
        o.repeats = 1;
        let points = vec![
            point(0.0, true, 0, &[1.0], &[]),
            point(0.5, true, 4, &[1.0], &[]),
        ];
        let text = latency_analysis(&o, &setting(), &points).join("\n");
        assert!(text.contains("no run-to-run spread"), "{text}");
    }
}

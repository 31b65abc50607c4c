//! The README of `docs/eval/`: the setting, then one section per phase, every figure and every
//! comparison computed from the measurements, the bazaar's own answers (stock count, cache
//! capacity) and the machine (core count, load average). Two means differ ("rose", "fell",
//! "lower") only when the ranges of their runs do not overlap; otherwise the report says the
//! difference is within the run-to-run spread.
//!
//! The latency section is [`latency`], the fail-over section [`failover`]; the frame and the
//! cache-over-time section are here.
//!
//! Caveats:
//!
//! - The text is English prose assembled from parts; tests pin the sentences that matter
//!   (`eval/tests/eval.rs` greps the README), so rewording one means updating them.
//! - A phase that did not run (a remote deployment, `--skip-failover`) gets a sentence saying
//!   why instead of its section.

mod failover;
mod latency;

use std::fmt::Write as _;

use crate::failover::Failover;
use crate::options::{fmt_prob, written_files, EvalOptions};
use crate::stats::Point;
use crate::trace::{TraceLine, TRACE_CLIENTS, TRACE_PROB};
use crate::Setting;
use failover::failover_report;
use latency::latency_report;

/// The README of `docs/eval/`: the setting, then one section per phase.
pub(crate) fn report(
    options: &EvalOptions,
    setting: &Setting,
    points: &[Point],
    trace: Option<&[TraceLine]>,
    failover: Option<&Failover>,
    seconds: f64,
) -> String {
    let mut md = String::new();
    setting_report(&mut md, options, setting, seconds);
    latency_report(&mut md, options, setting, points);
    let _ = writeln!(md, "\n## Cache replacement over time\n");
    match trace {
        Some(trace) => trace_report(&mut md, options, setting, trace),
        None => {
            let _ = writeln!(
                md,
                "Not measured: against a deployment the cache dump (`DUMP=1`, one line per \
                 cache event) is written on the front-end's own disk, which this run cannot read."
            );
        }
    }
    let _ = writeln!(md, "\n## Fail-over\n");
    match (failover, &options.remote) {
        (Some(f), _) => failover_report(&mut md, options, f),
        (None, Some(_)) => {
            let _ = writeln!(
                md,
                "Not measured: the faults are `./run.sh kill` and `./run.sh start` on the \
                 machine that runs the replicas, which this run does not control."
            );
        }
        (None, None) => {
            let _ = writeln!(md, "Skipped in this run (`--skip-failover`).");
        }
    }
    md
}

/// The title and the setting: what ran where, with which sizes, and the files written.
fn setting_report(md: &mut String, options: &EvalOptions, setting: &Setting, seconds: f64) {
    let _ = writeln!(md, "# Course evaluation\n");
    let load = setting
        .load
        .map(|l| format!(" (1-minute load average {l:.2} when it began)"))
        .unwrap_or_default();
    let where_ = match &options.remote {
        Some(addr) => format!(
            "against the running deployment whose front-end is at `{addr}` (`--host`/`--port`); \
             the clients ran on this machine"
        ),
        None => "every bazaar a fresh private one started with `./run.sh up` on ports chosen \
                 at run time, on this machine together with the clients"
            .to_string(),
    };
    let capacity = setting
        .capacity
        .map(|c| format!("the front-end's cache held {c} entries"))
        .unwrap_or_else(|| "the front-end's cache was off".into());
    let _ = writeln!(
        md,
        "Written by `./run.sh eval` (`eval/`) in {seconds:.0} s on a {}-core machine{load}, \
         {where_}. {} concurrent clients, {} lookups per client in each run, {} run(s) per point \
         (seeds from {}, the same for cache on and off), p = {}. The catalog listed {} stocks; \
         {capacity}. The contract measured is [docs/spec.md](../spec.md). Re-run with \
         `./run.sh eval` (`./run.sh eval --help` for the sizes and for `--host`/`--port`).\n",
        setting.cores,
        options.clients,
        options.n_request,
        options.repeats,
        options.seed,
        options
            .probs
            .iter()
            .map(|&p| fmt_prob(p))
            .collect::<Vec<_>>()
            .join(", "),
        setting.stocks,
    );
    let _ = writeln!(
        md,
        "Files written: {}.\n",
        written_files(options)
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The cache-over-time section: the event counts and what the picture shows.
fn trace_report(md: &mut String, options: &EvalOptions, setting: &Setting, trace: &[TraceLine]) {
    let count = |event: &str| trace.iter().filter(|l| l.event == event).count();
    let (hits, inserts, evicts, invalidates) = (
        count("hit"),
        count("insert"),
        count("evict"),
        count("invalidate"),
    );
    let size = options.trace_cache_size;
    let versus = match size.cmp(&setting.stocks) {
        std::cmp::Ordering::Less => format!("fewer than the {} stocks", setting.stocks),
        std::cmp::Ordering::Equal => format!("as many as the {} stocks", setting.stocks),
        std::cmp::Ordering::Greater => format!("more than the {} stocks", setting.stocks),
    };
    let _ = writeln!(md, "![cache over time](cache-trace.svg)\n");
    let _ = write!(
        md,
        "A front-end with `DUMP=1` and a cache of {size} entries ({versus}), {TRACE_CLIENTS} \
         clients, p = {}, {} lookups each. Each column is one line of the dump \
         (`data/frontend-cache.jsonl`); a filled cell means that stock was in the cache after \
         that event, darker for more recently used. {hits} hits, {inserts} inserts after a miss, \
         {evicts} evictions (red crosses: the least recently used entry makes room) and \
         {invalidates} invalidations (orange triangles: a trade on that stock, sent by the \
         catalog before the trade is acknowledged). Hits per hit or insert: {}.",
        fmt_prob(TRACE_PROB),
        options.trace_requests,
        percent(hits, hits + inserts),
    );
    if evicts > 0 {
        let _ = write!(
            md,
            " The cache filled up and {evicts} misses evicted an entry to make room."
        );
    } else {
        let _ = write!(md, " The cache never filled up: no miss evicted anything.");
    }
    if invalidates > 0 {
        let _ = write!(
            md,
            " An invalidated stock leaves a gap in its row until it is looked up again."
        );
    }
    let _ = writeln!(md);
}

pub(crate) fn ratio_text(with: f64, without: f64) -> String {
    if with <= 0.0 || without <= 0.0 {
        return "no comparison".into();
    }
    if with < without {
        format!("{:.0}% less with the cache", 100.0 * (1.0 - with / without))
    } else {
        format!("{:.0}% more with the cache", 100.0 * (with / without - 1.0))
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.0}%", 100.0 * part as f64 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{options, point, setting};

    #[test]
    fn files_listed_are_the_files_written() {
        let mut o = options(&[0.5]);
        assert_eq!(
            written_files(&o),
            [
                "latency.csv",
                "latency.svg",
                "cache-trace.svg",
                "failover.svg",
                "README.md"
            ]
        );
        o.skip_failover = true;
        assert!(!written_files(&o).contains(&"failover.svg"));
        let points = vec![point(0.5, true, 4, &[1.0], &[])];
        let md = report(&o, &setting(), &points, Some(&[]), None, 1.0);
        assert!(!md.contains("failover.svg"), "{md}");
        assert!(
            md.contains("Skipped in this run (`--skip-failover`)"),
            "{md}"
        );
        o.skip_failover = false;
        o.remote = Some("10.0.0.1:8080".into());
        assert_eq!(
            written_files(&o),
            ["latency.csv", "latency.svg", "README.md"]
        );
        let md = report(&o, &setting(), &points, None, None, 1.0);
        assert!(
            !md.contains("failover.svg") && !md.contains("cache-trace.svg"),
            "{md}"
        );
        assert!(md.contains("`10.0.0.1:8080`"), "{md}");
        assert!(md.contains("cache on (the deployment's setting)"), "{md}");
    }

    #[test]
    fn report_prints_probabilities_and_the_spec_link() {
        let o = options(&[0.25]);
        let points = vec![point(0.25, true, 4, &[1.0, 1.2, 1.1], &[])];
        let md = report(&o, &setting(), &points, Some(&[]), None, 1.0);
        assert!(md.contains("p = 0.25."), "{md}");
        assert!(md.contains("| 0.25 | on |"), "{md}");
        assert!(!md.contains("0.2 |") && !md.contains("0.3 |"), "{md}");
        assert!(md.contains("[docs/spec.md](../spec.md)"), "{md}");
        assert!(
            md.contains("8-core machine (1-minute load average 0.50"),
            "{md}"
        );
        assert!(md.contains("| 1.10 (1.00–1.20) |"), "{md}");
    }
}

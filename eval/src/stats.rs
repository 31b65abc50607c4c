//! The figures of a run: the client's `--json` summary, the runs of one (p, cache) point, and
//! what is computed from a few runs: the mean and range ([`Spread`]) and whether two differ
//! ([`compare`]: only when their ranges do not overlap), in the words the report uses.
//!
//! Caveats:
//!
//! - The spread is the range (lowest to highest) of a few runs' means, not a confidence
//!   interval: "within" means "not shown to differ".
//! - [`ClientJson`] reads only the fields the evaluation uses; `retries` and `max` default to 0
//!   so that an older client's summary still parses.

use serde::Deserialize;

use crate::options::fmt_prob;

/// What `client --json` printed.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ClientJson {
    pub(crate) lookups: u64,
    pub(crate) orders: u64,
    pub(crate) order_queries: u64,
    pub(crate) rejected: u64,
    pub(crate) errors: u64,
    pub(crate) mismatches: u64,
    #[serde(default)]
    pub(crate) retries: u64,
    pub(crate) lookup_ms: Lat,
    pub(crate) order_ms: Lat,
    pub(crate) query_ms: Lat,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct Lat {
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    #[serde(default)]
    pub(crate) max: f64,
}

/// The three request types, as the report and the plots name them and as the CSV spells them.
pub(crate) const KINDS: [(&str, &str); 3] = [
    ("lookup", "lookup"),
    ("order", "order"),
    ("order query", "order_query"),
];

impl ClientJson {
    pub(crate) fn longest_ms(&self) -> f64 {
        self.lookup_ms
            .max
            .max(self.order_ms.max)
            .max(self.query_ms.max)
    }

    /// (latency, timed requests) of each request type, in the order of [`KINDS`].
    pub(crate) fn rows(&self) -> [(Lat, u64); 3] {
        [
            (self.lookup_ms, self.lookups.saturating_sub(self.errors)),
            (self.order_ms, self.orders.saturating_sub(self.rejected)),
            (self.query_ms, self.order_queries),
        ]
    }

    pub(crate) fn add(&mut self, run: &ClientJson) {
        self.lookups += run.lookups;
        self.orders += run.orders;
        self.order_queries += run.order_queries;
        self.rejected += run.rejected;
        self.errors += run.errors;
        self.mismatches += run.mismatches;
        self.retries += run.retries;
    }
}

/// The front-end's cache hits and misses during one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheCount {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl CacheCount {
    pub(crate) fn ratio(self) -> Option<f64> {
        let all = self.hits + self.misses;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }
}

/// One client run of the latency phase.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub(crate) result: ClientJson,
    pub(crate) seconds: f64,
    /// `None` when the front-end's counters could not be read.
    pub(crate) cache: Option<CacheCount>,
}

/// One (p, cache) point: its runs.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub(crate) p: f64,
    pub(crate) cache: bool,
    pub(crate) runs: Vec<Run>,
}

/// The mean of a few runs' values and their range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Spread {
    pub(crate) mean: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

pub(crate) fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    Some(Spread {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        n: values.len(),
    })
}

/// Picks one figure (mean, p99) out of a latency summary.
pub(crate) type Stat = fn(&Lat) -> f64;

impl Point {
    /// One figure of one request type over the runs that timed any such request.
    pub(crate) fn lat(&self, kind: usize, stat: Stat) -> Option<Spread> {
        spread(self.runs.iter().filter_map(|r| {
            let (lat, count) = r.result.rows()[kind];
            (count > 0).then(|| stat(&lat))
        }))
    }

    /// The hit ratio of each run, with the cache on.
    pub(crate) fn hit_ratio(&self) -> Option<Spread> {
        if !self.cache {
            return None;
        }
        spread(self.runs.iter().filter_map(|r| r.cache?.ratio()))
    }

    pub(crate) fn total(&self) -> ClientJson {
        let mut total = ClientJson::default();
        for run in &self.runs {
            total.add(&run.result);
        }
        total
    }
}

/// How a second value compares with a first one, given their runs' ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Higher,
    Lower,
    /// The ranges overlap: not shown to differ.
    Within,
}

/// `b` against `a`: higher or lower only when the ranges of their runs do not overlap.
pub(crate) fn compare(a: &Spread, b: &Spread) -> Change {
    if b.min > a.max {
        Change::Higher
    } else if b.max < a.min {
        Change::Lower
    } else {
        Change::Within
    }
}

/// "0.26 ms (0.25–0.27)", or "0.26 ms" for a single run.
pub(crate) fn ms_text(s: &Spread) -> String {
    if s.n > 1 {
        format!("{:.2} ms ({:.2}–{:.2})", s.mean, s.min, s.max)
    } else {
        format!("{:.2} ms", s.mean)
    }
}

pub(crate) fn pct_text(s: &Spread) -> String {
    if s.n > 1 {
        format!(
            "{:.0}% ({:.0}–{:.0}%)",
            100.0 * s.mean,
            100.0 * s.min,
            100.0 * s.max
        )
    } else {
        format!("{:.0}%", 100.0 * s.mean)
    }
}

/// How a figure moved from the first p to the last, e.g. "rose from 0.15 ms (…) at p = 0 to
/// 0.26 ms (…) at p = 0.8".
pub(crate) fn trend(
    first: (f64, Spread),
    last: (f64, Spread),
    text: fn(&Spread) -> String,
) -> String {
    let ((p0, a), (p1, b)) = (first, last);
    let (a_text, b_text) = (text(&a), text(&b));
    let (p0, p1) = (fmt_prob(p0), fmt_prob(p1));
    match compare(&a, &b) {
        Change::Higher => format!("rose from {a_text} at p = {p0} to {b_text} at p = {p1}"),
        Change::Lower => format!("fell from {a_text} at p = {p0} to {b_text} at p = {p1}"),
        Change::Within => format!(
            "went from {a_text} at p = {p0} to {b_text} at p = {p1}, within the run-to-run spread"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::s;

    #[test]
    fn compare_needs_disjoint_ranges() {
        assert_eq!(compare(&s(&[1.0, 1.2]), &s(&[1.3, 1.5])), Change::Higher);
        assert_eq!(compare(&s(&[1.3, 1.5]), &s(&[1.0, 1.2])), Change::Lower);
        assert_eq!(compare(&s(&[1.0, 1.4]), &s(&[1.3, 1.5])), Change::Within);
        assert_eq!(compare(&s(&[1.0]), &s(&[1.0])), Change::Within);
    }

    #[test]
    fn trend_says_rose_fell_or_within() {
        let (a, b) = (s(&[2.0, 2.1, 2.2]), s(&[3.0, 3.1, 3.2]));
        assert!(trend((0.2, a), (0.8, b), ms_text)
            .starts_with("rose from 2.10 ms (2.00–2.20) at p = 0.2 to 3.10 ms"));
        assert!(trend((0.25, b), (0.5, a), ms_text).starts_with("fell from 3.10 ms"));
        let within = trend((0.25, a), (0.5, s(&[2.05, 2.3])), ms_text);
        assert!(within.ends_with("within the run-to-run spread"), "{within}");
        assert!(within.contains("at p = 0.25"), "{within}");
    }

    #[test]
    fn client_json_parses_the_client_summary() {
        // Built as the client builds it: some of its fields are the library's own.
        let mut summary = bazaar::client::Summary::default();
        summary.lookups = 7;
        let text = serde_json::to_string(&summary).unwrap();
        let parsed: ClientJson = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.lookups, 7);
    }
}

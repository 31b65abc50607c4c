//! Phase 2: the cache over time. A front-end with `DUMP=1` and a cache smaller than the catalog
//! serves a short client run; its cache dump (`data/frontend-cache.jsonl`, one JSON line per
//! cache event) is read back for `cache-trace.svg`.
//!
//! Caveats:
//!
//! - The dump is read while the front-end still runs, once the client is done: the front-end
//!   flushes it whenever it is idle, so every line of the run is there; a line that does not
//!   parse (none is expected) is skipped rather than failing the run.
//! - Only on a private bazaar: a deployment's dump is on its own machine.

use std::fs;
use std::path::Path;
use std::time::Instant;

use bazaar::error::Result;
use serde::Deserialize;

use crate::driver::{Bazaar, BazaarSpec};
use crate::options::EvalOptions;

/// Clients and order probability of the cache-trace run: enough misses to fill and churn a
/// small cache, and some invalidations, in a picture that can still be read event by event.
pub(crate) const TRACE_CLIENTS: usize = 2;
pub(crate) const TRACE_PROB: f64 = 0.2;

/// One line of the front-end's cache dump (`src/frontend/cache.rs`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct TraceLine {
    pub(crate) ts_ms: u64,
    pub(crate) event: String,
    pub(crate) key: String,
    pub(crate) items: Vec<String>,
}

/// One short client run on a bazaar with a small cache and the dump on; the dump's lines.
pub(crate) fn trace_phase(options: &EvalOptions, work: &Path) -> Result<Vec<TraceLine>> {
    let spec = BazaarSpec {
        tag: "cache-trace",
        cache: true,
        cache_size: options.trace_cache_size,
        dump: true,
    };
    let bazaar = Bazaar::up(options, work, &spec)?;
    let started = Instant::now();
    let result = bazaar.target.client_run(
        &options.client,
        TRACE_CLIENTS,
        TRACE_PROB,
        options.seed,
        options.trace_requests,
    )?;
    let text = fs::read_to_string(bazaar.data_dir().join("frontend-cache.jsonl"))?;
    let trace: Vec<TraceLine> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &TraceLine| line.event != "start")
        .collect();
    eprintln!(
        "eval cache trace: cache size {}, {} lookups, {} orders, {} cache events; {:.1} s",
        options.trace_cache_size,
        result.lookups,
        result.orders,
        trace.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(trace)
}

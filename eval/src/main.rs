//! The course evaluation (`./run.sh eval`): latency against the order probability with the
//! cache on and off, the cache's hit ratio and its replacement over time, and a fail-over
//! experiment, written to `docs/eval/` as a CSV, SVG plots and a README with the numbers and an
//! analysis generated from them.
//!
//! It drives the system only from the outside, the way a student would: every bazaar is a
//! private one started with `./run.sh up` (own ports chosen at run time, own data and run
//! directories under the temporary directory, passed as the environment overrides of
//! docs/spec.md §1), faults are `./run.sh kill` / `./run.sh start`, load and latency come from
//! the `client` binary's `--json` summary, and everything else from the REST API (`GET /health`
//! of the front-end and the replicas, the front-end's `GET /cluster` for its cache counters and
//! capacity, `GET /stocks` for the catalog's size, `POST /orders` probes), the front-end's cache
//! dump and `cmp` of the replica files. It never looks inside a service, so it measures whatever
//! order path the replicas implement.
//!
//! Phases, each on a fresh bazaar:
//!
//! 1. **Latency**: for cache on and off, for each p, `repeats` runs of
//!    `client --clients N --prob p` (the same seeds for on and off); before and after each run
//!    the front-end's hit and miss counters, so that every run has its own hit ratio; a progress
//!    line per run; `latency.csv` (one row per run and request type) and `latency.svg` (mean and
//!    p99 against p, one panel per request type, error bars from the lowest to the highest run).
//! 2. **Cache trace**: a front-end with `DUMP=1` and a cache smaller than the catalog;
//!    `cache-trace.svg` shows which stocks sit in the cache after every cache event, with
//!    evictions and invalidations marked.
//! 3. **Fail-over**: clients run in back-to-back `client` runs while the leader, a follower and
//!    the leader again are killed and restarted, then two replicas at once; during the double
//!    fault this process sends its own probe orders and counts their answers; throughout, one
//!    more probe places one order at a time and times it (`failover.svg`: the probe's orders and
//!    every client run on a log scale, the faults shaded). Then the replica files are compared
//!    with `cmp`.
//!
//! With `--host H --port P` (`EvalOptions::remote`) it measures an existing deployment instead
//! (containers, a Swarm stack, other machines): only phase 1, with the deployment's own cache
//! setting; phases 2 and 3 need the cache dump file and `./run.sh kill` on the deployment's
//! machines and are skipped, which the report says.
//!
//! Every sentence of the analysis is computed from the measurements, the bazaar's own answers
//! (stock count, cache capacity) and the machine (core count, load average): two means differ
//! ("rose", "fell", "lower") only when the ranges of their runs do not overlap; otherwise the
//! report says the difference is within the run-to-run spread.
//!
//! Modules, along the seams of a run:
//!
//! - [`options`]: the flags, checked, as [`options::EvalOptions`]; the files a run writes.
//! - [`driver`]: the driver: a front-end to load ([`driver::Target`]) and a private bazaar
//!   started, faulted and stopped through `run.sh` ([`driver::Bazaar`]).
//! - [`stats`]: the client's `--json` summary and the figures computed from runs (means,
//!   spreads, "rose/fell/within").
//! - [`latency`], [`trace`], [`failover`]: one module per phase, each measuring on its own
//!   bazaar.
//! - [`plots`]: the SVG figures.
//! - [`report`](mod@report): the Markdown README, every sentence computed from the measurements.
//!
//! It uses the library `bazaar` only through its public API (wire types, the HTTP client,
//! `bazaar::local` for waits and ports, `bazaar::startup` for logging and exit codes).
//!
//! Caveats:
//!
//! - Locally everything runs on one machine, clients included: latencies are loopback latencies
//!   and the clients compete with the services for the same cores, so absolute numbers depend
//!   on the machine and on whatever else runs on it; compare the curves, not single values.
//! - The spread is the range (lowest to highest) of a few runs' means, not a confidence
//!   interval: with the default three runs, "within the spread" means "not shown to differ".
//! - The client times a request including its own retries; a fail-over therefore shows as one
//!   long request (the "longest pause"), not as errors.
//! - Stock quantities carry over from one run to the next within a bazaar (one bazaar per cache
//!   setting), so the share of refused (409) buys can differ slightly between on and off. Against
//!   a remote deployment the runs place real orders there.
//! - The hit ratio comes from the front-end's counters, which count every lookup it served: run
//!   against a deployment that others use at the same time, it includes their lookups.
//! - Rows with no sample (orders and order queries at p = 0) are left out of the CSV.
//! - A run fails as a whole when a bazaar does not start; its temporary directory (logs
//!   included) is then kept and named.
//! - The service binaries must sit beside this one (one `target/release` for the workspace):
//!   `cargo build --release --workspace --bins` (what `./run.sh eval` runs) builds them all.

mod driver;
mod failover;
mod latency;
mod options;
mod plots;
mod report;
mod stats;
#[cfg(test)]
mod test_data;
mod trace;

use std::fs;
use std::thread;
use std::time::Instant;

use bazaar::error::Result;

use crate::failover::failover_phase;
use crate::latency::{latency_csv, latency_phase};
use crate::options::{written_files, EvalOptions};
use crate::plots::{plot_failover, plot_latency, plot_trace};
use crate::report::report;
use crate::trace::trace_phase;

fn main() {
    let options = options::from_env();
    match run(&options) {
        Ok(summary) => println!("{summary}"),
        Err(e) => {
            eprintln!("eval: failed: {e}");
            std::process::exit(1);
        }
    }
}

/// What the measured bazaar says about itself, and the machine it ran on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Setting {
    /// Stocks the catalog lists (`GET /stocks`).
    stocks: usize,
    /// The front-end's cache capacity with the cache on (`GET /cluster`).
    capacity: Option<usize>,
    cores: usize,
    /// The 1-minute load average when the run began (Linux `/proc/loadavg`).
    load: Option<f64>,
}

fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs every phase and writes `docs/eval/`. Returns a one-line summary.
fn run(options: &EvalOptions) -> Result<String> {
    let started = Instant::now();
    let mut setting = Setting {
        cores: thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load: load_average(),
        ..Setting::default()
    };
    fs::create_dir_all(&options.out_dir)?;
    let work = std::env::temp_dir().join(format!("bazaar-eval-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;

    let points = latency_phase(options, &work, &mut setting)?;
    fs::write(options.out_dir.join("latency.csv"), latency_csv(&points))?;
    plot_latency(
        &points,
        options.clients,
        &options.out_dir.join("latency.svg"),
    )?;

    let (trace, failover) = if options.remote.is_some() {
        (None, None)
    } else {
        let trace = trace_phase(options, &work)?;
        plot_trace(
            &trace,
            options.trace_cache_size,
            &options.out_dir.join("cache-trace.svg"),
        )?;
        let failover = if options.skip_failover {
            None
        } else {
            let failover = failover_phase(options, &work)?;
            plot_failover(&failover, &options.out_dir.join("failover.svg"))?;
            Some(failover)
        };
        (Some(trace), failover)
    };
    let seconds = started.elapsed().as_secs_f64();
    let readme = report(
        options,
        &setting,
        &points,
        trace.as_deref(),
        failover.as_ref(),
        seconds,
    );
    fs::write(options.out_dir.join("README.md"), readme)?;
    let _ = fs::remove_dir_all(&work);
    Ok(format!(
        "eval: done in {seconds:.0} s; wrote {}/{{{}}}",
        options.out_dir.display(),
        written_files(options).join(",")
    ))
}

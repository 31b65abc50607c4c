//! The flags of `eval` and what they become: [`EvalOptions`], checked; and the files a run
//! writes.
//!
//! Caveats:
//!
//! - A bad flag value exits at once with the config exit code (2), as the services do; the
//!   probabilities are kept as typed, so that the CSV and the report print them as given.
//! - The service and client binaries are taken from the directory of this executable (one
//!   `target/release` for the workspace), not looked up on `PATH`.

use std::path::PathBuf;

use argh::FromArgs;
use bazaar::error::Error;

/// Measure latency against p with the cache on and off (with the cache's hit ratio), the cache
/// over time and a fail-over, on private bazaars started with run.sh; write docs/eval/ (CSV, SVG
/// plots, README). With --host, measure an existing deployment instead (latency only: it places
/// real orders there, and cannot read its cache dump or kill its replicas).
#[derive(FromArgs)]
struct Args {
    /// lookups per client in each run of the latency phase (default 1000)
    #[argh(option, default = "1000")]
    n_request: usize,
    /// client runs per (p, cache) point, for the mean and the run-to-run spread (default 3)
    #[argh(option, default = "3")]
    repeats: usize,
    /// concurrent clients (default 5)
    #[argh(option, default = "5")]
    clients: usize,
    /// seed of the client runs, the same for cache on and off (default 42)
    #[argh(option, default = "42")]
    seed: u64,
    /// comma-separated order probabilities (default 0,0.2,0.4,0.6,0.8)
    #[argh(option, default = "String::from(\"0,0.2,0.4,0.6,0.8\")")]
    probs: String,
    /// cache size of the cache-over-time run (default 6, fewer than the shipped stocks)
    #[argh(option, default = "6")]
    trace_cache_size: usize,
    /// lookups per client of the cache-over-time run (default 60)
    #[argh(option, default = "60")]
    trace_requests: usize,
    /// skip the fail-over experiment
    #[argh(switch)]
    skip_failover: bool,
    /// measure the deployment whose front-end is on this host instead of private bazaars
    #[argh(option)]
    host: Option<String>,
    /// the front-end's port with --host (default 8080)
    #[argh(option, default = "8080")]
    port: u16,
    /// output directory (default docs/eval)
    #[argh(option, default = "PathBuf::from(\"docs/eval\")")]
    out: PathBuf,
    /// run.sh to drive the bazaars with (default ./run.sh)
    #[argh(option, default = "PathBuf::from(\"./run.sh\")")]
    run_sh: PathBuf,
    /// log level of this process: error, warn, info, debug, trace (default warn, or RUST_LOG)
    #[argh(option)]
    log_level: Option<String>,
}

/// The flags of this process, checked (a bad one exits with the config exit code), with logging
/// started.
pub(crate) fn from_env() -> EvalOptions {
    let args: Args = argh::from_env();
    bazaar::startup::init_logging_or(args.log_level.clone(), "warn");
    let usage = |message: String| -> ! { bazaar::startup::exit_with(&Error::Config(message)) };
    let probs: Vec<f64> = args
        .probs
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| usage(format!("--probs: {e}")));
    if probs.is_empty() || probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
        usage("--probs: each must be within 0..1".into());
    }
    if args.repeats == 0 {
        usage("--repeats must be at least 1".into());
    }
    if args.clients == 0 || args.n_request == 0 {
        usage("--clients and --n-request must be at least 1".into());
    }
    if args.trace_cache_size == 0 {
        usage("--trace-cache-size must be at least 1".into());
    }
    // The services and the client built together with this binary.
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.to_path_buf()))
        .unwrap_or_else(|| usage("cannot locate the directory of this binary".into()));
    EvalOptions {
        run_sh: args.run_sh,
        client: bin_dir.join("client"),
        bin_dir,
        out_dir: args.out,
        probs,
        repeats: args.repeats,
        clients: args.clients,
        n_request: args.n_request,
        seed: args.seed,
        trace_cache_size: args.trace_cache_size,
        trace_requests: args.trace_requests,
        skip_failover: args.skip_failover,
        remote: args.host.map(|host| format!("{host}:{}", args.port)),
    }
}

/// What to run; the flags are [`Args`].
#[derive(Clone, Debug)]
pub(crate) struct EvalOptions {
    /// `run.sh` of this checkout.
    pub(crate) run_sh: PathBuf,
    /// The `client` binary.
    pub(crate) client: PathBuf,
    /// Where the service binaries are (handed to run.sh as `BAZAAR_BIN_DIR`).
    pub(crate) bin_dir: PathBuf,
    /// Where the CSV, the plots and the README go.
    pub(crate) out_dir: PathBuf,
    /// The order probabilities of the latency phase.
    pub(crate) probs: Vec<f64>,
    /// Client runs per (p, cache) point.
    pub(crate) repeats: usize,
    /// Concurrent clients.
    pub(crate) clients: usize,
    /// Lookups per client at each point of the latency phase.
    pub(crate) n_request: usize,
    /// Seed of the client runs (the same for cache on and off).
    pub(crate) seed: u64,
    /// Cache size of the cache-trace phase (smaller than the catalog's stocks).
    pub(crate) trace_cache_size: usize,
    /// Lookups per client of the cache-trace phase.
    pub(crate) trace_requests: usize,
    /// Skip the fail-over phase.
    pub(crate) skip_failover: bool,
    /// Measure the deployment whose front-end is at this `host:port` instead of private
    /// bazaars (latency phase only).
    pub(crate) remote: Option<String>,
}

/// The files a run writes, in the order the report shows them.
pub(crate) fn written_files(options: &EvalOptions) -> Vec<&'static str> {
    let mut files = vec!["latency.csv", "latency.svg"];
    if options.remote.is_none() {
        files.push("cache-trace.svg");
        if !options.skip_failover {
            files.push("failover.svg");
        }
    }
    files.push("README.md");
    files
}

/// A probability as the user wrote it: `0.25` stays `0.25`, `0` stays `0` (the shortest text
/// that reads back as the same number).
pub(crate) fn fmt_prob(p: f64) -> String {
    format!("{p}")
}

//! `eval`: the course evaluation; `./run.sh eval` runs it. The work is in `bazaar::eval`.

use std::path::PathBuf;

use argh::FromArgs;
use bazaar::eval::{run, EvalOptions};

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
}

fn main() {
    let args: Args = argh::from_env();
    bazaar::startup::init_logging(Some("warn".into()));
    let usage = |message: String| -> ! {
        bazaar::startup::exit_with(&bazaar::error::Error::Config(message))
    };
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
    let options = EvalOptions {
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
    };
    match run(&options) {
        Ok(summary) => println!("{summary}"),
        Err(e) => {
            eprintln!("eval: failed: {e}");
            std::process::exit(1);
        }
    }
}

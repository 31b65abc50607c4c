//! `chaos`: kill, freeze and restart replicas, the catalog and the front-end under load, wipe
//! or damage a stopped replica's files, then check every invariant.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use bazaar::testkit::chaos::{run, ChaosOptions};
use bazaar::testkit::cluster::Binaries;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Run clients against a fresh local bazaar while replicas (two at once too), the catalog and
/// the front-end are killed, frozen and restarted, and a stopped replica's files are wiped or
/// have one digit changed (one replica at a time);
/// print one line per invariant and the totals; exit 1 on any violation.
#[derive(FromArgs)]
struct Args {
    /// seconds of faults under load (default 60)
    #[argh(option, default = "60")]
    duration: u64,
    /// seed of the fault schedule and the clients (default 1)
    #[argh(option, default = "1")]
    seed: u64,
    /// concurrent clients (default 5)
    #[argh(option, default = "5")]
    clients: usize,
    /// probability of an order after each lookup (default 0.6)
    #[argh(option, default = "0.6")]
    prob: f64,
    /// order replicas, an odd number of at least 3 (default 3)
    #[argh(option, default = "3")]
    replicas: u32,
    /// log level of this process: error, warn, info, debug (default warn, or RUST_LOG)
    #[argh(option)]
    log_level: Option<String>,
}

fn main() {
    let args: Args = argh::from_env();
    if args.replicas < 3 || args.replicas.is_multiple_of(2) {
        eprintln!(
            "chaos: --replicas must be odd and at least 3, got {}",
            args.replicas
        );
        std::process::exit(2);
    }
    bazaar::startup::init_logging_or(args.log_level, "warn");
    let binaries =
        Binaries::beside_current_exe().unwrap_or_else(|e| bazaar::startup::exit_with(&e));
    // Ctrl-C ends the faults early instead of killing this process, so that the cluster is
    // torn down (a replica frozen at that moment would otherwise stay behind, stopped).
    let interrupted = Arc::new(AtomicBool::new(false));
    // A second Ctrl-C exits at once.
    for signal in [SIGINT, SIGTERM] {
        let registered =
            signal_hook::flag::register_conditional_shutdown(signal, 130, interrupted.clone())
                .and_then(|_| signal_hook::flag::register(signal, interrupted.clone()));
        if let Err(e) = registered {
            eprintln!("chaos: cannot handle signal {signal}: {e}");
        }
    }
    let options = ChaosOptions {
        duration: Duration::from_secs(args.duration),
        seed: args.seed,
        clients: args.clients,
        prob: args.prob,
        replicas: args.replicas,
        binaries,
        interrupted,
    };
    println!(
        "chaos: seed {}, {} s, {} clients, p={}, {} replicas",
        args.seed, args.duration, args.clients, args.prob, args.replicas
    );
    match run(&options) {
        Ok(report) => {
            print!("{}", report.render());
            std::process::exit(if report.ok() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("chaos: could not run: {e}");
            std::process::exit(1);
        }
    }
}

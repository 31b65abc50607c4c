//! `client`: load the bazaar like the course's client and verify every order it placed.

use argh::FromArgs;
use bazaar::client::{run, ClientOptions};

/// Look stocks up, trade them with probability --prob, then read every acknowledged order back.
#[derive(FromArgs)]
struct Args {
    /// front-end host (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    host: String,
    /// front-end port (default 8080)
    #[argh(option, default = "8080")]
    port: u16,
    /// probability of an order after each lookup (default 0.5)
    #[argh(option, default = "0.5")]
    prob: f64,
    /// random seed (default 0); session i uses seed + i
    #[argh(option, default = "0")]
    seed: u64,
    /// lookups per client (default 20); the reference spelling --n_request works too
    #[argh(option, default = "20")]
    n_request: usize,
    /// concurrent clients (default 1)
    #[argh(option, default = "1")]
    clients: usize,
    /// print one JSON object instead of the text summary
    #[argh(switch)]
    json: bool,
    /// log level: error, warn, info, debug, trace (default warn, or RUST_LOG)
    #[argh(option)]
    log_level: Option<String>,
}

fn main() {
    let args = parse_args();
    bazaar::startup::init_logging_or(args.log_level, "warn");
    let refuse = |why: &str| bazaar::startup::exit_with(&bazaar::error::Error::Config(why.into()));
    if !(0.0..=1.0).contains(&args.prob) {
        refuse("--prob must be within 0..1");
    }
    // Zero would run nothing and print a table of zeros that looks like a measurement.
    if args.clients == 0 {
        refuse("--clients must be at least 1");
    }
    if args.n_request == 0 {
        refuse("--n-request (--n_request) must be at least 1");
    }
    let options = ClientOptions {
        prob: args.prob,
        seed: args.seed,
        n_request: args.n_request,
        clients: args.clients,
        ..ClientOptions::new(&args.host, args.port)
    };
    let summary = run(&options);
    if let Some(why) = &summary.failure {
        eprintln!("error: {why}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else if summary.failure.is_none() {
        print!("{}", summary.report());
    }
    std::process::exit(if summary.ok() { 0 } else { 1 });
}

/// argh only accepts dashes in flag names; the reference client spells `--n_request`.
fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let command = argv.first().map(String::as_str).unwrap_or("client");
    let rest: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(|a| match a.as_str() {
            "--n_request" => "--n-request",
            other => other,
        })
        .collect();
    match Args::from_args(&[command], &rest) {
        Ok(args) => args,
        Err(exit) => {
            let failed = exit.status.is_err();
            if failed {
                eprintln!("{}", exit.output);
            } else {
                println!("{}", exit.output);
            }
            std::process::exit(if failed {
                bazaar::startup::EXIT_CONFIG
            } else {
                0
            });
        }
    }
}

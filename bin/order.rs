//! `order`: one order replica.

use argh::FromArgs;

/// Serve one replica of the order log; the front-end picks which replica leads.
#[derive(FromArgs)]
struct Args {
    /// replica id (1, 2 or 3 in the shipped config)
    #[argh(option)]
    id: u32,
    /// accepted for the reference design's scripts: a replica always resumes from its log
    #[argh(switch)]
    resume: bool,
    /// deployment config (default $BAZAAR_CONFIG, else conf/bazaar.yaml)
    #[argh(option)]
    config: Option<String>,
    /// log level: error, warn, info, debug, trace (default info, or RUST_LOG)
    #[argh(option)]
    log_level: Option<String>,
}

fn main() {
    let args: Args = argh::from_env();
    let _always_resumes = args.resume;
    let config = bazaar::startup::load_config_or_exit(args.config);
    if let Err(e) = config.replica(args.id) {
        bazaar::startup::exit_with(&e);
    }
    bazaar::startup::refuse_development_secret_or_exit(
        &config,
        bazaar::config::Service::Order(args.id),
    );
    bazaar::startup::init_logging(args.log_level);
    bazaar::startup::serve_until_signal(
        &format!("order-{}", args.id),
        || bazaar::order::start(config, args.id),
        |replica| replica.join(),
        |replica| replica.shutdown(),
    );
}

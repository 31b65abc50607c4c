//! `frontend`: the REST API clients use, with the LRU cache and leader selection.

use argh::FromArgs;

/// Serve the bazaar's REST API: cached lookups, orders forwarded to the leading replica.
#[derive(FromArgs)]
struct Args {
    /// deployment config (default $BAZAAR_CONFIG, else conf/bazaar.yaml)
    #[argh(option)]
    config: Option<String>,
    /// which front-end of the config to serve: 0 (default) is `frontend`, N is the Nth entry
    /// of `frontend.others`
    #[argh(option, default = "0")]
    index: usize,
    /// append every cache change to the cache trace (also DUMP=1)
    #[argh(switch)]
    dump: bool,
    /// log level: error, warn, info, debug, trace (default info, or RUST_LOG)
    #[argh(option)]
    log_level: Option<String>,
    /// print the resolved config (file plus environment overrides) as name=value lines for
    /// scripts, and exit: output_dir, hosts and ports of every service
    #[argh(switch)]
    print_config: bool,
}

fn main() {
    let args: Args = argh::from_env();
    let mut config = bazaar::startup::load_config_or_exit(args.config);
    if let Err(e) = config.serve_frontend(args.index) {
        bazaar::startup::exit_with(&e);
    }
    config.frontend.dump |= args.dump;
    if args.print_config {
        print!("{}", config.shell_lines());
        return;
    }
    bazaar::startup::init_logging(args.log_level);
    bazaar::startup::serve_until_signal(
        "frontend",
        || bazaar::frontend::start(config),
        |frontend| frontend.join(),
        |frontend| frontend.shutdown(),
    );
}

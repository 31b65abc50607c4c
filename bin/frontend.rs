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
    /// check that a running service (any of the bazaar's) answers GET URL, e.g.
    /// http://127.0.0.1:8080/health, within 2 s; exit 0 if it does and 1 if not, without
    /// reading a config: the container health check of an image with no shell or curl
    #[argh(option)]
    probe: Option<String>,
    /// print the resolved config (file plus environment overrides) as name=value lines for
    /// scripts, and exit: output_dir, hosts and ports of every service
    #[argh(switch)]
    print_config: bool,
}

fn main() {
    let args: Args = argh::from_env();
    if let Some(url) = &args.probe {
        bazaar::startup::probe_and_exit(url);
    }
    let mut config = bazaar::startup::load_config_or_exit(args.config);
    if let Err(e) = config.serve_frontend(args.index) {
        bazaar::startup::exit_with(&e);
    }
    config.frontend.dump |= args.dump;
    if args.print_config {
        print!("{}", config.shell_lines());
        return;
    }
    bazaar::startup::refuse_development_secret_or_exit(&config, bazaar::config::Service::Frontend);
    bazaar::startup::init_logging(args.log_level);
    bazaar::startup::serve_until_signal(
        "frontend",
        || bazaar::frontend::start(config),
        |frontend| frontend.join(),
        |frontend| frontend.shutdown(),
    );
}

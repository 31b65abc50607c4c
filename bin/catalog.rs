//! `catalog`: the stock catalog service.

use argh::FromArgs;

/// Serve the stock catalog from data/catalog.json: lookups, and the committed orders the
/// leader applies.
#[derive(FromArgs)]
struct Args {
    /// deployment config (default $BAZAAR_CONFIG, else conf/bazaar.yaml)
    #[argh(option)]
    config: Option<String>,
    /// log level: error, warn, info, debug, trace (default info, or RUST_LOG)
    #[argh(option)]
    log_level: Option<String>,
}

fn main() {
    let args: Args = argh::from_env();
    let config = bazaar::startup::load_config_or_exit(args.config);
    bazaar::startup::refuse_development_secret_or_exit(&config, bazaar::config::Service::Catalog);
    bazaar::startup::init_logging(args.log_level);
    bazaar::startup::serve_until_signal(
        "catalog",
        || bazaar::catalog::start(config),
        |server| server.join(),
        |server| server.shutdown(),
    );
}

//! What every binary does before handing off: load the config, start logging, and exit cleanly
//! on SIGINT/SIGTERM. Kept here so that each `bin/*.rs` is only flags and a call.

use std::path::Path;
use std::thread;

use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};

use crate::config::Config;
use crate::error::Error;

/// The exit code of a bad configuration or bad flags (SPEC §1).
pub const EXIT_CONFIG: i32 = 2;

/// The exit code of state files that cannot be used at start (a corrupt or truncated
/// `catalog.json` or replica state file, a damaged order log, an unusable data directory): the
/// same for every service, distinct from [`EXIT_CONFIG`]. The file is left as it is.
pub const EXIT_STATE: i32 = 3;

/// Loads the config from `--config`, else `$BAZAAR_CONFIG`, else the default path. On error
/// prints the one-line reason and exits with [`EXIT_CONFIG`].
pub fn load_config_or_exit(flag: Option<String>) -> Config {
    let path = flag
        .or_else(|| std::env::var("BAZAAR_CONFIG").ok())
        .unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.to_string());
    match Config::load(Path::new(&path)) {
        Ok(config) => config,
        Err(e) => exit_with(&e),
    }
}

/// Prints an error that stops the binary at start, then exits: config errors with code 2,
/// unusable state files with code 3, anything else with 1.
pub fn exit_with(err: &Error) -> ! {
    eprintln!("error: {err}");
    std::process::exit(match err {
        Error::Config(_) => EXIT_CONFIG,
        Error::State(_) => EXIT_STATE,
        _ => 1,
    })
}

/// Starts logging to stderr. The level comes from `--log-level`, else `RUST_LOG` (a plain level
/// such as `debug`), else `info`.
pub fn init_logging(flag: Option<String>) {
    let wanted = flag
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let level = wanted.parse::<LevelFilter>().unwrap_or_else(|_| {
        eprintln!("error: config: --log-level: unknown level {wanted:?} (error, warn, info, debug, trace)");
        std::process::exit(EXIT_CONFIG);
    });
    let mut config = ConfigBuilder::new();
    // Tests and run.sh read these logs with timestamps; thread names tell which loop spoke.
    config
        .set_thread_level(LevelFilter::Error)
        .set_target_level(LevelFilter::Error);
    let _ = config.set_time_offset_to_local();
    let _ = TermLogger::init(
        level,
        config.build(),
        TerminalMode::Stderr,
        ColorChoice::Never,
    );
}

/// Makes SIGINT and SIGTERM end the process with exit code 0 after a log line. Every state file
/// is valid at every instant (appends are fsynced, rewrites are atomic), so there is nothing to
/// flush first.
pub fn exit_on_signals(service: &str) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            log::warn!("cannot install signal handlers: {e}");
            return;
        }
    };
    let service = service.to_string();
    let spawned = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("{service}: signal {signal}, exiting");
                std::process::exit(0);
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal thread: {e}");
    }
}

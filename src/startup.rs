//! Process start-up, the same for every binary: load the config, refuse a published secret on
//! a reachable address ([`refuse_development_secret_or_exit`]), start logging, and on
//! SIGINT/SIGTERM stop the service gracefully ([`serve_until_signal`]). Kept here so that each
//! `bin/*.rs` is only its flags and one call.
//!
//! [`probe_and_exit`] is the other side of a service: `--probe URL` asks a running service's
//! `/health` and exits 0 or 1, for container health checks in an image that has no shell and
//! no curl.
//!
//! Caveats: the probe proves that the service's HTTP server answers within [`PROBE_TIMEOUT`],
//! not that the bazaar as a whole works (a front-end without a leader still answers 200).

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};

use crate::config::{Config, Service};
use crate::error::{Error, Result};

/// The exit code of a bad configuration or bad flags (docs/spec.md §1).
pub const EXIT_CONFIG: i32 = 2;

/// The exit code of state that cannot be used at start (a data directory or file that cannot be
/// created or read): the same for every service, distinct from [`EXIT_CONFIG`]. Damaged
/// contents are not a reason to stop: the replicas recover and the catalog rebuilds from the
/// log (`docs/replication.md`, "Storage faults").
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

/// Exits with [`EXIT_CONFIG`] when `service` would bind an address reachable from other
/// machines with a secret this repository publishes; see [`Config::refuse_development_secret`].
pub fn refuse_development_secret_or_exit(config: &Config, service: Service) {
    if let Err(e) = config.refuse_development_secret(service) {
        exit_with(&e);
    }
}

/// How long `--probe` waits for the answer: a service that takes longer is frozen, for its
/// health check (well under the compose file's `timeout`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `--probe URL`: `GET URL` (plain `http://host:port/path`) once; exits 0 on a 200 answer
/// within [`PROBE_TIMEOUT`], else prints why and exits 1.
pub fn probe_and_exit(url: &str) -> ! {
    let Some((addr, path)) = url
        .strip_prefix("http://")
        .map(|rest| rest.split_at(rest.find('/').unwrap_or(rest.len())))
        .filter(|(addr, _)| !addr.is_empty())
    else {
        exit_with(&Error::Config(format!(
            "--probe: {url:?} is not an http://HOST:PORT/PATH address"
        )));
    };
    let path = if path.is_empty() { "/" } else { path };
    match crate::http::Client::new().get::<serde_json::Value>(addr, path, PROBE_TIMEOUT) {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("probe: {}", e.message());
            std::process::exit(1);
        }
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
    init_logging_or(flag, "info");
}

/// [`init_logging`] with another default level: the tools (client, chaos, eval) print their
/// own results on stdout and stay at `warn` unless `--log-level` or `RUST_LOG` asks for more.
pub fn init_logging_or(flag: Option<String>, default: &str) {
    let wanted = flag
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.into());
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

/// How long a graceful stop may take before the process exits anyway: under the 5 s that
/// `./run.sh down` waits before SIGKILL, so that a stuck stop is still a clean exit.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs a service until SIGINT or SIGTERM, then stops it gracefully and exits with code 0.
///
/// The handlers are installed before `start` runs, so a signal during start-up is kept and
/// acted on once the service runs. A start error exits as [`exit_with`] does. On a signal,
/// `stop` (the service's `shutdown`: stop accepting, close connections, join the threads) runs
/// on a thread of its own; the process exits when it is done, after `STOP_TIMEOUT`, or at a
/// second signal, whichever comes first. Exiting early is always safe: every state file is
/// valid at every instant (appends are fsynced, rewrites are atomic), so the graceful stop only
/// spares the peers half-answered connections. Without signal handlers (they could not be
/// installed) the service runs until it stops by itself (`join`).
pub fn serve_until_signal<T: Send + 'static>(
    service: &str,
    start: impl FnOnce() -> Result<T>,
    join: impl FnOnce(T),
    stop: impl FnOnce(T) + Send + 'static,
) -> ! {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| log::warn!("{service}: cannot install signal handlers: {e}"))
        .ok();
    let running = start().unwrap_or_else(|e| exit_with(&e));
    let Some(mut signals) = signals else {
        join(running);
        std::process::exit(0);
    };
    if let Some(signal) = signals.forever().next() {
        log::info!("{service}: signal {signal}, stopping");
    }
    let (done_tx, done) = mpsc::channel();
    let stopping = thread::Builder::new().name("stop".into()).spawn(move || {
        stop(running);
        let _ = done_tx.send(());
    });
    if let Err(e) = stopping {
        log::warn!("{service}: cannot start the stop thread ({e}), exiting at once");
        std::process::exit(0);
    }
    // A second signal cuts the stop short: whoever sent it wants the process gone now.
    let name = service.to_string();
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            log::info!("{name}: signal {signal} while stopping, exiting at once");
            std::process::exit(0);
        }
    });
    match done.recv_timeout(STOP_TIMEOUT) {
        Ok(()) => log::info!("{service}: stopped"),
        Err(_) => log::warn!("{service}: not stopped after {STOP_TIMEOUT:?}, exiting anyway"),
    }
    std::process::exit(0);
}

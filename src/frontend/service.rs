//! The front-end as a running service: the HTTP server over [`FrontendApi`](super::FrontendApi)
//! and the health-check thread.
//!
//! The health-check thread pings the leader's health port every `health_check_interval` (a
//! stopped process still accepts TCP, so it waits for the `OK`) and asks the leader's
//! `/health` whether it still leads in the epoch the front-end knows; it re-selects when
//! either fails, or when there is no leader. It also makes the first selection, so start-up
//! never blocks on the replicas.
//!
//! Caveats:
//! - Between two checks, a leader that died is noticed only by the next forward that fails
//!   (which re-selects at once) or by the next check.
//! - `Frontend::shutdown` waits for the health-check thread, which may be in the middle of a
//!   selection (at most [`HEALTH_SELECTION_WAIT`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};

use super::leader::View;
use super::FrontendApi;
use crate::api::{ReplicaHealth, Role};
use crate::config::Config;
use crate::error::Result;
use crate::http::{Server, ServerOptions};
use crate::selection;
use crate::timing::HEALTH_SELECTION_WAIT;

/// Tells the health-check thread to stop, waking it from its interval wait.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout`; true once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.wake.wait_for(&mut stopped, timeout);
        }
        *stopped
    }
}

/// A running front-end: the HTTP server plus the health-check thread.
pub struct Frontend {
    server: Server,
    service: Arc<FrontendApi>,
    stop: Arc<StopSignal>,
    health: JoinHandle<()>,
}

/// Starts the front-end on `config.frontend_addr()`.
pub fn start(config: Config) -> Result<Frontend> {
    let addr = config.frontend_addr();
    start_with_listener(config, crate::http::server::listen(&addr)?)
}

/// Starts the front-end on an already bound listener (tests bind `127.0.0.1:0`).
pub fn start_with_listener(config: Config, listener: TcpListener) -> Result<Frontend> {
    let service = Arc::new(FrontendApi::new(&config)?);
    let options = ServerOptions::new("frontend", config.frontend.threads, &config.http);
    let server = Server::start(listener, options, service.clone())?;
    let stop = Arc::new(StopSignal::default());
    let health = {
        let (service, stop, interval) = (
            service.clone(),
            stop.clone(),
            config.health_check_interval(),
        );
        std::thread::Builder::new()
            .name("health-check".into())
            .spawn(move || health_check_loop(service, interval, stop))?
    };
    info!(
        "front-end listening on {} (cache {}, {} entries, dump {})",
        server.local_addr(),
        if config.frontend.cache { "on" } else { "off" },
        config.frontend.cache_size,
        if config.frontend.dump { "on" } else { "off" },
    );
    Ok(Frontend {
        server,
        service,
        stop,
        health,
    })
}

impl Frontend {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Blocks until the server stops, then stops the health checks.
    pub fn join(self) {
        self.server.join();
        self.stop.stop();
        join_health(self.health);
    }

    /// Stops serving and the health checks.
    pub fn shutdown(self) {
        self.stop.stop();
        self.server.shutdown();
        join_health(self.health);
        // Connection threads may still hold the service (and so the cache, whose drop would
        // flush): callers read the trace right after this.
        self.service.cache.flush_trace();
    }
}

fn join_health(handle: JoinHandle<()>) {
    if handle.join().is_err() {
        warn!("the health-check thread panicked");
    }
}

/// The front-end's active leader check: selects a leader at start, then every `interval`
/// pings it and re-selects when it does not answer.
fn health_check_loop(service: Arc<FrontendApi>, interval: Duration, stop: Arc<StopSignal>) {
    loop {
        service.check_leader();
        if stop.wait(interval) {
            return;
        }
    }
}

impl FrontendApi {
    /// One active health check: ping the leader's health port, re-select if it does not
    /// answer or if there is no leader.
    pub(super) fn check_leader(&self) {
        let view: View = self.leader.view();
        // Alive (the health port answers) and still leading in the epoch we know: a leader
        // that stepped down (it lost its majority, or its disk failed) answers Ping too.
        let healthy = view
            .leader
            .and_then(|l| Some((l, self.leader.replica(l.id)?)))
            .is_some_and(|(l, r)| {
                selection::ping(&r.health_addr(), selection::PING_TIMEOUT)
                    && self
                        .client
                        .get::<ReplicaHealth>(&r.http_addr(), "/health", selection::PING_TIMEOUT)
                        .is_ok_and(|h| h.role == Role::Leader && h.epoch == l.epoch)
            });
        if !healthy {
            if let Some(l) = view.leader {
                warn!(
                    "leader {} did not answer the health check; re-selecting",
                    l.id
                );
            }
            self.leader
                .reselect(view, Instant::now() + HEALTH_SELECTION_WAIT);
        }
    }
}

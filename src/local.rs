//! Driving bazaars on this machine from the outside: waiting for something with a deadline,
//! waiting for a child process, choosing free loopback ports.
//!
//! Shared by the evaluation (the `bazaar-eval` crate in `eval/`, a production tool behind
//! `./run.sh eval`), the test harness (the `testkit` feature) and the integration tests, so
//! that every wait in the repository polls the same way at the same [`POLL_INTERVAL`].
//!
//! Caveats: free ports are found by binding a port and releasing it, so another process could
//! take one in between; callers retry a start on new ports when a service cannot bind.

use std::net::TcpListener;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long every wait sleeps between two looks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Some`, or fails naming `what` after
/// `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> Result<T> {
    poll_every(what, timeout, POLL_INTERVAL, f)
}

/// Calls `f` every `interval` until it returns `Some`, for at most `timeout` and at most the
/// number of intervals that fit in it (plus the first call), so that a clock that jumps can
/// not make it spin; fails naming `what` when time or count runs out.
pub fn poll_every<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let max_calls = timeout.as_nanos() / interval.as_nanos().max(1) + 1;
    for call in 1..=max_calls {
        if let Some(v) = f() {
            return Ok(v);
        }
        if call == max_calls || Instant::now() >= deadline {
            break;
        }
        thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
    }
    Err(Error::Unavailable(format!(
        "timed out after {timeout:?} waiting for {what}"
    )))
}

/// Waits for a child with a deadline, and kills (and reaps) it past the deadline, so that a
/// wedged child never outlives the wait. True when it exited with status 0.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<bool> {
    let mut failed = None;
    let waited = poll("a child process to exit", timeout, || {
        match child.try_wait() {
            Ok(Some(status)) => Some(status.success()),
            Ok(None) => None,
            Err(e) => {
                failed = Some(e);
                Some(false)
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    waited.map_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
        Error::Unavailable(format!("child still running after {timeout:?}; killed"))
    })
}

/// Ports are picked below Linux's ephemeral range (32768 and up by default), so that the
/// outgoing connections of a running test can never take a port a service is about to bind.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// `n` ports that are free right now, at random places in `PORT_RANGE` (below the ephemeral range) so that bazaars
/// started at once rarely try the same ones.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut rng = fastrand::Rng::new();
    let mut ports = Vec::with_capacity(n);
    for _ in 0..PORT_RANGE.len() {
        if ports.len() == n {
            return Ok(ports);
        }
        let port = rng.u16(PORT_RANGE);
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Err(Error::Unavailable(format!(
        "no {n} free ports in {PORT_RANGE:?}"
    )))
}

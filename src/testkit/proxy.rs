//! A userspace TCP proxy for one directed link between two replicas, owned by the test process.
//!
//! Replica A reaches replica B through the proxy's listener when A's process is started with
//! `ORDER_PORT<B>=<proxy port>`. While the link is [`LinkState::Open`] every accepted
//! connection is piped to B's real address, byte for byte, one thread per direction. A cut
//! closes every connection in flight and then treats new ones by its mode:
//!
//! - [`LinkState::Silent`]: accept and hold the connection, never read from it nor answer it:
//!   to A, B looks like a paused or partitioned peer (its calls time out).
//! - [`LinkState::Refused`]: accept and close at once: to A, B looks down.
//!
//! Healing closes the held silent connections (their callers have given up or will get EOF)
//! and pipes new connections again.
//!
//! Caveats: a "refused" connection is accepted then closed (EOF or reset), not refused by the
//! kernel, since the listener stays bound; callers see a transport error either way.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::Result;

/// How long the proxy waits to connect to the real peer.
pub(crate) const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How a link treats connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// Piped to the peer.
    Open,
    /// Cut: accepted and held without an answer (a silent peer).
    Silent,
    /// Cut: accepted and closed at once (a peer that is down).
    Refused,
}

struct Shared {
    state: Mutex<LinkState>,
    /// Connections being piped: id → (downstream, upstream) handles for shutdown.
    piped: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    /// Connections held silent while cut.
    held: Mutex<Vec<TcpStream>>,
    next_id: AtomicU64,
    stopped: AtomicBool,
}

/// One directed link: a listener on a loopback port that forwards to `upstream`.
pub(crate) struct LinkProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl LinkProxy {
    /// Binds `listen` (`127.0.0.1:<port>`) and starts accepting; connections go to `upstream`.
    pub(crate) fn start(listen: &str, upstream: &str) -> Result<LinkProxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(LinkState::Open),
            piped: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let (s, up) = (shared.clone(), upstream.to_string());
        thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, &up, &s))?;
        Ok(LinkProxy { addr, shared })
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Cuts the link (`Silent` or `Refused`) or heals it (`Open`), closing what the change
    /// makes stale: the piped connections on a cut, the held ones on a heal.
    pub(crate) fn set(&self, state: LinkState) {
        *self.shared.state.lock() = state;
        if state != LinkState::Open {
            for (_, (down, up)) in self.shared.piped.lock().drain() {
                let _ = down.shutdown(Shutdown::Both);
                let _ = up.shutdown(Shutdown::Both);
            }
        }
        if state != LinkState::Silent {
            for held in self.shared.held.lock().drain(..) {
                let _ = held.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.set(LinkState::Refused);
        // Wake the accept loop so that it sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.addr, UPSTREAM_CONNECT_TIMEOUT);
    }
}

fn accept_loop(listener: TcpListener, upstream: &str, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(down) = conn else { continue };
        let state = *shared.state.lock();
        match state {
            LinkState::Refused => {
                let _ = down.shutdown(Shutdown::Both);
            }
            LinkState::Silent => shared.held.lock().push(down),
            LinkState::Open => {
                let shared = shared.clone();
                let upstream = upstream.to_string();
                let spawned = thread::Builder::new()
                    .name("proxy-conn".into())
                    .spawn(move || pipe(down, &upstream, &shared));
                if let Err(e) = spawned {
                    log::warn!("proxy cannot start a connection thread: {e}");
                }
            }
        }
    }
}

/// Connects to the peer and copies both ways until either side closes or the link is cut.
fn pipe(down: TcpStream, upstream: &str, shared: &Arc<Shared>) {
    let up = match upstream
        .parse::<SocketAddr>()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        .and_then(|a| TcpStream::connect_timeout(&a, UPSTREAM_CONNECT_TIMEOUT))
    {
        Ok(up) => up,
        Err(_) => {
            let _ = down.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = up.set_nodelay(true);
    let _ = down.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let handles = (
        down.try_clone(),
        up.try_clone(),
        down.try_clone(),
        up.try_clone(),
    );
    let (Ok(d2), Ok(u2), Ok(d3), Ok(u3)) = handles else {
        return;
    };
    {
        // Registered under the state lock, so a cut racing this connection closes it.
        let state = shared.state.lock();
        if *state != LinkState::Open {
            let _ = down.shutdown(Shutdown::Both);
            return;
        }
        shared.piped.lock().insert(id, (d3, u3));
    }
    let reverse = thread::Builder::new()
        .name("proxy-back".into())
        .spawn(move || copy(u2, d2));
    copy(down, up);
    if let Ok(handle) = reverse {
        let _ = handle.join();
    }
    shared.piped.lock().remove(&id);
}

/// Copies `from` to `to` until EOF or an error, then shuts both down.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes one line back.
    fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn roundtrip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut conn = TcpStream::connect_timeout(&addr, UPSTREAM_CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(Duration::from_millis(300)))?;
        conn.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    }

    #[test]
    fn pipes_then_silences_refuses_and_heals() {
        let proxy = LinkProxy::start("127.0.0.1:0", &echo_server()).unwrap();
        assert_eq!(roundtrip(proxy.addr).unwrap(), b"ping");
        proxy.set(LinkState::Silent);
        let err = roundtrip(proxy.addr).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "a silent link times out: {err:?}"
        );
        proxy.set(LinkState::Refused);
        assert!(roundtrip(proxy.addr).is_err());
        proxy.set(LinkState::Open);
        assert_eq!(roundtrip(proxy.addr).unwrap(), b"ping");
    }
}

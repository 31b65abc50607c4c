//! The blocking HTTP/1.1 server every service runs on.
//!
//! Shape (blocking threads, no async: the project's rule, `docs/http-server.md`):
//!
//! ```text
//!  accept_loop ──spawn──▶ serve_connection (one thread per connection)
//!                           │ read + parse (httparse), idle and request deadlines
//!                           ▼
//!                         ThreadPool (fixed size) ── handler.handle(&request) ──┐
//!                           ▲                                                     │
//!                           └──────────── response over a channel ◀──────────────┘
//! ```
//!
//! - Each connection has its own thread, so a slow, idle or half-sent connection only ever holds
//!   its own thread, never a pool worker, and a burst of keep-alive connections cannot starve
//!   one another (the tiny_http 0.12 failure, see `docs/http-server.md`).
//! - Handlers run on the fixed pool, which bounds how much work runs at once. A panicking
//!   handler becomes a 500; the worker survives.
//! - Deadlines: a keep-alive connection with no new request for `idle_timeout` is closed; a
//!   request whose headers and body are not complete within `request_timeout` of its first byte
//!   gets 408 and the connection is closed. Open connections are capped at `max_connections`;
//!   one more is answered 503 and closed at once. Requests waiting for a pool worker are capped
//!   at [`MAX_QUEUED_PER_THREAD`] per worker; one more is answered 503 at once (load shedding,
//!   so the latency of accepted requests stays bounded). Routes a handler runs inline (on the
//!   connection's thread, `Handler::runs_inline`) are capped at [`MAX_INLINE_PER_THREAD`] per
//!   worker running at once, and shed the same way.
//! - Framing (`framing`): only `Content-Length` bodies, no request smuggling, bodies over
//!   [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) get 413 unread, and an error response is not
//!   lost to a connection reset. Responses are written with one `write_all` on a
//!   `TCP_NODELAY` socket, so there is no Nagle/delayed-ACK stall.
//! - Accepting (`accept`): shared with the replicas' line ports ([`accept_loop`]).
//!
//! Caveats:
//! - A connection costs a thread (with a small stack, [`CONNECTION_STACK_BYTES`]) for as long
//!   as it is open, idle or not: `max_connections` is what bounds the threads.
//! - A handler that runs inline holds its connection's thread, not a pool worker: the cap on
//!   inline handlers, not the pool, bounds them.
//! - `shutdown` closes every connection but does not wait for inline handlers or connection
//!   threads, only for the pool.

mod accept;
mod framing;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;
use threadpool::ThreadPool;

use super::{Handler, Request, Response};
use crate::config::HttpConfig;
use crate::error::{Error, Result};
use crate::timing::WRITE_TIMEOUT;

pub(crate) use accept::{accept_loop, Admission};
#[cfg(test)]
pub(crate) use framing::parse_head;
pub use framing::REQUEST_ID_HEADER;
use framing::{linger, read_request, wants_keep_alive, write_response, Reader};

/// Stack of a connection thread: it only parses and waits, so it needs little.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// Most requests waiting for a pool worker, per worker. One more is answered 503 at once
/// instead of queueing: with every connection holding at most one request, the queue was
/// bounded by `max_connections` only, and under a flood every accepted request waited behind
/// up to that many others. This bounds the wait of an accepted request to about this many
/// handler runs.
pub(crate) const MAX_QUEUED_PER_THREAD: usize = 32;

/// Handlers running on their connection's thread at once, per pool thread the service is
/// configured with (`Handler::runs_inline`); one more is answered 503. 16 × 8 threads = 128
/// requests in flight through a front-end: more than the 64 clients of the bench's largest
/// run, and well under the queue that would make accepted requests wait seconds.
pub(crate) const MAX_INLINE_PER_THREAD: usize = 16;

/// How a server runs: pool size and connection limits.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Service name, for logs and thread names.
    pub name: String,
    /// Size of the fixed pool that runs handlers.
    pub threads: usize,
    /// Most open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// A keep-alive connection with no new request for this long is closed.
    pub idle_timeout: Duration,
    /// A request whose headers and body take longer than this to arrive is dropped.
    pub request_timeout: Duration,
}

impl ServerOptions {
    pub fn new(name: &str, threads: usize, http: &HttpConfig) -> ServerOptions {
        ServerOptions {
            name: name.to_string(),
            threads,
            max_connections: http.max_connections,
            idle_timeout: http.idle_timeout(),
            request_timeout: http.request_timeout(),
        }
    }
}

/// Binds a listening socket; failure is a config error naming the address (a port in use or
/// a host not on this machine), so the binary exits with code 2 and says why.
pub(crate) fn listen(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))
}

/// What every thread of one server shares.
struct Shared {
    options: ServerOptions,
    handler: Arc<dyn Handler>,
    pool: Mutex<ThreadPool>,
    stopping: AtomicBool,
    /// Open connections by id, so that shutdown can close them.
    connections: Mutex<HashMap<u64, Arc<TcpStream>>>,
    next_id: AtomicU64,
    /// Handlers running on their connection's thread right now (`Handler::runs_inline`).
    inline_running: AtomicUsize,
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and starts serving `handler` in background threads.
    pub fn bind(addr: &str, options: ServerOptions, handler: Arc<dyn Handler>) -> Result<Server> {
        Server::start(listen(addr)?, options, handler)
    }

    /// Serves on an already bound listener (tests bind `127.0.0.1:0` first).
    pub fn start(
        listener: TcpListener,
        options: ServerOptions,
        handler: Arc<dyn Handler>,
    ) -> Result<Server> {
        let local_addr = listener.local_addr()?;
        let pool = threadpool::Builder::new()
            .num_threads(options.threads.max(1))
            .thread_name(format!("{}-worker", options.name))
            .build();
        let shared = Arc::new(Shared {
            options,
            handler,
            pool: Mutex::new(pool),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            inline_running: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("{}-accept", shared.options.name))
                .spawn(move || accept_http(listener, shared))?
        };
        log::info!("{} listening on http://{local_addr}", shared.options.name);
        Ok(Server {
            local_addr,
            shared,
            acceptor,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.lock().len()
    }

    /// Stops accepting, closes every connection and waits for running handlers.
    pub fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it up to see the flag.
        let _ = TcpStream::connect(self.local_addr);
        let _ = self.acceptor.join();
        for stream in self.shared.connections.lock().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.shared.pool.lock().join();
    }

    /// Blocks the calling thread while the server runs.
    pub fn join(self) {
        let _ = self.acceptor.join();
    }
}

/// The HTTP server's accepting thread: [`accept_loop`] with a 503 for connections over the cap
/// and a registry of open connections, so that shutdown can close them.
fn accept_http(listener: TcpListener, shared: Arc<Shared>) {
    let admission = Admission {
        name: shared.options.name.clone(),
        max_connections: shared.options.max_connections,
        stack_bytes: Some(CONNECTION_STACK_BYTES),
    };
    let stopping = shared.clone();
    let refuse = |stream: TcpStream| {
        log::warn!("{}: connection cap reached, refusing one", admission.name);
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let busy = Response::error(&Error::Unavailable("too many connections".into()));
        let _ = write_response(&mut &stream, &busy, false);
    };
    let serve = move |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        // Shared with the registry so that shutdown can close it: one descriptor, not two.
        let stream = Arc::new(stream);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.connections.lock().insert(id, stream.clone());
        // Checked after registering: a shutdown that closed the registry before we were in
        // it had already set the flag.
        if !shared.stopping.load(Ordering::SeqCst) {
            serve_connection(stream, &shared);
        }
        shared.connections.lock().remove(&id);
    };
    accept_loop(
        &listener,
        &admission,
        || stopping.stopping.load(Ordering::SeqCst),
        refuse,
        serve,
    );
}

/// One connection's thread: read a request, have the pool answer it, write, repeat.
fn serve_connection(stream: Arc<TcpStream>, shared: &Shared) {
    let stream: &TcpStream = &stream;
    let mut buf = Vec::with_capacity(4096);
    let mut reader = Reader::new();
    loop {
        let request = match read_request(stream, &mut reader, &mut buf, &shared.options) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(err) => {
                if write_response(&mut &*stream, &Response::error(&err), false).is_ok()
                    && err != Error::RequestTimeout
                {
                    linger(stream);
                }
                return;
            }
        };
        let keep_alive = wants_keep_alive(&request) && !shared.stopping.load(Ordering::SeqCst);
        let response = run_on_pool(shared, request);
        if write_response(&mut &*stream, &response, keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// Answers a request: on the connection's own thread when the handler says it is cheap,
/// otherwise on a pool worker, waiting for its answer.
fn run_on_pool(shared: &Shared, request: Request) -> Response {
    let limit = shared.options.threads.max(1) * MAX_QUEUED_PER_THREAD;
    if shared.handler.runs_inline(&request) {
        // Routes that skip the pool: at most `inline` at once, then 503.
        let inline = shared.options.threads.max(1) * MAX_INLINE_PER_THREAD;
        if shared.inline_running.fetch_add(1, Ordering::SeqCst) >= inline {
            shared.inline_running.fetch_sub(1, Ordering::SeqCst);
            log::debug!(
                "{}: {inline} inline requests running, shedding one",
                shared.options.name
            );
            return Response::error(&Error::Unavailable(
                "overloaded: too many requests at once; retry later".into(),
            ));
        }
        let response = respond(&*shared.handler, &shared.options.name, &request);
        shared.inline_running.fetch_sub(1, Ordering::SeqCst);
        return response;
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let handler = shared.handler.clone();
    let name = shared.options.name.clone();
    {
        // Checked and queued under the pool's lock, so concurrent connections cannot overshoot.
        let pool = shared.pool.lock();
        if pool.queued_count() >= limit {
            drop(pool);
            log::debug!("{name}: {limit} requests queued, shedding one");
            return Response::error(&Error::Unavailable(
                "overloaded: too many requests waiting; retry later".into(),
            ));
        }
        pool.execute(move || {
            let _ = tx.send(respond(&*handler, &name, &request));
        });
    }
    rx.recv()
        .unwrap_or_else(|_| Response::error(&Error::Internal("handler lost".into())))
}

/// Runs the handler; an error becomes its JSON body, a panic a 500.
fn respond(handler: &dyn Handler, name: &str, request: &Request) -> Response {
    match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
        Ok(result) => Response::from(result),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!(
                "{name}: handler panicked on {} {}: {what}",
                request.method,
                request.path
            );
            Response::error(&Error::Internal("internal error".into()))
        }
    }
}

//! The blocking HTTP/1.1 server every service runs on.
//!
//! Shape (no async, as the design card asks):
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
//! - Framing: only `Content-Length` bodies. A body with `Transfer-Encoding: chunked` gets 411; any
//!   other transfer coding, or `Transfer-Encoding` together with `Content-Length`, or two
//!   different `Content-Length`s, gets 400 and the connection is closed (request smuggling: two
//!   parsers reading one body differently); so does a `Content-Length` that is not plain digits. Bodies over
//!   [`MAX_BODY_BYTES`] get 413 without being read. After such an error response the server
//!   half-closes and discards what the client still sends for a moment (`linger`), so that the
//!   client reads the response instead of a connection reset.
//! - Responses are written with one `write_all` on a `TCP_NODELAY` socket, so there is no
//!   Nagle/delayed-ACK stall. Nothing from the request is ever copied into a response header.
//!
//! Caveats: no chunked request bodies, no `Expect: 100-continue` (clients that wait for it
//! proceed after their own timeout), no pipelining beyond reading requests one after another
//! from the same buffer.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use threadpool::ThreadPool;

use super::{Handler, Request, Response, MAX_BODY_BYTES};
use crate::api::parse_decimal;
use crate::config::HttpConfig;
use crate::error::{Error, Result};

/// Largest request head (request line plus headers) accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// A client that does not read its response for this long is dropped.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// After an error response, how long to keep discarding what the client still sends before
/// closing (see `linger`).
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Most bytes discarded after an error response; a client sending more sees a reset.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

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

/// After a failed `accept` (e.g. out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

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

/// How [`accept_loop`] admits connections.
pub(crate) struct Admission {
    /// Names the log lines and, with `-conn`, the connection threads.
    pub(crate) name: String,
    /// Most connections served at once; one more goes to `refuse` instead.
    pub(crate) max_connections: usize,
    /// Stack of a connection thread; `None` for the default.
    pub(crate) stack_bytes: Option<usize>,
}

/// The accepting thread of every listener (the HTTP server's and the replica's line ports):
/// each admitted connection gets a thread of its own that runs `serve`, so a slow or silent
/// client only ever holds its own thread. At most `max_connections` run at once; one more is
/// handed to `refuse` on this thread and dropped. Returns once `stopped()` holds after an
/// accept (the owner wakes it with a connection of its own: `accept` has no timeout).
pub(crate) fn accept_loop(
    listener: &TcpListener,
    admission: &Admission,
    stopped: impl Fn() -> bool,
    refuse: impl Fn(TcpStream),
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let name = &admission.name;
    let serve = Arc::new(serve);
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopped() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("{name}: accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= admission.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            refuse(stream);
            continue;
        }
        let mut builder = thread::Builder::new().name(format!("{name}-conn"));
        if let Some(bytes) = admission.stack_bytes {
            builder = builder.stack_size(bytes);
        }
        let (serve, done) = (serve.clone(), Closes(open.clone()));
        if let Err(e) = builder.spawn(move || {
            let _done = done;
            serve(stream);
        }) {
            log::warn!("{name}: cannot spawn a connection thread: {e}");
        }
    }
}

/// Counts a connection as closed when dropped: when its thread ends, even by a panic, or when
/// the thread could not be started (the closure, and this with it, is dropped then).
struct Closes(Arc<AtomicUsize>);

impl Drop for Closes {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
    loop {
        let request = match read_request(stream, &mut buf, &shared.options) {
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

/// Closes a connection after an error response without losing that response: closing a socket
/// with unread input makes the kernel send a reset, which can overtake the response, so a
/// client still sending an oversized or refused body would see "connection reset" instead of
/// the 413 or 400. So: send FIN, then discard input until the client closes, for at most
/// [`LINGER_TIMEOUT`] and [`LINGER_MAX_BYTES`].
fn linger(mut stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut discarded = 0;
    let mut chunk = [0u8; 8192];
    while discarded < LINGER_MAX_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
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

/// Reads one request from `stream`, using and refilling `buf` (bytes read past the previous
/// request stay there). `Ok(None)`: the connection closed or idled out between requests.
/// `Err`: a response to send before closing.
fn read_request(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    options: &ServerOptions,
) -> Result<Option<Request>> {
    let mut deadline = Instant::now() + options.idle_timeout;
    let mut started = !buf.is_empty();
    if started {
        deadline = Instant::now() + options.request_timeout;
    }
    // Head.
    let (head_len, mut request, content_length) = loop {
        if let Some(parsed) = parse_head(buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Error::BadRequest("request head too large".into()));
        }
        match read_some(stream, buf, deadline) {
            Ok(0) => return Ok(None),
            Ok(_) if !started => {
                started = true;
                deadline = Instant::now() + options.request_timeout;
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) && !started => return Ok(None),
            Err(e) if is_timeout(&e) => return Err(Error::RequestTimeout),
            Err(_) => return Ok(None),
        }
    };
    // Body.
    while buf.len() < head_len + content_length {
        match read_some(stream, buf, deadline) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(Error::RequestTimeout),
            Err(_) => return Ok(None),
        }
    }
    request.body = buf[head_len..head_len + content_length].to_vec();
    buf.drain(..head_len + content_length);
    Ok(Some(request))
}

/// Parses the request head if it is complete: the request (no body yet), the head's length and
/// the body's length. Framing errors come back as the error to answer with.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(usize, Request, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::BadRequest(format!("malformed request: {e}"))),
    };
    let target = parsed.path.unwrap_or("/");
    let mut request = Request::new(parsed.method.unwrap_or("GET"), target, Vec::new());
    request.http_1_0 = parsed.version == Some(0);
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = false;
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(header.value).trim().to_string();
        match name.as_str() {
            "content-length" => {
                // Digits only: a proxy in front may read "+5" differently (request smuggling).
                let n: usize = parse_decimal(&value)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| Error::BadRequest("invalid Content-Length".into()))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Error::BadRequest(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                transfer_encoding = true;
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(Error::BadRequest(format!(
                        "unsupported Transfer-Encoding {value:?}"
                    )));
                }
            }
            _ => {}
        }
        request.headers.push((name, value));
    }
    if transfer_encoding && content_length.is_some() {
        return Err(Error::BadRequest(
            "both Transfer-Encoding and Content-Length".into(),
        ));
    }
    if transfer_encoding {
        return Err(Error::LengthRequired);
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    Ok(Some((head_len, request, content_length)))
}

/// One `read` into `buf`, waiting at most until `deadline`.
fn read_some(mut stream: &TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
fn wants_keep_alive(request: &Request) -> bool {
    let connection = request.header("connection").map(|v| v.to_ascii_lowercase());
    if request.http_1_0 {
        connection.as_deref() == Some("keep-alive")
    } else {
        connection.as_deref() != Some("close")
    }
}

/// Writes a whole response with one `write_all`.
fn write_response(
    stream: &mut impl Write,
    response: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(128 + response.body.len());
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    )?;
    if let Some(allow) = &response.allow {
        write!(out, "Allow: {allow}\r\n")?;
    }
    // A request id is the client's string: only one that is a valid header value (visible
    // ASCII) is written as a header, so no id can add or split a header; the body always
    // carries it.
    if let Some(id) = response
        .request_id
        .as_deref()
        .filter(|id| is_header_token(id))
    {
        write!(out, "{REQUEST_ID_HEADER}: {id}\r\n")?;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.body);
    stream.write_all(&out)?;
    stream.flush()
}

/// The header that repeats the request id of a 503 "re-send" (`Response::request_id`).
pub const REQUEST_ID_HEADER: &str = "Request-Id";

/// True if `value` can be written as a header value as it is: non-empty visible ASCII.
fn is_header_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<(usize, Request, usize)>> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_405_names_the_allowed_methods() {
        let written = |response: &Response| {
            let mut out = Vec::new();
            write_response(&mut out, response, true).unwrap();
            String::from_utf8(out).unwrap()
        };
        let refused = written(&Response::error(&Error::MethodNotAllowed(
            "GET, POST".into(),
        )));
        assert!(
            refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{refused}"
        );
        assert!(
            refused.contains("\r\nAllow: GET, POST\r\n\r\n{"),
            "{refused}"
        );
        let ok = written(&Response::ok(1));
        assert!(
            !ok.contains("Allow") && ok.ends_with("keep-alive\r\n\r\n{\"data\":1}"),
            "{ok}"
        );
    }

    #[test]
    fn a_resend_names_its_request_id_in_a_header_and_the_body() {
        let written = |id: &str| {
            let mut out = Vec::new();
            let err = Error::Resend {
                message: "late; re-send".into(),
                request_id: id.into(),
            };
            write_response(&mut out, &Response::error(&err), true).unwrap();
            String::from_utf8(out).unwrap()
        };
        let resend = written("fe-1a-2");
        assert!(
            resend.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && resend.contains("\r\nRequest-Id: fe-1a-2\r\n\r\n{")
                && resend.ends_with(r#""request_id":"fe-1a-2"}}"#),
            "{resend}"
        );
        // An id that is no header value (a line break, a space, non-ASCII) is only in the body.
        for id in ["a\r\nSet-Cookie: x", "a b", "é"] {
            let resend = written(id);
            assert!(!resend.contains("Request-Id"), "{resend:?}");
            let body = resend.split_once("\r\n\r\n").unwrap().1;
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"]["request_id"], id, "{resend:?}");
        }
        let other = written_error(&Error::Unavailable("busy".into()));
        assert!(!other.contains("Request-Id") && !other.contains("request_id"));
    }

    fn written_error(err: &Error) -> String {
        let mut out = Vec::new();
        write_response(&mut out, &Response::error(err), true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_table() {
        let cases: &[(&str, Option<u16>)] = &[
            ("GET /stocks/X HTTP/1.1\r\nHost: a\r\n\r\n", None),
            ("POST /orders HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", None),
            (
                "POST /orders HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
                None,
            ),
            (
                "POST /o HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
                Some(400),
            ),
            ("POST /o HTTP/1.1\r\nContent-Length: x\r\n\r\n", Some(400)),
            (
                "POST /o HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
                Some(400),
            ),
            ("POST /o HTTP/1.1\r\nContent-Length: -0\r\n\r\n", Some(400)),
            ("POST /o HTTP/1.1\r\nContent-Length: \r\n\r\n", Some(400)),
            (
                "POST /o HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
                Some(400),
            ),
            (
                "POST /o HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                Some(400),
            ),
            (
                "POST /o HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                Some(400),
            ),
            (
                "POST /o HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some(411),
            ),
            (
                "POST /o HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
                Some(413),
            ),
            ("GARBAGE\x01 / HTTP/1.1\r\n\r\n", Some(400)),
        ];
        for (text, want) in cases {
            match (head(text), want) {
                (Ok(Some(_)), None) => {}
                (Err(e), Some(code)) => assert_eq!(e.status(), *code, "{text:?}: {e}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn partial_head_waits_for_more() {
        assert!(head("GET /stocks/X HTTP/1.1\r\nHost:").unwrap().is_none());
    }

    #[test]
    fn keep_alive_rules() {
        let cases = [
            ("", "", true),
            ("close", "", false),
            ("", "1.0", false),
            ("keep-alive", "1.0", true),
        ];
        for (connection, version, want) in cases {
            let mut req = Request::new("GET", "/", Vec::new());
            if !connection.is_empty() {
                req.headers.push(("connection".into(), connection.into()));
            }
            req.http_1_0 = version == "1.0";
            assert_eq!(wants_keep_alive(&req), want, "{connection:?} {version:?}");
        }
    }
}

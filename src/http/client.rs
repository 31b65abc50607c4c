//! Outbound HTTP: one shared pool of keep-alive connections per process, on `std::net` and
//! `httparse` (the same parser as the server).
//!
//! A call takes an idle connection to the address from the pool (or connects, within
//! [`CONNECT_TIMEOUT`]), writes the request with one `write_all`, reads the head and a
//! `Content-Length` body within the call's timeout, and puts the connection back unless
//! either side said `Connection: close`. The JSON error body of another service is read and
//! turned back into the same [`Error`] with `Error::from_body` (a 503 with a request id stays
//! an [`Error::Resend`] for that id). A transport failure (refused, reset, timed out) becomes
//! [`Error::Unreachable`].
//!
//! Why not ureq, the first design's choice: measured per call on the order path
//! (`docs/http-server.md`, "The client"), ureq checked every pooled connection before reuse
//! (two `ioctl`s and a failing `recv`), set three socket timeouts, and parsed the URL into
//! `http` types again; at 16 sessions that was a third of the front-end's syscalls and most
//! of its user-space time. Here a socket timeout is set only when the one already set would
//! overshoot the deadline, and a pooled connection is not checked before use: a call on a
//! connection the server closed meanwhile fails before any answer byte, and is sent once more
//! on a new connection. That is safe because every request the services send may be repeated
//! (orders carry their request id; propagates, applies, votes and invalidations are
//! idempotent by number and epoch), and the load client's orders carry ids too.
//!
//! Caveats: at most [`MAX_IDLE_PER_HOST`] idle connections are kept per address (beyond that,
//! calls open new ones: correct, slightly slower). No TLS, no redirects, no chunked answers
//! (our servers always send `Content-Length`; an answer without one is read to the end of the
//! connection). A host name is resolved at each new connection, not cached.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{Data, ErrorBody};
use crate::error::{Error, Result};
use crate::timing::CONNECT_TIMEOUT;

/// Idle keep-alive connections kept per address: at least any service's pool size.
pub(crate) const MAX_IDLE_PER_HOST: usize = 64;

/// The end of an [`Error::Unreachable`] message when nothing listens at the address (the
/// process is not running), as opposed to a peer that is silent or slow.
pub(crate) const REFUSED: &str = "connection refused";

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The read buffer a connection starts with: an answer of the order path fits.
const READ_CHUNK: usize = 8192;

/// Largest answer head read.
const MAX_ANSWER_HEAD_BYTES: usize = 64 * 1024;

/// A socket timeout already set may overshoot a call's deadline by this much before it is set
/// again: saves a `setsockopt` per call (every call's deadline is a little later than the
/// last), at the cost of a timeout this much late.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// True if `err` says nothing listens at the address: that process is not running.
pub(crate) fn is_refused(err: &Error) -> bool {
    matches!(err, Error::Unreachable(m) if m.ends_with(REFUSED))
}

/// A cheap-to-clone handle on the process's connection pool.
#[derive(Clone, Default)]
pub struct Client {
    pool: Arc<Pool>,
    /// `Authorization: Bearer <secret>\r\n`, sent on every call when the caller is a service
    /// of the deployment.
    authorization: Option<Arc<str>>,
}

impl Client {
    /// A client of the public API (no secret).
    pub fn new() -> Client {
        Client::default()
    }

    /// A client that proves it belongs to the deployment: every call carries `secret` (the
    /// services' own calls to each other's internal endpoints).
    pub fn with_secret(secret: &str) -> Client {
        Client {
            authorization: Some(format!("Authorization: Bearer {secret}\r\n").into()),
            ..Client::new()
        }
    }

    /// `GET http://{addr}{path}`, expecting `{"data": T}`.
    pub fn get<T: DeserializeOwned>(&self, addr: &str, path: &str, timeout: Duration) -> Result<T> {
        let call = Call::new("GET", addr, path, None, timeout, CONNECT_TIMEOUT);
        decode(&call, self.call(&call))
    }

    /// [`Client::get`] whose connect is bounded by `timeout` as well, for probes that must not
    /// wait out [`CONNECT_TIMEOUT`] on an unreachable host (the front-end's live page).
    pub(crate) fn probe<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<T> {
        let connect = timeout.min(CONNECT_TIMEOUT);
        let call = Call::new("GET", addr, path, None, timeout, connect);
        decode(&call, self.call(&call))
    }

    /// `POST http://{addr}{path}` with a JSON body, expecting `{"data": T}`.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        self.post_connecting(addr, path, body, timeout, CONNECT_TIMEOUT)
    }

    /// [`Client::post`] whose connect is bounded by `timeout` as well: for a call that must
    /// be over within `timeout` in all (the catalog's invalidations).
    pub(crate) fn post_within<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        self.post_connecting(addr, path, body, timeout, timeout.min(CONNECT_TIMEOUT))
    }

    fn post_connecting<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
        connect: Duration,
    ) -> Result<T> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("cannot encode a request to {addr}: {e}")))?;
        let call = Call::new("POST", addr, path, Some(&body), timeout, connect);
        decode(&call, self.call(&call))
    }

    /// Sends `call` on a pooled connection, once more on a new one if the pooled one turns
    /// out closed (see the module doc), and pools the connection again if it stays open.
    fn call(&self, call: &Call) -> std::result::Result<Answer, Failure> {
        let request = call.request(self.authorization.as_deref());
        if let Some(mut conn) = self.pool.take(call.addr) {
            match conn.exchange(&request, call.deadline) {
                Ok(answer) => return Ok(self.done(call, conn, answer)),
                // Closed by the server while idle (or a server restarted): nothing of the
                // answer came back, so sending again on a new connection is the same call.
                Err(Failure::Stale) => {}
                Err(f) => return Err(f),
            }
        }
        let mut conn = Conn::connect(call.addr, call.connect_timeout)?;
        match conn.exchange(&request, call.deadline) {
            Ok(answer) => Ok(self.done(call, conn, answer)),
            Err(Failure::Stale) => Err(Failure::Io(io::ErrorKind::ConnectionReset.into())),
            Err(f) => Err(f),
        }
    }

    fn done(&self, call: &Call, conn: Conn, answer: Answer) -> Answer {
        if answer.keep_alive {
            self.pool.put(call.addr, conn);
        }
        answer
    }
}

/// Idle connections by address, most recently used last.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
}

impl Pool {
    fn take(&self, addr: &str) -> Option<Conn> {
        self.idle.lock().get_mut(addr)?.pop()
    }

    fn put(&self, addr: &str, conn: Conn) {
        let mut idle = self.idle.lock();
        let conns = match idle.get_mut(addr) {
            Some(conns) => conns,
            None => idle.entry(addr.to_string()).or_default(),
        };
        if conns.len() < MAX_IDLE_PER_HOST {
            conns.push(conn);
        }
    }
}

/// One call's parameters.
struct Call<'a> {
    method: &'static str,
    addr: &'a str,
    path: &'a str,
    body: Option<&'a [u8]>,
    deadline: Instant,
    connect_timeout: Duration,
}

impl<'a> Call<'a> {
    fn new(
        method: &'static str,
        addr: &'a str,
        path: &'a str,
        body: Option<&'a [u8]>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Call<'a> {
        Call {
            method,
            addr,
            path,
            body,
            deadline: Instant::now() + timeout,
            connect_timeout,
        }
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// The whole request, head and body, for one `write_all`.
    fn request(&self, authorization: Option<&str>) -> Vec<u8> {
        let body = self.body.unwrap_or_default();
        let mut out = Vec::with_capacity(160 + body.len());
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "{} {} HTTP/1.1\r\nHost: {}\r\n{}",
            self.method,
            self.path,
            self.addr,
            authorization.unwrap_or_default()
        );
        if self.body.is_some() {
            let _ = write!(
                out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

/// A status and a body.
struct Answer {
    status: u16,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Why a call failed below HTTP.
#[derive(Debug)]
enum Failure {
    /// A pooled connection was closed before any byte of the answer came back.
    Stale,
    Io(io::Error),
    /// The answer was not HTTP we can read.
    Malformed(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// One keep-alive connection, the timeouts its socket has now, and its read buffer.
struct Conn {
    stream: TcpStream,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Zeroed once and kept for the connection's life (a fresh zeroed chunk per read was
    /// 1.5% of the services' CPU); the answer read so far is `buf[..filled]`.
    buf: Vec<u8>,
    filled: usize,
}

impl Conn {
    fn connect(addr: &str, timeout: Duration) -> std::result::Result<Conn, Failure> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        let addrs: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
            Ok(a) => vec![a],
            Err(_) => addr.to_socket_addrs()?.collect(),
        };
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Conn {
                        stream,
                        read_timeout: None,
                        write_timeout: None,
                        buf: vec![0; READ_CHUNK],
                        filled: 0,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(Failure::Io(last))
    }

    /// Writes `request` and reads the answer, all before `deadline`.
    fn exchange(
        &mut self,
        request: &[u8],
        deadline: Instant,
    ) -> std::result::Result<Answer, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Io(io::ErrorKind::TimedOut.into()));
        }
        if self.write_timeout.is_none_or(|t| t > left + TIMEOUT_SLACK) {
            self.stream.set_write_timeout(Some(left))?;
            self.write_timeout = Some(left);
        }
        self.filled = 0;
        match self.stream.write_all(request) {
            Ok(()) => {}
            Err(e) if is_closed(&e) => return Err(Failure::Stale),
            Err(e) => return Err(e.into()),
        }
        let (head_len, status, length, keep_alive) = self.read_head(deadline)?;
        let body = self.read_body(head_len, length, deadline)?;
        Ok(Answer {
            status,
            body,
            keep_alive: keep_alive && length.is_some(),
        })
    }

    /// Reads until the head is complete: its length, the status, the `Content-Length` and
    /// whether the server keeps the connection.
    fn read_head(
        &mut self,
        deadline: Instant,
    ) -> std::result::Result<(usize, u16, Option<usize>, bool), Failure> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf[..self.filled]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = response.code.unwrap_or(0);
                    let mut length = None;
                    let mut keep_alive = response.version == Some(1);
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .ok_or_else(|| Failure::Malformed("bad Content-Length".into()))?;
                            length = Some(n);
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            keep_alive = !h.value.eq_ignore_ascii_case(b"close");
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(Failure::Malformed("chunked answers are not read".into()));
                        }
                    }
                    return Ok((head_len, status, length, keep_alive));
                }
                Ok(httparse::Status::Partial) if self.filled < MAX_ANSWER_HEAD_BYTES => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Failure::Malformed("answer head too large".into()))
                }
                Err(e) => return Err(Failure::Malformed(format!("bad answer: {e}"))),
            }
            let fresh = self.filled == 0;
            match self.read_some(deadline) {
                Ok(0) if fresh => return Err(Failure::Stale),
                Ok(0) => return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) if fresh && is_closed(&e) => return Err(Failure::Stale),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The body after a head of `head_len` bytes: `length` bytes, or up to the end of the
    /// connection when the server gave no length.
    fn read_body(
        &mut self,
        head_len: usize,
        length: Option<usize>,
        deadline: Instant,
    ) -> std::result::Result<Vec<u8>, Failure> {
        if length.is_some_and(|n| n > MAX_ANSWER_BYTES) {
            return Err(Failure::Malformed("answer body too large".into()));
        }
        if let Some(n) = length {
            // One allocation for a large answer (a page of the log) instead of doublings.
            let need = head_len + n;
            if need > self.buf.len() {
                self.buf.resize(need, 0);
            }
        }
        loop {
            let have = self.filled - head_len;
            match length {
                Some(n) if have >= n => break,
                _ if have > MAX_ANSWER_BYTES => {
                    return Err(Failure::Malformed("answer body too large".into()))
                }
                _ => {}
            }
            match self.read_some(deadline)? {
                0 if length.is_none() => break,
                0 => return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into())),
                _ => {}
            }
        }
        let end = length.map_or(self.filled, |n| head_len + n);
        if end != self.filled {
            return Err(Failure::Malformed("bytes after the answer".into()));
        }
        Ok(self.buf[head_len..end].to_vec())
    }

    /// One `read` into the buffer, waiting at most until `deadline`.
    fn read_some(&mut self, deadline: Instant) -> io::Result<usize> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if self.read_timeout.is_none_or(|t| t > left + TIMEOUT_SLACK) {
                self.stream.set_read_timeout(Some(left))?;
                self.read_timeout = Some(left);
            }
            if self.filled == self.buf.len() {
                let grown = (2 * self.buf.len()).max(READ_CHUNK);
                self.buf.resize(grown, 0);
            }
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                // The timeout set was shorter than what is left now (set for an earlier,
                // nearer deadline): set it again and go on waiting.
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {
                    self.read_timeout = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer closed the connection (or never had it: a server restarted since).
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

fn decode<T: DeserializeOwned>(
    call: &Call,
    answer: std::result::Result<Answer, Failure>,
) -> Result<T> {
    let answer = answer.map_err(|f| {
        let url = call.url();
        Error::Unreachable(match f {
            Failure::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                format!("{url}: {REFUSED}")
            }
            Failure::Io(e) if is_timeout(&e) => format!("{url}: timed out"),
            Failure::Io(e) => format!("{url}: {e}"),
            Failure::Stale => format!("{url}: connection closed"),
            Failure::Malformed(why) => format!("{url}: {why}"),
        })
    })?;
    if answer.status == 200 {
        let data: Data<T> = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::Internal(format!("{}: unexpected answer: {e}", call.url())))?;
        return Ok(data.data);
    }
    let (message, request_id) = match serde_json::from_slice::<ErrorBody>(&answer.body) {
        Ok(err) => (err.error.message, err.error.request_id),
        Err(_) => (
            String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect(),
            None,
        ),
    };
    Err(Error::from_body(answer.status, message, request_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A server that answers each accepted connection's requests with `answers`, one per
    /// request, then closes it; returns its address.
    fn scripted(answers: Vec<Vec<&'static str>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        thread::spawn(move || {
            for script in answers {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                for answer in script {
                    let mut buf = [0u8; 4096];
                    if stream.read(&mut buf).unwrap_or(0) == 0 {
                        break;
                    }
                    let _ = stream.write_all(answer.as_bytes());
                }
            }
        });
        addr
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"data\":1}";
    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_connection_is_reused_and_a_closed_one_replaced() {
        // The first connection answers twice then closes; the third call finds it closed
        // and goes to the second connection without an error.
        let addr = scripted(vec![vec![OK, OK], vec![OK]]);
        let client = Client::new();
        for _ in 0..3 {
            let n: u32 = client.get(&addr, "/", SECOND).expect("answered");
            assert_eq!(n, 1);
        }
    }

    #[test]
    fn an_error_body_comes_back_as_the_same_error() {
        let answer = "HTTP/1.1 409 Conflict\r\nContent-Length: 42\r\n\r\n{\"error\":{\"code\":409,\"message\":\"no more\"}}";
        let addr = scripted(vec![vec![answer]]);
        let got: Result<u32> = Client::new().get(&addr, "/", SECOND);
        assert_eq!(got, Err(Error::Conflict("no more".into())));
    }

    #[test]
    fn nothing_listening_is_refused_and_silence_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent = listener.local_addr().expect("addr").to_string();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let client = Client::new();
        let refused: Result<u32> = client.get(&closed, "/", SECOND);
        assert!(refused.as_ref().is_err_and(is_refused), "{refused:?}");
        let started = Instant::now();
        let silence: Result<u32> = client.get(&silent, "/", Duration::from_millis(200));
        assert!(
            matches!(&silence, Err(Error::Unreachable(m)) if m.ends_with("timed out")),
            "{silence:?}"
        );
        assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
        drop(listener);
    }

    #[test]
    fn an_answer_without_a_length_is_read_to_the_end_and_not_reused() {
        let answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"data\":2}";
        let addr = scripted(vec![vec![answer], vec![answer]]);
        let client = Client::new();
        for _ in 0..2 {
            let n: u32 = client.get(&addr, "/", SECOND).expect("answered");
            assert_eq!(n, 2);
        }
    }
}

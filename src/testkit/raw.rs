//! A raw HTTP/1.1 client for the tests and benches that must see exact bytes, statuses and
//! closes, and the burst check shared by `tests/http_server.rs` and `benches/starvation.rs`, so
//! that the test and the evidence against tiny_http run exactly the same code.
//!
//! - [`request`]: one request on a fresh connection (`Connection: close`), read to the end:
//!   status and JSON body ([`parse_response`] reads those two off any bytes); [`exchange`]:
//!   the same with every header and the raw body.
//! - [`RawConn`]: one keep-alive connection that writes raw bytes and reads whole responses;
//!   [`read_one_response`] does the same on a bare `TcpStream`.
//! - [`burst`]: many keep-alive connections at once (protocol below).
//!
//! The clients are plain `std::net::TcpStream`s, not ureq: a test of the server layer should not
//! depend on how a client library pools or retries connections, and a raw client shows a stuck
//! connection as what it is (a read that times out) instead of a reconnect.
//!
//! Burst protocol: `connections` client threads each connect to `addr`, then all of them and the
//! caller meet at one barrier; the caller runs `release` (which starts the server when the
//! listener is bound but not yet served, so that every connection is already waiting in the
//! accept queue: the hardest burst a server can get), then each client sends `requests`
//! keep-alive GETs one after another and reads each answer with a read timeout of `timeout`.
//! The first request on a connection that is not answered in time ends that connection; it and
//! the rest of that connection's requests count as unanswered. Every client keeps its connection
//! open until all clients are done, as a pooling client (ureq, a browser) does: a server that
//! parks a connection until another one closes must not be rescued by the burst's own clients
//! finishing early.
//!
//! Caveats: the response readers understand only what our server and tiny_http send
//! (`Content-Length` bodies, no chunked responses, no `100 Continue`); [`parse_response`] takes
//! the status from the first line as it is, without checking the rest of the head.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// The 60-byte JSON body every benchmark server answers with.
pub const BODY_60: &str = r#"{"data":{"name":"GameStart","price":15.99,"quantity":10000}}"#;

/// Longest response head the reader accepts.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Sends one request on a fresh connection with `Connection: close` and `extra_headers`
/// (whole lines, each ending in `\r\n`), and reads until the server closes or `timeout`
/// passes between two reads: every byte that came back.
pub fn send_once(
    addr: &str,
    method: &str,
    target: &str,
    extra_headers: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    // A timeout or a reset after part of the answer still leaves what came in `response`.
    let _ = stream.read_to_end(&mut response);
    Ok(response)
}

/// [`send_once`], then the status and the JSON body (`Null` if none or not JSON), read
/// loosely by [`parse_response`]. `Err` when nothing that looks like a status line came back.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    extra_headers: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, serde_json::Value)> {
    let response = send_once(addr, method, target, extra_headers, body, timeout)?;
    parse_response(&response).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "no status in {:?}",
                String::from_utf8_lossy(&response).into_owned()
            ),
        )
    })
}

/// [`send_once`], then the whole response parsed: status, headers (names lower-cased) and
/// the body (everything after the head, up to the close). `Err` when no complete head came.
pub fn exchange(
    addr: &str,
    method: &str,
    target: &str,
    extra_headers: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<RawResponse> {
    let response = send_once(addr, method, target, extra_headers, body, timeout)?;
    match parse_response_head(&response)? {
        Some((head_len, status, headers)) => Ok(RawResponse {
            status,
            headers,
            body: response[head_len..].to_vec(),
        }),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "no complete head in {:?}",
                String::from_utf8_lossy(&response).into_owned()
            ),
        )),
    }
}

/// The status (the second word of the first line) and the JSON body (`Null` when there is
/// none or it is not JSON) of one response's bytes; `None` without a status.
pub fn parse_response(bytes: &[u8]) -> Option<(u16, serde_json::Value)> {
    let text = String::from_utf8_lossy(bytes);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    Some((status, body))
}

/// Reads one HTTP response (headers, then `Content-Length` bytes of body) from a keep-alive
/// connection; `None` when the connection ends or times out first.
pub fn read_one_response(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                bytes.truncate(end + 4 + length);
                return Some(bytes);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One keep-alive client connection that writes raw requests and reads whole responses.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// One response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl RawConn {
    /// Connects with `TCP_NODELAY` (like any latency-minded client) and a read timeout.
    pub fn connect(addr: SocketAddr, read_timeout: Duration) -> io::Result<RawConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(read_timeout))?;
        Ok(RawConn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one whole response. A read timeout comes back as `WouldBlock`/`TimedOut`; the
    /// peer closing before a full response as `UnexpectedEof`.
    pub fn read_response(&mut self) -> io::Result<RawResponse> {
        loop {
            if let Some((head_len, status, headers)) = parse_response_head(&self.buf)? {
                let length = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                while self.buf.len() < head_len + length {
                    self.fill()?;
                }
                let body = self.buf[head_len..head_len + length].to_vec();
                self.buf.drain(..head_len + length);
                return Ok(RawResponse {
                    status,
                    headers,
                    body,
                });
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            self.fill()?;
        }
    }

    /// `GET path` and its response.
    pub fn get(&mut self, path: &str) -> io::Result<RawResponse> {
        self.send(get_request(path).as_bytes())?;
        self.read_response()
    }

    /// Reads until the peer closes: `Ok(bytes)` that came before the end of stream, or the
    /// error (a reset counts as closed for callers that only want to know "closed").
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut rest)?;
        Ok(rest)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

type Head = (usize, u16, Vec<(String, String)>);

fn parse_response_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let headers = parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).trim().to_string();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect();
            Ok(Some((n, parsed.code.unwrap_or(0), headers)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// A keep-alive GET as a browser-less client would send it.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n")
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What one burst saw.
#[derive(Debug, Default, Clone)]
pub struct BurstOutcome {
    /// Requests answered 200 within the timeout.
    pub answered: usize,
    /// Requests not answered in time, never sent because their connection was stuck, or
    /// answered with something other than 200.
    pub unanswered: usize,
    /// Connections that had at least one unanswered request.
    pub stuck_connections: usize,
    /// Slowest answered request.
    pub slowest: Duration,
    /// One line per failed connection, for the assertion message.
    pub failures: Vec<String>,
}

/// Runs one burst against `addr`, calling `release` once every client has connected; see the
/// module doc.
pub fn burst(
    addr: SocketAddr,
    connections: usize,
    requests: usize,
    timeout: Duration,
    release: impl FnOnce(),
) -> BurstOutcome {
    let barrier = Arc::new(Barrier::new(connections + 1));
    let clients = (0..connections)
        .map(|i| {
            let barrier = barrier.clone();
            thread::Builder::new()
                .name(format!("burst-client-{i}"))
                .spawn(move || {
                    let (outcome, conn) = burst_client(addr, &barrier, requests, timeout);
                    // Hold the connection open until every client is done; see the module doc.
                    barrier.wait();
                    drop(conn);
                    outcome
                })
        })
        .collect::<io::Result<_>>();
    // Without every client the barrier would never open: a burst that cannot start its
    // threads is all unanswered.
    let clients: Vec<_> = match clients {
        Ok(clients) => clients,
        Err(e) => {
            return BurstOutcome {
                unanswered: connections * requests,
                stuck_connections: connections,
                failures: vec![format!("cannot start the burst clients: {e}")],
                ..BurstOutcome::default()
            }
        }
    };
    barrier.wait();
    release();
    // The clients' closing barrier has the same parties: take part so that they can pass it.
    barrier.wait();
    let mut outcome = BurstOutcome::default();
    for (i, client) in clients.into_iter().enumerate() {
        let one = client.join().unwrap_or_else(|_| ClientOutcome {
            answered: 0,
            slowest: Duration::ZERO,
            failure: Some("the client thread panicked".into()),
        });
        outcome.answered += one.answered;
        outcome.slowest = outcome.slowest.max(one.slowest);
        if let Some(why) = one.failure {
            outcome.unanswered += requests - one.answered;
            outcome.stuck_connections += 1;
            outcome.failures.push(format!(
                "connection {i}: {} answered, then {why}",
                one.answered
            ));
        }
    }
    outcome
}

struct ClientOutcome {
    answered: usize,
    slowest: Duration,
    failure: Option<String>,
}

/// One burst connection: connect, meet the others at the barrier, then `requests` GETs in
/// sequence. Returns the connection so that the caller decides when it closes.
fn burst_client(
    addr: SocketAddr,
    barrier: &Barrier,
    requests: usize,
    timeout: Duration,
) -> (ClientOutcome, Option<RawConn>) {
    let mut outcome = ClientOutcome {
        answered: 0,
        slowest: Duration::ZERO,
        failure: None,
    };
    let conn = RawConn::connect(addr, timeout);
    // Every client must reach the barrier, or the caller would wait forever.
    barrier.wait();
    let mut conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            outcome.failure = Some(format!("connect failed: {e}"));
            return (outcome, None);
        }
    };
    let request = get_request("/stocks/GameStart");
    for _ in 0..requests {
        let start = Instant::now();
        let result = conn
            .send(request.as_bytes())
            .and_then(|()| conn.read_response());
        let took = start.elapsed();
        match result {
            Ok(resp) if resp.status == 200 && took <= timeout => {
                outcome.answered += 1;
                outcome.slowest = outcome.slowest.max(took);
            }
            Ok(resp) => {
                outcome.failure = Some(format!("status {} after {took:?}", resp.status));
                break;
            }
            Err(e) if is_timeout(&e) => {
                outcome.failure = Some(format!("no answer within {timeout:?}"));
                break;
            }
            Err(e) => {
                outcome.failure = Some(format!("{e} after {took:?}"));
                break;
            }
        }
    }
    (outcome, Some(conn))
}

//! HTTP/1.1 framing on the server side: reading one request off a connection (head parsed by
//! `httparse`, then a `Content-Length` body), deciding whether the connection stays open, and
//! writing a whole response with one `write_all`.
//!
//! - Only `Content-Length` bodies. A body with `Transfer-Encoding: chunked` gets 411; any
//!   other transfer coding, or `Transfer-Encoding` together with `Content-Length`, or two
//!   different `Content-Length`s, gets 400 and the connection is closed (request smuggling:
//!   two parsers reading one body differently); so does a `Content-Length` that is not plain
//!   digits. Bodies over [`MAX_BODY_BYTES`] get 413 without being read.
//! - After such an error response the server half-closes and discards what the client still
//!   sends for a moment ([`linger`]), so that the client reads the response instead of a
//!   connection reset.
//! - Nothing from the request is ever copied into a response header, except a request id that
//!   is a valid header value as it is.
//!
//! Caveats: no chunked request bodies, no `Expect: 100-continue` (clients that wait for it
//! proceed after their own timeout), no pipelining beyond reading requests one after another
//! from the same buffer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::ServerOptions;
use crate::api::parse_decimal;
use crate::error::{Error, Result};
use crate::http::{Request, Response, MAX_BODY_BYTES};
use crate::timing::LINGER_TIMEOUT;

/// Largest request head (request line plus headers) accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// Most bytes discarded after an error response; a client sending more sees a reset.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// Closes a connection after an error response without losing that response: closing a socket
/// with unread input makes the kernel send a reset, which can overtake the response, so a
/// client still sending an oversized or refused body would see "connection reset" instead of
/// the 413 or 400. So: send FIN, then discard input until the client closes, for at most
/// [`LINGER_TIMEOUT`] and [`LINGER_MAX_BYTES`].
pub(super) fn linger(mut stream: &TcpStream) {
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

/// Reads one request from `stream`, using and refilling `buf` (bytes read past the previous
/// request stay there). `Ok(None)`: the connection closed or idled out between requests.
/// `Err`: a response to send before closing.
pub(super) fn read_request(
    stream: &TcpStream,
    reader: &mut Reader,
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
        match read_some(stream, reader, buf, deadline) {
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
        match read_some(stream, reader, buf, deadline) {
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

/// A connection's reading state, kept across its requests: a chunk zeroed once (a fresh
/// zeroed 8 KiB per read was 1.5% of the services' CPU under load) and the read timeout its
/// socket has now, so that it is set again only when it would overshoot the deadline (every
/// request's deadline is a little later than the last one's: a `setsockopt` per read saved).
pub(super) struct Reader {
    chunk: [u8; READ_CHUNK],
    timeout: Option<Duration>,
}

/// Bytes one `read` may take.
const READ_CHUNK: usize = 8192;

/// How far the socket's read timeout may overshoot a deadline before it is set again.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

impl Reader {
    pub(super) fn new() -> Reader {
        Reader {
            chunk: [0; READ_CHUNK],
            timeout: None,
        }
    }
}

/// One `read` into `buf`, waiting at most until `deadline` (and at most [`TIMEOUT_SLACK`]
/// past it).
fn read_some(
    mut stream: &TcpStream,
    reader: &mut Reader,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if reader.timeout.is_none_or(|t| t > left + TIMEOUT_SLACK) {
            stream.set_read_timeout(Some(left))?;
            reader.timeout = Some(left);
        }
        match stream.read(&mut reader.chunk) {
            Ok(n) => {
                buf.extend_from_slice(&reader.chunk[..n]);
                return Ok(n);
            }
            // The timeout was set for an earlier, nearer deadline: set it again, wait on.
            Err(e) if is_timeout(&e) && Instant::now() < deadline => reader.timeout = None,
            Err(e) => return Err(e),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
pub(super) fn wants_keep_alive(request: &Request) -> bool {
    let connection = request.header("connection").map(|v| v.to_ascii_lowercase());
    if request.http_1_0 {
        connection.as_deref() == Some("keep-alive")
    } else {
        connection.as_deref() != Some("close")
    }
}

/// Writes a whole response with one `write_all`.
pub(super) fn write_response(
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

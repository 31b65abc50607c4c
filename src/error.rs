//! The one error type of the whole system.
//!
//! Every fallible function in the crate returns [`Result`]. Each variant is a kind of failure a
//! caller may want to react to differently; [`Error::status`] is the single place that maps a
//! variant to an HTTP status, and `Error::from_status` is its inverse, used when an error body
//! comes back from another service so that, say, a 409 from the catalog stays a 409 at the
//! front-end.

use std::fmt;

/// A crate-wide result.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong, flat on purpose: one `match` shows every case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed: bad JSON, a missing field, a bad value, bad framing (400).
    BadRequest(String),
    /// No such stock, order or route (404).
    NotFound(String),
    /// The path exists but not with this method (405). Carries the methods it has, for the
    /// `Allow` header (`GET, POST`); empty when rebuilt from another service's answer.
    MethodNotAllowed(String),
    /// An endpoint that only services call was called without the deployment's secret (401).
    Unauthorized(String),
    /// A body without a length (chunked uploads are refused) (411).
    LengthRequired,
    /// The request did not arrive in full within the server's request timeout (408).
    RequestTimeout,
    /// The trade cannot be done: not enough stock to buy, or a stale epoch (409).
    Conflict(String),
    /// A well-formed request that cannot be carried out against this service's state, through
    /// no fault of timing: the catalog asked to apply an order for a stock it does not have,
    /// or one that would take a quantity below zero (422). Retrying the same request does not
    /// help; nothing changed.
    Unprocessable(String),
    /// A request body over the limit (413).
    PayloadTooLarge,
    /// An order replica that is not the leader was asked to take an order (421). The
    /// front-end reacts by re-selecting the leader and retrying.
    NotLeader(String),
    /// A dependency answered that it cannot serve now, or no replica leads (503).
    Unavailable(String),
    /// An order that was not acknowledged in time but may still commit (503): the client
    /// must re-send it with `request_id`, the id it was (or would have been) logged under.
    /// The message says so ([`crate::api::RESEND`]); the id also travels in the error body
    /// and in a `Request-Id` header, because a client that sent no id cannot know the one
    /// the front-end gave its order, and re-sending without it could trade twice.
    Resend { message: String, request_id: String },
    /// A peer could not be reached at all: refused, reset or timed out. Surfaces as 503; the
    /// front-end treats it as a reason to re-select the leader, unlike [`Error::Unavailable`],
    /// which is a peer's real answer.
    Unreachable(String),
    /// A bug or an I/O failure inside this process (500).
    Internal(String),
    /// A replica's own order log or hard state could not be written, synced or read back
    /// (500). Kept apart from [`Error::Internal`] because the replica's core reacts to it, and
    /// only to it, by stepping down and reloading what is durable: a refusal it answers a peer
    /// with, or some other failure, must never make it do that.
    Storage(String),
    /// A bad configuration; binaries print it and exit with code 2.
    Config(String),
    /// A state file or the data directory cannot be used at start (corrupt, truncated,
    /// damaged, unreadable); the message names the file. Binaries print it and exit with code
    /// 3 (`startup::EXIT_STATE`), leaving the file as it is.
    State(String),
}

impl Error {
    /// The HTTP status for this error: the one place that decides it.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Unauthorized(_) => 401,
            Error::LengthRequired => 411,
            Error::RequestTimeout => 408,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge => 413,
            Error::Unprocessable(_) => 422,
            Error::NotLeader(_) => 421,
            Error::Unavailable(_) | Error::Unreachable(_) | Error::Resend { .. } => 503,
            Error::Internal(_) | Error::Storage(_) | Error::Config(_) | Error::State(_) => 500,
        }
    }

    /// Rebuilds an error from a status and message that another service sent back.
    pub(crate) fn from_status(status: u16, message: String) -> Error {
        match status {
            400 => Error::BadRequest(message),
            401 => Error::Unauthorized(message),
            404 => Error::NotFound(message),
            405 => Error::MethodNotAllowed(String::new()),
            409 => Error::Conflict(message),
            411 => Error::LengthRequired,
            408 => Error::RequestTimeout,
            413 => Error::PayloadTooLarge,
            422 => Error::Unprocessable(message),
            421 => Error::NotLeader(message),
            503 => Error::Unavailable(message),
            _ => Error::Internal(format!("status {status}: {message}")),
        }
    }

    /// Rebuilds an error from another service's error body: [`Error::from_status`], except
    /// that a 503 carrying a request id is an [`Error::Resend`] for that id.
    pub(crate) fn from_body(status: u16, message: String, request_id: Option<String>) -> Error {
        match request_id {
            Some(request_id) if status == 503 => Error::Resend {
                message,
                request_id,
            },
            _ => Error::from_status(status, message),
        }
    }

    /// True for a 503 whose order may still commit: an [`Error::Resend`], or a 503 whose
    /// message says "re-send" without an id (from a replica's core, or an older service).
    pub(crate) fn is_resend(&self) -> bool {
        match self {
            Error::Resend { .. } => true,
            Error::Unavailable(m) => m.contains(crate::api::RESEND),
            _ => false,
        }
    }

    /// This error with `request_id` attached if it says "re-send": whoever knows the id an
    /// order went under calls this on every error it answers that order with.
    pub(crate) fn with_request_id(self, request_id: &str) -> Error {
        match self {
            Error::Unavailable(message) if message.contains(crate::api::RESEND) => Error::Resend {
                message,
                request_id: request_id.to_string(),
            },
            other => other,
        }
    }

    /// The request id to re-send with, for an [`Error::Resend`].
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Resend { request_id, .. } => Some(request_id),
            _ => None,
        }
    }

    /// The message that goes into the JSON error body.
    pub fn message(&self) -> String {
        match self {
            Error::BadRequest(m)
            | Error::NotFound(m)
            | Error::Unauthorized(m)
            | Error::Conflict(m)
            | Error::Unprocessable(m)
            | Error::NotLeader(m)
            | Error::Unavailable(m)
            | Error::Unreachable(m)
            | Error::Internal(m)
            | Error::Storage(m)
            | Error::Config(m)
            | Error::State(m)
            | Error::Resend { message: m, .. } => m.clone(),
            Error::MethodNotAllowed(_) => "method not allowed".into(),
            Error::LengthRequired => "a request body needs a Content-Length".into(),
            Error::PayloadTooLarge => "request body too large".into(),
            Error::RequestTimeout => "request not complete within the request timeout".into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "config: {m}"),
            Error::State(m) => write!(f, "state: {m}"),
            other => write!(f, "{} {}", other.status(), other.message()),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Internal(format!("io: {err}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Internal(format!("json: {err}"))
    }
}

impl From<csv::Error> for Error {
    fn from(err: csv::Error) -> Self {
        Error::Internal(format!("csv: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        let cases = [
            Error::BadRequest("x".into()),
            Error::NotFound("x".into()),
            Error::MethodNotAllowed(String::new()),
            Error::LengthRequired,
            Error::RequestTimeout,
            Error::Conflict("x".into()),
            Error::PayloadTooLarge,
            Error::Unprocessable("x".into()),
            Error::NotLeader("x".into()),
            Error::Unavailable("x".into()),
        ];
        for err in cases {
            assert_eq!(Error::from_status(err.status(), err.message()), err);
        }
    }

    #[test]
    fn a_resend_keeps_its_request_id_across_the_wire() {
        let resend = Error::Resend {
            message: format!("not committed in time; {}", crate::api::RESEND),
            request_id: "fe-1".into(),
        };
        assert_eq!(resend.status(), 503);
        let back = Error::from_body(503, resend.message(), Some("fe-1".into()));
        assert_eq!(back, resend);
        assert_eq!(back.request_id(), Some("fe-1"));
        // Only a 503 is a re-send; an id on another status is ignored.
        assert_eq!(
            Error::from_body(409, "x".into(), Some("fe-1".into())),
            Error::Conflict("x".into())
        );
        let bare = Error::Unavailable(format!("stepped down; {}", crate::api::RESEND));
        assert!(bare.is_resend() && bare.request_id().is_none());
        let tagged = bare.with_request_id("r-9");
        assert_eq!(tagged.request_id(), Some("r-9"));
        assert!(tagged.is_resend());
        // Other errors are left alone: a 503 that is not about this order, a 409.
        for other in [
            Error::Unavailable("catalog unavailable".into()),
            Error::Conflict("not enough".into()),
        ] {
            assert!(!other.is_resend());
            assert_eq!(other.clone().with_request_id("r-9"), other);
        }
    }
}

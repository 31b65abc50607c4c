//! Outbound HTTP: one shared keep-alive `ureq` agent per process.
//!
//! Every call has per-phase timeouts (connect, send, receive) rather than ureq's
//! `timeout_global`, which spawns a thread per call. Status codes are not errors at the ureq
//! level (`http_status_as_error(false)`), so the JSON error body of another service is read and
//! turned back into the same [`Error`] with `Error::from_body` (a 503 with a request id stays an
//! [`Error::Resend`] for that id). A transport failure (refused,
//! reset, timed out) becomes [`Error::Unreachable`].
//!
//! Caveats: ureq keeps at most [`MAX_IDLE_PER_HOST`] idle connections per host; beyond that,
//! calls open new connections (correct, slightly slower).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{Data, ErrorBody};
use crate::error::{Error, Result};

/// Idle keep-alive connections kept per host: at least any service's pool size.
pub(crate) const MAX_IDLE_PER_HOST: usize = 64;

/// How long to wait for a TCP connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The agent-wide default wait for a response; callers can pass a tighter one per call.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The end of an [`Error::Unreachable`] message when nothing listens at the address (the
/// process is not running), as opposed to a peer that is silent or slow.
pub(crate) const REFUSED: &str = "connection refused";

/// True if `err` says nothing listens at the address: that process is not running.
pub(crate) fn is_refused(err: &Error) -> bool {
    matches!(err, Error::Unreachable(m) if m.ends_with(REFUSED))
}

/// A cheap-to-clone handle on the process's agent.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `Bearer <secret>`, sent on every call when the caller is a service of the deployment.
    authorization: Option<String>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client of the public API (no secret).
    pub fn new() -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections_per_host(MAX_IDLE_PER_HOST)
            .max_idle_connections(4 * MAX_IDLE_PER_HOST)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_send_request(Some(DEFAULT_RESPONSE_TIMEOUT))
            .timeout_send_body(Some(DEFAULT_RESPONSE_TIMEOUT))
            .timeout_recv_response(Some(DEFAULT_RESPONSE_TIMEOUT))
            .timeout_recv_body(Some(DEFAULT_RESPONSE_TIMEOUT))
            .build();
        Client {
            agent: config.into(),
            authorization: None,
        }
    }

    /// A client that proves it belongs to the deployment: every call carries `secret` (the
    /// services' own calls to each other's internal endpoints).
    pub fn with_secret(secret: &str) -> Client {
        Client {
            authorization: Some(format!("Bearer {secret}")),
            ..Client::new()
        }
    }

    /// `GET http://{addr}{path}`, expecting `{"data": T}`.
    pub fn get<T: DeserializeOwned>(&self, addr: &str, path: &str, timeout: Duration) -> Result<T> {
        let url = format!("http://{addr}{path}");
        let resp = self.prepare(self.agent.get(&url), timeout).call();
        decode(&url, resp)
    }

    /// [`Client::get`] whose connect is bounded by `timeout` as well, for probes that must not
    /// wait out [`CONNECT_TIMEOUT`] on an unreachable host (the front-end's live page).
    pub(crate) fn probe<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<T> {
        let url = format!("http://{addr}{path}");
        let req = self
            .agent
            .get(&url)
            .config()
            .timeout_connect(Some(timeout.min(CONNECT_TIMEOUT)))
            .build();
        decode(&url, self.prepare(req, timeout).call())
    }

    /// `POST http://{addr}{path}` with a JSON body, expecting `{"data": T}`.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        let url = format!("http://{addr}{path}");
        let resp = self.prepare(self.agent.post(&url), timeout).send_json(body);
        decode(&url, resp)
    }

    /// What every call carries: the secret when this is a service's client, and `timeout` for
    /// the answer (head and body).
    fn prepare<B>(
        &self,
        mut req: ureq::RequestBuilder<B>,
        timeout: Duration,
    ) -> ureq::RequestBuilder<B> {
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        req.config()
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build()
    }
}

fn decode<T: DeserializeOwned>(
    url: &str,
    resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<T> {
    let mut resp = resp.map_err(|e| match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Error::Unreachable(format!("{url}: {REFUSED}"))
        }
        e => Error::Unreachable(format!("{url}: {e}")),
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| Error::Unreachable(format!("{url}: reading body: {e}")))?;
    if status == 200 {
        let data: Data<T> = serde_json::from_slice(&body)
            .map_err(|e| Error::Internal(format!("{url}: unexpected answer: {e}")))?;
        return Ok(data.data);
    }
    let (message, request_id) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(err) => (err.error.message, err.error.request_id),
        Err(_) => (
            String::from_utf8_lossy(&body).chars().take(200).collect(),
            None,
        ),
    };
    Err(Error::from_body(status, message, request_id))
}

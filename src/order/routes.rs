//! A replica's HTTP routes and line answers: orders from the front-ends, reads of the log,
//! the replication between replicas, and the answers to the leader selection's TCP lines.
//!
//! Requests become events for the core and wait for its answer with a deadline
//! (`crate::timing`: [`ORDER_WAIT`], [`PEER_WAIT`], [`YOU_WIN_WAIT`]); reads (`GET /orders/..`,
//! `/health`) never go through the core: they read the log's memory and the status the core
//! publishes after each flush.
//!
//! Caveats: an order still uncommitted when its deadline passes is answered 503 "re-send with
//! the same request_id": it may still commit, and the retry finds it. What a `/propagate`
//! must hold is checked here (`check_propagate`), but not whether its stocks exist.

use std::sync::Arc;
use std::time::Instant;

use log::warn;

use super::core::{self, Answer, Event, Read};
use super::driver::Shared;
use super::failpoint;
use crate::api::{
    decimal_param, minus_one, new_request_id, Order, OrderAck, OrderRequest, Propagate,
    ReplicaHealth, SyncState, VoteRequest,
};
use crate::error::{Error, Result};
use crate::http::Runs::Inline;
use crate::http::{self, Handler, Request, Response, Route};
use crate::timing::{ORDER_WAIT, PEER_TIMEOUT, PEER_WAIT, READ_WAIT, YOU_WIN_WAIT};

/// Most entries in one `GET /orders?since=` page.
pub(crate) const MAX_PAGE: usize = 1000;

impl Shared {
    pub(super) fn health(&self) -> ReplicaHealth {
        let s = self.status();
        ReplicaHealth {
            status: "ok".into(),
            id: self.id,
            role: s.role,
            epoch: s.epoch,
            leader: s.leader,
            latest: minus_one::encode(s.latest),
            commit: Some(minus_one::encode(s.commit)),
            applied: Some(minus_one::encode(s.applied)),
            recovering: s.recovering,
        }
    }

    /// `GET /synchronize`: asked of the core rather than read from the published status, so
    /// that an epoch granted a moment ago is never reported as older (a recovering replica
    /// takes its epoch floor from these answers).
    fn sync_state(&self) -> Result<SyncState> {
        match self.ask(|token| Event::Probe { token }, PEER_TIMEOUT) {
            Some(Answer::Probe(state)) => Ok(state),
            _ => Err(Error::Unavailable(format!(
                "replica {} did not answer in time",
                self.id
            ))),
        }
    }

    /// `POST /orders`.
    fn place_order(&self, req: &Request) -> Result<Response> {
        let mut order = OrderRequest::parse(&req.body)?;
        let request_id = order
            .request_id
            .get_or_insert_with(|| new_request_id(&format!("order-{}", self.id)))
            .clone();
        match self.ask(|token| Event::Order { token, order }, ORDER_WAIT) {
            Some(Answer::Order(Ok(number))) => {
                failpoint::hit(failpoint::BEFORE_REPLY);
                Ok(Response::ok(OrderAck {
                    transaction_number: number,
                }))
            }
            Some(Answer::Order(Err(e))) => Err(e.with_request_id(&request_id)),
            _ => Err(Error::Resend {
                message: format!(
                    "order {request_id} not committed in time; {}",
                    crate::api::RESEND
                ),
                request_id,
            }),
        }
    }

    fn propagate(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.config.secret)?;
        let msg = req.json()?;
        self.check_propagate(&msg)?;
        match self.ask(|token| Event::Propagate { token, msg }, PEER_WAIT) {
            Some(Answer::Propagate(answer)) => answer.map(Response::ok),
            _ => Err(Error::Unavailable("replica busy".into())),
        }
    }

    fn vote(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.config.secret)?;
        let vote: VoteRequest = req.json()?;
        self.check_peer(vote.candidate, "candidate")?;
        match self.ask(|token| Event::Vote { token, req: vote }, PEER_WAIT) {
            Some(Answer::Vote(answer)) => answer.map(Response::ok),
            _ => Err(Error::Unavailable("replica busy".into())),
        }
    }

    /// `id` names another replica of the config.
    fn check_peer(&self, id: u32, what: &str) -> Result<()> {
        if id == self.id || self.config.replica(id).is_err() {
            return Err(Error::BadRequest(format!(
                "{what} {id} is not another replica of this deployment"
            )));
        }
        Ok(())
    }

    /// What a `/propagate` must hold before it reaches the core, so that a message that lies
    /// (even one with the secret) changes nothing: a sender that is another replica, entries
    /// numbered consecutively after `prev`, none from an epoch above the message's, each an
    /// order the leader could have numbered (a non-empty name, a positive quantity, a request
    /// id of 1 to 128 bytes). The request id's characters are not checked: clients may only
    /// send printable ASCII now, but logs of older versions hold others and must replicate.
    ///
    /// Caveat: whether the stock exists is not checked here. A follower does not know the
    /// catalog's stocks (an existing `catalog.json` wins over the config's list), so an entry
    /// for an unknown stock from an authenticated leader is stored; the catalog refuses it
    /// (422) and changes nothing.
    fn check_propagate(&self, p: &Propagate) -> Result<()> {
        self.check_peer(p.leader, "leader")?;
        let bad = |why: String| Err(Error::BadRequest(format!("propagate refused: {why}")));
        if let Some(prev) = p.prev.filter(|prev| prev.epoch > p.epoch) {
            return bad(format!("prev is from epoch {} > {}", prev.epoch, p.epoch));
        }
        let gap = p.first_gap();
        for (i, e) in p.entries.iter().enumerate() {
            if gap == Some(i) {
                return bad(format!("entry {i} is order {}, not consecutive", e.number));
            }
            if e.epoch > p.epoch {
                return bad(format!(
                    "order {} is from epoch {} > {}",
                    e.number, e.epoch, p.epoch
                ));
            }
            e.validate()?;
        }
        Ok(())
    }

    /// `GET /orders/<n>`, by the read rule of [`Status::read`](core::Status::read): a committed order; 404 only
    /// from a leader holding its lease; an order it holds uncommitted after a bounded wait
    /// for the commit; 421 from anyone else, so that the front-end re-selects.
    fn get_order(&self, n: &str) -> Result<Response> {
        let number = decimal_param(n, "order number")?;
        let deadline = Instant::now() + READ_WAIT;
        let mut status = self.status.lock();
        loop {
            match status.read(number, Instant::now()) {
                Read::Committed => break,
                Read::NoSuchOrder => return Err(Error::NotFound(format!("no order {number}"))),
                Read::NotLeader => {
                    return Err(Error::NotLeader(format!(
                        "replica {} cannot tell whether order {number} is committed; ask the \
                         leader",
                        self.id
                    )))
                }
                Read::NotYet => {
                    if self.published.wait_until(&mut status, deadline).timed_out() {
                        return Err(Error::Unavailable(format!(
                            "order {number} is not committed yet; try again"
                        )));
                    }
                }
            }
        }
        drop(status);
        let entry = self.log.get(number)?.ok_or_else(|| {
            Error::Unavailable(format!(
                "order {number} is committed but replica {} does not hold it yet",
                self.id
            ))
        })?;
        Ok(Response::ok(Order::from(&entry)))
    }

    /// `GET /orders?since=N[&limit=M]`: at most `limit` entries and about
    /// [`core::MAX_BATCH_BYTES`] of them (at least one), like every batch replicas exchange.
    fn log_page(&self, req: &Request) -> Result<Response> {
        let since = match req.query_param("since") {
            Some(s) => decimal_param(&s, "since")?,
            None => 0,
        };
        let limit = match req.query_param("limit") {
            Some(s) => decimal_param(&s, "limit")?.clamp(1, MAX_PAGE as u64) as usize,
            None => MAX_PAGE,
        };
        let mut page = self.log.since(since, limit)?;
        page.entries = core::fit_batch(page.entries, core::MAX_BATCH_BYTES);
        Ok(Response::ok(page))
    }

    /// The answer to one line on the leader-broadcast (or health) port. `You win` and
    /// `<id> <epoch>` without the deployment secret get `ERR unauthorized` and change nothing.
    pub(super) fn line(&self, command: crate::selection::Command) -> crate::selection::Reply {
        use crate::selection::{Command, Reply};
        if command != Command::Ping
            && !crate::http::secret_matches(command.secret(), &self.config.secret)
        {
            warn!(
                "replica {}: refused the line {}: missing or wrong deployment secret",
                self.id,
                command.redacted()
            );
            return Reply::Error("unauthorized".into());
        }
        match command {
            Command::Ping if self.status().ready => Reply::Ok,
            Command::Ping => Reply::Wait,
            Command::YouWin { hint, .. } => {
                let hint = hint.unwrap_or(0);
                match self.ask(|token| Event::YouWin { token, hint }, YOU_WIN_WAIT) {
                    Some(Answer::Lead(Some(epoch))) => Reply::OkEpoch(epoch),
                    _ => Reply::Wait,
                }
            }
            Command::Leader { id, epoch, .. } => {
                self.tell(Event::Announce {
                    id,
                    epoch: epoch.unwrap_or(0),
                });
                Reply::Ok
            }
        }
    }
}

/// The replica's HTTP handler.
pub(super) struct Router(pub(super) Arc<Shared>);

impl Handler for Router {
    fn handle(&self, req: &Request) -> Result<Response> {
        http::dispatch(ROUTES, &*self.0, &self.0.metrics, req)
    }

    /// Every route reads memory or hands an event to the core thread and waits: the pool hop
    /// would only add two thread hand-offs per request (`docs/http-server.md`).
    fn runs_inline(&self, req: &Request) -> bool {
        http::runs_inline(ROUTES, req)
    }
}

/// Every route of a replica: orders from the front-ends, reads of the log, and the
/// replication between replicas. All of them run inline (see `Router::runs_inline`).
const ROUTES: &[Route<Shared>] = &[
    ("POST", &["orders"], Inline, |s, req, _| s.place_order(req)),
    ("GET", &["orders"], Inline, |s, req, _| s.log_page(req)),
    ("GET", &["orders", "*"], Inline, |s, _, path| {
        s.get_order(path[1])
    }),
    ("GET", &["synchronize"], Inline, |s, _, _| {
        Ok(Response::ok(s.sync_state()?))
    }),
    ("POST", &["propagate"], Inline, |s, req, _| s.propagate(req)),
    ("POST", &["vote"], Inline, |s, req, _| s.vote(req)),
    ("GET", &["health"], Inline, |s, _, _| {
        Ok(Response::ok(s.health()))
    }),
    ("GET", &["metrics"], Inline, |s, _, _| Ok(s.metrics())),
];

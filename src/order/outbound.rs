//! The threads that carry the core's messages out: one per other replica (propagates, votes,
//! probes, log pages) and one for the catalog (`POST /leader`, `POST /apply`). Each sends one
//! message at a time with its timeout (`crate::timing`: [`PEER_TIMEOUT`], [`PAGE_TIMEOUT`],
//! [`LEADER_CATALOG_TIMEOUT`]) and feeds the answer back to the core as an event; the core
//! decides what a failure means and when to retry.
//!
//! Caveats: one message at a time per peer, so a peer that hangs delays what follows to that
//! peer (never to the others) by up to its timeout; `crate::timing` bounds that by a lease.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::warn;

use super::core::{self, CatalogMessage, Event, PeerMessage, PeerReply};
use super::driver::{Outboxes, Shared};
use super::{failpoint, spawn};
use crate::api::{CatalogState, LogPage, PropagateAck, SyncState, VoteReply};
use crate::config::ReplicaConfig;
use crate::error::Result;
use crate::http::Client;
use crate::timing::{LEADER_CATALOG_TIMEOUT, PAGE_TIMEOUT, PEER_TIMEOUT};

/// How long an idle peer or catalog thread waits for a message before it looks whether the
/// replica is stopping.
const IDLE_WAKE: Duration = Duration::from_millis(200);

/// Starts one thread per peer and the catalog thread of replica `shared.id`.
pub(super) fn spawn_all(shared: &Arc<Shared>, outboxes: Outboxes) -> Result<Vec<JoinHandle<()>>> {
    let id = shared.id;
    let mut threads = Vec::new();
    for (peer, rx) in outboxes.peers {
        let s = shared.clone();
        threads.push(spawn(&format!("order-{id}-peer-{}", peer.id), move || {
            peer_loop(&s, &peer, rx)
        })?);
    }
    let s = shared.clone();
    let rx = outboxes.catalog;
    threads.push(spawn(&format!("order-{id}-catalog"), move || {
        catalog_loop(&s, rx)
    })?);
    Ok(threads)
}

/// Sends what the core wants sent to one peer, one message at a time, and feeds the answers
/// back as events.
fn peer_loop(shared: &Shared, peer: &ReplicaConfig, outbox: Receiver<PeerMessage>) {
    let client = Client::with_secret(&shared.config.secret);
    let addr = peer.http_addr();
    while !shared.stopped() {
        let msg = match outbox.recv_timeout(IDLE_WAKE) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let reply = match msg {
            PeerMessage::Propagate(p) => {
                let sent_last = core::last_carried(&p);
                let carried = !p.entries.is_empty();
                let result: Result<PropagateAck> =
                    client.post(&addr, "/propagate", &p, PEER_TIMEOUT);
                if carried && result.as_ref().is_ok_and(|a| a.accepted) {
                    failpoint::hit(failpoint::AFTER_REPLICATE_ONE);
                }
                PeerReply::Propagate {
                    epoch: p.epoch,
                    sent_last,
                    result,
                }
            }
            PeerMessage::Vote(v) => PeerReply::Vote {
                epoch: v.epoch,
                pre: v.pre,
                result: client.post::<_, VoteReply>(&addr, "/vote", &v, PEER_TIMEOUT),
            },
            PeerMessage::Probe => PeerReply::Probe {
                result: client.get::<SyncState>(&addr, "/synchronize", PEER_TIMEOUT),
            },
            PeerMessage::FetchPage { since, limit } => PeerReply::Page {
                since,
                result: client.get::<LogPage>(
                    &addr,
                    &format!("/orders?since={since}&limit={limit}"),
                    PAGE_TIMEOUT,
                ),
            },
        };
        shared.tell(Event::PeerReply {
            from: peer.id,
            reply,
        });
    }
}

/// Sends the core's messages to the catalog and feeds the answers back.
fn catalog_loop(shared: &Shared, outbox: Receiver<CatalogMessage>) {
    let client = Client::with_secret(&shared.config.secret);
    let addr = shared.config.catalog_addr();
    while !shared.stopped() {
        let msg = match outbox.recv_timeout(IDLE_WAKE) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (epoch, result) = match msg {
            CatalogMessage::Hello(hello) => (
                hello.epoch,
                client.post::<_, CatalogState>(&addr, "/leader", &hello, LEADER_CATALOG_TIMEOUT),
            ),
            CatalogMessage::Apply(batch) => {
                let result =
                    client.post::<_, CatalogState>(&addr, "/apply", &batch, LEADER_CATALOG_TIMEOUT);
                if result.is_ok() && !batch.entries.is_empty() {
                    failpoint::hit(failpoint::AFTER_CATALOG_TRADE);
                }
                (batch.epoch, result)
            }
        };
        if let Err(e) = &result {
            warn!("replica {}: catalog: {e}", shared.id);
        }
        shared.tell(Event::CatalogReply { epoch, result });
    }
}

//! The catalog: every stock's price, remaining quantity and traded volume (docs/spec.md §2), kept as
//! the **view of the committed order log**. The order replicas decide every trade (404/409
//! before an order is numbered); the catalog only applies committed orders, strictly in
//! transaction-number order, each exactly once, and only from the current leader.
//!
//! Laid out like a replica (`order::core` and its driver): the rules apart from the files and
//! the sockets.
//!
//! - `rules`: the fence, applying in number order exactly once, the gap, the refusal of a
//!   batch that cannot apply whole, the hello; functions on a state in memory, no I/O.
//! - `files`: what catalog.json and catalog.journal hold, their seal, what counts as damage.
//! - `store`: the `Catalog`: the state under one lock, the rules run on it, every change
//!   journaled and fsynced before lookups see it; snapshots, and the rebuild after damage.
//! - `routes`: `CatalogApi`, the HTTP face: the route table, the secret, the wait for
//!   settling before a hello is answered.
//! - `invalidation`: telling every front-end to drop what an apply changed, in parallel,
//!   within a budget.
//!
//! Protocol (every body JSON; errors are `{"error":{"code":C,"message":".."}}`):
//!
//! | request | 200 answer | errors |
//! |---|---|---|
//! | `GET /stocks/<name>` | `StockRecord` | 404 unknown stock |
//! | `GET /stocks` | every `StockRecord`, in catalog order | |
//! | `GET /state` | `CatalogState` with the stocks (public, read-only) | |
//! | `GET /health` | `{"status":"ok"}` | |
//! | `GET /metrics` | Prometheus text: applied number, fence, journal size, requests (`crate::metrics`) | |
//! | `POST /leader` `LeaderHello` | `CatalogState` with the stocks | 401, 400, 409, 503 |
//! | `POST /apply` `ApplyBatch` | `CatalogState` with **`stocks: []`** | 401, 400, 409, 422, 503 |
//!
//! - 401: the deployment secret (`Authorization: Bearer ..`) is missing or wrong; checked
//!   first, nothing changes.
//! - 400: malformed JSON; for `/apply` also entries that are not consecutive numbers, a number
//!   above `i64::MAX`, an entry whose epoch is above the batch's, or one no leader could have
//!   numbered (quantity 0, empty name, request id empty or over 128 bytes). Nothing
//!   changes.
//! - 409: the epoch is below the fence (the message names both epochs). Nothing changes.
//! - 422: the batch cannot be applied (unknown stock, quantity below zero, overflow; the
//!   message names the entry). The request is what is wrong, not the catalog, and re-sending
//!   it cannot help: a 4xx, not a 500. Nothing changes.
//! - 503: the journal cannot be written (nothing changes), or, for a hello, an earlier apply
//!   has not settled yet (the leader says hello again).
//! - Wrong method on one of these paths: 405; any other path (the old `POST /trades` and
//!   `POST /orders` included): 404.
//!
//! Caveats:
//! - The catalog trusts the leader's log: it checks that a batch could apply, not that its
//!   orders were decided right (that is the leader's job, against this very state).
//! - The stocks are fixed by the config when catalog.json is first created; a later config
//!   with other stocks does not change an existing catalog.

mod files;
mod invalidation;
mod routes;
mod rules;
mod store;

use std::net::TcpListener;
use std::sync::Arc;

use log::info;

use crate::config::Config;
use crate::error::Result;
use crate::http::{Server, ServerOptions};

pub(crate) use routes::CatalogApi;
pub(crate) use store::Catalog;

/// Loads (or creates) the catalog and serves it on `config.catalog_addr()`.
pub fn start(config: Config) -> Result<Server> {
    let addr = config.catalog_addr();
    start_with_listener(config, crate::http::server::listen(&addr)?)
}

/// Loads (or creates) the catalog and serves it on an already bound listener (tests bind
/// `127.0.0.1:0`).
pub fn start_with_listener(config: Config, listener: TcpListener) -> Result<Server> {
    let catalog = Catalog::open(&config.catalog_path(), &config.catalog.stocks)?;
    let service = Arc::new(CatalogApi::new(
        catalog,
        config.frontend_addrs(),
        &config.secret,
    )?);
    let options = ServerOptions::new("catalog", config.catalog.threads, &config.http);
    let server = Server::start(listener, options, service)?;
    info!(
        "catalog listening on {}, invalidating {:?}",
        server.local_addr(),
        config.frontend_addrs()
    );
    Ok(server)
}

/// What the tests of every part of the catalog share: two stocks, entries and batches.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    use crate::api::{ApplyBatch, CatalogState, LeaderHello, LogEntry, OrderType, StockRecord};
    use crate::config::StockConfig;

    use super::Catalog;

    /// A fresh temporary directory (removed on drop) holding the catalog's files.
    pub(crate) struct TempDir(tempfile::TempDir);

    impl TempDir {
        pub(crate) fn new() -> TempDir {
            TempDir(tempfile::tempdir().unwrap())
        }
        pub(crate) fn file(&self) -> PathBuf {
            self.0.path().join("sub").join("catalog.json")
        }
    }

    /// The config's stocks: A (1.5, 100) and B (2.0, 3).
    pub(crate) fn stocks() -> Vec<StockConfig> {
        vec![
            StockConfig {
                name: "A".into(),
                price: 1.5,
                quantity: 100,
            },
            StockConfig {
                name: "B".into(),
                price: 2.0,
                quantity: 3,
            },
        ]
    }

    /// [`stocks`] as a new catalog holds them, nothing traded.
    pub(crate) fn fresh_records() -> Vec<StockRecord> {
        stocks()
            .into_iter()
            .map(|s| StockRecord {
                name: s.name,
                price: s.price,
                quantity: s.quantity,
                volume: 0,
            })
            .collect()
    }

    pub(crate) fn entry(number: u64, name: &str, kind: OrderType, quantity: u64) -> LogEntry {
        LogEntry {
            number,
            name: name.into(),
            kind,
            quantity,
            epoch: 1,
            request_id: format!("r{number}"),
        }
    }

    pub(crate) fn batch(epoch: u64, entries: Vec<LogEntry>) -> ApplyBatch {
        ApplyBatch {
            epoch,
            leader: 3,
            entries: entries
                .into_iter()
                .map(|e| LogEntry {
                    epoch: e.epoch.min(epoch),
                    ..e
                })
                .collect(),
        }
    }

    pub(crate) fn hello(epoch: u64) -> LeaderHello {
        LeaderHello { epoch, leader: 3 }
    }

    /// (quantity, volume) of every stock, in catalog order, as lookups see it.
    pub(crate) fn holdings(catalog: &Catalog) -> Vec<(u64, u64)> {
        catalog
            .list()
            .iter()
            .map(|s| (s.quantity, s.volume))
            .collect()
    }

    /// The catalog's (epoch, applied, applied_epoch).
    pub(crate) fn position(catalog: &Catalog) -> (u64, i64, u64) {
        let s: CatalogState = catalog.state();
        (s.epoch, s.applied, s.applied_epoch)
    }
}

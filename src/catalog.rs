//! The catalog: every stock's price, remaining quantity and traded volume (docs/spec.md §2), kept as
//! the **view of the committed order log**. The order replicas decide every trade (404/409
//! before an order is numbered); the catalog only applies committed orders, strictly in
//! transaction-number order, each exactly once, and only from the current leader.
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
//! | `POST /leader` `LeaderHello` | `CatalogState` with the stocks | 401, 400, 409 |
//! | `POST /apply` `ApplyBatch` | `CatalogState` with **`stocks: []`** | 401, 400, 409, 422, 500 |
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
//! - 500: the temp file cannot be written. Nothing changes.
//! - Wrong method on one of these paths: 405; any other path (the old `POST /trades` and
//!   `POST /orders` included): 404.
//!
//! **Fencing.** The catalog keeps `epoch`, the highest leader epoch it has seen. `POST /leader`
//! with a lower epoch is refused (409, naming both epochs); otherwise the fence rises to the
//! hello's epoch, is persisted, and the answer tells the new leader where the catalog stands
//! (`applied`, and the stocks after it). `POST /apply` from a lower epoch is refused (409) and
//! changes nothing; from a higher one it raises the fence (persisted with the batch). So an old
//! leader woken from a freeze cannot apply anything once a newer one has said hello.
//!
//! **In order, exactly once.** `applied` is the last order number applied (-1 before the first)
//! and `applied_epoch` the epoch of the leader that applied it. A batch's entries must be
//! consecutive numbers (else 400). Entries at or below `applied` are skipped; if the first
//! remaining entry is past `applied + 1`, nothing is applied and the answer's `applied` says
//! where to resume (the leader re-sends from `applied + 1`). Each entry is applied in order: a
//! sell adds its quantity, a buy subtracts it, both add it to the volume. An unknown stock, a
//! buy below zero or an overflow means the log and the catalog disagree (the leader decided
//! 404/409 before numbering): the **whole batch** is refused with 422 naming the entry, and
//! nothing of it (not even a fence raise) is kept, so no read ever shows a partial or negative
//! state.
//!
//! **State files.** `catalog.json` is one sealed record (`crate::checksum`, prev 0): the state
//! `{"epoch":E,"applied":N,"applied_epoch":A,"stocks":[..]}`, then `,<crc>` and a line end. It
//! is created from `catalog.stocks` of the config when missing and replaced atomically (temp
//! file, fsync, rename, fsync of the directory). Each hello or batch that changes the state
//! appends the whole new state, sealed the same way, as one line to `catalog.journal` and
//! `fdatasync`s it before the answer (one sync, instead of the two syncs, create and rename of
//! a rewrite); every `SNAPSHOT_EVERY` lines, and at start, the last line is folded into
//! catalog.json and the journal emptied. A leftover temp file is removed at start. Records of
//! the previous format (plain JSON, no seal; told apart because JSON ends with `}` and a seal
//! with a hex digit) are read as they are and upgraded: the next journal line is sealed, and
//! catalog.json is rewritten sealed at start as part of the fold.
//!
//! **Damage.** A torn last journal line (no line end: a crash mid-append, never answered) is
//! ignored. Anything else that does not check or is not a state is damage: catalog.json (empty,
//! torn, a changed digit, a state that breaks the rules, the old format with `recent_trades`,
//! which has no `applied`), or any journal line that has its line end, the last one included
//! (or one listing other stocks than catalog.json). The catalog then logs one `warn!` naming the
//! file, the line and what was expected, renames both files aside (`catalog.json.damaged`,
//! `catalog.journal.damaged`, replacing older ones; the journal first, so a crash between the
//! renames finds the damage again), and starts over as if new: the config's stocks, `applied`
//! -1, `epoch` 0. The leader's next apply finds a gap (or its hello finds -1) and re-sends the
//! committed log from order 0, which rebuilds exactly the view of the log, as after deleting
//! the files. No number of a damaged pair is ever served, and none is trusted, not even the
//! fence: keeping the epoch of an intact record would be safe too, but a previous-format
//! record has no seal, and a rotten epoch there could fence out every leader below it. Resetting
//! the fence is safe because applies carry only committed orders, which are the same at each
//! number in every leader's log: an old leader that applies before the current one says hello
//! applies what the current one would, and the next hello raises the fence again. What still
//! refuses to start, with one line naming the file: a file or directory that cannot be read,
//! created, renamed or written (permissions, a full disk), which rebuilding cannot fix.
//!
//! **Concurrency.** Hellos and applies are serialized by one mutex held across decide and
//! persist. A hello answers only once the applies already under way have been answered (each
//! may wait out a cache lease for a front-end that did not confirm its invalidation), so a new
//! leader never learns of a trade that some front-end may still hide. Lookups read a separate `parking_lot::RwLock` view that is only replaced once the
//! file holds the new state, so a lookup never shows what is not on disk and never waits for
//! a disk write (only for the pointer swap).
//!
//! **Invalidation.** After persisting and publishing, and before answering an apply, the catalog
//! tells every front-end of `config.frontend_addrs()` to drop the batch's stocks: one
//! `POST /invalidation` with an `InvalidateBatch` (distinct names) and the secret per
//! front-end, all front-ends in parallel (one long-lived worker thread each), the whole fan-out bounded by
//! `INVALIDATION_BUDGET` (300 ms). A front-end that is down or slower than that is logged
//! (warn) and the apply still succeeds. The names are those of every entry the catalog holds
//! after the batch, skipped re-sends included: the first attempt may have died before it
//! invalidated.
//!
//! Caveats:
//! - `/apply` answers carry no stocks (`stocks: []`), to keep the hot path small; `/leader`
//!   and `GET /state` carry them.
//! - The answer waits at most the budget even when a connect hangs (the HTTP client's connect
//!   timeout is longer than the budget): the worker goes on with the call, and the batches
//!   queued behind it are dropped once their own budget is spent (reported as unconfirmed).
//! - A front-end that is down (connection refused) starts again with an empty cache. One that
//!   is only paused or slower than the budget may keep what it cached before the trade, so the
//!   catalog then holds back its answer until one cache lease (`frontend::cache::CACHE_LEASE`)
//!   after the change became visible: the front-end serves no entry older than that. While a
//!   front-end stays paused, every apply that changes stocks costs up to that long.
//! - If writing the temp file fails, the batch is refused (500) and nothing changes; if the
//!   rename or the directory fsync fails, memory and file may disagree, so the catalog aborts
//!   and the restart resumes from whichever file is there.
//! - Every journal line is the whole state (about 1.3 KB for 14 stocks): simple to replay, and
//!   small enough for the stock lists this system is for.
//! - Damage in either file costs a re-apply of the whole committed log (the leader's batches,
//!   as after deleting the files), even when a sealed journal line would still hold an intact
//!   state: damage is rare, and one recovery path is easier to trust than two.
//! - A previous-format record carries no checksum: a changed digit in one that is still a valid
//!   state is loaded as before. Every file written since is sealed, and the first start folds a
//!   previous-format pair into a sealed catalog.json.
//! - A seal catches damage, not a rewrite: a file replaced by an older sealed catalog.json is
//!   loaded (its numbers are a prefix of the log, which the leader then completes).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::api::{
    ApplyBatch, CatalogState, Health, InvalidateBatch, LeaderHello, LogEntry, OrderType,
    StockRecord,
};
use crate::checksum;
use crate::config::{Config, StockConfig};
use crate::durable::{dir_of, replace_file, temp_path};
use crate::error::{Error, Result};
use crate::frontend::cache::CACHE_LEASE;
use crate::http::client::is_refused;
use crate::http::Runs::{Inline, OnPool};
use crate::http::{
    self, decode_segment, Client, Handler, Request, Response, Route, Server, ServerOptions,
};
use crate::metrics::{gauge_value, Metrics};
use prometheus::IntGauge;

/// The most time an apply spends telling every front-end to drop the traded stocks, all
/// front-ends together (not per name or per front-end).
pub(crate) const INVALIDATION_BUDGET: Duration = Duration::from_millis(300);

/// Most a hello waits for earlier applies to settle (an apply waits one cache lease at most
/// after its budget), before it answers 503 and the leader says hello again.
const HELLO_SETTLE_LIMIT: Duration = Duration::from_millis(1500);

/// Lines in the journal before the state is written to catalog.json and the journal emptied:
/// at about 1.3 KB a line (14 stocks), a journal stays under 1.5 MB.
const SNAPSHOT_EVERY: u64 = 1024;

/// catalog.json, as written and read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    epoch: u64,
    applied: i64,
    applied_epoch: u64,
    stocks: Vec<StockRecord>,
}

impl From<&CatalogState> for CatalogFile {
    fn from(s: &CatalogState) -> Self {
        CatalogFile {
            epoch: s.epoch,
            applied: s.applied,
            applied_epoch: s.applied_epoch,
            stocks: s.stocks.clone(),
        }
    }
}

/// What an apply did: the state to answer and the stocks to invalidate.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The catalog's state after the batch, without stocks.
    pub(crate) state: CatalogState,
    /// Distinct names of the batch's entries the catalog now holds (applied or re-sent).
    pub(crate) names: Vec<String>,
}

/// The catalog's data and its file.
#[derive(Debug)]
pub(crate) struct Catalog {
    path: PathBuf,
    /// Name → position in the stock lists (fixed once open).
    index: HashMap<String, usize>,
    /// What lookups see: exactly what catalog.json holds.
    view: RwLock<Arc<CatalogState>>,
    /// Hellos and applies, one at a time, held across decide and persist.
    state: Mutex<CatalogState>,
    /// When lookups last started to see a change of stocks (the front-ends' cache lease is
    /// counted from there when one of them cannot confirm an invalidation).
    changed_at: Mutex<Instant>,
    /// `catalog.journal`: one line per change since the last snapshot (written under `state`).
    journal: Mutex<Journal>,
    /// The journal's lines and bytes as of its last change, for `/metrics` without waiting
    /// for the journal's lock (held across its fsync).
    journal_lines: AtomicU64,
    journal_bytes: AtomicU64,
}

/// The append-only journal next to catalog.json: every line is a whole [`CatalogFile`], so the
/// last complete line is the state. One `fdatasync` per change, where rewriting catalog.json
/// costs two fsyncs, a rename and a create; every [`SNAPSHOT_EVERY`] lines the state goes to
/// catalog.json (atomically) and the journal starts over.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    lines: u64,
    /// Bytes of whole lines in the file: where a failed append is cut back to.
    len: u64,
}

impl Catalog {
    /// Opens `path`, creating it from `initial` when missing, and rebuilding it from `initial`
    /// when damaged (the damaged files moved aside; the leader then re-applies the log).
    /// Creates the directory if needed and removes a temp file left by a crash mid-write.
    /// Refuses to start only when a file cannot be read or written.
    pub(crate) fn open(path: &Path, initial: &[StockConfig]) -> Result<Catalog> {
        let refuse = |why: String| Error::State(format!("catalog {}: {why}", path.display()));
        fs::create_dir_all(dir_of(path))
            .map_err(|e| refuse(format!("cannot create its directory: {e}")))?;
        let temp = temp_path(path);
        if temp.exists() {
            warn!("removing {} left by an interrupted write", temp.display());
            fs::remove_file(&temp)
                .map_err(|e| refuse(format!("cannot remove {}: {e}", temp.display())))?;
        }
        let fresh = CatalogFile {
            epoch: 0,
            applied: -1,
            applied_epoch: 0,
            stocks: initial
                .iter()
                .map(|s| StockRecord {
                    name: s.name.clone(),
                    price: s.price,
                    quantity: s.quantity,
                    volume: 0,
                })
                .collect(),
        };
        let journal_path = path.with_extension("journal");
        let (state, rewrite) = match load(path, &journal_path, &fresh.stocks).map_err(&refuse)? {
            Found::State { file, rewrite } => {
                info!(
                    "catalog loaded from {}: {} stocks, epoch {}, applied {}",
                    path.display(),
                    file.stocks.len(),
                    file.epoch,
                    file.applied
                );
                (file, rewrite)
            }
            Found::Nothing => {
                info!(
                    "catalog created at {} with {} stocks",
                    path.display(),
                    fresh.stocks.len()
                );
                (fresh, true)
            }
            Found::Damaged(why) => {
                warn!(
                    "{why}; moving {} and {} aside (.damaged) and starting over from the \
                     config's {} stocks with nothing applied: the leader re-applies the \
                     committed log from order 0",
                    path.display(),
                    journal_path.display(),
                    fresh.stocks.len()
                );
                // The journal first: a crash between the two renames then leaves the damaged
                // catalog.json in place, found again at the next start.
                for file in [&journal_path, path] {
                    let aside = damaged_path(file);
                    match fs::rename(file, &aside) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(refuse(format!(
                                "cannot move {} to {}: {e}",
                                file.display(),
                                aside.display()
                            )));
                        }
                        _ => {}
                    }
                }
                (fresh, true)
            }
        };
        let index = index_of(&state.stocks).map_err(&refuse)?;
        // Creates catalog.json, folds the journal into it, or seals a previous-format file;
        // the directory fsync in `replace_file` also makes the renames above durable.
        if rewrite {
            sealed(&state)
                .and_then(|bytes| replace_file(path, &bytes))
                .map_err(|e| refuse(format!("cannot write: {e}")))?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()).map(|()| f))
            .map_err(|e| refuse(format!("cannot open {}: {e}", journal_path.display())))?;
        let state = CatalogState {
            epoch: state.epoch,
            applied: state.applied,
            applied_epoch: state.applied_epoch,
            stocks: state.stocks,
        };
        Ok(Catalog {
            path: path.to_path_buf(),
            index,
            view: RwLock::new(Arc::new(state.clone())),
            state: Mutex::new(state),
            changed_at: Mutex::new(Instant::now()),
            journal: Mutex::new(Journal {
                path: journal_path,
                file,
                lines: 0,
                len: 0,
            }),
            journal_lines: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
        })
    }

    pub(crate) fn lookup(&self, name: &str) -> Result<StockRecord> {
        let i = self.index.get(name).ok_or_else(|| unknown(name))?;
        self.view
            .read()
            .stocks
            .get(*i)
            .cloned()
            .ok_or_else(|| unknown(name))
    }

    pub(crate) fn list(&self) -> Vec<StockRecord> {
        let view = self.view.read().clone();
        view.stocks.clone()
    }

    /// The journal's lines and bytes since the last snapshot.
    pub(crate) fn journal_size(&self) -> (u64, u64) {
        (
            self.journal_lines.load(Ordering::Relaxed),
            self.journal_bytes.load(Ordering::Relaxed),
        )
    }

    /// The fence and the last order applied, without copying the stocks.
    pub(crate) fn numbers(&self) -> (u64, i64) {
        let view = self.view.read();
        (view.epoch, view.applied)
    }

    /// The state as catalog.json holds it, stocks included.
    pub(crate) fn state(&self) -> CatalogState {
        let view = self.view.read().clone();
        (*view).clone()
    }

    /// A leader of `hello.epoch` announces itself: refused below the fence, else the fence
    /// rises to it (persisted before the answer) and the answer says where the catalog stands.
    pub(crate) fn hello(&self, hello: &LeaderHello) -> Result<CatalogState> {
        let mut state = self.state.lock();
        if hello.epoch < state.epoch {
            info!(
                "refused the hello of leader {} of epoch {}: the catalog has seen epoch {}",
                hello.leader, hello.epoch, state.epoch
            );
            return Err(fenced(
                "leader hello",
                hello.epoch,
                hello.leader,
                state.epoch,
            ));
        }
        if hello.epoch > state.epoch {
            let mut next = state.clone();
            next.epoch = hello.epoch;
            self.commit(&mut state, next)?;
            info!(
                "leader {} of epoch {} said hello; the catalog now refuses lower epochs (applied {})",
                hello.leader, hello.epoch, state.applied
            );
        }
        Ok(state.clone())
    }

    /// Applies a batch of committed orders (see the module doc for the rules). Nothing changes
    /// unless the whole batch is valid; a change is on disk and in the view before this returns.
    pub(crate) fn apply(&self, batch: &ApplyBatch) -> Result<Applied> {
        // Order numbers as the catalog counts them (`applied` is -1 before the first).
        let mut numbers = Vec::with_capacity(batch.entries.len());
        for e in &batch.entries {
            let n = i64::try_from(e.number).map_err(|_| {
                Error::BadRequest(format!("order number {} is too large", e.number))
            })?;
            if numbers.last().is_some_and(|prev| prev + 1 != n) {
                return Err(Error::BadRequest(format!(
                    "apply entries must be consecutive: {n} follows {}",
                    numbers.last().copied().unwrap_or_default()
                )));
            }
            if e.epoch > batch.epoch {
                return Err(Error::BadRequest(format!(
                    "entry {n} has epoch {}, above the batch's epoch {}",
                    e.epoch, batch.epoch
                )));
            }
            e.validate()?;
            numbers.push(n);
        }
        let mut state = self.state.lock();
        if batch.epoch < state.epoch {
            debug!(
                "refused an apply from leader {} of epoch {} (fence {})",
                batch.leader, batch.epoch, state.epoch
            );
            return Err(fenced("apply", batch.epoch, batch.leader, state.epoch));
        }
        let mut next = state.clone();
        next.epoch = batch.epoch;
        // Skip what is applied already; the rest starts at `applied + 1` or is a gap.
        let skip = numbers.iter().take_while(|n| **n <= state.applied).count();
        let fresh = &batch.entries[skip..];
        let gap = numbers.get(skip).is_some_and(|n| *n > state.applied + 1);
        if gap {
            debug!(
                "apply from leader {} of epoch {}: entries resume at {}, past {}; nothing applied",
                batch.leader,
                batch.epoch,
                numbers[skip],
                state.applied + 1
            );
        } else if let Some(last) = numbers.last().filter(|_| !fresh.is_empty()) {
            for entry in fresh {
                if let Err(e) = self.apply_entry(&mut next.stocks, entry) {
                    log::error!("refused a batch from leader {}: {e}", batch.leader);
                    return Err(e);
                }
            }
            next.applied = *last;
            next.applied_epoch = batch.epoch;
        }
        if next != *state {
            self.commit(&mut state, next)?;
        }
        if !gap && !fresh.is_empty() {
            debug!(
                "applied orders {}..={} ({} of {} sent) from leader {} of epoch {}",
                numbers[skip],
                state.applied,
                fresh.len(),
                batch.entries.len(),
                batch.leader,
                batch.epoch
            );
        }
        // Every stock of the batch the catalog now holds, re-sent entries included.
        let mut names: Vec<String> = Vec::new();
        for (entry, n) in batch.entries.iter().zip(&numbers) {
            if *n <= state.applied && !names.contains(&entry.name) {
                names.push(entry.name.clone());
            }
        }
        Ok(Applied {
            state: CatalogState {
                stocks: Vec::new(),
                ..state.clone()
            },
            names,
        })
    }

    /// One committed order applied to `stocks`; an error names the entry.
    fn apply_entry(&self, stocks: &mut [StockRecord], entry: &LogEntry) -> Result<()> {
        let refuse = |why: String| {
            Error::Unprocessable(format!(
                "order {} ({} {} {}, epoch {}) cannot be applied: {why}; the log and the \
                 catalog disagree, nothing of this batch was applied",
                entry.number,
                entry.kind.as_str(),
                entry.quantity,
                entry.name,
                entry.epoch
            ))
        };
        let stock = self
            .index
            .get(&entry.name)
            .and_then(|i| stocks.get_mut(*i))
            .ok_or_else(|| refuse("no such stock".into()))?;
        let quantity = match entry.kind {
            OrderType::Buy => stock.quantity.checked_sub(entry.quantity).ok_or_else(|| {
                refuse(format!(
                    "only {} left, the quantity would go negative",
                    stock.quantity
                ))
            })?,
            OrderType::Sell => stock
                .quantity
                .checked_add(entry.quantity)
                .ok_or_else(|| refuse("the quantity would overflow".into()))?,
        };
        let volume = stock
            .volume
            .checked_add(entry.quantity)
            .ok_or_else(|| refuse("the volume would overflow".into()))?;
        stock.quantity = quantity;
        stock.volume = volume;
        Ok(())
    }

    /// Writes `next` to catalog.json, then publishes it to lookups and makes it the state.
    /// The caller holds the state mutex (`state`).
    fn commit(&self, state: &mut CatalogState, next: CatalogState) -> Result<()> {
        let line = sealed(&CatalogFile::from(&next))?;
        let mut journal = self.journal.lock();
        let appended = journal
            .file
            .write_all(&line)
            .and_then(|()| journal.file.sync_data());
        if let Err(e) = appended {
            // Cut any partial line off (the next append must start a line of its own) and
            // refuse the change: the leader sends it again later. If even that fails, memory
            // and file may disagree: stop, and let the restart resume from the journal.
            let len = journal.len;
            let cut = journal
                .file
                .set_len(len)
                .and_then(|()| journal.file.sync_data());
            if let Err(cut) = cut {
                log::error!(
                    "cannot append to {} ({e}) nor cut it back ({cut}); stopping the catalog",
                    journal.path.display()
                );
                std::process::abort();
            }
            warn!("cannot append to {}: {e}", journal.path.display());
            return Err(Error::Unavailable(format!(
                "the catalog cannot write its journal: {e}"
            )));
        }
        journal.lines += 1;
        journal.len += line.len() as u64;
        if journal.lines >= SNAPSHOT_EVERY {
            let snapshot = sealed(&CatalogFile::from(&next))
                .and_then(|bytes| replace_file(&self.path, &bytes))
                .and_then(|()| {
                    Ok(journal
                        .file
                        .set_len(0)
                        .and_then(|()| journal.file.sync_all())?)
                });
            match snapshot {
                Ok(()) => {
                    journal.lines = 0;
                    journal.len = 0;
                }
                // The journal still holds everything: try again at the next change.
                Err(e) => warn!("cannot write the catalog snapshot: {e}"),
            }
        }
        self.journal_lines.store(journal.lines, Ordering::Relaxed);
        self.journal_bytes.store(journal.len, Ordering::Relaxed);
        drop(journal);
        let changed = next.stocks != state.stocks;
        *self.view.write() = Arc::new(next.clone());
        if changed {
            *self.changed_at.lock() = Instant::now();
        }
        *state = next;
        Ok(())
    }
}

/// What the catalog's files hold at start.
#[derive(Debug)]
enum Found {
    /// Neither file holds a state: a new catalog.
    Nothing,
    /// The newest state. `rewrite`: catalog.json must be written again (the journal has lines
    /// to fold in, or catalog.json is in the previous format, without a seal).
    State { file: CatalogFile, rewrite: bool },
    /// A record does not check or is no state: what is wrong, naming the file and line.
    Damaged(String),
}

/// Reads catalog.json and the journal without changing either. `initial`: the config's stocks,
/// which journal lines must list when catalog.json is missing. An `Err` is an I/O error.
fn load(
    path: &Path,
    journal: &Path,
    initial: &[StockRecord],
) -> std::result::Result<Found, String> {
    let base = match read_if_any(path)? {
        None => None,
        Some(bytes) => {
            // Written with a line end since the seal; the previous format had none.
            let record = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            let parsed = parse_record(record)
                .and_then(|(file, was_sealed)| index_of(&file.stocks).map(|_| (file, was_sealed)));
            match parsed {
                Ok(found) => Some(found),
                Err(why) => return Ok(Found::Damaged(format!("{} line 1: {why}", path.display()))),
            }
        }
    };
    let stocks = base.as_ref().map_or(initial, |(file, _)| &file.stocks[..]);
    Ok(match (replay(journal, stocks)?, base) {
        (Found::Nothing, Some((file, was_sealed))) => Found::State {
            file,
            rewrite: !was_sealed,
        },
        (replayed, _) => replayed,
    })
}

/// The journal's newest state (`rewrite` set: it is to be folded in), `Nothing` without a whole
/// line, or the first damaged line. Every line must list `stocks` (by name, in order). A last
/// line without its line end is what a crash mid-append leaves (never answered): ignored. Any
/// whole line that does not check or is no state is damage, the last one included.
fn replay(path: &Path, stocks: &[StockRecord]) -> std::result::Result<Found, String> {
    let Some(bytes) = read_if_any(path)? else {
        return Ok(Found::Nothing);
    };
    let mut last = Found::Nothing;
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let Some(record) = line.strip_suffix(b"\n") else {
            warn!(
                "{}: ignoring a torn last line ({} bytes) left by a crash mid-append",
                path.display(),
                line.len()
            );
            break;
        };
        let same_stocks = |file: &CatalogFile| {
            let names = |s: &[StockRecord]| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
            if file
                .stocks
                .iter()
                .map(|s| &s.name)
                .eq(stocks.iter().map(|s| &s.name))
            {
                Ok(())
            } else {
                Err(format!(
                    "lists the stocks {:?}, expected those of catalog.json (or of the config \
                     when it is missing): {:?}",
                    names(&file.stocks),
                    names(stocks)
                ))
            }
        };
        match parse_record(record).and_then(|(file, _)| same_stocks(&file).map(|()| file)) {
            Ok(file) => {
                last = Found::State {
                    file,
                    rewrite: true,
                }
            }
            Err(why) => {
                return Ok(Found::Damaged(format!(
                    "{} line {}: {why}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(last)
}

/// The bytes of `path`, `None` when it does not exist; `Err`: it cannot be read.
fn read_if_any(path: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// `state` as a sealed record: its JSON, the checksum and the line end.
fn sealed(state: &CatalogFile) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(state)?;
    let mut out = Vec::with_capacity(json.len() + checksum::SEAL_LEN + 1);
    checksum::seal(0, &json, &mut out);
    Ok(out)
}

/// One record of catalog.json or the journal, without its line end: a sealed state, or a
/// state of the previous format (plain JSON, which ends with `}` where a seal ends with a hex
/// digit). Returns the state and whether it was sealed, or what is wrong with it.
fn parse_record(record: &[u8]) -> std::result::Result<(CatalogFile, bool), String> {
    if record.ends_with(b"}") {
        return parse_file(record).map(|file| (file, false)).map_err(|why| {
            format!("expected a state followed by its checksum, found no checksum and {why}")
        });
    }
    let (payload, _) = checksum::unseal(0, record)?;
    parse_file(payload).map(|file| (file, true))
}

/// Parses one state (the JSON of catalog.json or of a journal line), naming what is wrong.
fn parse_file(bytes: &[u8]) -> std::result::Result<CatalogFile, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let old = value
        .as_object()
        .is_some_and(|o| o.contains_key("recent_trades") || !o.contains_key("applied"));
    if old {
        return Err(
            "a state of the old catalog (recent_trades, no \"applied\"), which says nothing \
             of the log"
                .into(),
        );
    }
    let file: CatalogFile =
        serde_json::from_value(value).map_err(|e| format!("not a valid catalog state ({e})"))?;
    if file.applied < -1 {
        return Err(format!("applied is {}, below -1", file.applied));
    }
    if file.applied_epoch > file.epoch {
        return Err(format!(
            "applied_epoch {} is above epoch {}",
            file.applied_epoch, file.epoch
        ));
    }
    Ok(file)
}

/// Where a damaged file is moved: `<name>.damaged`, replacing an older one.
fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".damaged");
    path.with_file_name(name)
}

fn index_of(stocks: &[StockRecord]) -> std::result::Result<HashMap<String, usize>, String> {
    let mut index = HashMap::new();
    for (i, stock) in stocks.iter().enumerate() {
        if index.insert(stock.name.clone(), i).is_some() {
            return Err(format!("duplicate stock {:?}", stock.name));
        }
    }
    Ok(index)
}

fn unknown(name: &str) -> Error {
    Error::NotFound(format!("no such stock: {name}"))
}

fn fenced(what: &str, epoch: u64, leader: u32, fence: u64) -> Error {
    Error::Conflict(format!(
        "{what} from leader {leader} of epoch {epoch} refused: the catalog has seen epoch \
         {fence}"
    ))
}

impl Handler for CatalogApi {
    fn handle(&self, req: &Request) -> Result<Response> {
        self.route(req)
    }

    /// Lookups read memory and applies come one at a time from the leader: running them on
    /// the connection's thread saves two thread hand-offs each (`docs/http-server.md`).
    fn runs_inline(&self, req: &Request) -> bool {
        http::runs_inline(ROUTES, req)
    }
}

/// Every route of the catalog: lookups for the front-ends, the leader's hello and applies,
/// and the state for tests and the live page.
const ROUTES: &[Route<CatalogApi>] = &[
    ("GET", &["stocks"], OnPool, |s, _, _| {
        Ok(Response::ok(s.catalog.list()))
    }),
    ("GET", &["stocks", "*"], Inline, |s, _, path| {
        s.catalog.lookup(&decode_segment(path[1])).map(Response::ok)
    }),
    ("GET", &["state"], OnPool, |s, _, _| {
        Ok(Response::ok(s.catalog.state()))
    }),
    ("GET", &["health"], OnPool, |_, _, _| {
        Ok(Response::ok(Health {
            status: "ok".into(),
        }))
    }),
    ("GET", &["metrics"], OnPool, |s, _, _| Ok(s.metrics())),
    ("POST", &["leader"], Inline, |s, req, _| s.hello(req)),
    ("POST", &["apply"], Inline, |s, req, _| s.apply(req)),
];

/// The catalog's HTTP face: the data plus the front-ends to invalidate.
pub(crate) struct CatalogApi {
    catalog: Catalog,
    frontends: Vec<String>,
    /// One invalidation worker per front-end, in `frontends` order (`None`: it could not start).
    invalidators: Vec<Option<mpsc::Sender<InvalidationJob>>>,
    secret: String,
    /// Applies not yet answered, and until when a front-end that did not confirm may still
    /// serve what it cached before the last change: a hello waits for both (see `hello`).
    settling: Mutex<Settling>,
    settled: Condvar,
    metrics: Metrics,
    own: CatalogMetrics,
}

/// The catalog's own metrics, copied in at each scrape (`crate::metrics`).
struct CatalogMetrics {
    epoch: IntGauge,
    applied: IntGauge,
    journal_lines: IntGauge,
    journal_bytes: IntGauge,
}

impl CatalogMetrics {
    fn new(m: &Metrics) -> Result<CatalogMetrics> {
        Ok(CatalogMetrics {
            epoch: m.gauge(
                "bazaar_catalog_epoch",
                "The fence: the highest leader epoch the catalog has seen.",
            )?,
            applied: m.gauge(
                "bazaar_catalog_applied_number",
                "The last order number applied (-1 before the first).",
            )?,
            journal_lines: m.gauge(
                "bazaar_catalog_journal_lines",
                "Lines in catalog.journal since the last snapshot.",
            )?,
            journal_bytes: m.gauge(
                "bazaar_catalog_journal_bytes",
                "Bytes in catalog.journal since the last snapshot.",
            )?,
        })
    }
}

#[derive(Clone, Copy)]
struct Settling {
    in_flight: u32,
    stale_until: Instant,
}

/// Counts one apply as in flight until it is dropped (also when it fails or panics).
struct InFlight<'a>(&'a CatalogApi);

impl<'a> InFlight<'a> {
    fn enter(api: &'a CatalogApi) -> InFlight<'a> {
        api.settling.lock().in_flight += 1;
        InFlight(api)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.settling.lock().in_flight -= 1;
        self.0.settled.notify_all();
    }
}

/// One batch for one front-end's invalidation worker.
struct InvalidationJob {
    batch: Arc<InvalidateBatch>,
    /// The end of the batch's budget: a job picked up later is dropped (already reported).
    deadline: Instant,
    index: usize,
    done: mpsc::Sender<(usize, Result<()>)>,
}

/// The long-lived thread that makes one front-end's invalidation calls, one batch at a time.
/// (A thread per call cost a spawn per front-end per batch on the hot path.) While a call
/// hangs, later batches wait in the channel and are dropped once their budget is spent.
fn spawn_invalidator(client: Client, addr: String) -> Option<mpsc::Sender<InvalidationJob>> {
    let (jobs, queue) = mpsc::channel::<InvalidationJob>();
    let spawned = std::thread::Builder::new()
        .name("invalidate".into())
        .spawn(move || {
            for job in queue {
                let timeout = job.deadline.saturating_duration_since(Instant::now());
                if timeout.is_zero() {
                    continue;
                }
                let answer: Result<InvalidateBatch> =
                    client.post(&addr, "/invalidation", &*job.batch, timeout);
                // The receiver is gone once the budget is spent: nothing to tell then.
                let _ = job.done.send((job.index, answer.map(|_| ())));
            }
        });
    match spawned {
        Ok(_) => Some(jobs),
        Err(e) => {
            warn!("cannot start the invalidation worker: {e}; front-end caches may go stale");
            None
        }
    }
}

impl CatalogApi {
    pub(crate) fn new(
        catalog: Catalog,
        frontends: Vec<String>,
        secret: &str,
    ) -> Result<CatalogApi> {
        let metrics = Metrics::new()?;
        let own = CatalogMetrics::new(&metrics)?;
        // Carries the secret: the front-ends' invalidation endpoints require it.
        let client = Client::with_secret(secret);
        let invalidators = frontends
            .iter()
            .map(|addr| spawn_invalidator(client.clone(), addr.clone()))
            .collect();
        Ok(CatalogApi {
            metrics,
            own,
            catalog,
            frontends,
            invalidators,
            secret: secret.to_string(),
            settling: Mutex::new(Settling {
                in_flight: 0,
                stale_until: Instant::now(),
            }),
            settled: Condvar::new(),
        })
    }

    /// The one router of the catalog: the table `ROUTES`.
    pub(crate) fn route(&self, req: &Request) -> Result<Response> {
        http::dispatch(ROUTES, self, &self.metrics, req)
    }

    /// `GET /metrics` (`crate::metrics`; no secret, see there).
    fn metrics(&self) -> Response {
        self.metrics.render(|| {
            let (epoch, applied) = self.catalog.numbers();
            let (lines, bytes) = self.catalog.journal_size();
            self.own.epoch.set(gauge_value(epoch));
            self.own.applied.set(applied);
            self.own.journal_lines.set(gauge_value(lines));
            self.own.journal_bytes.set(gauge_value(bytes));
        })
    }

    /// `POST /apply`: applies a batch of committed orders, then has every front-end drop what
    /// changed before the leader hears of it.
    fn apply(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.secret)?;
        let batch: ApplyBatch = req.json()?;
        // Counted before the state lock is taken, so that no hello can slip in between the
        // change and this count.
        let _in_flight = InFlight::enter(self);
        let applied = self.catalog.apply(&batch)?;
        if !self.invalidate(applied.names) {
            // A running front-end did not confirm (paused, or cut off): whatever it
            // cached before this change expires one cache lease after the change.
            let until = *self.catalog.changed_at.lock() + CACHE_LEASE;
            {
                let mut s = self.settling.lock();
                s.stale_until = s.stale_until.max(until);
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        Ok(Response::ok(applied.state))
    }

    /// `POST /leader`: raises the fence (so no apply of an older epoch starts after it), then
    /// answers only once every apply already under way has been answered and no front-end can
    /// still serve a quantity from before the last change. Otherwise a new leader would learn
    /// an `applied` number that includes a trade some front-end may not have dropped yet, and
    /// could acknowledge a retry of that order at once (docs/spec.md §5.5).
    fn hello(&self, req: &Request) -> Result<Response> {
        req.require_secret(&self.secret)?;
        let hello: LeaderHello = req.json()?;
        let state = self.catalog.hello(&hello)?;
        let give_up = Instant::now() + HELLO_SETTLE_LIMIT;
        let mut s = self.settling.lock();
        loop {
            let now = Instant::now();
            if s.in_flight == 0 && now >= s.stale_until {
                break;
            }
            if now >= give_up {
                return Err(Error::Unavailable(
                    "an earlier apply has not settled yet; say hello again".into(),
                ));
            }
            let wake = if s.in_flight == 0 {
                s.stale_until.min(give_up)
            } else {
                give_up
            };
            self.settled.wait_until(&mut s, wake);
        }
        Ok(Response::ok(state))
    }

    /// Tells every front-end, in parallel, to drop `names`, waiting at most
    /// [`INVALIDATION_BUDGET`] in all; failures and late answers are logged. True if every
    /// front-end confirmed or is not running (connection refused: no process, no cache).
    fn invalidate(&self, names: Vec<String>) -> bool {
        if names.is_empty() || self.frontends.is_empty() {
            return true;
        }
        let started = Instant::now();
        let deadline = started + INVALIDATION_BUDGET;
        let batch = Arc::new(InvalidateBatch { names });
        let (done, answers) = mpsc::channel();
        let mut waiting = vec![false; self.frontends.len()];
        for (i, (addr, worker)) in self.frontends.iter().zip(&self.invalidators).enumerate() {
            let job = InvalidationJob {
                batch: batch.clone(),
                deadline,
                index: i,
                done: done.clone(),
            };
            match worker.as_ref().map(|w| w.send(job)) {
                Some(Ok(())) => waiting[i] = true,
                _ => warn!("no invalidation worker for front-end {addr}"),
            }
        }
        drop(done);
        let mut confirmed = 0;
        while waiting.contains(&true) {
            let left = deadline.saturating_duration_since(Instant::now());
            match answers.recv_timeout(left) {
                Ok((i, answer)) => {
                    waiting[i] = false;
                    let gone = answer.as_ref().is_err_and(is_refused);
                    confirmed += usize::from(answer.is_ok() || gone);
                    if let (Err(e), false) = (&answer, gone) {
                        warn!(
                            "could not invalidate {:?} at front-end {}: {e}",
                            batch.names, self.frontends[i]
                        );
                    }
                }
                Err(_) => break,
            }
        }
        for (addr, _) in self.frontends.iter().zip(&waiting).filter(|(_, w)| **w) {
            warn!(
                "front-end {addr} did not confirm invalidating {:?} within {} ms; answering anyway",
                batch.names,
                INVALIDATION_BUDGET.as_millis()
            );
        }
        debug!(
            "invalidated {:?} at {confirmed} of {} front-ends in {:?}",
            batch.names,
            self.frontends.len(),
            started.elapsed()
        );
        confirmed == self.frontends.len()
    }
}

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

#[cfg(test)]
mod tests {

    use parking_lot::Condvar;

    use super::*;
    use crate::api::OrderType::{Buy, Sell};

    const SECRET: &str = "test-secret";

    /// A fresh temporary directory (removed on drop) holding the catalog's files.
    struct TempDir(tempfile::TempDir);

    impl TempDir {
        fn new() -> TempDir {
            TempDir(tempfile::tempdir().unwrap())
        }
        fn file(&self) -> PathBuf {
            self.0.path().join("sub").join("catalog.json")
        }
    }

    fn stocks() -> Vec<StockConfig> {
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

    fn entry(number: u64, name: &str, kind: OrderType, quantity: u64) -> LogEntry {
        LogEntry {
            number,
            name: name.into(),
            kind,
            quantity,
            epoch: 1,
            request_id: format!("r{number}"),
        }
    }

    fn batch(epoch: u64, entries: Vec<LogEntry>) -> ApplyBatch {
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

    fn hello(epoch: u64) -> LeaderHello {
        LeaderHello { epoch, leader: 3 }
    }

    /// (quantity, volume) of every stock, in catalog order, as lookups see it.
    fn holdings(catalog: &Catalog) -> Vec<(u64, u64)> {
        catalog
            .list()
            .iter()
            .map(|s| (s.quantity, s.volume))
            .collect()
    }

    /// The catalog's (epoch, applied, applied_epoch).
    /// The state on disk as a restart would find it: catalog.json, then the journal's last
    /// whole line (read without opening, which would fold the journal in).
    fn saved(dir: &TempDir) -> CatalogFile {
        match load(&dir.file(), &dir.file().with_extension("journal"), &[]).unwrap() {
            Found::State { file, .. } => file,
            other => panic!("no state on disk: {other:?}"),
        }
    }

    /// The state catalog.json holds, which must be sealed.
    fn sealed_file(path: &Path) -> CatalogFile {
        let bytes = fs::read(path).unwrap();
        let record = bytes
            .strip_suffix(b"\n")
            .expect("a line end after the seal");
        let (payload, _) = checksum::unseal(0, record).unwrap();
        parse_file(payload).unwrap()
    }

    fn position(catalog: &Catalog) -> (u64, i64, u64) {
        let s = catalog.state();
        (s.epoch, s.applied, s.applied_epoch)
    }

    #[test]
    fn a_new_catalog_is_created_from_the_config() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(position(&catalog), (0, -1, 0));
        assert_eq!(holdings(&catalog), [(100, 0), (3, 0)]);
        let bytes = fs::read(dir.file()).unwrap();
        let (payload, _) = checksum::unseal(0, bytes.strip_suffix(b"\n").unwrap()).unwrap();
        let file: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            file,
            serde_json::json!({"epoch":0,"applied":-1,"applied_epoch":0,"stocks":[
                {"name":"A","price":1.5,"quantity":100,"volume":0},
                {"name":"B","price":2.0,"quantity":3,"volume":0}]})
        );
        assert_eq!(catalog.lookup("Z").unwrap_err().status(), 404);
    }

    #[test]
    fn lower_epochs_are_fenced_and_change_nothing_even_after_a_restart() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(catalog.hello(&hello(2)).unwrap().epoch, 2);
        catalog
            .apply(&batch(2, vec![entry(0, "A", Buy, 10)]))
            .unwrap();
        let before = saved(&dir);

        // The old leader of epoch 1, woken from a freeze, re-sends and says hello.
        let err = catalog
            .apply(&batch(
                1,
                vec![entry(0, "A", Buy, 10), entry(1, "A", Buy, 5)],
            ))
            .unwrap_err();
        assert_eq!(err.status(), 409, "{err}");
        let err = catalog.hello(&hello(1)).unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(
            err.message().contains("epoch 1") && err.message().contains("epoch 2"),
            "{err}"
        );
        assert_eq!(position(&catalog), (2, 0, 2));
        assert_eq!(holdings(&catalog), [(90, 10), (3, 0)]);
        assert_eq!(saved(&dir), before);

        // The fence survives a restart.
        drop(catalog);
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let err = catalog
            .apply(&batch(1, vec![entry(1, "A", Buy, 5)]))
            .unwrap_err();
        assert_eq!(err.status(), 409);
        assert_eq!(position(&catalog), (2, 0, 2));
        assert_eq!(saved(&dir), before);

        // An apply from a higher epoch raises the fence by itself.
        let applied = catalog
            .apply(&batch(3, vec![entry(1, "B", Sell, 1)]))
            .unwrap();
        assert_eq!((applied.state.epoch, applied.state.applied), (3, 1));
        assert!(applied.state.stocks.is_empty());
        assert_eq!(catalog.hello(&hello(2)).unwrap_err().status(), 409);
        // The same epoch says hello again: fine, and the answer carries the stocks.
        let state = catalog.hello(&hello(3)).unwrap();
        assert_eq!((state.epoch, state.applied, state.applied_epoch), (3, 1, 3));
        assert_eq!(state.stocks[1].quantity, 4);
    }

    #[test]
    fn entries_apply_in_order_exactly_once() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let first = batch(1, vec![entry(0, "A", Buy, 10), entry(1, "A", Sell, 4)]);
        let applied = catalog.apply(&first).unwrap();
        assert_eq!(applied.state.applied, 1);
        assert_eq!(applied.names, ["A"]);
        assert_eq!(holdings(&catalog), [(94, 14), (3, 0)]);
        let after_first = saved(&dir);

        // Re-sent whole: nothing changes (no write either), but the stocks are invalidated
        // again, since the first attempt may have died before it did.
        let again = catalog.apply(&first).unwrap();
        assert_eq!(again.state.applied, 1);
        assert_eq!(again.names, ["A"]);
        assert_eq!(holdings(&catalog), [(94, 14), (3, 0)]);
        assert_eq!(saved(&dir), after_first);

        // Overlapping: only the new entry applies.
        let overlap = batch(1, vec![entry(1, "A", Sell, 4), entry(2, "B", Buy, 3)]);
        let applied = catalog.apply(&overlap).unwrap();
        assert_eq!(applied.state.applied, 2);
        assert_eq!(applied.names, ["A", "B"]);
        assert_eq!(holdings(&catalog), [(94, 14), (0, 3)]);

        // A gap: nothing applies; the answer says where to resume.
        let after_overlap = saved(&dir);
        let gap = catalog
            .apply(&batch(
                1,
                vec![entry(4, "A", Buy, 1), entry(5, "A", Buy, 1)],
            ))
            .unwrap();
        assert_eq!((gap.state.applied, gap.names.len()), (2, 0));
        assert_eq!(holdings(&catalog), [(94, 14), (0, 3)]);
        assert_eq!(saved(&dir), after_overlap);

        // Entries that are not consecutive: 400, nothing applies.
        let err = catalog
            .apply(&batch(
                1,
                vec![entry(3, "A", Buy, 1), entry(5, "A", Buy, 1)],
            ))
            .unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
        assert_eq!(position(&catalog), (1, 2, 1));
        let err = catalog
            .apply(&batch(1, vec![entry(u64::MAX, "A", Buy, 1)]))
            .unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
        let mut higher = entry(3, "A", Buy, 1);
        higher.epoch = 2;
        let err = catalog
            .apply(&ApplyBatch {
                epoch: 1,
                leader: 3,
                entries: vec![higher],
            })
            .unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
        assert_eq!(position(&catalog), (1, 2, 1));

        // Resuming at applied + 1 works.
        let resumed = catalog
            .apply(&batch(
                1,
                vec![entry(3, "A", Buy, 1), entry(4, "A", Buy, 1)],
            ))
            .unwrap();
        assert_eq!(resumed.state.applied, 4);
        assert_eq!(holdings(&catalog), [(92, 16), (0, 3)]);
    }

    #[test]
    fn a_batch_that_cannot_apply_is_refused_whole() {
        let cases: &[(&str, Vec<LogEntry>, &str)] = &[
            (
                "buy below zero",
                vec![entry(0, "A", Sell, 1), entry(1, "B", Buy, 4)],
                "order 1 (buy 4 B",
            ),
            (
                "unknown stock",
                vec![entry(0, "A", Buy, 1), entry(1, "Z", Sell, 1)],
                "no such stock",
            ),
            (
                "quantity overflow",
                vec![entry(0, "A", Buy, 1), entry(1, "A", Sell, u64::MAX)],
                "overflow",
            ),
        ];
        for (name, entries, part) in cases {
            let dir = TempDir::new();
            let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
            let before = saved(&dir);
            let err = catalog.apply(&batch(5, entries.clone())).unwrap_err();
            assert_eq!(err.status(), 422, "{name}: {err}");
            assert!(err.message().contains(part), "{name}: {err}");
            // Not even the fence moved: the file and the view are as before.
            assert_eq!(position(&catalog), (0, -1, 0), "{name}");
            assert_eq!(holdings(&catalog), [(100, 0), (3, 0)], "{name}");
            assert_eq!(saved(&dir), before, "{name}");
        }
    }

    #[test]
    fn the_journal_survives_a_torn_line_and_is_folded_into_the_snapshot() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog
            .apply(&batch(1, vec![entry(0, "A", Buy, 10)]))
            .unwrap();
        catalog
            .apply(&batch(1, vec![entry(1, "B", Sell, 2)]))
            .unwrap();
        drop(catalog);
        let journal = dir.file().with_extension("journal");
        let mut torn = fs::read(&journal).unwrap();
        let whole = torn.len();
        torn.extend_from_slice(br#"{"epoch":1,"applied":2,"#);
        fs::write(&journal, &torn).unwrap();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 1, 1));
        assert_eq!(holdings(&catalog), [(90, 10), (5, 2)]);
        assert_eq!(
            fs::read(&journal).unwrap().len(),
            0,
            "folded into catalog.json"
        );
        assert_eq!(sealed_file(&dir.file()).applied, 1);
        assert!(whole > 0);
        assert!(!damaged_path(&journal).exists(), "a torn line is no damage");
        // The same bytes with their line end were answered: damage, not a crash.
        drop(catalog);
        fs::write(&journal, b"garbage\n").unwrap();
        assert_damaged_at(&dir, &journal, 1, "too short");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(position(&catalog), (0, -1, 0));
        assert_eq!(fs::read(damaged_path(&journal)).unwrap(), b"garbage\n");
        // A line that checks but lists other stocks than catalog.json: damage as well.
        drop(catalog);
        let mut other = sealed(&CatalogFile {
            epoch: 1,
            applied: 0,
            applied_epoch: 1,
            stocks: Vec::new(),
        })
        .unwrap();
        other.extend_from_slice(br#"{"epoch":1,"applied":1,"#);
        fs::write(&journal, &other).unwrap();
        assert_damaged_at(&dir, &journal, 1, "lists the stocks []");
    }

    #[test]
    fn a_restart_resumes_from_the_file() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog.hello(&hello(4)).unwrap();
        catalog
            .apply(&batch(
                4,
                vec![entry(0, "A", Buy, 10), entry(1, "B", Sell, 2)],
            ))
            .unwrap();
        drop(catalog);
        // Different initial stocks: an existing file wins over the config.
        let catalog = Catalog::open(&dir.file(), &[]).unwrap();
        assert_eq!(position(&catalog), (4, 1, 4));
        assert_eq!(
            catalog.lookup("B").unwrap(),
            StockRecord {
                name: "B".into(),
                price: 2.0,
                quantity: 5,
                volume: 2
            }
        );
        // The leader re-sends from 0 after the restart: only 2 is new.
        let applied = catalog
            .apply(&batch(
                4,
                vec![
                    entry(0, "A", Buy, 10),
                    entry(1, "B", Sell, 2),
                    entry(2, "A", Buy, 1),
                ],
            ))
            .unwrap();
        assert_eq!(applied.state.applied, 2);
        assert_eq!(holdings(&catalog), [(89, 11), (5, 2)]);
    }

    /// Every file that does not hold a state is damage: moved aside, the catalog starts over
    /// from the config (the leader re-applies the log). Old formats included: rebuilding from
    /// the log is the one answer that is right for every version.
    #[test]
    fn bad_or_old_files_are_moved_aside_and_rebuilt() {
        let cases: &[(&str, &str, &str)] = &[
            ("torn", r#"{"epoch":1,"applied":0,"sto"#, "no checksum"),
            ("empty", "", "too short"),
            (
                "old format",
                r#"{"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0}],"recent_trades":[]}"#,
                "old catalog",
            ),
            (
                "old format without recent_trades",
                r#"{"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0}]}"#,
                "old catalog",
            ),
            (
                "negative quantity",
                r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[{"name":"A","price":1.0,"quantity":-1,"volume":0}]}"#,
                "not a valid catalog",
            ),
            (
                "unknown key",
                r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[],"extra":1}"#,
                "not a valid catalog",
            ),
            (
                "applied below -1",
                r#"{"epoch":1,"applied":-2,"applied_epoch":1,"stocks":[]}"#,
                "below -1",
            ),
            (
                "applied_epoch above epoch",
                r#"{"epoch":1,"applied":0,"applied_epoch":2,"stocks":[]}"#,
                "above epoch",
            ),
            (
                "duplicate stock",
                r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0},{"name":"A","price":1.0,"quantity":1,"volume":0}]}"#,
                "duplicate",
            ),
            (
                "sealed, checksum changed",
                "{\"epoch\":1,\"applied\":0,\"applied_epoch\":1,\"stocks\":[]},00000000\n",
                "does not match",
            ),
        ];
        for (name, text, part) in cases {
            let dir = TempDir::new();
            let path = dir.file();
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            let Found::Damaged(why) = load(&path, &path.with_extension("journal"), &[]).unwrap()
            else {
                panic!("{name}: not found damaged");
            };
            assert!(why.contains(part), "{name}: {why}");
            assert!(
                why.contains(&format!("{} line 1", path.display())),
                "{name}: {why}"
            );
            assert!(!why.contains('\n'), "{name}: one line: {why}");
            let catalog = Catalog::open(&path, &stocks()).unwrap();
            assert_eq!(position(&catalog), (0, -1, 0), "{name}");
            assert_eq!(holdings(&catalog), [(100, 0), (3, 0)], "{name}");
            assert_eq!(sealed_file(&path).applied, -1, "{name}");
            assert_eq!(
                fs::read_to_string(damaged_path(&path)).unwrap(),
                *text,
                "{name}: kept aside"
            );
        }
    }

    /// What cannot be rebuilt around refuses to start: a file that cannot be read.
    #[test]
    fn an_unreadable_file_refuses_to_start() {
        let dir = TempDir::new();
        let path = dir.file();
        fs::create_dir_all(&path).unwrap();
        match Catalog::open(&path, &stocks()) {
            Err(Error::State(msg)) => {
                assert!(msg.contains("cannot read"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("accepted: {other:?}"),
        }
        assert!(path.is_dir(), "left as it was");
        assert!(!damaged_path(&path).exists());
    }

    #[test]
    fn a_leftover_temp_file_is_removed_and_the_file_kept() {
        let valid = r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0}]}"#;
        let dir = TempDir::new();
        let path = dir.file();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = Vec::new();
        checksum::seal(0, valid.as_bytes(), &mut bytes);
        fs::write(&path, &bytes).unwrap();
        fs::write(temp_path(&path), b"{\"epoch\":2,\"appl").unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert!(!temp_path(&path).exists());
        assert_eq!(position(&catalog), (1, 0, 1));
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "sealed already: not rewritten"
        );
    }

    /// Files of the previous format (plain JSON, no checksum) are read, and sealed from then on.
    #[test]
    fn previous_format_files_load_and_are_upgraded() {
        let dir = TempDir::new();
        let path = dir.file();
        let journal = path.with_extension("journal");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let state = |applied: i64, a: u64| {
            format!(
                r#"{{"epoch":1,"applied":{applied},"applied_epoch":1,"stocks":[{{"name":"A","price":1.5,"quantity":{a},"volume":{}}},{{"name":"B","price":2.0,"quantity":3,"volume":0}}]}}"#,
                100 - a
            )
        };
        fs::write(&path, state(0, 90)).unwrap();
        fs::write(&journal, format!("{}\n{}\n", state(1, 85), state(2, 84))).unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 2, 1));
        assert_eq!(holdings(&catalog), [(84, 16), (3, 0)]);
        assert_eq!(
            sealed_file(&path).applied,
            2,
            "folded in and sealed at start"
        );
        catalog
            .apply(&batch(1, vec![entry(3, "A", Buy, 4)]))
            .unwrap();
        let line = fs::read(&journal).unwrap();
        let (payload, _) = checksum::unseal(0, line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            parse_file(payload).unwrap().applied,
            3,
            "the next write is sealed"
        );
        drop(catalog);
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 3, 1));
        assert_eq!(holdings(&catalog), [(80, 20), (3, 0)]);
        assert_eq!(sealed_file(&path).applied, 3);
        assert!(!damaged_path(&path).exists() && !damaged_path(&journal).exists());

        // A previous-format catalog.json alone (no journal) is sealed at start too.
        let dir = TempDir::new();
        let path = dir.file();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, state(0, 90)).unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 0, 1));
        assert_eq!(sealed_file(&path).applied, 0);
    }

    /// Replaces the only `from` in line `line` (from 1) of `path` by `to`: the same length,
    /// still a valid state, as rot or a stray edit leaves it.
    fn change_digit(path: &Path, line: usize, from: &str, to: &str) {
        let text = fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        let target = &mut lines[line - 1];
        assert_eq!(target.matches(from).count(), 1, "{from} in {target}");
        *target = target.replacen(from, to, 1);
        fs::write(path, lines.concat()).unwrap();
    }

    /// `path` with `.damaged` appended, where a damaged file is moved.
    fn damaged(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}.damaged", path.display()))
    }

    /// After damage: the stocks of the config, nothing applied, the damaged files kept aside;
    /// the leader's re-sends from order 0 bring it back to the log's numbers.
    fn assert_rebuilt(dir: &TempDir, catalog: &Catalog, kept: &Path, changed: &str) {
        assert_eq!(holdings(catalog), [(100, 0), (3, 0)]);
        assert_eq!(position(catalog), (0, -1, 0));
        assert!(
            fs::read_to_string(damaged(kept)).unwrap().contains(changed),
            "the damaged file is kept aside"
        );
        let answer = catalog
            .apply(&batch(2, vec![entry(5, "A", Buy, 1)]))
            .unwrap();
        assert_eq!(
            answer.state.applied, -1,
            "a gap: the leader re-sends from 0"
        );
        catalog
            .apply(&batch(
                2,
                vec![
                    entry(0, "A", Buy, 10),
                    entry(1, "A", Buy, 5),
                    entry(2, "B", Sell, 2),
                ],
            ))
            .unwrap();
        assert_eq!(holdings(catalog), [(85, 15), (5, 2)]);
        assert_eq!(position(catalog), (2, 2, 2));
        assert_eq!(saved(dir).applied, 2);
    }

    /// The files at `path` are found damaged at line `line`, for the reason `part`.
    fn assert_damaged_at(dir: &TempDir, path: &Path, line: usize, part: &str) {
        let found = load(&dir.file(), &dir.file().with_extension("journal"), &[]).unwrap();
        let Found::Damaged(why) = found else {
            panic!("not found damaged: {found:?}");
        };
        assert!(
            why.starts_with(&format!("{} line {line}: ", path.display())) && why.contains(part),
            "{why}"
        );
    }

    /// Three orders, one batch each: A 100 → 90 → 85, B 3 → 5.
    fn three_orders(dir: &TempDir) {
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog
            .apply(&batch(1, vec![entry(0, "A", Buy, 10)]))
            .unwrap();
        catalog
            .apply(&batch(1, vec![entry(1, "A", Buy, 5)]))
            .unwrap();
        catalog
            .apply(&batch(1, vec![entry(2, "B", Sell, 2)]))
            .unwrap();
        assert_eq!(holdings(&catalog), [(85, 15), (5, 2)]);
    }

    #[test]
    fn a_changed_digit_in_catalog_json_rebuilds_from_the_config() {
        let dir = TempDir::new();
        three_orders(&dir);
        // A restart folds the journal into catalog.json.
        drop(Catalog::open(&dir.file(), &stocks()).unwrap());
        change_digit(&dir.file(), 1, r#""quantity":85"#, r#""quantity":95"#);
        assert_damaged_at(&dir, &dir.file(), 1, "does not match");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_rebuilt(&dir, &catalog, &dir.file(), r#""quantity":95"#);
    }

    #[test]
    fn a_changed_digit_in_a_middle_journal_line_rebuilds_from_the_config() {
        let dir = TempDir::new();
        three_orders(&dir);
        let journal = dir.file().with_extension("journal");
        change_digit(&journal, 2, r#""quantity":85"#, r#""quantity":86"#);
        assert_damaged_at(&dir, &journal, 2, "does not match");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_rebuilt(&dir, &catalog, &journal, r#""quantity":86"#);
    }

    #[test]
    fn a_changed_digit_in_the_last_journal_line_rebuilds_from_the_config() {
        let dir = TempDir::new();
        three_orders(&dir);
        let journal = dir.file().with_extension("journal");
        change_digit(&journal, 3, r#""quantity":5,"#, r#""quantity":9,"#);
        assert_damaged_at(&dir, &journal, 3, "does not match");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_rebuilt(&dir, &catalog, &journal, r#""quantity":9,"#);
    }

    /// Two leaders at once: the new one (epoch 2) applies while the old one (epoch 1) keeps
    /// re-sending its own, different, entries. Every old batch is refused and changes nothing.
    #[test]
    fn racing_leaders_only_the_higher_epoch_applies() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog.hello(&hello(2)).unwrap();
        std::thread::scope(|s| {
            let old = s.spawn(|| {
                for i in 0..50 {
                    let err = catalog
                        .apply(&batch(1, vec![entry(i, "A", Buy, 1)]))
                        .unwrap_err();
                    assert_eq!(err.status(), 409);
                }
            });
            for i in 0..50 {
                catalog
                    .apply(&batch(2, vec![entry(i, "A", Sell, 2)]))
                    .unwrap();
            }
            old.join().unwrap();
        });
        assert_eq!(position(&catalog), (2, 49, 2));
        assert_eq!(holdings(&catalog), [(200, 100), (3, 0)]);
    }

    fn with_secret(mut req: Request) -> Request {
        req.headers
            .push(("authorization".into(), format!("Bearer {SECRET}")));
        req
    }

    #[test]
    fn metrics_name_the_applied_number_and_journal() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service = CatalogApi::new(catalog, Vec::new(), SECRET).unwrap();
        let resp = service
            .route(&apply_request(1, vec![entry(0, "A", Buy, 1)]))
            .unwrap();
        assert_eq!(resp.status, 200);
        let resp = service
            .route(&Request::new("GET", "/metrics", Vec::new()))
            .unwrap();
        crate::metrics::tests::assert_exposes(
            &resp,
            &[
                "bazaar_http_requests_total",
                "bazaar_catalog_epoch",
                "bazaar_catalog_applied_number",
                "bazaar_catalog_journal_lines",
                "bazaar_catalog_journal_bytes",
            ],
        );
        let text = String::from_utf8_lossy(&resp.body);
        for line in [
            "bazaar_catalog_applied_number 0",
            "bazaar_catalog_journal_lines 1",
            r#"bazaar_http_requests_total{route="POST /apply",status="200"} 1"#,
        ] {
            assert!(text.contains(line), "no {line} in:\n{text}");
        }
    }

    #[test]
    fn route_table() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service = CatalogApi::new(catalog, Vec::new(), SECRET).unwrap();
        let apply = r#"{"epoch":1,"leader":3,"entries":[{"number":0,"name":"A","type":"buy","quantity":2,"epoch":1,"request_id":"x"}]}"#;
        // (method, target, body, with the secret, status, part of the answer)
        let cases: &[(&str, &str, &str, bool, u16, &str)] = &[
            (
                "GET",
                "/stocks/A",
                "",
                false,
                200,
                r#"{"data":{"name":"A","price":1.5,"quantity":100,"volume":0}}"#,
            ),
            ("GET", "/stocks/Z", "", false, 404, "no such stock"),
            ("POST", "/apply", apply, false, 401, "secret"),
            (
                "POST",
                "/leader",
                r#"{"epoch":1,"leader":3}"#,
                false,
                401,
                "secret",
            ),
            (
                "GET",
                "/state",
                "",
                false,
                200,
                r#"{"data":{"epoch":0,"applied":-1,"applied_epoch":0,"stocks":[{"name":"A""#,
            ),
            (
                "POST",
                "/leader",
                r#"{"epoch":1,"leader":3}"#,
                true,
                200,
                r#"{"data":{"epoch":1,"applied":-1,"applied_epoch":0,"stocks":[{"name":"A""#,
            ),
            (
                "POST",
                "/apply",
                apply,
                true,
                200,
                r#"{"data":{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[]}}"#,
            ),
            ("GET", "/stocks/A", "", false, 200, r#""quantity":98"#),
            ("POST", "/apply", "{", true, 400, "malformed JSON"),
            (
                "POST",
                "/leader",
                r#"{"epoch":0,"leader":1}"#,
                true,
                409,
                "epoch 0",
            ),
            ("GET", "/stocks", "", false, 200, r#"{"name":"B""#),
            (
                "GET",
                "/health",
                "",
                false,
                200,
                r#"{"data":{"status":"ok"}}"#,
            ),
            ("DELETE", "/stocks/A", "", false, 405, "method"),
            ("GET", "/apply", "", false, 405, "method"),
            ("GET", "/leader", "", false, 405, "method"),
            ("POST", "/state", "", false, 405, "method"),
            (
                "POST",
                "/trades",
                r#"{"orders":[]}"#,
                true,
                404,
                "no such route",
            ),
            (
                "POST",
                "/orders",
                r#"{"name":"A","quantity":1,"type":"buy"}"#,
                true,
                404,
                "no such route",
            ),
            ("GET", "/elsewhere", "", false, 404, "no such route"),
        ];
        for (method, target, body, secret, want, part) in cases {
            let mut req = Request::new(method, target, body.as_bytes().to_vec());
            if *secret {
                req = with_secret(req);
            }
            let resp: Response = service.route(&req).into();
            let text = String::from_utf8_lossy(&resp.body);
            assert_eq!(resp.status, *want, "{method} {target}: {text}");
            assert!(
                text.contains(part),
                "{method} {target}: {text} lacks {part}"
            );
        }
        // The refused (401) apply changed nothing: only the one with the secret applied.
        assert_eq!(service.catalog.state().applied, 0);
        assert_eq!(service.catalog.lookup("A").unwrap().volume, 2);
    }

    /// A fake front-end's record of `POST /invalidation` calls.
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<(Vec<String>, Option<String>)>>,
        arrived: Condvar,
    }

    /// How long a fake front-end waits for its peer's request before giving up (only reached
    /// when the invalidations are not sent in parallel).
    const PEER_WAIT: Duration = Duration::from_secs(2);

    /// A fake front-end: records each invalidation and its Authorization header. With
    /// `peer`, it answers only once the peer fake has a request too (so both must be in
    /// flight at once); with `release`, it holds every answer until the test sends on it.
    fn fake_frontend(
        seen: Arc<Seen>,
        peer: Option<Arc<Seen>>,
        release: Option<Mutex<mpsc::Receiver<()>>>,
    ) -> Server {
        let handler = move |req: &Request| {
            let names = req.json::<InvalidateBatch>()?.names;
            let auth = req.header("authorization").map(String::from);
            let mine = {
                let mut calls = seen.calls.lock();
                calls.push((names.clone(), auth));
                calls.len()
            };
            seen.arrived.notify_all();
            if let Some(peer) = &peer {
                // The n-th call answers only once the peer has its n-th call too.
                let give_up = Instant::now() + PEER_WAIT;
                let mut calls = peer.calls.lock();
                while calls.len() < mine {
                    if peer.arrived.wait_until(&mut calls, give_up).timed_out() {
                        return Err(Error::Internal("the peer front-end got nothing".into()));
                    }
                }
            }
            if let Some(release) = &release {
                let _ = release.lock().recv_timeout(PEER_WAIT);
            }
            Ok(Response::ok(InvalidateBatch { names }))
        };
        let config = Config::from_yaml(include_str!("../conf/bazaar.yaml"), &|_| None).unwrap();
        Server::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            ServerOptions::new("fake-frontend", 1, &config.http),
            Arc::new(handler),
        )
        .unwrap()
    }

    fn apply_request(epoch: u64, entries: Vec<LogEntry>) -> Request {
        with_secret(Request::new(
            "POST",
            "/apply",
            serde_json::to_vec(&batch(epoch, entries)).unwrap(),
        ))
    }

    #[test]
    fn invalidation_reaches_every_frontend_in_parallel() {
        let (one, two) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        // Each fake answers only once the other has its request too.
        let fe1 = fake_frontend(one.clone(), Some(two.clone()), None);
        let fe2 = fake_frontend(two.clone(), Some(one.clone()), None);
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let addrs = vec![fe1.local_addr().to_string(), fe2.local_addr().to_string()];
        let service = CatalogApi::new(catalog, addrs, SECRET).unwrap();
        let resp = service
            .route(&apply_request(
                1,
                vec![
                    entry(0, "A", Buy, 1),
                    entry(1, "B", Buy, 1),
                    entry(2, "A", Sell, 1),
                ],
            ))
            .unwrap();
        assert_eq!(resp.status, 200);
        let want = (
            vec!["A".to_string(), "B".to_string()],
            Some(format!("Bearer {SECRET}")),
        );
        for seen in [&one, &two] {
            // One call per front-end, with the distinct names and the secret.
            assert_eq!(*seen.calls.lock(), std::slice::from_ref(&want));
        }
        // Both confirm in time only if both calls are in flight at once: each fake holds its
        // answer until the other has the request (a one-after-the-other fan-out gets one
        // confirmation at most).
        assert!(service.invalidate(vec!["A".into()]));
        assert_eq!(one.calls.lock().len(), 2);
        fe1.shutdown();
        fe2.shutdown();
    }

    #[test]
    fn a_dead_frontend_costs_nothing_and_a_silent_one_one_cache_lease() {
        let (fast, slow) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let (release, held) = mpsc::channel();
        let fe_fast = fake_frontend(fast.clone(), None, None);
        let fe_slow = fake_frontend(slow.clone(), None, Some(Mutex::new(held)));
        let dead = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let dead_addr = dead.clone();
        let addrs = vec![
            dead,
            fe_slow.local_addr().to_string(),
            fe_fast.local_addr().to_string(),
        ];
        let service = CatalogApi::new(catalog, addrs, SECRET).unwrap();
        let started = Instant::now();
        let resp = service
            .route(&apply_request(
                1,
                vec![
                    entry(0, "A", Buy, 1),
                    entry(1, "B", Buy, 1),
                    entry(2, "A", Sell, 2),
                ],
            ))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status, 200);
        // The silent front-end may still serve what it cached before the trade: the answer
        // waits until that has expired (one cache lease), and not much longer.
        assert!(
            took >= CACHE_LEASE && took < CACHE_LEASE + INVALIDATION_BUDGET,
            "the apply took {took:?}"
        );
        assert_eq!(
            *fast.calls.lock(),
            [(
                vec!["A".to_string(), "B".to_string()],
                Some(format!("Bearer {SECRET}"))
            )]
        );
        assert_eq!(holdings(&service.catalog), [(101, 3), (2, 1)]);
        let _ = release.send(());
        // Without the silent one: a front-end that is not running has no cache to drop, so
        // the fan-out costs one budget at most, well under the lease.
        let addrs = vec![dead_addr, fe_fast.local_addr().to_string()];
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service = CatalogApi::new(catalog, addrs, SECRET).unwrap();
        let started = Instant::now();
        let resp = service
            .route(&apply_request(2, vec![entry(3, "A", Buy, 1)]))
            .unwrap();
        assert_eq!(resp.status, 200);
        let took = started.elapsed();
        assert!(
            took < INVALIDATION_BUDGET + Duration::from_millis(250),
            "the apply took {took:?}"
        );
        fe_fast.shutdown();
        fe_slow.shutdown();
    }

    /// A new leader's hello must not learn that an order was applied while a front-end that
    /// did not confirm the invalidation may still serve the pre-trade quantity: it waits until
    /// the apply under way has been answered (one cache lease after the change).
    #[test]
    fn a_hello_waits_for_an_apply_that_waits_out_a_cache_lease() {
        let silent = Arc::new(Seen::default());
        let (release, held) = mpsc::channel();
        let fe = fake_frontend(silent.clone(), None, Some(Mutex::new(held)));
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let service =
            Arc::new(CatalogApi::new(catalog, vec![fe.local_addr().to_string()], SECRET).unwrap());
        let applier = service.clone();
        let started = Instant::now();
        let apply = std::thread::spawn(move || {
            applier.route(&apply_request(1, vec![entry(0, "A", Buy, 1)]))
        });
        // Wait until the apply is visible (the front-end was asked), then say hello.
        let visible = Instant::now() + Duration::from_secs(5);
        while service.catalog.state().applied < 0 {
            assert!(Instant::now() < visible, "the apply never became visible");
            std::thread::yield_now();
        }
        let body = serde_json::to_vec(&hello(2)).unwrap();
        let resp = service
            .route(&with_secret(Request::new("POST", "/leader", body)))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status, 200);
        assert!(
            took >= CACHE_LEASE,
            "the hello answered {took:?} after the trade, inside the cache lease"
        );
        assert_eq!(apply.join().unwrap().unwrap().status, 200);
        let _ = release.send(());
        fe.shutdown();
    }
}

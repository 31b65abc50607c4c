//! The core's [`Store`] on disk: the order log file plus the hard-state file.
//!
//! Appends are buffered in `pending` while the core thread drains a batch of events, and
//! written with one `write` and one `fdatasync` by [`Store::sync`] (group commit): the core
//! hands out no effect that rests on them before that returned. Readers on other threads
//! (`GET /orders/<n>`, log pages for peers) read the [`OrderLog`]'s memory, which shows only
//! synced entries.
//!
//! The fail point `fail-sync:k` (`BAZAAR_FAILPOINT`) makes the k-th sync that has entries to
//! write fail the way a disk does: the bytes are written (the page cache shows them) but not
//! synced. The core then calls [`Store::reload`], which forgets everything that was not
//! synced: the log file is cut back to its last synced entry (not re-read: after a failed
//! fsync the page cache is no evidence of what the disk holds) and the hard state stays the
//! last one saved successfully.
//!
//! Damage ([`Store::damage`]): whether the hard state was lost when the store was opened
//! (missing or damaged: `epoch::load`), and the first order the log found damaged (at open or
//! by a read since: `OrderLog::damage`). [`Store::checksum`] is the log's chained checksum of
//! a synced entry, which the core records in the hard state's `log_through`.
//!
//! Caveats: the pending buffer is only as large as one drained batch of events. `state_lost`
//! stays what was found at open (saving a new state does not clear it); the log's damage is
//! cleared by a truncation that removes the damaged entry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use prometheus::Histogram;

use super::core::{after, Damage, HardState, Last, Store};
use super::failpoint;
use super::logfile::OrderLog;
use crate::api::{LogEntry, LogPosition};
use crate::error::{Error, Result};

pub(crate) struct FileStore {
    log: Arc<OrderLog>,
    pending: Vec<LogEntry>,
    pending_ids: HashMap<String, u64>,
    state_path: PathBuf,
    hard: HardState,
    /// The hard state was missing or damaged when the store was opened (see `epoch::load`).
    state_lost: bool,
    /// Tests: the next sync with entries fails like a disk (see the module doc).
    fail_next_sync: bool,
    /// `/metrics`: seconds of each write + fdatasync, and orders written by each.
    observe: Option<SyncMetrics>,
}

/// The histograms a sync feeds (see [`FileStore::with_metrics`]).
pub(crate) struct SyncMetrics {
    pub(crate) seconds: Histogram,
    pub(crate) orders: Histogram,
}

impl FileStore {
    pub(crate) fn new(log: Arc<OrderLog>, state_path: PathBuf) -> Result<FileStore> {
        let loaded = super::epoch::load(&state_path)?;
        Ok(FileStore {
            log,
            pending: Vec::new(),
            pending_ids: HashMap::new(),
            state_path,
            hard: loaded.state,
            state_lost: loaded.lost,
            fail_next_sync: false,
            observe: None,
        })
    }

    /// Has every successful sync with entries observed in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: SyncMetrics) -> FileStore {
        self.observe = Some(metrics);
        self
    }

    fn first_pending(&self) -> Option<u64> {
        self.pending.first().map(|e| e.number)
    }
}

impl Store for FileStore {
    fn latest(&self) -> Last {
        self.pending
            .last()
            .map_or_else(|| self.log.latest(), |e| Some(e.number))
    }

    fn position(&self, number: u64) -> Option<LogPosition> {
        let epoch = match self.first_pending() {
            Some(first) if number >= first => self
                .pending
                .get(usize::try_from(number - first).ok()?)
                .map(|e| e.epoch),
            _ => self.log.epoch_of(number),
        };
        epoch.map(|epoch| LogPosition { number, epoch })
    }

    fn entry(&self, number: u64) -> Result<Option<LogEntry>> {
        match self.first_pending() {
            Some(first) if number >= first => Ok(usize::try_from(number - first)
                .ok()
                .and_then(|i| self.pending.get(i))
                .cloned()),
            _ => self.log.get(number).map_err(storage),
        }
    }

    fn entries(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>> {
        let mut out = match self.first_pending() {
            Some(first) if from >= first => Vec::new(),
            _ => self.log.since(from, limit).map_err(storage)?.entries,
        };
        if let Some(first) = self.first_pending() {
            let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
            let room = limit.saturating_sub(out.len());
            out.extend(self.pending.iter().skip(skip).take(room).cloned());
        }
        Ok(out)
    }

    fn lookup(&self, request_id: &str) -> Result<Option<u64>> {
        match self.pending_ids.get(request_id) {
            Some(&number) => Ok(Some(number)),
            None => self.log.lookup(request_id).map_err(storage),
        }
    }

    fn append(&mut self, entries: Vec<LogEntry>) -> Result<()> {
        for e in entries {
            let next = after(self.latest());
            if e.number != next {
                // A write the store refuses: it would leave a gap or an overlap in the file.
                return Err(Error::Storage(format!(
                    "append of {} where {next} comes next",
                    e.number
                )));
            }
            self.pending_ids.insert(e.request_id.clone(), e.number);
            self.pending.push(e);
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> Result<()> {
        self.sync()?;
        self.log.truncate(from).map_err(storage)
    }

    fn sync(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        self.pending_ids.clear();
        if std::mem::take(&mut self.fail_next_sync) || failpoint::fails(failpoint::FAIL_SYNC) {
            return self.log.append_failing_sync(entries).map_err(storage);
        }
        let (orders, started) = (entries.len(), Instant::now());
        self.log.append(entries).map_err(storage)?;
        if let Some(m) = &self.observe {
            m.seconds.observe(started.elapsed().as_secs_f64());
            m.orders.observe(orders as f64);
        }
        failpoint::hit(failpoint::AFTER_LOG_APPEND);
        Ok(())
    }

    fn reload(&mut self) -> Result<()> {
        self.pending.clear();
        self.pending_ids.clear();
        // `hard` is the last state saved successfully: a failed save may have left a newer one
        // in the page cache, which is no proof that the disk has it.
        self.log.forget_unsynced().map_err(storage)
    }

    fn hard_state(&self) -> HardState {
        self.hard
    }

    fn save_hard_state(&mut self, state: HardState) -> Result<()> {
        super::epoch::save(&self.state_path, &state).map_err(storage)?;
        self.hard = state;
        Ok(())
    }

    fn checksum(&self, number: u64) -> Option<u32> {
        // Synced entries only: a pending one has no line in the file yet.
        self.log.checksum(number)
    }

    fn damage(&self) -> Damage {
        Damage {
            state_lost: self.state_lost,
            log_from: self.log.damage(),
        }
    }
}

/// Whatever the layers below call a failure of the files (an I/O error, a damaged read, a
/// refused write), to the core it is a storage failure: [`Error::Storage`], the one error it
/// steps down and reloads for.
fn storage(e: Error) -> Error {
    match e {
        Error::Storage(_) => e,
        other => Error::Storage(other.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderType;

    fn entry(number: u64) -> LogEntry {
        LogEntry {
            number,
            name: "GameStart".into(),
            kind: OrderType::Buy,
            quantity: 1,
            epoch: 1,
            request_id: format!("r{number}"),
        }
    }

    /// The "fsyncgate" lesson: after a failed sync the store must not trust what the file
    /// shows (the page cache), neither now nor after a restart.
    #[test]
    fn a_failed_sync_loses_what_it_was_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("orders-1.csv");
        let state_path = dir.path().join("orders-1.state.json");
        let log = Arc::new(OrderLog::open(&log_path).unwrap());
        let mut store = FileStore::new(log, state_path.clone()).unwrap();
        store.append(vec![entry(0), entry(1)]).unwrap();
        store.sync().unwrap();
        store.append(vec![entry(2)]).unwrap();
        store.fail_next_sync = true;
        assert!(store.sync().is_err());
        store.reload().unwrap();
        assert_eq!(store.latest(), Some(1), "the failed entry is forgotten");
        assert_eq!(store.lookup("r2").unwrap(), None);
        let reopened = OrderLog::open(&log_path).unwrap();
        assert_eq!(reopened.latest(), Some(1), "and is not in the file either");
        // The log goes on from the last durable entry.
        store.append(vec![entry(2)]).unwrap();
        store.sync().unwrap();
        assert_eq!(OrderLog::open(&log_path).unwrap().latest(), Some(2));
    }

    /// What the core learns at start: a missing or damaged hard state is lost; a damaged log
    /// reports its first damaged order; checksums are those of synced entries only.
    #[test]
    fn damage_and_checksums_reach_the_core() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("orders-1.csv");
        let state_path = dir.path().join("orders-1.state.json");
        let open = || {
            let log = Arc::new(OrderLog::open(&log_path).unwrap());
            FileStore::new(log, state_path.clone()).unwrap()
        };
        let mut store = open();
        assert_eq!(
            store.damage(),
            Damage {
                state_lost: true,
                log_from: None
            },
            "no state file"
        );
        store.append(vec![entry(0), entry(1), entry(2)]).unwrap();
        assert_eq!(store.checksum(2), None, "not synced yet");
        store.sync().unwrap();
        let through = store.checksum(2).unwrap();
        assert_ne!(store.checksum(1), Some(through));
        store
            .save_hard_state(HardState {
                epoch: 3,
                ..HardState::default()
            })
            .unwrap();
        drop(store);

        let store = open();
        assert_eq!(store.damage(), Damage::default());
        assert_eq!(store.hard_state().epoch, 3);
        assert_eq!(store.checksum(2), Some(through), "the same after a restart");
        drop(store);

        let mut log = std::fs::read_to_string(&log_path).unwrap();
        log = log.replacen("1,GameStart,buy,1", "1,GameStart,buy,2", 1);
        std::fs::write(&log_path, log).unwrap();
        std::fs::write(&state_path, "{\"epoch\":").unwrap();
        let store = open();
        assert_eq!(
            store.damage(),
            Damage {
                state_lost: true,
                log_from: Some(1)
            }
        );
        assert_eq!(store.hard_state(), HardState::default());
        assert_eq!((store.latest(), store.checksum(1)), (Some(0), None));
    }
}

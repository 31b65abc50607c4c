//! The order log's in-memory index: per order its byte offset, its chained checksum and its
//! epoch (as runs), a request-id index of 8 bytes an order, and the newest entries whole.
//!
//! It is published only after the file is durable (the root module's writer updates it under
//! its write lock after the fsync), so a reader never sees an entry a crash could take back.
//!
//! Caveats: numbers are stored in 32 bits in the request-id index, so a log holds at most
//! `u32::MAX` orders; the request ids themselves are not kept (except in the tail), so a hash
//! match is confirmed by reading the line from the file.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::api::LogEntry;
use crate::error::{Error, Result};

/// How many of the most recent entries memory keeps whole. Replication, the catalog's apply
/// and recent queries read within a few batches of the end, so they never touch the file.
pub(super) const TAIL_ENTRIES: usize = 4096;

/// The in-memory view, published only after the file is durable. About 30 bytes an order:
/// everything but the position, the checksum, the epoch and a hash of the request id is read
/// back from the file (the page cache keeps it warm), except the newest `tail_cap`, kept whole.
pub(super) struct Memory {
    /// Byte offset in the file of each entry's line; entry `i` is order `i`.
    pub(super) offsets: Vec<u64>,
    /// The chained checksum of each entry's line (see the module doc).
    pub(super) crcs: Vec<u32>,
    /// The epoch of every entry as runs: `(first number, epoch)`, ascending by number.
    pub(super) epochs: Vec<(u64, u64)>,
    /// The newest entries, whole; the last one is order `offsets.len() - 1`.
    pub(super) tail: VecDeque<LogEntry>,
    /// How many entries `tail` keeps ([`TAIL_ENTRIES`]; fewer in tests).
    pub(super) tail_cap: usize,
    /// Request id → order number, as `(32-bit hash of the id, number)`. Equal hashes are
    /// told apart by reading the id itself, so a collision costs a read, never a wrong answer.
    pub(super) by_request: HashTable<(u32, u32)>,
    pub(super) hasher: RandomState,
    /// Length of the valid file.
    pub(super) end: u64,
}

impl Memory {
    pub(super) fn new(end: u64, tail_cap: usize) -> Memory {
        Memory {
            offsets: Vec::new(),
            crcs: Vec::new(),
            epochs: Vec::new(),
            tail: VecDeque::new(),
            tail_cap,
            by_request: HashTable::new(),
            hasher: RandomState::new(),
            end,
        }
    }

    pub(super) fn latest(&self) -> Option<u64> {
        self.len().checked_sub(1)
    }

    pub(super) fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// The checksum the line of entry `number` is chained from.
    pub(super) fn crc_before(&self, number: u64) -> u32 {
        match number.checked_sub(1) {
            Some(previous) => self.crcs.get(previous as usize).copied().unwrap_or(0),
            None => 0,
        }
    }

    pub(super) fn id_hash(&self, request_id: &str) -> u32 {
        // The high half: the low bits of a `RandomState` hash are as good, but this keeps the
        // table's own bits (from `spread`) independent of what is stored.
        (self.hasher.hash_one(request_id) >> 32) as u32
    }

    pub(super) fn push(&mut self, entry: LogEntry, offset: u64, crc: u32) -> Result<()> {
        let number = u32::try_from(entry.number).map_err(|_| {
            Error::Internal(format!(
                "order {} is beyond the {} orders one log holds",
                entry.number,
                u32::MAX
            ))
        })?;
        let hash = self.id_hash(&entry.request_id);
        self.by_request
            .insert_unique(spread(hash), (hash, number), |&(h, _)| spread(h));
        self.offsets.push(offset);
        self.crcs.push(crc);
        if self.epochs.last().is_none_or(|&(_, e)| e != entry.epoch) {
            self.epochs.push((entry.number, entry.epoch));
        }
        if self.tail.len() >= self.tail_cap {
            self.tail.pop_front();
        }
        if self.tail_cap > 0 {
            self.tail.push_back(entry);
        }
        Ok(())
    }

    /// The first number held whole in `tail`.
    pub(super) fn tail_start(&self) -> u64 {
        self.len() - self.tail.len() as u64
    }

    pub(super) fn epoch_of(&self, number: u64) -> Option<u64> {
        if number >= self.len() {
            return None;
        }
        let runs = self.epochs.partition_point(|&(first, _)| first <= number);
        runs.checked_sub(1).map(|i| self.epochs[i].1)
    }

    /// Forgets entries `from..`. The tail keeps only what survives; the next appends refill
    /// it, and older entries are read from the file meanwhile.
    pub(super) fn truncate(&mut self, from: u64) {
        let Ok(from_index) = usize::try_from(from) else {
            return;
        };
        if let Some(&offset) = self.offsets.get(from_index) {
            self.end = offset;
        }
        self.offsets.truncate(from_index);
        self.crcs.truncate(from_index);
        self.epochs.retain(|&(first, _)| first < from);
        self.tail.retain(|e| e.number < from);
        self.by_request.retain(|&mut (_, n)| u64::from(n) < from);
    }
}

/// Spreads a stored 32-bit hash over the 64 bits the table probes with (its top bits pick
/// the tag, its low bits the slot).
pub(super) fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

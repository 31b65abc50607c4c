//! The order log: `orders-N.csv`, one [`LogEntry`] a line, and its in-memory index.
//!
//! The file starts with the header [`HEADER`]; every later record is an order written by the
//! `csv` crate with `\n` line endings, so that replicas holding the same entries hold
//! byte-identical files. Entry `i` of a valid log has number `i`.
//!
//! Memory: per order only its byte offset, its epoch (as runs) and an 8-byte slot in the
//! request-id index; the newest `TAIL_ENTRIES` (4096) orders are also kept whole. Any other read
//! (`get`, `since`, a request id whose hash matches) is a `pread` of the file's lines, which
//! the page cache keeps warm. With 1,000,000 orders a replica holds about 30 MB.
//!
//! Writes: one writer at a time (a mutex around the file). A batch is written with one
//! `write_all`, `sync_data`'d, and only then published to memory, so a reader never sees an
//! entry that a crash could take back. Truncation (replacing a conflicting suffix) cuts the
//! file at the first removed entry's byte offset and syncs under the memory's write lock, so
//! no reader looks for an entry in bytes that are gone. Readers take a `parking_lot::RwLock`
//! on the memory and never wait for an fsync (they read through their own file handle).
//!
//! Loading: a torn last record (no trailing newline, or unparsable, or misnumbered) is what a
//! crash in the middle of an append leaves; it was never acknowledged, so it is cut away with
//! a warning. A bad record anywhere else means the file was damaged by something else: the
//! replica refuses to start rather than silently drop data.
//!
//! This file only stores: `OrderLog::append`, `OrderLog::truncate` and reads. Which entries
//! to keep, replace or append is decided by the replica's core (`order::core`), through the
//! file store (`order::store`), which also batches appends into one fsync.
//!
//! Caveats: reads of old entries can fail (an I/O error), so they return `Result`; the core
//! treats such a failure like a failed write. A log holds at most `u32::MAX` orders (the
//! index stores numbers in 32 bits). The request-id index covers the whole log, so a retry is
//! recognised however late it comes; loading it reads the whole file at start.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hashbrown::HashTable;
use log::{info, warn};
use parking_lot::{Mutex, RwLock};

use crate::api::{LogEntry, LogPage};
use crate::durable::{dir_of, sync_dir};
use crate::error::{Error, Result};

/// The first line of every order log.
pub const HEADER: &str = "number,name,type,quantity,epoch,request_id\n";

/// How many of the most recent entries memory keeps whole. Replication, the catalog's apply
/// and recent queries read within a few batches of the end, so they never touch the file.
const TAIL_ENTRIES: usize = 4096;

/// The in-memory view, published only after the file is durable. About 26 bytes an order:
/// everything but the position, the epoch and a hash of the request id is read back from the
/// file (the page cache keeps it warm), except the [`TAIL_ENTRIES`] newest, kept whole.
struct Memory {
    /// Byte offset in the file of each entry's line; entry `i` is order `i`.
    offsets: Vec<u64>,
    /// The epoch of every entry as runs: `(first number, epoch)`, ascending by number.
    epochs: Vec<(u64, u64)>,
    /// The newest entries, whole; the last one is order `offsets.len() - 1`.
    tail: VecDeque<LogEntry>,
    /// Request id → order number, as `(32-bit hash of the id, number)`. Equal hashes are
    /// told apart by reading the id itself, so a collision costs a read, never a wrong answer.
    by_request: HashTable<(u32, u32)>,
    hasher: RandomState,
    /// Length of the valid file.
    end: u64,
}

impl Memory {
    fn new(end: u64) -> Memory {
        Memory {
            offsets: Vec::new(),
            epochs: Vec::new(),
            tail: VecDeque::new(),
            by_request: HashTable::new(),
            hasher: RandomState::new(),
            end,
        }
    }

    fn latest(&self) -> i64 {
        self.offsets.len() as i64 - 1
    }

    fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn id_hash(&self, request_id: &str) -> u32 {
        // The high half: the low bits of a `RandomState` hash are as good, but this keeps the
        // table's own bits (from `spread`) independent of what is stored.
        (self.hasher.hash_one(request_id) >> 32) as u32
    }

    fn push(&mut self, entry: LogEntry, offset: u64) -> Result<()> {
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
        if self.epochs.last().is_none_or(|&(_, e)| e != entry.epoch) {
            self.epochs.push((entry.number, entry.epoch));
        }
        if self.tail.len() == TAIL_ENTRIES {
            self.tail.pop_front();
        }
        self.tail.push_back(entry);
        Ok(())
    }

    /// The first number held whole in `tail`.
    fn tail_start(&self) -> u64 {
        self.len() - self.tail.len() as u64
    }

    fn epoch_of(&self, number: u64) -> Option<u64> {
        if number >= self.len() {
            return None;
        }
        let runs = self.epochs.partition_point(|&(first, _)| first <= number);
        runs.checked_sub(1).map(|i| self.epochs[i].1)
    }

    /// Forgets entries `from..`. The tail keeps only what survives; the next appends refill
    /// it, and older entries are read from the file meanwhile.
    fn truncate(&mut self, from: u64) {
        let Ok(from_index) = usize::try_from(from) else {
            return;
        };
        if let Some(&offset) = self.offsets.get(from_index) {
            self.end = offset;
        }
        self.offsets.truncate(from_index);
        self.epochs.retain(|&(first, _)| first < from);
        self.tail.retain(|e| e.number < from);
        self.by_request.retain(|&mut (_, n)| u64::from(n) < from);
    }
}

/// Spreads a stored 32-bit hash over the 64 bits the table probes with (its top bits pick
/// the tag, its low bits the slot).
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The writer's side of the file.
struct Writer {
    file: File,
    /// A write, fsync or cut failed: the file past memory's `end` may hold bytes the disk
    /// never got (after a failed fsync the page cache still shows them, and a later fsync may
    /// report success without writing them). They are cut before anything else is written.
    unsure: bool,
}

/// One replica's order log. Cheap reads, one writer at a time.
pub(crate) struct OrderLog {
    path: PathBuf,
    /// The open file; holding this lock is what makes a caller the writer.
    file: Mutex<Writer>,
    /// A second handle for readers (`pread`), so reads never wait for the writer's fsync.
    reader: File,
    mem: RwLock<Memory>,
}

impl OrderLog {
    /// Opens `path`, creating it (and its directory) with the header when missing, repairing a
    /// torn tail, refusing a damaged file.
    pub(crate) fn open(path: &Path) -> Result<OrderLog> {
        let dir = dir_of(path);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::State(format!("cannot create {}: {e}", dir.display())))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::State(format!("cannot open {}: {e}", path.display())))?;
        let reader = File::open(path)
            .map_err(|e| Error::State(format!("cannot open {}: {e}", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::State(format!("cannot read {}: {e}", path.display())))?;

        if bytes.len() < HEADER.len() && HEADER.as_bytes().starts_with(&bytes) {
            // New, or a crash while the header itself was being written.
            file.set_len(0)?;
            file.write_all(HEADER.as_bytes())?;
            file.sync_all()?;
            sync_dir(dir)?;
            info!("created order log {}", path.display());
            bytes = HEADER.as_bytes().to_vec();
        }
        if !bytes.starts_with(HEADER.as_bytes()) {
            return Err(Error::State(format!(
                "{}: the first line is not {:?}; refusing to start",
                path.display(),
                HEADER.trim_end()
            )));
        }

        let (mem, torn_at) = parse(&bytes, path)?;
        if let Some(at) = torn_at {
            warn!(
                "{}: cut a torn last record at byte {at} ({} bytes: {:?}) left by a crash mid-append",
                path.display(),
                bytes.len() as u64 - at,
                String::from_utf8_lossy(&bytes[at as usize..]).chars().take(200).collect::<String>()
            );
            file.set_len(at)?;
            file.sync_all()?;
        }
        info!("order log {}: {} orders", path.display(), mem.len());
        Ok(OrderLog {
            path: path.to_path_buf(),
            file: Mutex::new(Writer {
                file,
                unsure: false,
            }),
            reader,
            mem: RwLock::new(mem),
        })
    }

    /// Highest order number held, −1 when empty.
    pub(crate) fn latest(&self) -> i64 {
        self.mem.read().latest()
    }

    /// The epoch of order `number`, if held; from memory, never the file.
    pub(crate) fn epoch_of(&self, number: u64) -> Option<u64> {
        self.mem.read().epoch_of(number)
    }

    pub(crate) fn get(&self, number: u64) -> Result<Option<LogEntry>> {
        let mem = self.mem.read();
        if number >= mem.len() {
            return Ok(None);
        }
        Ok(self.read(&mem, number, 1)?.pop())
    }

    /// The number of the order with this request id, if logged.
    pub(crate) fn lookup(&self, request_id: &str) -> Result<Option<u64>> {
        let mem = self.mem.read();
        let hash = mem.id_hash(request_id);
        for &(h, number) in mem.by_request.iter_hash(spread(hash)) {
            if h != hash {
                continue;
            }
            let number = u64::from(number);
            let same = self
                .read(&mem, number, 1)?
                .first()
                .is_some_and(|e| e.request_id == request_id);
            if same {
                return Ok(Some(number));
            }
        }
        Ok(None)
    }

    /// Up to `limit` entries starting at number `since`.
    pub(crate) fn since(&self, since: u64, limit: usize) -> Result<LogPage> {
        let mem = self.mem.read();
        let count = mem.len().saturating_sub(since).min(limit as u64);
        Ok(LogPage {
            entries: self.read(&mem, since, count)?,
            latest: mem.latest(),
        })
    }

    /// Entries `from..from + count` (all held): the file's part read and parsed, the tail's
    /// part cloned. The caller's read lock keeps a truncation from cutting them meanwhile.
    fn read(&self, mem: &Memory, from: u64, count: u64) -> Result<Vec<LogEntry>> {
        let to = from + count;
        let tail_start = mem.tail_start();
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 16));
        if from < tail_start {
            let file_to = to.min(tail_start);
            let start = mem.offsets[from as usize];
            let end = mem
                .offsets
                .get(file_to as usize)
                .copied()
                .unwrap_or(mem.end);
            let mut bytes = vec![0; usize::try_from(end - start).unwrap_or(0)];
            self.reader.read_exact_at(&mut bytes, start)?;
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(bytes.as_slice());
            for (expected, record) in (from..file_to).zip(reader.deserialize::<LogEntry>()) {
                let entry = record?;
                if entry.number != expected {
                    return Err(Error::Internal(format!(
                        "{}: read order {} where {expected} was expected",
                        self.path.display(),
                        entry.number
                    )));
                }
                out.push(entry);
            }
            if out.len() as u64 != file_to - from {
                return Err(Error::Internal(format!(
                    "{}: short read of orders {from}..{file_to}",
                    self.path.display()
                )));
            }
        }
        let skip = usize::try_from(from.saturating_sub(tail_start)).unwrap_or(usize::MAX);
        let take = usize::try_from(to.saturating_sub(from.max(tail_start))).unwrap_or(0);
        out.extend(mem.tail.iter().skip(skip).take(take).cloned());
        Ok(out)
    }

    /// Appends already numbered entries that continue the log: one write, one fsync, then
    /// visible to readers. On an error nothing is published; [`OrderLog::reload`] then makes
    /// memory agree with whatever the file holds.
    pub(crate) fn append(&self, entries: Vec<LogEntry>) -> Result<()> {
        self.append_inner(entries, false)
    }

    /// What a disk's failed fsync does, for the `fail-sync` fail point and tests: the bytes
    /// are written (the page cache has them) but not synced, and the append fails.
    pub(crate) fn append_failing_sync(&self, entries: Vec<LogEntry>) -> Result<()> {
        self.append_inner(entries, true)
    }

    fn append_inner(&self, entries: Vec<LogEntry>, fail_sync: bool) -> Result<()> {
        let mut file = self.file.lock();
        if let Some(first) = entries.first() {
            let expected = (self.latest() + 1) as u64;
            if first.number != expected {
                return Err(Error::Internal(format!(
                    "append of {} where {expected} comes next",
                    first.number
                )));
            }
        }
        let result = self.write_entries(&mut file, entries, fail_sync);
        file.unsure |= result.is_err();
        result
    }

    /// Removes entries `from..` from the file (synced) and then from memory.
    pub(crate) fn truncate(&self, from: u64) -> Result<()> {
        let mut file = self.file.lock();
        self.cut_to_durable_end(&mut file)?;
        let result = self.truncate_locked(&mut file.file, from);
        file.unsure |= result.is_err();
        result
    }

    /// After a failed write or fsync: memory holds exactly what was durable (nothing is
    /// published before its fsync succeeded), so the file is cut back to it. The file itself
    /// is not re-read: what a failed fsync leaves in the page cache looks written but may never
    /// reach the disk. If the cut fails too, every later write tries it again first and fails
    /// until it succeeds.
    pub(crate) fn forget_unsynced(&self) -> Result<()> {
        let mut w = self.file.lock();
        w.unsure = true;
        self.cut_to_durable_end(&mut w)
    }

    /// Cuts the file back to memory's end if a failure left it unsure.
    fn cut_to_durable_end(&self, w: &mut Writer) -> Result<()> {
        if !w.unsure {
            return Ok(());
        }
        let end = self.mem.read().end;
        w.file.set_len(end)?;
        w.file.sync_all()?;
        w.unsure = false;
        warn!(
            "{}: cut back to byte {end} after a failed write (what was not synced is gone)",
            self.path.display()
        );
        Ok(())
    }

    /// Cuts the file and memory at entry `from`. Caller holds the writer lock.
    fn truncate_locked(&self, file: &mut File, from: u64) -> Result<()> {
        // The write lock from before the cut until memory forgets: a reader must never look
        // for an entry's bytes in a file that no longer has them.
        let mut mem = self.mem.write();
        let Some(&offset) = usize::try_from(from).ok().and_then(|i| mem.offsets.get(i)) else {
            return Ok(());
        };
        let removed: Vec<String> = self
            .read(&mem, from, mem.len() - from)?
            .iter()
            .map(|e| {
                format!(
                    "{}:{} {} {} (epoch {}, request {})",
                    e.number,
                    e.name,
                    e.kind.as_str(),
                    e.quantity,
                    e.epoch,
                    e.request_id
                )
            })
            .collect();
        file.set_len(offset)?;
        file.sync_all()?;
        mem.truncate(from);
        warn!(
            "{}: removed {} order(s) that the leading log does not have: {}",
            self.path.display(),
            removed.len(),
            removed.join("; ")
        );
        Ok(())
    }

    /// Appends already numbered entries (they continue the log), fsyncs, publishes.
    fn write_entries(&self, w: &mut Writer, entries: Vec<LogEntry>, fail_sync: bool) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.cut_to_durable_end(w)?;
        let file = &mut w.file;
        let start = self.mem.read().end;
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            offsets.push(start + bytes.len() as u64);
            bytes.extend_from_slice(&encode(e)?);
        }
        file.write_all(&bytes)?;
        if fail_sync {
            return Err(Error::Internal(format!(
                "{}: fsync failed (fail point)",
                self.path.display()
            )));
        }
        file.sync_data()?;
        let mut mem = self.mem.write();
        for (e, offset) in entries.into_iter().zip(offsets) {
            mem.push(e, offset)?;
        }
        mem.end = start + bytes.len() as u64;
        Ok(())
    }
}

/// One entry as its CSV line, `\n`-terminated.
pub fn encode(entry: &LogEntry) -> Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.serialize(entry)?;
    writer
        .into_inner()
        .map_err(|e| Error::Internal(format!("csv: {e}")))
}

/// Parses a whole log file (header included). Returns the memory view and, if the last record
/// is torn, the offset to cut at.
fn parse(bytes: &[u8], path: &Path) -> Result<(Memory, Option<u64>)> {
    let header_len = HEADER.len() as u64;
    let body = &bytes[HEADER.len()..];
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body);
    let mut mem = Memory::new(header_len);
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().byte();
        let result = reader.read_byte_record(&mut record);
        let end = reader.position().byte();
        let is_last = end as usize >= body.len();
        let entry = match result {
            Ok(false) => break,
            Ok(true) => record
                .deserialize::<LogEntry>(None)
                .map_err(|e| e.to_string())
                .and_then(|e| {
                    if e.number == mem.len() {
                        Ok(e)
                    } else {
                        Err(format!(
                            "order number {} where {} was expected",
                            e.number,
                            mem.len()
                        ))
                    }
                }),
            Err(e) => Err(e.to_string()),
        };
        let complete = !is_last || (end > 0 && body.get(end as usize - 1) == Some(&b'\n'));
        // A record without its line end can only be the last one: a torn append.
        let entry = entry.and_then(|e| {
            if complete {
                Ok(e)
            } else {
                Err("no line end".into())
            }
        });
        match entry {
            Ok(entry) => mem.push(entry, header_len + start)?,
            Err(_) if is_last => return Ok((mem, Some(header_len + start))),
            Err(why) => {
                return Err(Error::State(format!(
                    "{}: damaged record at byte {} (order {}): {why}; refusing to start",
                    path.display(),
                    header_len + start,
                    mem.len()
                )))
            }
        }
        mem.end = header_len + end;
    }
    mem.offsets.shrink_to_fit();
    mem.epochs.shrink_to_fit();
    Ok((mem, None))
}

/// The entries of an order log file's bytes, for readers outside the replica (the test
/// harness): strict like [`OrderLog::open`], and stricter, since nothing is repaired here: a
/// torn last record is an error too. No bytes at all is an empty log (a replica not started).
#[cfg(feature = "testkit")]
pub(crate) fn entries(bytes: &[u8], path: &Path) -> Result<Vec<LogEntry>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if !bytes.starts_with(HEADER.as_bytes()) {
        return Err(Error::State(format!(
            "{}: no order log header",
            path.display()
        )));
    }
    // `parse` checks every record (numbering, torn tail) but keeps no entries: read them after.
    if let (_, Some(at)) = parse(bytes, path)? {
        return Err(Error::State(format!(
            "{}: torn last record at byte {at}",
            path.display()
        )));
    }
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&bytes[HEADER.len()..])
        .deserialize()
        .map(|record| record.map_err(Error::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderType;

    /// A file in its own temporary directory, removed with it.
    struct TempFile(PathBuf, #[allow(dead_code)] tempfile::TempDir);

    impl std::ops::Deref for TempFile {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for TempFile {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn entry(number: u64, epoch: u64) -> LogEntry {
        LogEntry {
            number,
            name: "GameStart".into(),
            kind: if number.is_multiple_of(2) {
                OrderType::Buy
            } else {
                OrderType::Sell
            },
            quantity: number + 1,
            epoch,
            request_id: format!("r{number}-e{epoch}"),
        }
    }

    fn entries(range: std::ops::Range<u64>, epoch: u64) -> Vec<LogEntry> {
        range.map(|n| entry(n, epoch)).collect()
    }

    /// A log whose entries have these epochs, in a fresh directory.
    fn log_with(epochs: &[u64]) -> (OrderLog, TempFile) {
        let dir = temp_dir();
        let path = TempFile(dir.path().join("orders-1.csv"), dir);
        let log = OrderLog::open(&path).unwrap();
        let all: Vec<LogEntry> = epochs
            .iter()
            .enumerate()
            .map(|(n, &e)| entry(n as u64, e))
            .collect();
        let latest = all.len() as i64 - 1;
        log.append(all).unwrap();
        assert_eq!(log.latest(), latest);
        (log, path)
    }

    fn epochs(log: &OrderLog) -> Vec<u64> {
        log.since(0, usize::MAX)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.epoch)
            .collect()
    }

    #[test]
    fn new_log_has_only_the_header() {
        let path_dir = temp_dir();
        let path = path_dir.path().join("sub").join("orders-1.csv");
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.latest(), -1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    #[test]
    fn append_reload_and_read() {
        let path_dir = temp_dir();
        let path = path_dir.path().join("orders-2.csv");
        let log = OrderLog::open(&path).unwrap();
        log.append(entries(0..2, 1)).unwrap();
        log.append(entries(2..3, 2)).unwrap();
        assert!(
            log.append(entries(4..5, 2)).is_err(),
            "an append must continue the log"
        );
        assert_eq!(log.lookup("r2-e2").unwrap(), Some(2));
        assert_eq!(log.get(2).unwrap().unwrap().epoch, 2);
        assert_eq!(log.get(3).unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}0,GameStart,buy,1,1,r0-e1\n1,GameStart,sell,2,1,r1-e1\n2,GameStart,buy,3,2,r2-e2\n"
            )
        );
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.latest(), 2);
        assert_eq!(log.lookup("r1-e1").unwrap(), Some(1));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "reopening writes nothing"
        );
        // Truncation forgets the entries and their request ids, in the file and in memory.
        log.truncate(1).unwrap();
        assert_eq!(log.lookup("r1-e1").unwrap(), None);
        assert_eq!(epochs(&log), [1]);
        log.forget_unsynced().unwrap();
        assert_eq!(epochs(&log), [1], "memory agrees with the file");
    }

    /// A failed fsync leaves the bytes in the page cache: they must not come back as if
    /// durable, neither in memory nor on the next open, and the next append continues after
    /// the last durable entry.
    #[test]
    fn a_failed_fsync_is_not_trusted() {
        let dir = temp_dir();
        let path = dir.path().join("orders-1.csv");
        let log = OrderLog::open(&path).unwrap();
        log.append(entries(0..2, 1)).unwrap();
        assert!(log.append_failing_sync(entries(2..4, 1)).is_err());
        assert_eq!(log.latest(), 1, "nothing of a failed append is published");
        log.forget_unsynced().unwrap();
        assert_eq!(log.latest(), 1);
        assert_eq!(
            OrderLog::open(&path).unwrap().latest(),
            1,
            "the file was cut back"
        );
        // Without the explicit recovery, the next write cuts first.
        assert!(log.append_failing_sync(entries(2..3, 1)).is_err());
        log.append(entries(2..3, 2)).unwrap();
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(epochs(&log), [1, 1, 2]);
    }

    /// Entries older than the in-memory tail are read back from the file: every read must
    /// agree with what was appended, across the tail's edge, after truncations and a reopen.
    #[test]
    fn reads_beyond_the_tail_come_from_the_file() {
        let n = (TAIL_ENTRIES * 2 + 10) as u64;
        let epochs: Vec<u64> = (0..n).map(|i| 1 + i / 1000).collect();
        let (log, path) = log_with(&epochs);
        let check = |log: &OrderLog, len: u64| {
            assert_eq!(log.latest(), len as i64 - 1);
            for number in [
                0,
                1,
                999,
                1000,
                len.saturating_sub(TAIL_ENTRIES as u64 + 1),
                len - 1,
            ] {
                let want = entry(number, 1 + number / 1000);
                assert_eq!(log.get(number).unwrap(), Some(want.clone()), "get {number}");
                assert_eq!(log.epoch_of(number), Some(want.epoch), "epoch of {number}");
                assert_eq!(
                    log.lookup(&want.request_id).unwrap(),
                    Some(number),
                    "lookup {number}"
                );
            }
            assert_eq!(log.get(len).unwrap(), None);
            assert_eq!(log.epoch_of(len), None);
            let all = log.since(0, usize::MAX).unwrap().entries;
            let want: Vec<LogEntry> = (0..len).map(|i| entry(i, 1 + i / 1000)).collect();
            assert_eq!(all, want, "since 0");
            let edge = len.saturating_sub(TAIL_ENTRIES as u64 + 2);
            let page = log.since(edge, 5).unwrap().entries;
            assert_eq!(
                page,
                want[edge as usize..edge as usize + 5],
                "across the edge"
            );
        };
        check(&log, n);
        assert_eq!(
            log.lookup("r5-e2").unwrap(),
            None,
            "same shape, other epoch"
        );
        assert_eq!(log.lookup("nobody").unwrap(), None);

        // Cut inside the tail, then far below it; the tail refills as appends come.
        log.truncate(n - 5).unwrap();
        check(&log, n - 5);
        log.truncate(2500).unwrap();
        check(&log, 2500);
        assert_eq!(log.lookup(&entry(2500, 3).request_id).unwrap(), None);
        log.append(entries(2500..2600, 3)).unwrap();
        assert_eq!(log.get(2550).unwrap(), Some(entry(2550, 3)));
        assert_eq!(log.get(2499).unwrap(), Some(entry(2499, 3)));
        assert_eq!(log.epoch_of(2599), Some(3));
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.latest(), 2599);
        assert_eq!(log.get(2550).unwrap(), Some(entry(2550, 3)));
        assert_eq!(log.lookup("r2550-e3").unwrap(), Some(2550));
        assert_eq!(log.lookup("r1500-e2").unwrap(), Some(1500));
    }

    #[test]
    fn quoted_fields_survive() {
        let path_dir = temp_dir();
        let path = path_dir.path().join("orders-1.csv");
        let log = OrderLog::open(&path).unwrap();
        let mut odd = entry(0, 1);
        odd.request_id = "a,b \"c\"\nd".into();
        log.append(vec![odd.clone(), entry(1, 1)]).unwrap();
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.get(0).unwrap(), Some(odd));
        assert_eq!(log.latest(), 1);
    }

    #[test]
    fn since_pages() {
        let (log, _) = log_with(&[1, 1, 1, 2, 2]);
        let cases: &[(u64, usize, &[u64])] = &[
            (0, 10, &[0, 1, 2, 3, 4]),
            (0, 2, &[0, 1]),
            (3, 10, &[3, 4]),
            (5, 10, &[]),
            (99, 10, &[]),
            (u64::MAX, 10, &[]),
        ];
        for &(since, limit, want) in cases {
            let page = log.since(since, limit).unwrap();
            let got: Vec<u64> = page.entries.iter().map(|e| e.number).collect();
            assert_eq!(got, want, "since {since} limit {limit}");
            assert_eq!(page.latest, 4);
        }
    }

    #[test]
    fn torn_tail_is_cut() {
        // Each case: what a crash left after two good lines; the log must reopen with 2 orders.
        let tails: &[&str] = &[
            "2,GameStart,buy,3,1,r2",   // no newline
            "2,GameSt",                 // half a line
            "2,GameStart,buy,3,1,\"r2", // an open quote
            "x,y\n",                    // unparsable, newline present
            "\0\0\0\0",                 // zeroed block
            "5,GameStart,buy,3,1,r5\n", // misnumbered last line
        ];
        for tail in tails {
            let (log, path) = log_with(&[1, 1]);
            drop(log);
            let good = std::fs::read(&path).unwrap();
            let mut bytes = good.clone();
            bytes.extend_from_slice(tail.as_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let log = OrderLog::open(&path).unwrap();
            assert_eq!(log.latest(), 1, "{tail:?}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "{tail:?}: file cut back"
            );
            log.append(vec![entry(2, 1)]).unwrap();
            drop(log);
            assert_eq!(
                OrderLog::open(&path).unwrap().latest(),
                2,
                "{tail:?}: appends after repair"
            );
        }
    }

    #[test]
    fn torn_header_is_rewritten() {
        let path_dir = temp_dir();
        let path = path_dir.path().join("orders-1.csv");
        std::fs::write(&path, &HEADER.as_bytes()[..7]).unwrap();
        assert_eq!(OrderLog::open(&path).unwrap().latest(), -1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    #[test]
    fn damage_refuses_to_start() {
        let cases: &[&str] = &[
            "number,name\n",                                                    // wrong header
            "number,name,type,quantity,epoch,request_id\nx,y\n1,A,buy,1,1,r\n", // bad middle
            "number,name,type,quantity,epoch,request_id\n1,A,buy,1,1,r\n1,A,buy,1,1,s\n", // gap
        ];
        for text in cases {
            let path_dir = temp_dir();
            let path = path_dir.path().join("orders-1.csv");
            std::fs::write(&path, text).unwrap();
            assert!(OrderLog::open(&path).is_err(), "{text:?}");
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                *text,
                "left untouched"
            );
        }
    }

    /// Each case: our epochs, the sender's prev, the sender's entries (first number, epochs),
    /// the policy, the expected answer and our epochs afterwards.
    #[test]
    fn identical_entries_give_identical_files() {
        let (a, path_a) = log_with(&[1, 1, 4]);
        let (b, path_b) = log_with(&[1, 1]);
        b.truncate(1).unwrap(); // diverge, then converge
        b.append(a.since(1, 10).unwrap().entries).unwrap();
        assert_eq!(
            std::fs::read(&path_a).unwrap(),
            std::fs::read(&path_b).unwrap()
        );
    }
}

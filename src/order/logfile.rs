//! The order log: `orders-N.csv`, one [`LogEntry`] a line, each line sealed, and its in-memory
//! index.
//!
//! Format: the header [`HEADER`], then one record an order: the entry as the `csv` crate
//! writes it (`\n` line ends, quoting only where needed), then `,` and the CRC32C of those
//! bytes as eight hex digits (`crate::checksum::seal`), chained: each line's checksum is seeded
//! with the previous line's (the first with 0), so the checksum of line `n` vouches for every
//! line up to `n`, and a changed, missing, swapped or moved line no longer checks. Replicas
//! holding the same entries hold byte-identical files. Entry `i` of a valid log has number `i`.
//!
//! Memory: per order only its byte offset, its chained checksum, its epoch (as runs) and an
//! 8-byte slot in the request-id index; the newest `TAIL_ENTRIES` (4096) orders are also kept
//! whole. Any other read (`get`, `since`, a request id whose hash matches) is a `pread` of the
//! file's lines, which the page cache keeps warm, and each line read is checked against the
//! checksums in memory: what the disk changed since the log was opened is never returned.
//! With 1,000,000 orders a replica holds about 35 MB.
//!
//! Writes: one writer at a time (a mutex around the file). A batch is written with one
//! `write_all`, `sync_data`'d, and only then published to memory, so a reader never sees an
//! entry that a crash could take back. Truncation (replacing a conflicting suffix) cuts the
//! file at the first removed entry's byte offset and syncs under the memory's write lock, so
//! no reader looks for an entry in bytes that are gone. Readers take a `parking_lot::RwLock`
//! on the memory and never wait for an fsync (they read through their own file handle).
//!
//! Loading: a file in the previous format (header [`PLAIN_HEADER`], no checksum column) is
//! read with the same checks minus the seal and rewritten in this format (temp file, fsync,
//! rename) before anything else. Then every line is checked: its CSV, its number, its seal.
//! A last record without its line end is what a crash in the middle of an append leaves; it
//! was never acknowledged, so it is cut away with a warning. Any other record that does not
//! check is damage: a `warn!` names the file, the order, the byte and line and what was
//! expected; the file as found is copied to `<file>.damaged`; memory keeps the intact prefix
//! only, and the first write cuts the file back to it. `OrderLog::damage` reports the
//! first damaged order (the core decides what to do: see its recovery rules). A runtime read
//! that finds a line no longer checking reports it the same way and returns an error.
//!
//! This file only stores: `OrderLog::append`, `OrderLog::truncate` and reads. Which entries
//! to keep, replace or append is decided by the replica's core (`order::core`), through the
//! file store (`order::store`), which also batches appends into one fsync.
//!
//! Caveats: reads of old entries can fail (an I/O error, damage), so they return `Result`;
//! the core treats such a failure like a failed write. A log holds at most `u32::MAX` orders
//! (the index stores numbers in 32 bits). The request-id index covers the whole log, so a
//! retry is recognised however late it comes; loading it reads the whole file at start.
//! Lines cut off at the end of the file on a line boundary leave nothing to check here: the
//! hard state's `log_through` (with `OrderLog::checksum`) is what catches those. A torn
//! record is recognised only as a last record with no line end at all after its start; one
//! torn just after a line end inside a quoted request id counts as damage (safe, not quiet).
//! If the `.damaged` copy cannot be written the log refuses to open rather than cut bytes
//! nobody kept.

mod format;
mod memory;
mod open;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use log::warn;
use parking_lot::{Mutex, RwLock};

use self::format::{check, seal_entry};
use self::memory::{spread, Memory};
use crate::api::{LogEntry, LogPage};
use crate::error::{Error, Result};

#[cfg(feature = "testkit")]
pub(crate) use self::format::entries;
pub use self::format::{encode, encode_file, seal_line, HEADER, PLAIN_HEADER};
pub(crate) use self::open::damaged_path;

/// [`OrderLog::damage`]'s "nothing found".
const NO_DAMAGE: u64 = u64::MAX;

/// The writer's side of the file.
struct Writer {
    file: File,
    /// A write, fsync or cut failed, or the file was found damaged: the file past memory's
    /// `end` may hold bytes the disk never got (after a failed fsync the page cache still
    /// shows them, and a later fsync may report success without writing them) or bytes that
    /// do not check. They are cut before anything else is written.
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
    /// The first order found damaged (at open or by a read since), [`NO_DAMAGE`] if none.
    /// Readers record it under the memory's read lock, hence an atomic.
    damage: AtomicU64,
}

impl OrderLog {
    /// Highest order number held, `None` when empty.
    pub(crate) fn latest(&self) -> Option<u64> {
        self.mem.read().latest()
    }

    /// The epoch of order `number`, if held; from memory, never the file.
    pub(crate) fn epoch_of(&self, number: u64) -> Option<u64> {
        self.mem.read().epoch_of(number)
    }

    /// The chained checksum of order `number`'s line, if held (it vouches for every order up
    /// to `number`); from memory.
    pub(crate) fn checksum(&self, number: u64) -> Option<u32> {
        let mem = self.mem.read();
        mem.crcs.get(usize::try_from(number).ok()?).copied()
    }

    /// The first order found damaged, at open or by a read since; memory holds only what came
    /// before it when found at open. Cleared by a truncation that removes it.
    pub(crate) fn damage(&self) -> Option<u64> {
        Some(self.damage.load(Ordering::SeqCst)).filter(|&d| d != NO_DAMAGE)
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

    /// Entries `from..from + count` (all held): the file's part read, checked against the
    /// checksums in memory and parsed, the tail's part cloned. The caller's read lock keeps a
    /// truncation from cutting them meanwhile.
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
                .flexible(true)
                .from_reader(bytes.as_slice());
            let mut record = csv::ByteRecord::new();
            for number in from..file_to {
                let at = reader.position().byte() as usize;
                let checked = match reader.read_byte_record(&mut record) {
                    Ok(true) => {
                        let line = &bytes[at..reader.position().byte() as usize];
                        check(line, &mut record, mem.crc_before(number), number, true).and_then(
                            |(entry, crc)| match mem.crcs.get(number as usize) {
                                Some(&held) if held == crc => Ok(entry),
                                held => Err(format!(
                                    "its checksum is {crc:08x} where {held:08x?} was loaded"
                                )),
                            },
                        )
                    }
                    Ok(false) => Err("the file ends before it".into()),
                    Err(e) => Err(e.to_string()),
                };
                match checked {
                    Ok(entry) => out.push(entry),
                    Err(why) => {
                        return Err(self.damaged_read(number, start + at as u64, &why));
                    }
                }
            }
        }
        let skip = usize::try_from(from.saturating_sub(tail_start)).unwrap_or(usize::MAX);
        let take = usize::try_from(to.saturating_sub(from.max(tail_start))).unwrap_or(0);
        out.extend(mem.tail.iter().skip(skip).take(take).cloned());
        Ok(out)
    }

    /// Records that order `number`'s line no longer checks, and says so.
    fn damaged_read(&self, number: u64, at: u64, why: &str) -> Error {
        self.damage.fetch_min(number, Ordering::SeqCst);
        warn!(
            "{}: damaged record at byte {at} (order {number}) found by a read: {why}; it is \
             not served",
            self.path.display()
        );
        Error::Storage(format!(
            "{}: order {number} is damaged on disk: {why}",
            self.path.display()
        ))
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
            let expected = super::core::after(self.latest());
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

    /// Cuts the file back to memory's end if a failure or damage left it unsure.
    fn cut_to_durable_end(&self, w: &mut Writer) -> Result<()> {
        if !w.unsure {
            return Ok(());
        }
        let end = self.mem.read().end;
        w.file.set_len(end)?;
        w.file.sync_all()?;
        w.unsure = false;
        warn!(
            "{}: cut back to byte {end}, the end of what was synced and checks (a failed write \
             or damage found at open: what lay beyond is gone)",
            self.path.display()
        );
        Ok(())
    }

    /// Cuts the file and memory at entry `from`. Caller holds the writer lock.
    fn truncate_locked(&self, file: &mut File, from: u64) -> Result<()> {
        // The write lock from before the cut until memory forgets: a reader must never look
        // for an entry's bytes in a file that no longer has them.
        let mut mem = self.mem.write();
        if self.damage().is_some_and(|d| d >= from) {
            // What was damaged is about to go (or was never loaded).
            self.damage.store(NO_DAMAGE, Ordering::SeqCst);
        }
        let Some(&offset) = usize::try_from(from).ok().and_then(|i| mem.offsets.get(i)) else {
            return Ok(());
        };
        let removed = match self.read(&mem, from, mem.len() - from) {
            Ok(entries) => entries
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
                .collect::<Vec<String>>()
                .join("; "),
            // Damaged entries are what a repair removes: the cut must not depend on them.
            Err(e) => format!("(not all readable: {e})"),
        };
        file.set_len(offset)?;
        file.sync_all()?;
        let count = mem.len() - from;
        mem.truncate(from);
        if self.damage().is_some_and(|d| d >= from) {
            self.damage.store(NO_DAMAGE, Ordering::SeqCst);
        }
        warn!(
            "{}: removed {count} order(s) that the leading log does not have: {removed}",
            self.path.display(),
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
        let (start, mut prev) = {
            let mem = self.mem.read();
            (mem.end, mem.crcs.last().copied().unwrap_or(0))
        };
        let mut bytes = Vec::new();
        let mut lines = Vec::with_capacity(entries.len());
        for e in &entries {
            let offset = start + bytes.len() as u64;
            prev = seal_entry(prev, e, &mut bytes)?;
            lines.push((offset, prev));
        }
        file.write_all(&bytes)?;
        if fail_sync {
            return Err(Error::Storage(format!(
                "{}: fsync failed (fail point)",
                self.path.display()
            )));
        }
        file.sync_data()?;
        let mut mem = self.mem.write();
        for (e, (offset, crc)) in entries.into_iter().zip(lines) {
            mem.push(e, offset, crc)?;
        }
        mem.end = start + bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::memory::TAIL_ENTRIES;
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

    /// A log file of these CSV records, sealed by hand (not by the code under test).
    fn sealed_text(records: &[&str]) -> String {
        let mut text = HEADER.to_string();
        let mut prev = 0;
        for record in records {
            prev = crate::checksum::crc(prev, record.as_bytes());
            text.push_str(&format!("{record},{prev:08x}\n"));
        }
        text
    }

    /// The byte offset of order `number`'s line in a log file written by `log_with`.
    fn line_start(bytes: &[u8], number: u64) -> usize {
        let needle = format!("\n{number},");
        bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap()
            + 1
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
        let latest = (all.len() as u64).checked_sub(1);
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
        assert_eq!(log.latest(), None);
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
            sealed_text(&[
                "0,GameStart,buy,1,1,r0-e1",
                "1,GameStart,sell,2,1,r1-e1",
                "2,GameStart,buy,3,2,r2-e2"
            ])
        );
        assert_eq!(
            log.checksum(0),
            Some(crate::checksum::crc(0, b"0,GameStart,buy,1,1,r0-e1"))
        );
        assert_eq!(log.checksum(3), None);
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.latest(), Some(2));
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
        assert_eq!(
            log.latest(),
            Some(1),
            "nothing of a failed append is published"
        );
        log.forget_unsynced().unwrap();
        assert_eq!(log.latest(), Some(1));
        assert_eq!(
            OrderLog::open(&path).unwrap().latest(),
            Some(1),
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
            assert_eq!(log.latest(), len.checked_sub(1));
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
        assert_eq!(log.latest(), Some(2599));
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
        assert_eq!(log.latest(), Some(1));
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
            assert_eq!(page.latest, Some(4));
        }
    }

    #[test]
    fn torn_tail_is_cut() {
        // Each case: what a crash left after two good lines; the log must reopen with 2 orders.
        let tails: &[&str] = &[
            "2,GameStart,buy,3,1,r2",             // no newline
            "2,GameSt",                           // half a line
            "2,GameStart,buy,3,1,\"r2",           // an open quote
            "\0\0\0\0",                           // zeroed block
            "2,GameStart,buy,3,1,r2-e1,00000000", // whole but for its line end
        ];
        for tail in tails {
            let (log, path) = log_with(&[1, 1]);
            drop(log);
            let good = std::fs::read(&path).unwrap();
            let mut bytes = good.clone();
            bytes.extend_from_slice(tail.as_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let log = OrderLog::open(&path).unwrap();
            assert_eq!(log.latest(), Some(1), "{tail:?}");
            assert_eq!(log.damage(), None, "{tail:?}: torn is not damage");
            assert!(!damaged_path(&path).exists(), "{tail:?}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "{tail:?}: file cut back"
            );
            log.append(vec![entry(2, 1)]).unwrap();
            drop(log);
            assert_eq!(
                OrderLog::open(&path).unwrap().latest(),
                Some(2),
                "{tail:?}: appends after repair"
            );
        }
    }

    #[test]
    fn torn_header_is_rewritten() {
        let path_dir = temp_dir();
        let path = path_dir.path().join("orders-1.csv");
        std::fs::write(&path, &HEADER.as_bytes()[..7]).unwrap();
        assert_eq!(OrderLog::open(&path).unwrap().latest(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    /// Damage anywhere but a torn last line: the log opens with the intact prefix, says which
    /// order is the first damaged, keeps the file as found, cuts it at the next write (append
    /// or truncate), and then reopens clean.
    #[test]
    fn damage_keeps_the_intact_prefix() {
        type Damaging = fn(&mut Vec<u8>);
        // (what, first damaged order, the damage) on a log of orders 0..5.
        let cases: &[(&str, u64, Damaging)] = &[
            ("a changed digit in a middle line", 2, |b| {
                // Order 2's quantity 3 → 7: still a valid CSV line, same length.
                let at = line_start(b, 2) + "2,GameStart,buy,".len();
                assert_eq!(b[at], b'3');
                b[at] = b'7';
            }),
            ("a changed last line, line end kept", 4, |b| {
                let at = line_start(b, 4) + "4,GameStart,buy,".len();
                b[at] = b'9';
            }),
            ("two lines swapped", 1, |b| {
                let (one, two, three) = (line_start(b, 1), line_start(b, 2), line_start(b, 3));
                let mut swapped = b[two..three].to_vec();
                swapped.extend_from_slice(&b[one..two]);
                b.splice(one..three, swapped);
            }),
            ("a line missing", 3, |b| {
                let (three, four) = (line_start(b, 3), line_start(b, 4));
                b.drain(three..four);
            }),
            ("a line sealed in another chain", 3, |b| {
                // It checks on its own (chained from 0), not after the line before it.
                let three = line_start(b, 3);
                let four = line_start(b, 4);
                let mut line = Vec::new();
                let e = entry(3, 1);
                seal_entry(0, &e, &mut line).unwrap();
                b.splice(three..four, line);
            }),
            ("a zeroed block with a line after it", 1, |b| {
                let (one, two) = (line_start(b, 1), line_start(b, 2));
                b[one..two - 1].fill(0);
            }),
            ("an empty line", 2, |b| {
                let two = line_start(b, 2);
                b.insert(two, b'\n');
            }),
            ("the header", 0, |b| b[3] = b'X'),
            (
                "the previous header's first line, checksums below",
                0,
                |b| {
                    b.splice(..HEADER.len(), b"number,name\n".iter().copied());
                },
            ),
        ];
        for &(what, first, damage) in cases {
            let (log, path) = log_with(&[1, 1, 1, 1, 1]);
            drop(log);
            let good = std::fs::read(&path).unwrap();
            let mut bytes = good.clone();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();

            let log = OrderLog::open(&path).unwrap();
            assert_eq!(log.damage(), Some(first), "{what}");
            assert_eq!(log.latest(), first.checked_sub(1), "{what}: the prefix");
            assert_eq!(
                log.since(0, usize::MAX).unwrap().entries,
                entries(0..first, 1),
                "{what}: only what checks"
            );
            assert_eq!(
                log.lookup(&entry(first, 1).request_id).unwrap(),
                None,
                "{what}"
            );
            assert_eq!(
                std::fs::read(damaged_path(&path)).unwrap(),
                bytes,
                "{what}: kept"
            );
            if first > 0 {
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    bytes,
                    "{what}: nothing cut before a write"
                );
            }
            // The next write cuts the damage away and continues the intact prefix.
            log.append(vec![entry(first, 2)]).unwrap();
            drop(log);
            let mut want = entries(0..first, 1);
            want.push(entry(first, 2));
            let log = OrderLog::open(&path).unwrap();
            assert_eq!(log.damage(), None, "{what}: reopens clean");
            assert_eq!(log.since(0, usize::MAX).unwrap().entries, want, "{what}");
            let (fresh, fresh_path) = log_with(&[]);
            fresh.append(want.clone()).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                std::fs::read(&*fresh_path).unwrap(),
                "{what}: the file as if written so"
            );
        }
    }

    /// A truncation is a write too: it cuts the damage first. It also clears the damage it
    /// removes.
    #[test]
    fn truncate_after_damage_cuts_it() {
        let (log, path) = log_with(&[1, 1, 1, 1, 1]);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = line_start(&bytes, 3) + 2;
        bytes[at] = b'g';
        std::fs::write(&path, &bytes).unwrap();
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.damage(), Some(3));
        log.truncate(2).unwrap();
        assert_eq!(log.damage(), None, "removed");
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!((log.latest(), log.damage()), (Some(1), None));
        assert_eq!(log.since(0, 9).unwrap().entries, entries(0..2, 1));
    }

    /// A log in the previous format (no checksums) is upgraded in place at open: the same bytes
    /// as a log written with checksums from the start, and it then reopens unchanged.
    #[test]
    fn a_log_in_the_previous_format_is_upgraded() {
        let mut odd = entry(2, 1);
        odd.request_id = "a,b \"c\"\nd".into();
        let mut all = entries(0..2, 1);
        all.push(odd);
        all.extend(entries(3..6, 2));
        let plain = |entries: &[LogEntry]| {
            let mut bytes = PLAIN_HEADER.as_bytes().to_vec();
            for e in entries {
                bytes.extend(encode(e).unwrap());
            }
            bytes
        };
        let (fresh, fresh_path) = log_with(&[]);
        fresh.append(all.clone()).unwrap();
        let sealed = std::fs::read(&*fresh_path).unwrap();
        assert_eq!(sealed, encode_file(&all).unwrap());

        let dir = temp_dir();
        let path = dir.path().join("orders-1.csv");
        std::fs::write(&path, plain(&all)).unwrap();
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.damage(), None);
        assert_eq!(log.since(0, 99).unwrap().entries, all);
        assert_eq!(std::fs::read(&path).unwrap(), sealed, "byte-identical");
        assert_eq!(log.checksum(5), fresh.checksum(5));
        log.append(vec![entry(6, 2)]).unwrap();
        drop(log);
        assert_eq!(OrderLog::open(&path).unwrap().latest(), Some(6));

        // A torn last line is dropped; damage keeps the prefix and the file as found.
        let mut torn = plain(&all);
        torn.extend_from_slice(b"6,GameStart,bu");
        std::fs::write(&path, &torn).unwrap();
        let log = OrderLog::open(&path).unwrap();
        assert_eq!((log.latest(), log.damage()), (Some(5), None));
        assert_eq!(std::fs::read(&path).unwrap(), sealed);
        let mut damaged = plain(&all[..4]);
        damaged.extend_from_slice(b"9,GameStart,buy,1,2,r9\n");
        damaged.extend(encode(&all[5]).unwrap());
        std::fs::write(&path, &damaged).unwrap();
        let log = OrderLog::open(&path).unwrap();
        assert_eq!((log.latest(), log.damage()), (Some(3), Some(4)));
        assert_eq!(std::fs::read(damaged_path(&path)).unwrap(), damaged);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            encode_file(&all[..4]).unwrap()
        );
    }

    /// An entry older than the in-memory tail is read from the file: if the disk changed it
    /// since the log was opened, the read fails and reports the damage, and nothing damaged
    /// is returned, by any read.
    #[test]
    fn a_damaged_entry_is_never_read() {
        let dir = temp_dir();
        let path = dir.path().join("orders-1.csv");
        let log = OrderLog::open_with_tail(&path, 2).unwrap();
        log.append(entries(0..8, 1)).unwrap();
        assert_eq!(log.get(3).unwrap(), Some(entry(3, 1)), "from the file");

        // The same length, a valid line, another quantity: what rot or a stray write does.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = line_start(&bytes, 3) + "3,GameStart,sell,".len();
        assert_eq!(bytes[at], b'4');
        bytes[at] = b'7';
        std::fs::write(&path, &bytes).unwrap();

        assert!(log.get(3).is_err());
        assert_eq!(log.damage(), Some(3));
        assert!(log.since(1, 4).is_err(), "a page across it");
        assert!(log.lookup(&entry(3, 1).request_id).is_err());
        assert_eq!(
            log.get(2).unwrap(),
            Some(entry(2, 1)),
            "the line before is fine"
        );
        assert_eq!(log.get(4).unwrap(), Some(entry(4, 1)), "and the one after");
        // A later find keeps the first.
        let at = line_start(&bytes, 5) + "5,GameStart,sell,".len();
        bytes[at] = b'1';
        std::fs::write(&path, &bytes).unwrap();
        assert!(log.get(5).is_err());
        assert_eq!(log.damage(), Some(3));
        // The repair: the damaged suffix goes, new entries come.
        log.truncate(3).unwrap();
        assert_eq!(log.damage(), None);
        log.append(entries(3..8, 2)).unwrap();
        assert_eq!(log.get(3).unwrap(), Some(entry(3, 2)));
    }

    /// The test harness's reader: strict (damage and a torn last line are errors), and it
    /// reads the previous format too.
    #[cfg(feature = "testkit")]
    #[test]
    fn the_harness_reader_is_strict() {
        let all = entries(0..3, 1);
        let sealed = encode_file(&all).unwrap();
        let path = Path::new("orders-1.csv");
        assert_eq!(super::entries(&sealed, path).unwrap(), all);
        assert_eq!(super::entries(b"", path).unwrap(), []);
        let mut plain = PLAIN_HEADER.as_bytes().to_vec();
        all.iter().for_each(|e| plain.extend(encode(e).unwrap()));
        assert_eq!(super::entries(&plain, path).unwrap(), all);
        let mut damaged = sealed.clone();
        let at = line_start(&damaged, 1) + 2;
        damaged[at] = b'X';
        assert!(super::entries(&damaged, path).is_err());
        assert!(
            super::entries(&sealed[..sealed.len() - 1], path).is_err(),
            "torn"
        );
        assert!(super::entries(b"number,name\n", path).is_err());
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

//! The order log: `orders-N.csv`, one [`LogEntry`] a line, and its in-memory index.
//!
//! The file starts with the header [`HEADER`]; every later record is an order written by the
//! `csv` crate with `\n` line endings, so that replicas holding the same entries hold
//! byte-identical files. Entry `i` of a valid log has number `i`.
//!
//! Writes: one writer at a time (a mutex around the file). A batch is written with one
//! `write_all`, `sync_data`'d, and only then published to memory, so a reader never sees an
//! entry that a crash could take back. Truncation (replacing a conflicting suffix) cuts the
//! file at the first removed entry's byte offset and syncs before memory forgets the entries.
//! Readers take a `parking_lot::RwLock` on the memory and never wait for an fsync.
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
//! Caveats: the whole log is kept in memory (fine for a teaching system's thousands of
//! orders). The request-id index covers the whole log, so a retry is recognised however late
//! it comes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use log::{info, warn};
use parking_lot::{Mutex, RwLock};

use crate::api::{LogEntry, LogPage};
use crate::error::{Error, Result};

/// The first line of every order log.
pub const HEADER: &str = "number,name,type,quantity,epoch,request_id\n";

/// The in-memory view, published only after the file is durable.
#[derive(Default)]
struct Memory {
    entries: Vec<LogEntry>,
    /// Byte offset in the file of each entry's line.
    offsets: Vec<u64>,
    /// Length of the valid file.
    end: u64,
    by_request: HashMap<String, u64>,
}

impl Memory {
    fn latest(&self) -> i64 {
        self.entries.len() as i64 - 1
    }

    fn push(&mut self, entry: LogEntry, offset: u64) {
        self.by_request
            .insert(entry.request_id.clone(), entry.number);
        self.offsets.push(offset);
        self.entries.push(entry);
    }

    fn truncate(&mut self, from: usize) {
        for removed in self.entries.drain(from..) {
            self.by_request.remove(&removed.request_id);
        }
        if let Some(&offset) = self.offsets.get(from) {
            self.end = offset;
        }
        self.offsets.truncate(from);
    }
}

/// One replica's order log. Cheap reads, one writer at a time.
pub struct OrderLog {
    path: PathBuf,
    /// The open file; holding this lock is what makes a caller the writer.
    file: Mutex<File>,
    mem: RwLock<Memory>,
}

impl OrderLog {
    /// Opens `path`, creating it (and its directory) with the header when missing, repairing a
    /// torn tail, refusing a damaged file.
    pub fn open(path: &Path) -> Result<OrderLog> {
        let dir = parent_dir(path);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::State(format!("cannot create {}: {e}", dir.display())))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::State(format!("cannot open {}: {e}", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::State(format!("cannot read {}: {e}", path.display())))?;

        if bytes.len() < HEADER.len() && HEADER.as_bytes().starts_with(&bytes) {
            // New, or a crash while the header itself was being written.
            file.set_len(0)?;
            file.write_all(HEADER.as_bytes())?;
            file.sync_all()?;
            sync_dir(&dir)?;
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
        info!("order log {}: {} orders", path.display(), mem.entries.len());
        Ok(OrderLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            mem: RwLock::new(mem),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Highest order number held, −1 when empty.
    pub fn latest(&self) -> i64 {
        self.mem.read().latest()
    }

    pub fn get(&self, number: u64) -> Option<LogEntry> {
        self.mem
            .read()
            .entries
            .get(usize::try_from(number).ok()?)
            .cloned()
    }

    /// The number of the order with this request id, if logged.
    pub fn lookup(&self, request_id: &str) -> Option<u64> {
        self.mem.read().by_request.get(request_id).copied()
    }

    /// Up to `limit` entries starting at number `since`.
    pub fn since(&self, since: u64, limit: usize) -> LogPage {
        let mem = self.mem.read();
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(mem.entries.len());
        let end = start.saturating_add(limit).min(mem.entries.len());
        LogPage {
            entries: mem.entries[start..end].to_vec(),
            latest: mem.latest(),
        }
    }

    /// Appends already numbered entries that continue the log: one write, one fsync, then
    /// visible to readers. On an error nothing is published; [`OrderLog::reload`] then makes
    /// memory agree with whatever the file holds.
    pub(crate) fn append(&self, entries: Vec<LogEntry>) -> Result<()> {
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
        self.write_entries(&mut file, entries)
    }

    /// Removes entries `from..` from the file (synced) and then from memory.
    pub(crate) fn truncate(&self, from: u64) -> Result<()> {
        let mut file = self.file.lock();
        self.truncate_locked(&mut file, usize::try_from(from).unwrap_or(usize::MAX))
    }

    /// Re-reads the file into memory, after a failed write or fsync left them unsure.
    pub(crate) fn reload(&self) -> Result<()> {
        let mut file = self.file.lock();
        let mut bytes = Vec::new();
        file.seek(std::io::SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        if !bytes.starts_with(HEADER.as_bytes()) {
            return Err(Error::Internal(format!(
                "{}: the header is gone",
                self.path.display()
            )));
        }
        let (mem, torn_at) = parse(&bytes, &self.path)?;
        if let Some(at) = torn_at {
            file.set_len(at)?;
            file.sync_all()?;
        }
        *self.mem.write() = mem;
        Ok(())
    }

    /// Cuts the file and memory at entry `from`. Caller holds the writer lock.
    fn truncate_locked(&self, file: &mut File, from: usize) -> Result<()> {
        let (offset, removed) = {
            let mem = self.mem.read();
            let Some(&offset) = mem.offsets.get(from) else {
                return Ok(());
            };
            let removed: Vec<String> = mem.entries[from..]
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
            (offset, removed)
        };
        file.set_len(offset)?;
        file.sync_all()?;
        self.mem.write().truncate(from);
        warn!(
            "{}: removed {} order(s) that the leading log does not have: {}",
            self.path.display(),
            removed.len(),
            removed.join("; ")
        );
        Ok(())
    }

    /// Appends already numbered entries (they continue the log), fsyncs, publishes.
    fn write_entries(&self, file: &mut File, entries: Vec<LogEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let start = self.mem.read().end;
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            offsets.push(start + bytes.len() as u64);
            bytes.extend_from_slice(&encode(e)?);
        }
        file.write_all(&bytes)?;
        file.sync_data()?;
        let mut mem = self.mem.write();
        for (e, offset) in entries.into_iter().zip(offsets) {
            mem.push(e, offset);
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
    let mut mem = Memory {
        end: header_len,
        ..Memory::default()
    };
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
                    if e.number == mem.entries.len() as u64 {
                        Ok(e)
                    } else {
                        Err(format!(
                            "order number {} where {} was expected",
                            e.number,
                            mem.entries.len()
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
            Ok(entry) => mem.push(entry, header_len + start),
            Err(_) if is_last => return Ok((mem, Some(header_len + start))),
            Err(why) => {
                return Err(Error::State(format!(
                    "{}: damaged record at byte {} (order {}): {why}; refusing to start",
                    path.display(),
                    header_len + start,
                    mem.entries.len()
                )))
            }
        }
        mem.end = header_len + end;
    }
    Ok((mem, None))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a file creation or rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes `bytes` to `path` so that a crash at any instant leaves either the old or the new
/// content: temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(&dir)
}

/// The entries of an order log file's bytes, for readers outside the replica (the test
/// harness): strict like [`OrderLog::open`], and stricter, since nothing is repaired here: a
/// torn last record is an error too. No bytes at all is an empty log (a replica not started).
pub fn entries(bytes: &[u8], path: &Path) -> Result<Vec<LogEntry>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if !bytes.starts_with(HEADER.as_bytes()) {
        return Err(Error::State(format!(
            "{}: no order log header",
            path.display()
        )));
    }
    match parse(bytes, path)? {
        (memory, None) => Ok(memory.entries),
        (_, Some(at)) => Err(Error::State(format!(
            "{}: torn last record at byte {at}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderType;

    /// A fresh directory, removed when the test is done with it.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A file in its own [`TempDir`], removed with it (the directory is held only for that).
    struct TempFile(PathBuf, #[allow(dead_code)] TempDir);

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

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "bazaar-log-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
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
    fn log_with(name: &str, epochs: &[u64]) -> (OrderLog, TempFile) {
        let dir = temp_dir(name);
        let path = TempFile(dir.join("orders-1.csv"), dir);
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
            .entries
            .iter()
            .map(|e| e.epoch)
            .collect()
    }

    #[test]
    fn new_log_has_only_the_header() {
        let path_dir = temp_dir("new");
        let path = path_dir.join("sub").join("orders-1.csv");
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.latest(), -1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    #[test]
    fn append_reload_and_read() {
        let path_dir = temp_dir("append");
        let path = path_dir.join("orders-2.csv");
        let log = OrderLog::open(&path).unwrap();
        log.append(entries(0..2, 1)).unwrap();
        log.append(entries(2..3, 2)).unwrap();
        assert!(
            log.append(entries(4..5, 2)).is_err(),
            "an append must continue the log"
        );
        assert_eq!(log.lookup("r2-e2"), Some(2));
        assert_eq!(log.get(2).unwrap().epoch, 2);
        assert_eq!(log.get(3), None);
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
        assert_eq!(log.lookup("r1-e1"), Some(1));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "reopening writes nothing"
        );
        // Truncation forgets the entries and their request ids, in the file and in memory.
        log.truncate(1).unwrap();
        assert_eq!(log.lookup("r1-e1"), None);
        assert_eq!(epochs(&log), [1]);
        log.reload().unwrap();
        assert_eq!(epochs(&log), [1], "memory agrees with the file");
    }

    #[test]
    fn quoted_fields_survive() {
        let path_dir = temp_dir("quoted");
        let path = path_dir.join("orders-1.csv");
        let log = OrderLog::open(&path).unwrap();
        let mut odd = entry(0, 1);
        odd.request_id = "a,b \"c\"\nd".into();
        log.append(vec![odd.clone(), entry(1, 1)]).unwrap();
        drop(log);
        let log = OrderLog::open(&path).unwrap();
        assert_eq!(log.get(0), Some(odd));
        assert_eq!(log.latest(), 1);
    }

    #[test]
    fn since_pages() {
        let (log, _) = log_with("since", &[1, 1, 1, 2, 2]);
        let cases: &[(u64, usize, &[u64])] = &[
            (0, 10, &[0, 1, 2, 3, 4]),
            (0, 2, &[0, 1]),
            (3, 10, &[3, 4]),
            (5, 10, &[]),
            (99, 10, &[]),
            (u64::MAX, 10, &[]),
        ];
        for &(since, limit, want) in cases {
            let page = log.since(since, limit);
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
            let (log, path) = log_with("torn", &[1, 1]);
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
        let path_dir = temp_dir("header");
        let path = path_dir.join("orders-1.csv");
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
            let path_dir = temp_dir("damage");
            let path = path_dir.join("orders-1.csv");
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
        let (a, path_a) = log_with("same-a", &[1, 1, 4]);
        let (b, path_b) = log_with("same-b", &[1, 1]);
        b.truncate(1).unwrap(); // diverge, then converge
        b.append(a.since(1, 10).entries).unwrap();
        assert_eq!(
            std::fs::read(&path_a).unwrap(),
            std::fs::read(&path_b).unwrap()
        );
    }

    #[test]
    fn atomic_write_replaces() {
        let path_dir = temp_dir("atomic");
        let path = path_dir.join("orders-1.state.json");
        write_atomically(&path, b"{\"epoch\":1}").unwrap();
        write_atomically(&path, b"{\"epoch\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"epoch\":2}");
        assert!(!path.with_extension("tmp").exists());
    }
}

//! Opening an order log: creating it, upgrading the previous format, checking every line,
//! cutting a torn last record, and keeping the intact prefix of a damaged file (with a copy
//! of the file as found); see the parent's module doc for the rules.
//!
//! Caveats: if the `.damaged` copy cannot be written the log refuses to open rather than cut
//! bytes nobody kept. The whole file is read into memory once at start (a few ms for a
//! million orders).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use log::{info, warn};
use parking_lot::{Mutex, RwLock};

use super::format::{line_of, scan, seal_entry, End, HEADER, PLAIN_HEADER};
use super::memory::{Memory, TAIL_ENTRIES};
use super::{OrderLog, Writer, NO_DAMAGE};
use crate::durable::{dir_of, replace_file, sync_dir};
use crate::error::{Error, Result};

impl OrderLog {
    /// Opens `path`, creating it (and its directory) with the header when missing, upgrading
    /// a file in the previous format, repairing a torn tail, keeping the intact prefix of a
    /// damaged file (see the module doc).
    pub(crate) fn open(path: &Path) -> Result<OrderLog> {
        OrderLog::open_with_tail(path, TAIL_ENTRIES)
    }

    /// [`OrderLog::open`] keeping `tail_cap` entries whole in memory (tests read the file
    /// with a small one).
    pub(super) fn open_with_tail(path: &Path, tail_cap: usize) -> Result<OrderLog> {
        let (bytes, mut damage) = read_with_header(path)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::State(format!("cannot open {}: {e}", path.display())))?;
        let reader = File::open(path)
            .map_err(|e| Error::State(format!("cannot open {}: {e}", path.display())))?;

        let mut mem = Memory::new(HEADER.len() as u64, tail_cap);
        let (end, good_end) = scan(
            &bytes[HEADER.len()..],
            HEADER.len() as u64,
            true,
            |entry, offset, crc| mem.push(entry, offset, crc),
        )?;
        mem.end = good_end;
        mem.offsets.shrink_to_fit();
        mem.crcs.shrink_to_fit();
        mem.epochs.shrink_to_fit();
        let mut unsure = false;
        match end {
            End::Clean => {}
            End::Torn { at } => {
                warn!(
                    "{}: cut a torn last record at byte {at} ({} bytes: {:?}) left by a crash mid-append",
                    path.display(),
                    bytes.len() as u64 - at,
                    String::from_utf8_lossy(&bytes[at as usize..]).chars().take(200).collect::<String>()
                );
                file.set_len(at)?;
                file.sync_all()?;
            }
            End::Damaged { number, at, why } => {
                warn!(
                    "{}: damaged record at byte {at} (line {}, order {number}): {why}; keeping \
                     orders 0..{number}, the rest is cut at the next write; the file as found \
                     is kept as {}",
                    path.display(),
                    line_of(&bytes, at),
                    damaged_path(path).display()
                );
                keep_damaged(path)?;
                unsure = true;
                damage = Some(damage.map_or(number, |d: u64| d.min(number)));
            }
        }
        info!("order log {}: {} orders", path.display(), mem.len());
        Ok(OrderLog {
            path: path.to_path_buf(),
            file: Mutex::new(Writer { file, unsure }),
            reader,
            mem: RwLock::new(mem),
            damage: AtomicU64::new(damage.unwrap_or(NO_DAMAGE)),
        })
    }
}

/// The bytes of the log at `path` (its directory created if missing), beginning with
/// [`HEADER`] on disk and in what is returned: a new or half-written header is (re)written,
/// a file in the previous format upgraded, a file whose first line is not a header kept as
/// `.damaged` and started again empty. Also returns the first damaged order found so far.
fn read_with_header(path: &Path) -> Result<(Vec<u8>, Option<u64>)> {
    let dir = dir_of(path);
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::State(format!("cannot create {}: {e}", dir.display())))?;
    let mut bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::State(format!("cannot read {}: {e}", path.display()))),
    };
    let mut damage = None;
    if bytes.len() < HEADER.len() && HEADER.as_bytes().starts_with(&bytes) {
        // New, or a crash while the header itself was being written.
        replace_file(path, HEADER.as_bytes())?;
        info!("created order log {}", path.display());
        bytes = HEADER.as_bytes().to_vec();
    } else if bytes.starts_with(PLAIN_HEADER.as_bytes()) {
        let (upgraded, found) = upgrade(&bytes, path)?;
        replace_file(path, &upgraded)?;
        info!(
            "{}: upgraded to the format with checksums ({} bytes before, {} after)",
            path.display(),
            bytes.len(),
            upgraded.len()
        );
        damage = found;
        bytes = upgraded;
    } else if !bytes.starts_with(HEADER.as_bytes()) {
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        warn!(
            "{}: damaged at byte 0 (line 1, before order 0): the first line is {:?} where {:?} \
                 was expected; no order is kept, the file as found is kept as {}",
            path.display(),
            String::from_utf8_lossy(first)
                .chars()
                .take(200)
                .collect::<String>(),
            HEADER.trim_end(),
            damaged_path(path).display()
        );
        keep_damaged(path)?;
        replace_file(path, HEADER.as_bytes())?;
        damage = Some(0);
        bytes = HEADER.as_bytes().to_vec();
    }
    Ok((bytes, damage))
}

/// Where the file at `path` is copied (the log) or moved (the hard state) when found damaged:
/// `<name>.damaged` next to it, for an operator to look at. Overwritten by the next damage.
pub(crate) fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".damaged");
    path.with_file_name(name)
}

/// Copies the file at `path` to its [`damaged_path`], durably, before any of it is cut.
fn keep_damaged(path: &Path) -> Result<()> {
    let copy = damaged_path(path);
    let kept = std::fs::copy(path, &copy)
        .and_then(|_| File::open(&copy)?.sync_all())
        .map_err(|e| {
            Error::State(format!(
                "{}: damaged, and it cannot be kept as {}: {e}",
                path.display(),
                copy.display()
            ))
        });
    kept?;
    sync_dir(dir_of(path))
}

/// A log file in the previous format (header [`PLAIN_HEADER`]) rewritten in this one, and
/// the first damaged order if any: checked as the previous version did (CSV, numbers), a torn
/// last record cut, a damaged one and what follows dropped (the file as found is kept).
fn upgrade(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Option<u64>)> {
    let body = &bytes[PLAIN_HEADER.len()..];
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 4 + HEADER.len());
    out.extend_from_slice(HEADER.as_bytes());
    let mut prev = 0;
    let (end, _) = scan(body, PLAIN_HEADER.len() as u64, false, |entry, _, _| {
        prev = seal_entry(prev, &entry, &mut out)?;
        Ok(())
    })?;
    match end {
        End::Clean => Ok((out, None)),
        End::Torn { at } => {
            warn!(
                "{}: dropped a torn last record at byte {at} ({} bytes) left by a crash mid-append",
                path.display(),
                bytes.len() as u64 - at
            );
            Ok((out, None))
        }
        End::Damaged { number, at, why } => {
            warn!(
                "{}: damaged record at byte {at} (line {}, order {number}): {why}; keeping \
                 orders 0..{number}; the file as found is kept as {}",
                path.display(),
                line_of(bytes, at),
                damaged_path(path).display()
            );
            keep_damaged(path)?;
            Ok((out, Some(number)))
        }
    }
}

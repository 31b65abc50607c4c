//! The order log's line format: the header, a record as the `csv` crate writes it, sealed
//! with its chained CRC32C, and the parsing and checking of a log's records (see the parent's
//! module doc for the format and what the chain vouches for).
//!
//! Caveats: [`scan`] stops at the first record that does not check and says how the records
//! ended; what to do about a torn or damaged record is the caller's decision (`open` repairs,
//! `entries` refuses).

#[cfg(feature = "testkit")]
use std::path::Path;

use crate::api::LogEntry;
use crate::checksum;
use crate::error::{Error, Result};

/// The first line of every order log.
pub const HEADER: &str = "number,name,type,quantity,epoch,request_id,checksum\n";

/// The first line of a log in the previous format (no checksums), upgraded when opened.
pub const PLAIN_HEADER: &str = "number,name,type,quantity,epoch,request_id\n";

/// Fields of a sealed record: the entry's six and its checksum.
const SEALED_FIELDS: usize = 7;

/// One entry as its CSV record, `\n`-terminated, without a checksum: a line of the previous
/// format, and the payload [`seal_line`] seals.
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

/// Appends one line of the log to `out`: `record` (an [`encode`]d entry without its line
/// end), its checksum chained from `prev` (the previous line's; 0 for order 0), `\n`. Returns
/// the checksum, the next line's `prev`. For whoever writes a log file by hand (tests,
/// benches): the replica writes exactly these bytes.
pub fn seal_line(prev: u32, record: &[u8], out: &mut Vec<u8>) -> u32 {
    checksum::seal(prev, record, out)
}

/// A whole log file holding `entries` (numbered from 0), as a replica writes it.
pub fn encode_file(entries: &[LogEntry]) -> Result<Vec<u8>> {
    let mut out = HEADER.as_bytes().to_vec();
    let mut prev = 0;
    for e in entries {
        prev = seal_entry(prev, e, &mut out)?;
    }
    Ok(out)
}

/// Appends `entry`'s sealed line to `out`; returns its checksum.
pub(super) fn seal_entry(prev: u32, entry: &LogEntry, out: &mut Vec<u8>) -> Result<u32> {
    let line = encode(entry)?;
    Ok(seal_line(
        prev,
        line.strip_suffix(b"\n").unwrap_or(&line),
        out,
    ))
}

/// The 1-based line of byte `at` in `bytes` (for a warning: a request id may hold a line end).
pub(super) fn line_of(bytes: &[u8], at: u64) -> usize {
    let at = usize::try_from(at).unwrap_or(usize::MAX).min(bytes.len());
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count()
}

/// How a log's records ended (see [`scan`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Every record checked.
    Clean,
    /// The last record, at byte `at`, has no line end: a crash mid-append.
    Torn { at: u64 },
    /// Order `number`'s record, at byte `at`, does not check, for the reason `why`.
    Damaged { number: u64, at: u64, why: String },
}

/// Walks the records of a log's `body` (what follows its header; `base` is the header's
/// length), checking each (its CSV, its number and, when `sealed`, its checksum chained from
/// the previous record), and hands each that checks to `each(entry, offset, crc)` (`crc` is 0
/// when not `sealed`). Stops at the first that does not check. Returns how it ended and the
/// byte offset just past the last record that checked.
pub(super) fn scan(
    body: &[u8],
    base: u64,
    sealed: bool,
    mut each: impl FnMut(LogEntry, u64, u32) -> Result<()>,
) -> Result<(End, u64)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let (mut prev, mut number, mut good_end) = (0, 0, 0);
    loop {
        let start = reader.position().byte();
        let result = reader.read_byte_record(&mut record);
        let end = reader.position().byte();
        let checked = match result {
            Ok(false) if start as usize >= body.len() => return Ok((End::Clean, base + good_end)),
            // Only empty lines were left: not what this format writes.
            Ok(false) => Err("empty lines where a record or the end was expected".into()),
            Ok(true) => check(
                &body[start as usize..end as usize],
                &mut record,
                prev,
                number,
                sealed,
            ),
            Err(e) => Err(e.to_string()),
        };
        match checked {
            Ok((entry, crc)) => {
                each(entry, base + start, crc)?;
                prev = crc;
                number += 1;
                good_end = end;
            }
            // A record without its line end can only be the last one: a torn append. A line
            // end anywhere after `start` means a whole line that does not check: damage.
            Err(_) if !body[start as usize..].contains(&b'\n') => {
                return Ok((End::Torn { at: base + start }, base + good_end))
            }
            Err(why) => {
                let at = base + start;
                return Ok((End::Damaged { number, at, why }, base + good_end));
            }
        }
    }
}

/// Checks one record read by the `csv` reader: `line` is its bytes, line end included, and
/// `record` its fields. Returns the entry and the line's checksum (0 when not `sealed`).
pub(super) fn check(
    line: &[u8],
    record: &mut csv::ByteRecord,
    prev: u32,
    number: u64,
    sealed: bool,
) -> std::result::Result<(LogEntry, u32), String> {
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err("no line end".into());
    };
    let crc = if sealed {
        let (_, crc) = checksum::unseal(prev, line)
            .map_err(|why| format!("{why} (chained from {prev:08x})"))?;
        if record.len() != SEALED_FIELDS {
            return Err(format!(
                "{} fields where {SEALED_FIELDS} were expected",
                record.len()
            ));
        }
        record.truncate(SEALED_FIELDS - 1);
        crc
    } else {
        0
    };
    let entry: LogEntry = record.deserialize(None).map_err(|e| e.to_string())?;
    if entry.number != number {
        return Err(format!(
            "order number {} where {number} was expected",
            entry.number
        ));
    }
    Ok((entry, crc))
}

/// The entries of an order log file's bytes, for readers outside the replica (the test
/// harness): checked like [`OrderLog::open`] (the previous format too), and stricter, since
/// nothing is repaired here: damage and a torn last record are errors. No bytes at all is an
/// empty log (a replica not started).
#[cfg(feature = "testkit")]
pub(crate) fn entries(bytes: &[u8], path: &Path) -> Result<Vec<LogEntry>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (header, sealed) = if bytes.starts_with(HEADER.as_bytes()) {
        (HEADER, true)
    } else if bytes.starts_with(PLAIN_HEADER.as_bytes()) {
        (PLAIN_HEADER, false)
    } else {
        return Err(Error::State(format!(
            "{}: no order log header",
            path.display()
        )));
    };
    let mut out = Vec::new();
    let (end, _) = scan(
        &bytes[header.len()..],
        header.len() as u64,
        sealed,
        |entry, _, _| {
            out.push(entry);
            Ok(())
        },
    )?;
    match end {
        End::Clean => Ok(out),
        End::Torn { at } => Err(Error::State(format!(
            "{}: torn last record at byte {at}",
            path.display()
        ))),
        End::Damaged { number, at, why } => Err(Error::State(format!(
            "{}: damaged record at byte {at} (order {number}): {why}",
            path.display()
        ))),
    }
}

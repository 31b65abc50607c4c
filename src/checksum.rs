//! CRC32C checksums on every record the services read back from disk: the order log's lines,
//! a replica's hard state, the catalog's snapshot and journal lines.
//!
//! A sealed record is `<payload>,<crc>\n`, where `<crc>` is eight lowercase hex digits of the
//! CRC32C of the payload's bytes, seeded with the previous record's checksum (`prev`; 0 for
//! the first record, and for a file that is one record). Seeding chains the records: a line
//! that is missing, swapped or moved no longer checks, and the checksum of line `n` vouches
//! for every line up to `n`. The payload itself may contain commas (a CSV line, JSON): the
//! checksum is always the last nine bytes before the line end.
//!
//! CRC32C because the CPU computes it (SSE 4.2 / ARMv8 CRC instructions, a few GB/s), so
//! checking a million-order log at start costs milliseconds. It detects damage (rot, a changed
//! digit, a torn or zero-filled write), not tampering: anyone can recompute it.
//!
//! Caveats: a record that is gone entirely at the end of a file (a file cut short at a line
//! boundary) leaves nothing to check; what vouches for such a record is kept elsewhere (the
//! replica's hard state names the last entry its claim covers, with that entry's checksum).

/// Bytes a seal adds after the payload: `,` and eight hex digits (the line end not counted).
pub(crate) const SEAL_LEN: usize = 9;

/// The CRC32C of `bytes`, seeded with `prev`.
pub(crate) fn crc(prev: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(prev, bytes)
}

/// Appends `payload,<crc>\n` to `out`; returns the crc (the next record's `prev`).
pub(crate) fn seal(prev: u32, payload: &[u8], out: &mut Vec<u8>) -> u32 {
    let sum = crc(prev, payload);
    out.extend_from_slice(payload);
    out.extend_from_slice(format!(",{sum:08x}\n").as_bytes());
    sum
}

/// Checks one sealed record, given without its line end. Returns the payload and its crc, or
/// what is wrong (for a `warn!` naming the file and line).
pub(crate) fn unseal(prev: u32, record: &[u8]) -> Result<(&[u8], u32), String> {
    let Some(split) = record.len().checked_sub(SEAL_LEN) else {
        return Err(format!(
            "{} bytes is too short to hold a checksum",
            record.len()
        ));
    };
    let (payload, seal) = record.split_at(split);
    let stored = std::str::from_utf8(&seal[1..])
        .ok()
        .filter(|_| seal[0] == b',')
        .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok());
    let Some(stored) = stored else {
        return Err(format!(
            "no checksum at the end (expected ',' and 8 hex digits, found {:?})",
            String::from_utf8_lossy(seal)
        ));
    };
    let actual = crc(prev, payload);
    if actual != stored {
        return Err(format!(
            "checksum {stored:08x} does not match the contents (expected {actual:08x})"
        ));
    }
    Ok((payload, actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_checks_and_any_change_does_not() {
        let mut out = Vec::new();
        let first = seal(0, b"0,GameStart,buy,1,1,r0", &mut out);
        let second = seal(first, b"1,GameStart,sell,2,1,r1", &mut out);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').take(2).collect();
        assert_eq!(
            unseal(0, lines[0]).unwrap(),
            (&b"0,GameStart,buy,1,1,r0"[..], first)
        );
        assert_eq!(unseal(first, lines[1]).unwrap().1, second);
        // The chain: the second line does not check without the first one's checksum.
        assert!(unseal(0, lines[1]).is_err());
        let mut changed = lines[0].to_vec();
        changed[14] = b'7';
        assert!(unseal(0, &changed).unwrap_err().contains("does not match"));
        assert!(unseal(0, b"0,GameStart,buy,1,1,r0").is_err());
        assert!(unseal(0, b"short").unwrap_err().contains("too short"));
    }
}

//! Storage faults for the end-to-end tests and `chaos`: wiping a replica's files and changing
//! one digit of a replica's or the catalog's file, done to a stopped service's files in a
//! [`Cluster`]'s data directory.
//!
//! The files, as the harness lays them out (`output_dir` of the config, `Cluster::data_dir`):
//!
//! - `orders-N.csv`: the order log of replica `N`. A header line, then one order a line,
//!   `number,name,type,quantity,epoch,request_id`, and in the sealed format a last column
//!   `,<8 hex crc>` (`crate::checksum`). [`set_order_quantity`] finds the line that starts
//!   `<number>,` and rewrites its fourth field, keeping the line's length and leaving any seal
//!   as it was: the line stays valid CSV, but no longer checks.
//! - `orders-N.state.json`: replica `N`'s hard state. [`wipe_replica`] removes it with the log,
//!   as a replaced disk or an `rm` would.
//! - `catalog.json` and `catalog.journal`: the catalog's snapshot and, since its last start,
//!   one whole state a line. The newest state is the journal's last complete line, or the
//!   snapshot when the journal holds none; [`set_catalog_quantity`] changes a stock's quantity
//!   there, in place and at the same length (each is compact JSON, with or without a seal).
//!
//! Every change is a plain write of the whole file (no fsync): the service is down and the
//! next reader is a process started after the write returned.
//!
//! Caveats: lines are split on commas without CSV quoting; the stocks and request ids of a
//! test bazaar contain no comma or quote, and a line that does is refused rather than guessed
//! at. A quantity can only become one of the same number of digits.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::testkit::cluster::Cluster;

/// The catalog's snapshot and journal, in its data directory.
const CATALOG_SNAPSHOT: &str = "catalog.json";
const CATALOG_JOURNAL: &str = "catalog.journal";

/// Replica `id`'s hard-state file.
pub fn state_path(cluster: &Cluster, id: u32) -> PathBuf {
    cluster.data_dir().join(format!("orders-{id}.state.json"))
}

/// Removes replica `id`'s log and hard state (either may already be missing). The replica
/// should be down.
pub fn wipe_replica(cluster: &Cluster, id: u32) -> Result<()> {
    for path in [cluster.log_path(id), state_path(cluster, id)] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot remove {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// The order numbers of the complete lines of a log file (each ended by `\n`), in file order.
/// Empty when the file is missing.
pub fn logged_numbers(path: &Path) -> Result<Vec<u64>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(complete_lines(&bytes)
        .skip(1)
        .filter_map(|(_, line)| {
            let text = std::str::from_utf8(line).ok()?;
            text.split(',').next()?.parse().ok()
        })
        .collect())
}

/// The quantity of order `number` as written in the log file at `path`.
pub fn order_quantity(path: &Path, number: u64) -> Result<u64> {
    let bytes = fs::read(path)?;
    let (_, line) = order_line(&bytes, number, path)?;
    let (start, end) = quantity_field(line, number, path)?;
    parse_digits(&line[start..end], path)
}

/// Rewrites the quantity of order `number` in the log file at `path` to `quantity`, which must
/// have as many digits as the old one; any checksum column is left as it was. Returns the old
/// quantity.
pub fn set_order_quantity(path: &Path, number: u64, quantity: u64) -> Result<u64> {
    let mut bytes = fs::read(path)?;
    let (offset, line) = order_line(&bytes, number, path)?;
    let (start, end) = quantity_field(line, number, path)?;
    let old = parse_digits(&line[start..end], path)?;
    let new = quantity.to_string();
    if new.len() != end - start {
        return Err(Error::Internal(format!(
            "{}: order {number}'s quantity {old} cannot become {quantity} at the same length",
            path.display()
        )));
    }
    bytes[offset + start..offset + end].copy_from_slice(new.as_bytes());
    fs::write(path, bytes)?;
    Ok(old)
}

/// Another quantity of the same number of digits as `old` (never 0, never a leading 0): a
/// "changed digit", picked with `rng`.
pub fn other_quantity(old: u64, rng: &mut fastrand::Rng) -> u64 {
    let last = old % 10;
    let low = if old < 10 { 1 } else { 0 };
    // Nine (or, for one digit, eight) other digits to choose from; none equals `last`.
    let mut digit = rng.u64(low..9);
    if digit >= last {
        digit += 1;
    }
    old - last + digit
}

/// Where a stock's quantity was changed in the catalog's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogDamage {
    /// The file changed: the journal (its last line) or the snapshot.
    pub file: PathBuf,
    /// The quantity that was there.
    pub old: u64,
}

/// Changes `stock`'s quantity to `quantity` (as many digits as the old one) in the catalog's
/// newest state: the journal's last complete line if it has one, else the snapshot. Any seal
/// is left as it was.
pub fn set_catalog_quantity(
    cluster: &Cluster,
    stock: &str,
    quantity: u64,
) -> Result<CatalogDamage> {
    let journal = cluster.data_dir().join(CATALOG_JOURNAL);
    let journal_bytes = match fs::read(&journal) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let (file, mut bytes, (from, to)) = match complete_lines(&journal_bytes).last() {
        Some((offset, line)) => {
            let range = (offset, offset + line.len());
            (journal, journal_bytes, range)
        }
        None => {
            let snapshot = cluster.data_dir().join(CATALOG_SNAPSHOT);
            let bytes = fs::read(&snapshot)?;
            let len = bytes.len();
            (snapshot, bytes, (0, len))
        }
    };
    let record = &bytes[from..to];
    let (start, end) = stock_quantity(record, stock, &file)?;
    let old = parse_digits(&record[start..end], &file)?;
    let new = quantity.to_string();
    if new.len() != end - start {
        return Err(Error::Internal(format!(
            "{}: {stock}'s quantity {old} cannot become {quantity} at the same length",
            file.display()
        )));
    }
    bytes[from + start..from + end].copy_from_slice(new.as_bytes());
    fs::write(&file, bytes)?;
    Ok(CatalogDamage { file, old })
}

/// Every line ended by `\n` in `bytes`, without its `\n`, with its byte offset.
fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let rest = bytes.get(offset..)?;
        let len = rest.iter().position(|&b| b == b'\n')?;
        let line = (offset, &rest[..len]);
        offset += len + 1;
        Some(line)
    })
}

/// The line of order `number` (after the header) and its byte offset.
fn order_line<'a>(bytes: &'a [u8], number: u64, path: &Path) -> Result<(usize, &'a [u8])> {
    let prefix = format!("{number},");
    complete_lines(bytes)
        .skip(1)
        .find(|(_, line)| line.starts_with(prefix.as_bytes()))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} holds no complete line of order {number}",
                path.display()
            ))
        })
}

/// The byte range of the fourth field (the quantity) of an order line.
fn quantity_field(line: &[u8], number: u64, path: &Path) -> Result<(usize, usize)> {
    if line.contains(&b'"') {
        return Err(Error::Internal(format!(
            "{}: order {number}'s line is quoted CSV, which this helper does not edit",
            path.display()
        )));
    }
    let commas: Vec<usize> = line
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b',')
        .map(|(i, _)| i)
        .take(4)
        .collect();
    match commas[..] {
        [_, _, third, fourth] => Ok((third + 1, fourth)),
        _ => Err(Error::Internal(format!(
            "{}: order {number}'s line has fewer than five fields",
            path.display()
        ))),
    }
}

/// The byte range of the digits of `"quantity":` in `stock`'s object in a JSON record.
fn stock_quantity(record: &[u8], stock: &str, file: &Path) -> Result<(usize, usize)> {
    let text = std::str::from_utf8(record)
        .map_err(|_| Error::Internal(format!("{} is not UTF-8", file.display())))?;
    let missing = || {
        Error::NotFound(format!(
            "{}: no quantity of {stock} in the newest state",
            file.display()
        ))
    };
    let name = text
        .find(&format!("\"name\":\"{stock}\""))
        .ok_or_else(missing)?;
    let object_end = text[name..]
        .find('}')
        .map(|i| name + i)
        .ok_or_else(missing)?;
    let key = "\"quantity\":";
    let start = text[name..object_end]
        .find(key)
        .map(|i| name + i + key.len())
        .ok_or_else(missing)?;
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(missing());
    }
    Ok((start, start + digits))
}

fn parse_digits(digits: &[u8], path: &Path) -> Result<u64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::Internal(format!(
                "{}: {:?} is not a quantity",
                path.display(),
                String::from_utf8_lossy(digits)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_quantity_changes_in_place_and_the_seal_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders-2.csv");
        let text = "number,name,type,quantity,epoch,request_id,checksum\n\
                    29,FishCo,buy,1,1,r29,0000abcd\n\
                    30,FishCo,sell,1,1,r30,1234abcd\n\
                    31,FishCo,sell,12,1,r31,5678abcd\n";
        fs::write(&path, text).unwrap();
        assert_eq!(logged_numbers(&path).unwrap(), vec![29, 30, 31]);
        assert_eq!(order_quantity(&path, 30).unwrap(), 1);
        assert_eq!(set_order_quantity(&path, 30, 7).unwrap(), 1);
        let after = fs::read_to_string(&path).unwrap();
        assert_eq!(after.len(), text.len());
        assert!(
            after.contains("\n30,FishCo,sell,7,1,r30,1234abcd\n"),
            "{after}"
        );
        assert!(set_order_quantity(&path, 31, 7).is_err(), "shorter");
        assert!(set_order_quantity(&path, 32, 7).is_err(), "missing");
        // The previous format, without the seal, is edited the same way.
        fs::write(
            &path,
            "number,name,type,quantity,epoch,request_id\n3,A,buy,9,2,x\n",
        )
        .unwrap();
        assert_eq!(set_order_quantity(&path, 3, 4).unwrap(), 9);
        assert!(fs::read_to_string(&path)
            .unwrap()
            .ends_with("\n3,A,buy,4,2,x\n"));
    }

    #[test]
    fn another_quantity_keeps_its_length_and_differs() {
        let mut rng = fastrand::Rng::with_seed(7);
        for old in [1, 5, 9, 10, 19, 100, 907] {
            for _ in 0..50 {
                let new = other_quantity(old, &mut rng);
                assert_ne!(new, old);
                assert_ne!(new, 0);
                assert_eq!(
                    new.to_string().len(),
                    old.to_string().len(),
                    "{old} → {new}"
                );
            }
        }
    }

    #[test]
    fn a_stock_quantity_is_found_in_its_own_object() {
        let record = br#"{"epoch":2,"applied":9,"applied_epoch":2,"stocks":[{"name":"GameStart","price":10.5,"quantity":90,"volume":10},{"name":"MenhirCo","price":10.5,"quantity":90,"volume":10}]},0badf00d"#;
        let (start, end) = stock_quantity(record, "MenhirCo", Path::new("x")).unwrap();
        assert_eq!(&record[start..end], b"90");
        assert!(start > 80, "the second object's, not the first's");
        assert!(stock_quantity(record, "FishCo", Path::new("x")).is_err());
    }
}

//! What `catalog.json` and `catalog.journal` hold, and how they are read back at start: the
//! record format, its seal, and what counts as damage. Nothing here writes; the store
//! ([`super::store`]) appends, folds and moves files aside.
//!
//! **Records.** `catalog.json` is one sealed record (`crate::checksum`, prev 0): the state
//! `{"epoch":E,"applied":N,"applied_epoch":A,"stocks":[..]}`, then `,<crc>` and a line end.
//! Every line of `catalog.journal` is a whole state sealed the same way, so the last complete
//! line is the newest state. Records of the previous format (plain JSON, no seal; told apart
//! because JSON ends with `}` and a seal with a hex digit) are read as they are; the store
//! upgrades them (the next journal line is sealed, and catalog.json is rewritten sealed at
//! start as part of the fold).
//!
//! **Damage.** A torn last journal line (no line end: a crash mid-append, never answered) is
//! ignored. Anything else that does not check or is not a state is damage: catalog.json (empty,
//! torn, a changed digit, a state that breaks the rules, the old format with `recent_trades`,
//! which has no `applied`), or any journal line that has its line end, the last one included
//! (or one listing other stocks than catalog.json). [`load`] then says which file and line, and
//! what was expected; the store moves both files aside and starts over (see there).
//!
//! Caveats:
//! - Every journal line is the whole state (about 1.3 KB for 14 stocks): simple to replay, and
//!   small enough for the stock lists this system is for.
//! - A previous-format record carries no checksum: a changed digit in one that is still a valid
//!   state is loaded as before. Every file written since is sealed, and the first start folds a
//!   previous-format pair into a sealed catalog.json.
//! - A seal catches damage, not a rewrite: a file replaced by an older sealed catalog.json is
//!   loaded (its numbers are a prefix of the log, which the leader then completes).

use std::fs;
use std::path::{Path, PathBuf};

use log::warn;
use serde::{Deserialize, Serialize};

use super::rules::Index;
use crate::api::{CatalogState, StockRecord};
use crate::checksum;
use crate::error::Result;

/// catalog.json, as written and read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CatalogFile {
    pub(super) epoch: u64,
    pub(super) applied: i64,
    pub(super) applied_epoch: u64,
    pub(super) stocks: Vec<StockRecord>,
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

/// What the catalog's files hold at start.
#[derive(Debug)]
pub(super) enum Found {
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
pub(super) fn load(
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
                .and_then(|(file, was_sealed)| Index::of(&file.stocks).map(|_| (file, was_sealed)));
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
pub(super) fn sealed(state: &CatalogFile) -> Result<Vec<u8>> {
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
pub(super) fn parse_file(bytes: &[u8]) -> std::result::Result<CatalogFile, String> {
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
pub(super) fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".damaged");
    path.with_file_name(name)
}

//! The replica's hard state, persisted in `orders-N.state.json` as one sealed record:
//! `{"epoch":E,"voted_for":V,"log_epoch":L,...},<crc>\n` (see `core::HardState`, and
//! `crate::checksum` for the seal: CRC32C of the JSON, eight hex digits, seeded with 0).
//!
//! `epoch` is the highest epoch the replica granted or saw, `voted_for` whom it granted it to,
//! `log_epoch` the epoch of the leader whose log its log is a prefix of. Each is written
//! (temp file, fsync, rename, fsync of the directory) before the replica acts on it, so a
//! restart can never grant an epoch twice or accept an old leader again.
//!
//! Loading says whether the state is *lost*: the file is missing (a new replica, or a wiped
//! disk: the core tells them apart by asking its peers), or it does not check or parse (it is
//! then moved to `orders-N.state.json.damaged` with a `warn!`). A lost state loads as the zero
//! state; the core decides what a replica that may have forgotten its votes may do.
//!
//! Caveats: a file in the previous format (plain JSON, no seal) that parses is trusted as it
//! is (nothing vouches for it) and sealed at the next save; a file from before majority commit
//! (`{"epoch":E}` only) loads with no vote and `log_epoch` 0, which ranks its log below any
//! log written since.

use std::path::Path;

use log::warn;

use super::core::HardState;
use super::logfile::damaged_path;
use crate::checksum;
use crate::durable::{dir_of, replace_file, sync_dir};
use crate::error::{Error, Result};

/// What [`load`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// The state; the zero state when `lost`.
    pub(crate) state: HardState,
    /// The file was missing or damaged.
    pub(crate) lost: bool,
}

/// Reads `path`: a missing or damaged file is a lost state (a damaged one is moved aside).
/// Only an I/O failure is an error.
pub(crate) fn load(path: &Path) -> Result<Loaded> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                state: HardState::default(),
                lost: true,
            })
        }
        Err(e) => return Err(Error::State(format!("cannot read {}: {e}", path.display()))),
    };
    let kept = |state| Ok(Loaded { state, lost: false });
    let why = match bytes.strip_suffix(b"\n").map(|r| checksum::unseal(0, r)) {
        Some(Ok((json, _))) => match serde_json::from_slice(json) {
            Ok(state) => return kept(state),
            Err(e) => format!("the record checks but is not a replica state: {e}"),
        },
        sealed => match serde_json::from_slice(&bytes) {
            // The previous format: sealed at the next save.
            Ok(state) => return kept(state),
            Err(_) => match sealed {
                Some(Err(why)) => why,
                _ => "no line end after the record".into(),
            },
        },
    };
    let aside = damaged_path(path);
    warn!(
        "{}: damaged replica state ({why}); treated as lost, moved to {}",
        path.display(),
        aside.display()
    );
    std::fs::rename(path, &aside).map_err(|e| {
        Error::State(format!(
            "{}: damaged, and it cannot be moved to {}: {e}",
            path.display(),
            aside.display()
        ))
    })?;
    sync_dir(dir_of(path))?;
    Ok(Loaded {
        state: HardState::default(),
        lost: true,
    })
}

/// Writes `state` durably and atomically, sealed.
pub(crate) fn save(path: &Path, state: &HardState) -> Result<()> {
    let mut record = Vec::new();
    checksum::seal(0, &serde_json::to_vec(state)?, &mut record);
    replace_file(path, &record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::core::Through;

    fn loaded(state: HardState, lost: bool) -> Loaded {
        Loaded { state, lost }
    }

    #[test]
    fn state_round_trips_and_old_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders-1.state.json");
        assert_eq!(load(&path).unwrap(), loaded(HardState::default(), true));
        let state = HardState {
            epoch: 7,
            voted_for: Some(2),
            log_epoch: 5,
            log_through: Some(Through {
                number: 41,
                checksum: 0xdead_beef,
            }),
            recovering: true,
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), loaded(state, false));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"epoch\":7,"), "{text}");
        assert_eq!(text.len() - text.trim_end().len(), 1, "one line end");

        // The previous formats: plain JSON, trusted as it is.
        let old = HardState {
            epoch: 9,
            voted_for: Some(3),
            log_epoch: 8,
            ..HardState::default()
        };
        std::fs::write(&path, r#"{"epoch":9,"voted_for":3,"log_epoch":8}"#).unwrap();
        assert_eq!(load(&path).unwrap(), loaded(old, false));
        std::fs::write(&path, r#"{"epoch":4}"#).unwrap();
        assert_eq!(
            load(&path).unwrap(),
            loaded(
                HardState {
                    epoch: 4,
                    ..HardState::default()
                },
                false
            )
        );
        assert!(!damaged_path(&path).exists());
    }

    /// A state file that does not check is lost (the replica may have granted votes it no
    /// longer knows), moved aside for an operator, never read as a state.
    #[test]
    fn a_damaged_state_is_lost_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders-1.state.json");
        let state = HardState {
            epoch: 7,
            voted_for: Some(2),
            log_epoch: 5,
            ..HardState::default()
        };
        save(&path, &state).unwrap();
        let good = std::fs::read(&path).unwrap();
        let digit = good.iter().position(|&b| b == b'7').unwrap();
        let mut changed = good.clone();
        changed[digit] = b'9'; // still JSON, still parses: only the seal tells
        let mut no_end = good.clone();
        no_end.pop();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("a changed digit", changed),
            ("cut short", good[..good.len() / 2].to_vec()),
            ("no line end", no_end),
            ("empty", Vec::new()),
            ("garbage", b"\x00\x01garbage".to_vec()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                load(&path).unwrap(),
                loaded(HardState::default(), true),
                "{what}"
            );
            assert!(!path.exists(), "{what}: moved aside");
            assert_eq!(std::fs::read(damaged_path(&path)).unwrap(), bytes, "{what}");
            assert_eq!(
                load(&path).unwrap(),
                loaded(HardState::default(), true),
                "{what}: then missing"
            );
        }
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), loaded(state, false), "saved again");
    }
}

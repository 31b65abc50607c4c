//! The replica's hard state, persisted in `orders-N.state.json` as
//! `{"epoch":E,"voted_for":V,"log_epoch":L}` (see `core::HardState`).
//!
//! `epoch` is the highest epoch the replica granted or saw, `voted_for` whom it granted it to,
//! `log_epoch` the epoch of the leader whose log its log is a prefix of. Each is written
//! (temp file, fsync, rename, fsync of the directory) before the replica acts on it, so a
//! restart can never grant an epoch twice or accept an old leader again.
//!
//! Caveats: a missing file is the state of a new replica (all zero); a file from before
//! majority commit (`{"epoch":E}` only) loads with no vote and `log_epoch` 0, which ranks its
//! log below any log written since. A corrupt file refuses to start (writes are atomic, so it
//! can only come from outside tampering).

use std::path::Path;

use super::core::HardState;
use crate::durable::replace_file;
use crate::error::{Error, Result};

/// Reads `path`; a missing file is the zero state.
pub(crate) fn load(path: &Path) -> Result<HardState> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::State(format!(
                "{}: unreadable replica state: {e}; refusing to start",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HardState::default()),
        Err(e) => Err(Error::State(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Writes `state` durably and atomically.
pub(crate) fn save(path: &Path, state: &HardState) -> Result<()> {
    replace_file(path, &serde_json::to_vec(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_old_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders-1.state.json");
        assert_eq!(load(&path).unwrap(), HardState::default());
        let state = HardState {
            epoch: 7,
            voted_for: Some(2),
            log_epoch: 5,
            ..HardState::default()
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        std::fs::write(&path, r#"{"epoch":4}"#).unwrap();
        assert_eq!(
            load(&path).unwrap(),
            HardState {
                epoch: 4,
                voted_for: None,
                log_epoch: 0,
                ..HardState::default()
            }
        );
        std::fs::write(&path, "{\"ep").unwrap();
        assert!(load(&path).is_err());
    }
}

//! The replica's current epoch, persisted in `orders-N.state.json` as `{"epoch":E}`.
//!
//! An epoch numbers a leadership. A replica adopts every higher epoch it hears of (from
//! `You win`, an `<id> <epoch>` announcement, a `/propagate`, a peer's `/synchronize`) and
//! refuses anything from a lower one, so a leader that was replaced learns it as soon as it
//! meets a replica that knows the newer epoch. The value only ever grows, and it is persisted
//! (temp file, fsync, rename, fsync of the directory) before anything acts on it, so a restart
//! cannot make a replica accept an old leader again.
//!
//! Caveats: a missing state file means epoch 0, which is right for a new replica; a corrupt
//! one refuses to start (it can only come from outside tampering, since writes are atomic).

use std::path::{Path, PathBuf};

use log::info;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::log::write_atomically;
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
struct StateFile {
    epoch: u64,
}

/// The persisted epoch. Writers serialize on the mutex (held across the file write, never
/// across network I/O).
pub struct Epoch {
    path: PathBuf,
    current: Mutex<u64>,
}

impl Epoch {
    /// Reads `path`; a missing file is epoch 0.
    pub fn open(path: &Path) -> Result<Epoch> {
        let epoch = match std::fs::read(path) {
            Ok(bytes) => {
                let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Internal(format!(
                        "{}: unreadable epoch state: {e}; refusing to start",
                        path.display()
                    ))
                })?;
                state.epoch
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(Epoch {
            path: path.to_path_buf(),
            current: Mutex::new(epoch),
        })
    }

    pub fn get(&self) -> u64 {
        *self.current.lock()
    }

    /// Raises the epoch to `epoch` if it is higher, durably. Returns true if it changed.
    pub fn raise_to(&self, epoch: u64) -> Result<bool> {
        let mut current = self.current.lock();
        if epoch <= *current {
            return Ok(false);
        }
        write_atomically(&self.path, &serde_json::to_vec(&StateFile { epoch })?)?;
        info!("epoch {} -> {epoch}", *current);
        *current = epoch;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_only_grow_and_persist() {
        let dir = std::env::temp_dir().join(format!(
            "bazaar-epoch-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("orders-1.state.json");
        let epoch = Epoch::open(&path).unwrap();
        assert_eq!(epoch.get(), 0);
        let steps = [(3, true, 3), (2, false, 3), (3, false, 3), (7, true, 7)];
        for (raise, changed, now) in steps {
            assert_eq!(epoch.raise_to(raise).unwrap(), changed, "raise to {raise}");
            assert_eq!(epoch.get(), now);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"epoch":7}"#);
        assert_eq!(Epoch::open(&path).unwrap().get(), 7);
        std::fs::write(&path, "{\"ep").unwrap();
        assert!(Epoch::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

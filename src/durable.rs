//! Whole-file replacement that survives a crash at any instant: the catalog's snapshot
//! (`catalog.json`) and a replica's hard state (`orders-N.state.json`) are both written here.
//!
//! Protocol: write the new bytes to `<name>.tmp` next to the file, fsync it, rename it over the
//! file, fsync the directory. A crash before the rename leaves the old file (and maybe a torn
//! temp file); after it, the new one. The directory fsync is what makes the rename itself
//! durable: without it a power loss can bring back the old directory entry.
//!
//! Caveats: the temp name is fixed, so two writers of the same path must not run at once (each
//! file has one owner, which holds a lock or runs on one thread). A torn temp file is left for
//! the owner to remove at start ([`temp_path`] names it); it is never read.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Result;

/// Replaces the content of `path` with `bytes`, atomically and durably.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(path);
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    sync_dir(dir_of(path))
}

/// The temp file [`replace_file`] writes next to `path`: `<name>.tmp`, so that it can never be
/// mistaken for another data file (`orders-1.state.json` and `orders-1.json` keep distinct
/// temp names, which a replaced extension would not).
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The directory holding `path`: `.` for a bare file name.
pub(crate) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes a file creation or rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_replaces_and_leaves_no_temp() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let path = dir.join("orders-1.state.json");
        replace_file(&path, b"{\"epoch\":1}").unwrap();
        replace_file(&path, b"{\"epoch\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"epoch\":2}");
        assert_eq!(temp_path(&path), dir.join("orders-1.state.json.tmp"));
        assert!(!temp_path(&path).exists());
        assert_eq!(dir_of(Path::new("catalog.json")), Path::new("."));
    }
}

//! The catalog's state in one process: the [`Catalog`] holds the state under one lock, runs the
//! rules ([`super::rules`]) on it, and makes every change durable before anyone sees it.
//!
//! **Persistence.** `catalog.json` is created from `catalog.stocks` of the config when missing
//! and replaced atomically (temp file, fsync, rename, fsync of the directory). Each hello or
//! batch that changes the state appends the whole new state, sealed ([`super::files`]), as one
//! line to `catalog.journal` and `fdatasync`s it before the answer (one sync, instead of the
//! two syncs, create and rename of a rewrite); every [`SNAPSHOT_EVERY`] lines, and at start,
//! the last line is folded into catalog.json and the journal emptied. A leftover temp file is
//! removed at start.
//!
//! **Damage.** When [`super::files::load`] finds damage, the catalog logs one `warn!` naming
//! the file, the line and what was expected, renames both files aside
//! (`catalog.json.damaged`, `catalog.journal.damaged`, replacing older ones; the journal first,
//! so a crash between the renames finds the damage again), and starts over as if new: the
//! config's stocks, `applied` -1, `epoch` 0. The leader's next apply finds a gap (or its hello
//! finds -1) and re-sends the committed log from order 0, which rebuilds exactly the view of
//! the log, as after deleting the files. No number of a damaged pair is ever served, and none
//! is trusted, not even the fence: keeping the epoch of an intact record would be safe too,
//! but a previous-format record has no seal, and a rotten epoch there could fence out every
//! leader below it. Resetting the fence is safe because applies carry only committed orders,
//! which are the same at each number in every leader's log: an old leader that applies before
//! the current one says hello applies what the current one would, and the next hello raises
//! the fence again. What still refuses to start, with one line naming the file: a file or
//! directory that cannot be read, created, renamed or written (permissions, a full disk),
//! which rebuilding cannot fix.
//!
//! **Concurrency.** Hellos and applies are serialized by one mutex held across decide and
//! persist. Lookups read a separate `parking_lot::RwLock` view that is only replaced once the
//! file holds the new state, so a lookup never shows what is not on disk and never waits for a
//! disk write (only for the pointer swap).
//!
//! Caveats:
//! - If appending to the journal fails, the change is refused (503) and nothing changes; if
//!   even the partial line cannot be cut off, memory and file may disagree, so the catalog
//!   aborts and the restart resumes from the journal. A snapshot that fails is only logged:
//!   the journal still holds every change, and the next change tries again.
//! - Damage in either file costs a re-apply of the whole committed log (the leader's batches,
//!   as after deleting the files), even when a sealed journal line would still hold an intact
//!   state: damage is rare, and one recovery path is easier to trust than two.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, warn};
use parking_lot::{Mutex, RwLock};

use super::files::{damaged_path, load, sealed, CatalogFile, Found};
use super::rules::{self, Checked, Index};
use crate::api::{ApplyBatch, CatalogState, LeaderHello, StockRecord};
use crate::config::StockConfig;
use crate::durable::{dir_of, replace_file, temp_path};
use crate::error::{Error, Result};

/// Lines in the journal before the state is written to catalog.json and the journal emptied:
/// at about 1.3 KB a line (14 stocks), a journal stays under 1.5 MB.
const SNAPSHOT_EVERY: u64 = 1024;

/// What an apply did: the state to answer and the stocks to invalidate.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The catalog's state after the batch, without stocks.
    pub(crate) state: CatalogState,
    /// Distinct names of the batch's entries the catalog now holds (applied or re-sent).
    pub(crate) names: Vec<String>,
}

/// The catalog's data and its file.
#[derive(Debug)]
pub(crate) struct Catalog {
    path: PathBuf,
    /// Name → position in the stock lists (fixed once open).
    index: Index,
    /// What lookups see: exactly what catalog.json holds.
    view: RwLock<Arc<CatalogState>>,
    /// Hellos and applies, one at a time, held across decide and persist.
    state: Mutex<CatalogState>,
    /// When lookups last started to see a change of stocks (the front-ends' cache lease is
    /// counted from there when one of them cannot confirm an invalidation).
    changed_at: Mutex<Instant>,
    /// `catalog.journal`: one line per change since the last snapshot (written under `state`).
    journal: Mutex<Journal>,
    /// The journal's lines and bytes as of its last change, for `/metrics` without waiting
    /// for the journal's lock (held across its fsync).
    journal_lines: AtomicU64,
    journal_bytes: AtomicU64,
}

/// The append-only journal next to catalog.json: every line is a whole [`CatalogFile`], so the
/// last complete line is the state. One `fdatasync` per change, where rewriting catalog.json
/// costs two fsyncs, a rename and a create; every [`SNAPSHOT_EVERY`] lines the state goes to
/// catalog.json (atomically) and the journal starts over.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    lines: u64,
    /// Bytes of whole lines in the file: where a failed append is cut back to.
    len: u64,
}

impl Catalog {
    /// Opens `path`, creating it from `initial` when missing, and rebuilding it from `initial`
    /// when damaged (the damaged files moved aside; the leader then re-applies the log).
    /// Creates the directory if needed and removes a temp file left by a crash mid-write.
    /// Refuses to start only when a file cannot be read or written.
    pub(crate) fn open(path: &Path, initial: &[StockConfig]) -> Result<Catalog> {
        let refuse = |why: String| Error::State(format!("catalog {}: {why}", path.display()));
        fs::create_dir_all(dir_of(path))
            .map_err(|e| refuse(format!("cannot create its directory: {e}")))?;
        let temp = temp_path(path);
        if temp.exists() {
            warn!("removing {} left by an interrupted write", temp.display());
            fs::remove_file(&temp)
                .map_err(|e| refuse(format!("cannot remove {}: {e}", temp.display())))?;
        }
        let journal_path = path.with_extension("journal");
        let (state, rewrite) = starting_state(path, &journal_path, initial).map_err(&refuse)?;
        let index = Index::of(&state.stocks).map_err(&refuse)?;
        // Creates catalog.json, folds the journal into it, or seals a previous-format file;
        // the directory fsync in `replace_file` also makes the renames of damaged files durable.
        if rewrite {
            sealed(&state)
                .and_then(|bytes| replace_file(path, &bytes))
                .map_err(|e| refuse(format!("cannot write: {e}")))?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()).map(|()| f))
            .map_err(|e| refuse(format!("cannot open {}: {e}", journal_path.display())))?;
        let state = CatalogState {
            epoch: state.epoch,
            applied: state.applied,
            applied_epoch: state.applied_epoch,
            stocks: state.stocks,
        };
        Ok(Catalog {
            path: path.to_path_buf(),
            index,
            view: RwLock::new(Arc::new(state.clone())),
            state: Mutex::new(state),
            changed_at: Mutex::new(Instant::now()),
            journal: Mutex::new(Journal {
                path: journal_path,
                file,
                lines: 0,
                len: 0,
            }),
            journal_lines: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
        })
    }

    pub(crate) fn lookup(&self, name: &str) -> Result<StockRecord> {
        let i = self.index.get(name).ok_or_else(|| unknown(name))?;
        self.view
            .read()
            .stocks
            .get(i)
            .cloned()
            .ok_or_else(|| unknown(name))
    }

    pub(crate) fn list(&self) -> Vec<StockRecord> {
        let view = self.view.read().clone();
        view.stocks.clone()
    }

    /// The journal's lines and bytes since the last snapshot.
    pub(crate) fn journal_size(&self) -> (u64, u64) {
        (
            self.journal_lines.load(Ordering::Relaxed),
            self.journal_bytes.load(Ordering::Relaxed),
        )
    }

    /// The fence and the last order applied, without copying the stocks.
    pub(crate) fn numbers(&self) -> (u64, i64) {
        let view = self.view.read();
        (view.epoch, view.applied)
    }

    /// The state as catalog.json holds it, stocks included.
    pub(crate) fn state(&self) -> CatalogState {
        let view = self.view.read().clone();
        (*view).clone()
    }

    /// When lookups last started to see a change of stocks.
    pub(crate) fn changed_at(&self) -> Instant {
        *self.changed_at.lock()
    }

    /// A leader of `hello.epoch` announces itself: refused below the fence, else the fence
    /// rises to it (persisted before the answer) and the answer says where the catalog stands.
    pub(crate) fn hello(&self, hello: &LeaderHello) -> Result<CatalogState> {
        let mut state = self.state.lock();
        if let Some(next) = rules::hello(&state, hello)? {
            self.commit(&mut state, next)?;
            info!(
                "leader {} of epoch {} said hello; the catalog now refuses lower epochs (applied {})",
                hello.leader, hello.epoch, state.applied
            );
        }
        Ok(state.clone())
    }

    /// Applies a batch of committed orders (the rules: [`super::rules`]). Nothing changes
    /// unless the whole batch is valid; a change is on disk and in the view before this returns.
    pub(crate) fn apply(&self, batch: &ApplyBatch) -> Result<Applied> {
        // Checked before the lock: a malformed batch never waits for another's fsync.
        let checked = Checked::new(batch)?;
        let mut state = self.state.lock();
        let step = rules::apply(&self.index, &state, &checked)?;
        if step.next != *state {
            self.commit(&mut state, step.next)?;
        }
        if let Some(applies) = step.applies {
            let batch = checked.batch();
            debug!(
                "applied orders {}..={} ({} of {} sent) from leader {} of epoch {}",
                applies.start(),
                applies.end(),
                applies.end() - applies.start() + 1,
                batch.entries.len(),
                batch.leader,
                batch.epoch
            );
        }
        Ok(Applied {
            state: CatalogState {
                stocks: Vec::new(),
                ..state.clone()
            },
            names: step.names,
        })
    }

    /// Writes `next` to the journal, then publishes it to lookups and makes it the state.
    /// The caller holds the state mutex (`state`).
    fn commit(&self, state: &mut CatalogState, next: CatalogState) -> Result<()> {
        let line = sealed(&CatalogFile::from(&next))?;
        let mut journal = self.journal.lock();
        let appended = journal
            .file
            .write_all(&line)
            .and_then(|()| journal.file.sync_data());
        if let Err(e) = appended {
            // Cut any partial line off (the next append must start a line of its own) and
            // refuse the change: the leader sends it again later. If even that fails, memory
            // and file may disagree: stop, and let the restart resume from the journal.
            let len = journal.len;
            let cut = journal
                .file
                .set_len(len)
                .and_then(|()| journal.file.sync_data());
            if let Err(cut) = cut {
                log::error!(
                    "cannot append to {} ({e}) nor cut it back ({cut}); stopping the catalog",
                    journal.path.display()
                );
                std::process::abort();
            }
            warn!("cannot append to {}: {e}", journal.path.display());
            return Err(Error::Unavailable(format!(
                "the catalog cannot write its journal: {e}"
            )));
        }
        journal.lines += 1;
        journal.len += line.len() as u64;
        if journal.lines >= SNAPSHOT_EVERY {
            self.snapshot(&mut journal, &next);
        }
        self.journal_lines.store(journal.lines, Ordering::Relaxed);
        self.journal_bytes.store(journal.len, Ordering::Relaxed);
        drop(journal);
        let changed = next.stocks != state.stocks;
        *self.view.write() = Arc::new(next.clone());
        if changed {
            *self.changed_at.lock() = Instant::now();
        }
        *state = next;
        Ok(())
    }

    /// Folds the journal into catalog.json (`state` is its last line) and empties it.
    fn snapshot(&self, journal: &mut Journal, state: &CatalogState) {
        let snapshot = sealed(&CatalogFile::from(state))
            .and_then(|bytes| replace_file(&self.path, &bytes))
            .and_then(|()| {
                Ok(journal
                    .file
                    .set_len(0)
                    .and_then(|()| journal.file.sync_all())?)
            });
        match snapshot {
            Ok(()) => {
                journal.lines = 0;
                journal.len = 0;
            }
            // The journal still holds everything: try again at the next change.
            Err(e) => warn!("cannot write the catalog snapshot: {e}"),
        }
    }
}

/// The state to start from and whether catalog.json must be written again: what the files
/// hold, or a new catalog of the config's stocks when they hold nothing or are damaged (then
/// moved aside). `Err`: what cannot be read or moved.
fn starting_state(
    path: &Path,
    journal_path: &Path,
    initial: &[StockConfig],
) -> std::result::Result<(CatalogFile, bool), String> {
    let fresh = CatalogFile {
        epoch: 0,
        applied: -1,
        applied_epoch: 0,
        stocks: initial
            .iter()
            .map(|s| StockRecord {
                name: s.name.clone(),
                price: s.price,
                quantity: s.quantity,
                volume: 0,
            })
            .collect(),
    };
    match load(path, journal_path, &fresh.stocks)? {
        Found::State { file, rewrite } => {
            info!(
                "catalog loaded from {}: {} stocks, epoch {}, applied {}",
                path.display(),
                file.stocks.len(),
                file.epoch,
                file.applied
            );
            Ok((file, rewrite))
        }
        Found::Nothing => {
            info!(
                "catalog created at {} with {} stocks",
                path.display(),
                fresh.stocks.len()
            );
            Ok((fresh, true))
        }
        Found::Damaged(why) => {
            warn!(
                "{why}; moving {} and {} aside (.damaged) and starting over from the \
                 config's {} stocks with nothing applied: the leader re-applies the \
                 committed log from order 0",
                path.display(),
                journal_path.display(),
                fresh.stocks.len()
            );
            // The journal first: a crash between the two renames then leaves the damaged
            // catalog.json in place, found again at the next start.
            for file in [journal_path, path] {
                move_aside(file)?;
            }
            Ok((fresh, true))
        }
    }
}

/// Renames `file` to its `.damaged` name; a file that is not there is fine.
fn move_aside(file: &Path) -> std::result::Result<(), String> {
    let aside = damaged_path(file);
    match fs::rename(file, &aside) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
            "cannot move {} to {}: {e}",
            file.display(),
            aside.display()
        )),
        _ => Ok(()),
    }
}

fn unknown(name: &str) -> Error {
    Error::NotFound(format!("no such stock: {name}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::api::OrderType::{Buy, Sell};
    use crate::catalog::files::parse_file;
    use crate::catalog::test_support::{batch, entry, hello, holdings, position, stocks, TempDir};
    use crate::checksum;

    /// The state on disk as a restart would find it: catalog.json, then the journal's last
    /// whole line (read without opening, which would fold the journal in).
    fn saved(dir: &TempDir) -> CatalogFile {
        match load(&dir.file(), &dir.file().with_extension("journal"), &[]).unwrap() {
            Found::State { file, .. } => file,
            other => panic!("no state on disk: {other:?}"),
        }
    }

    /// The state catalog.json holds, which must be sealed.
    fn sealed_file(path: &Path) -> CatalogFile {
        let bytes = fs::read(path).unwrap();
        let record = bytes
            .strip_suffix(b"\n")
            .expect("a line end after the seal");
        let (payload, _) = checksum::unseal(0, record).unwrap();
        parse_file(payload).unwrap()
    }

    #[test]
    fn a_new_catalog_is_created_from_the_config() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(position(&catalog), (0, -1, 0));
        assert_eq!(holdings(&catalog), [(100, 0), (3, 0)]);
        let bytes = fs::read(dir.file()).unwrap();
        let (payload, _) = checksum::unseal(0, bytes.strip_suffix(b"\n").unwrap()).unwrap();
        let file: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            file,
            serde_json::json!({"epoch":0,"applied":-1,"applied_epoch":0,"stocks":[
                {"name":"A","price":1.5,"quantity":100,"volume":0},
                {"name":"B","price":2.0,"quantity":3,"volume":0}]})
        );
        assert_eq!(catalog.lookup("Z").unwrap_err().status(), 404);
    }

    #[test]
    fn lower_epochs_are_fenced_and_change_nothing_even_after_a_restart() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(catalog.hello(&hello(2)).unwrap().epoch, 2);
        catalog
            .apply(&batch(2, vec![entry(0, "A", Buy, 10)]))
            .unwrap();
        let before = saved(&dir);

        // The old leader of epoch 1, woken from a freeze, re-sends and says hello.
        let err = catalog
            .apply(&batch(
                1,
                vec![entry(0, "A", Buy, 10), entry(1, "A", Buy, 5)],
            ))
            .unwrap_err();
        assert_eq!(err.status(), 409, "{err}");
        let err = catalog.hello(&hello(1)).unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(
            err.message().contains("epoch 1") && err.message().contains("epoch 2"),
            "{err}"
        );
        assert_eq!(position(&catalog), (2, 0, 2));
        assert_eq!(holdings(&catalog), [(90, 10), (3, 0)]);
        assert_eq!(saved(&dir), before);

        // The fence survives a restart.
        drop(catalog);
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let err = catalog
            .apply(&batch(1, vec![entry(1, "A", Buy, 5)]))
            .unwrap_err();
        assert_eq!(err.status(), 409);
        assert_eq!(position(&catalog), (2, 0, 2));
        assert_eq!(saved(&dir), before);

        // An apply from a higher epoch raises the fence by itself.
        let applied = catalog
            .apply(&batch(3, vec![entry(1, "B", Sell, 1)]))
            .unwrap();
        assert_eq!((applied.state.epoch, applied.state.applied), (3, 1));
        assert!(applied.state.stocks.is_empty());
        assert_eq!(catalog.hello(&hello(2)).unwrap_err().status(), 409);
        // The same epoch says hello again: fine, and the answer carries the stocks.
        let state = catalog.hello(&hello(3)).unwrap();
        assert_eq!((state.epoch, state.applied, state.applied_epoch), (3, 1, 3));
        assert_eq!(state.stocks[1].quantity, 4);
    }

    /// The file side of the rules' tables (`rules::tests`): a batch that changes nothing (a
    /// re-send, a gap) or is refused (400, 409, 422) writes nothing, and an apply's answer
    /// carries no stocks.
    #[test]
    fn unchanged_or_refused_batches_write_nothing() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        let journal = dir.file().with_extension("journal");
        let first = batch(1, vec![entry(0, "A", Buy, 10), entry(1, "A", Sell, 4)]);
        catalog.apply(&first).unwrap();
        let before = (saved(&dir), fs::read(&journal).unwrap());
        let again = catalog.apply(&first).unwrap();
        assert_eq!(again.names, ["A"]);
        assert!(again.state.stocks.is_empty());
        let gap = catalog
            .apply(&batch(1, vec![entry(4, "A", Buy, 1)]))
            .unwrap();
        assert_eq!((gap.state.applied, gap.names.len()), (1, 0));
        for (what, refused, status) in [
            (
                "not consecutive",
                batch(1, vec![entry(2, "A", Buy, 1), entry(4, "A", Buy, 1)]),
                400,
            ),
            ("fenced", batch(0, vec![entry(2, "A", Buy, 1)]), 409),
            ("buy below zero", batch(5, vec![entry(2, "B", Buy, 4)]), 422),
        ] {
            let err = catalog.apply(&refused).unwrap_err();
            assert_eq!(err.status(), status, "{what}: {err}");
        }
        assert_eq!((saved(&dir), fs::read(&journal).unwrap()), before);
        assert_eq!(position(&catalog), (1, 1, 1));
        assert_eq!(holdings(&catalog), [(94, 14), (3, 0)]);
    }

    #[test]
    fn the_journal_survives_a_torn_line_and_is_folded_into_the_snapshot() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog
            .apply(&batch(1, vec![entry(0, "A", Buy, 10)]))
            .unwrap();
        catalog
            .apply(&batch(1, vec![entry(1, "B", Sell, 2)]))
            .unwrap();
        drop(catalog);
        let journal = dir.file().with_extension("journal");
        let mut torn = fs::read(&journal).unwrap();
        let whole = torn.len();
        torn.extend_from_slice(br#"{"epoch":1,"applied":2,"#);
        fs::write(&journal, &torn).unwrap();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 1, 1));
        assert_eq!(holdings(&catalog), [(90, 10), (5, 2)]);
        assert_eq!(
            fs::read(&journal).unwrap().len(),
            0,
            "folded into catalog.json"
        );
        assert_eq!(sealed_file(&dir.file()).applied, 1);
        assert!(whole > 0);
        assert!(!damaged_path(&journal).exists(), "a torn line is no damage");
        // The same bytes with their line end were answered: damage, not a crash.
        drop(catalog);
        fs::write(&journal, b"garbage\n").unwrap();
        assert_damaged_at(&dir, &journal, 1, "too short");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(position(&catalog), (0, -1, 0));
        assert_eq!(fs::read(damaged_path(&journal)).unwrap(), b"garbage\n");
        // A line that checks but lists other stocks than catalog.json: damage as well.
        drop(catalog);
        let mut other = sealed(&CatalogFile {
            epoch: 1,
            applied: 0,
            applied_epoch: 1,
            stocks: Vec::new(),
        })
        .unwrap();
        other.extend_from_slice(br#"{"epoch":1,"applied":1,"#);
        fs::write(&journal, &other).unwrap();
        assert_damaged_at(&dir, &journal, 1, "lists the stocks []");
    }

    #[test]
    fn a_restart_resumes_from_the_file() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog.hello(&hello(4)).unwrap();
        catalog
            .apply(&batch(
                4,
                vec![entry(0, "A", Buy, 10), entry(1, "B", Sell, 2)],
            ))
            .unwrap();
        drop(catalog);
        // Different initial stocks: an existing file wins over the config.
        let catalog = Catalog::open(&dir.file(), &[]).unwrap();
        assert_eq!(position(&catalog), (4, 1, 4));
        assert_eq!(
            catalog.lookup("B").unwrap(),
            StockRecord {
                name: "B".into(),
                price: 2.0,
                quantity: 5,
                volume: 2
            }
        );
        // The leader re-sends from 0 after the restart: only 2 is new.
        let applied = catalog
            .apply(&batch(
                4,
                vec![
                    entry(0, "A", Buy, 10),
                    entry(1, "B", Sell, 2),
                    entry(2, "A", Buy, 1),
                ],
            ))
            .unwrap();
        assert_eq!(applied.state.applied, 2);
        assert_eq!(holdings(&catalog), [(89, 11), (5, 2)]);
    }

    /// Every file that does not hold a state is damage: moved aside, the catalog starts over
    /// from the config (the leader re-applies the log). Old formats included: rebuilding from
    /// the log is the one answer that is right for every version.
    #[test]
    fn bad_or_old_files_are_moved_aside_and_rebuilt() {
        let cases: &[(&str, &str, &str)] = &[
            ("torn", r#"{"epoch":1,"applied":0,"sto"#, "no checksum"),
            ("empty", "", "too short"),
            (
                "old format",
                r#"{"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0}],"recent_trades":[]}"#,
                "old catalog",
            ),
            (
                "old format without recent_trades",
                r#"{"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0}]}"#,
                "old catalog",
            ),
            (
                "negative quantity",
                r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[{"name":"A","price":1.0,"quantity":-1,"volume":0}]}"#,
                "not a valid catalog",
            ),
            (
                "unknown key",
                r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[],"extra":1}"#,
                "not a valid catalog",
            ),
            (
                "applied below -1",
                r#"{"epoch":1,"applied":-2,"applied_epoch":1,"stocks":[]}"#,
                "below -1",
            ),
            (
                "applied_epoch above epoch",
                r#"{"epoch":1,"applied":0,"applied_epoch":2,"stocks":[]}"#,
                "above epoch",
            ),
            (
                "duplicate stock",
                r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0},{"name":"A","price":1.0,"quantity":1,"volume":0}]}"#,
                "duplicate",
            ),
            (
                "sealed, checksum changed",
                "{\"epoch\":1,\"applied\":0,\"applied_epoch\":1,\"stocks\":[]},00000000\n",
                "does not match",
            ),
        ];
        for (name, text, part) in cases {
            let dir = TempDir::new();
            let path = dir.file();
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            let Found::Damaged(why) = load(&path, &path.with_extension("journal"), &[]).unwrap()
            else {
                panic!("{name}: not found damaged");
            };
            assert!(why.contains(part), "{name}: {why}");
            assert!(
                why.contains(&format!("{} line 1", path.display())),
                "{name}: {why}"
            );
            assert!(!why.contains('\n'), "{name}: one line: {why}");
            let catalog = Catalog::open(&path, &stocks()).unwrap();
            assert_eq!(position(&catalog), (0, -1, 0), "{name}");
            assert_eq!(holdings(&catalog), [(100, 0), (3, 0)], "{name}");
            assert_eq!(sealed_file(&path).applied, -1, "{name}");
            assert_eq!(
                fs::read_to_string(damaged_path(&path)).unwrap(),
                *text,
                "{name}: kept aside"
            );
        }
    }

    /// What cannot be rebuilt around refuses to start: a file that cannot be read.
    #[test]
    fn an_unreadable_file_refuses_to_start() {
        let dir = TempDir::new();
        let path = dir.file();
        fs::create_dir_all(&path).unwrap();
        match Catalog::open(&path, &stocks()) {
            Err(Error::State(msg)) => {
                assert!(msg.contains("cannot read"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("accepted: {other:?}"),
        }
        assert!(path.is_dir(), "left as it was");
        assert!(!damaged_path(&path).exists());
    }

    #[test]
    fn a_leftover_temp_file_is_removed_and_the_file_kept() {
        let valid = r#"{"epoch":1,"applied":0,"applied_epoch":1,"stocks":[{"name":"A","price":1.0,"quantity":1,"volume":0}]}"#;
        let dir = TempDir::new();
        let path = dir.file();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = Vec::new();
        checksum::seal(0, valid.as_bytes(), &mut bytes);
        fs::write(&path, &bytes).unwrap();
        fs::write(temp_path(&path), b"{\"epoch\":2,\"appl").unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert!(!temp_path(&path).exists());
        assert_eq!(position(&catalog), (1, 0, 1));
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "sealed already: not rewritten"
        );
    }

    /// Files of the previous format (plain JSON, no checksum) are read, and sealed from then on.
    #[test]
    fn previous_format_files_load_and_are_upgraded() {
        let dir = TempDir::new();
        let path = dir.file();
        let journal = path.with_extension("journal");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let state = |applied: i64, a: u64| {
            format!(
                r#"{{"epoch":1,"applied":{applied},"applied_epoch":1,"stocks":[{{"name":"A","price":1.5,"quantity":{a},"volume":{}}},{{"name":"B","price":2.0,"quantity":3,"volume":0}}]}}"#,
                100 - a
            )
        };
        fs::write(&path, state(0, 90)).unwrap();
        fs::write(&journal, format!("{}\n{}\n", state(1, 85), state(2, 84))).unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 2, 1));
        assert_eq!(holdings(&catalog), [(84, 16), (3, 0)]);
        assert_eq!(
            sealed_file(&path).applied,
            2,
            "folded in and sealed at start"
        );
        catalog
            .apply(&batch(1, vec![entry(3, "A", Buy, 4)]))
            .unwrap();
        let line = fs::read(&journal).unwrap();
        let (payload, _) = checksum::unseal(0, line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            parse_file(payload).unwrap().applied,
            3,
            "the next write is sealed"
        );
        drop(catalog);
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 3, 1));
        assert_eq!(holdings(&catalog), [(80, 20), (3, 0)]);
        assert_eq!(sealed_file(&path).applied, 3);
        assert!(!damaged_path(&path).exists() && !damaged_path(&journal).exists());

        // A previous-format catalog.json alone (no journal) is sealed at start too.
        let dir = TempDir::new();
        let path = dir.file();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, state(0, 90)).unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert_eq!(position(&catalog), (1, 0, 1));
        assert_eq!(sealed_file(&path).applied, 0);
    }

    /// Replaces the only `from` in line `line` (from 1) of `path` by `to`: the same length,
    /// still a valid state, as rot or a stray edit leaves it.
    fn change_digit(path: &Path, line: usize, from: &str, to: &str) {
        let text = fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        let target = &mut lines[line - 1];
        assert_eq!(target.matches(from).count(), 1, "{from} in {target}");
        *target = target.replacen(from, to, 1);
        fs::write(path, lines.concat()).unwrap();
    }

    /// `path` with `.damaged` appended, where a damaged file is moved.
    fn damaged(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}.damaged", path.display()))
    }

    /// After damage: the stocks of the config, nothing applied, the damaged files kept aside;
    /// the leader's re-sends from order 0 bring it back to the log's numbers.
    fn assert_rebuilt(dir: &TempDir, catalog: &Catalog, kept: &Path, changed: &str) {
        assert_eq!(holdings(catalog), [(100, 0), (3, 0)]);
        assert_eq!(position(catalog), (0, -1, 0));
        assert!(
            fs::read_to_string(damaged(kept)).unwrap().contains(changed),
            "the damaged file is kept aside"
        );
        let answer = catalog
            .apply(&batch(2, vec![entry(5, "A", Buy, 1)]))
            .unwrap();
        assert_eq!(
            answer.state.applied, -1,
            "a gap: the leader re-sends from 0"
        );
        catalog
            .apply(&batch(
                2,
                vec![
                    entry(0, "A", Buy, 10),
                    entry(1, "A", Buy, 5),
                    entry(2, "B", Sell, 2),
                ],
            ))
            .unwrap();
        assert_eq!(holdings(catalog), [(85, 15), (5, 2)]);
        assert_eq!(position(catalog), (2, 2, 2));
        assert_eq!(saved(dir).applied, 2);
    }

    /// The files at `path` are found damaged at line `line`, for the reason `part`.
    fn assert_damaged_at(dir: &TempDir, path: &Path, line: usize, part: &str) {
        let found = load(&dir.file(), &dir.file().with_extension("journal"), &[]).unwrap();
        let Found::Damaged(why) = found else {
            panic!("not found damaged: {found:?}");
        };
        assert!(
            why.starts_with(&format!("{} line {line}: ", path.display())) && why.contains(part),
            "{why}"
        );
    }

    /// Three orders, one batch each: A 100 → 90 → 85, B 3 → 5.
    fn three_orders(dir: &TempDir) {
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog
            .apply(&batch(1, vec![entry(0, "A", Buy, 10)]))
            .unwrap();
        catalog
            .apply(&batch(1, vec![entry(1, "A", Buy, 5)]))
            .unwrap();
        catalog
            .apply(&batch(1, vec![entry(2, "B", Sell, 2)]))
            .unwrap();
        assert_eq!(holdings(&catalog), [(85, 15), (5, 2)]);
    }

    #[test]
    fn a_changed_digit_in_catalog_json_rebuilds_from_the_config() {
        let dir = TempDir::new();
        three_orders(&dir);
        // A restart folds the journal into catalog.json.
        drop(Catalog::open(&dir.file(), &stocks()).unwrap());
        change_digit(&dir.file(), 1, r#""quantity":85"#, r#""quantity":95"#);
        assert_damaged_at(&dir, &dir.file(), 1, "does not match");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_rebuilt(&dir, &catalog, &dir.file(), r#""quantity":95"#);
    }

    #[test]
    fn a_changed_digit_in_a_middle_journal_line_rebuilds_from_the_config() {
        let dir = TempDir::new();
        three_orders(&dir);
        let journal = dir.file().with_extension("journal");
        change_digit(&journal, 2, r#""quantity":85"#, r#""quantity":86"#);
        assert_damaged_at(&dir, &journal, 2, "does not match");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_rebuilt(&dir, &catalog, &journal, r#""quantity":86"#);
    }

    #[test]
    fn a_changed_digit_in_the_last_journal_line_rebuilds_from_the_config() {
        let dir = TempDir::new();
        three_orders(&dir);
        let journal = dir.file().with_extension("journal");
        change_digit(&journal, 3, r#""quantity":5,"#, r#""quantity":9,"#);
        assert_damaged_at(&dir, &journal, 3, "does not match");
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_rebuilt(&dir, &catalog, &journal, r#""quantity":9,"#);
    }

    /// Two leaders at once: the new one (epoch 2) applies while the old one (epoch 1) keeps
    /// re-sending its own, different, entries. Every old batch is refused and changes nothing.
    #[test]
    fn racing_leaders_only_the_higher_epoch_applies() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog.hello(&hello(2)).unwrap();
        std::thread::scope(|s| {
            let old = s.spawn(|| {
                for i in 0..50 {
                    let err = catalog
                        .apply(&batch(1, vec![entry(i, "A", Buy, 1)]))
                        .unwrap_err();
                    assert_eq!(err.status(), 409);
                }
            });
            for i in 0..50 {
                catalog
                    .apply(&batch(2, vec![entry(i, "A", Sell, 2)]))
                    .unwrap();
            }
            old.join().unwrap();
        });
        assert_eq!(position(&catalog), (2, 49, 2));
        assert_eq!(holdings(&catalog), [(200, 100), (3, 0)]);
    }
}

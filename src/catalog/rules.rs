//! The catalog's rules on a state in memory, with no file, lock or socket: what a leader's
//! hello and a batch of committed orders do to a [`CatalogState`]. The store
//! ([`super::store`]) runs them under its lock and persists what they return; the tests below
//! run them as tables, without a temporary directory.
//!
//! **Fencing.** `epoch` is the highest leader epoch the catalog has seen. A hello from a lower
//! epoch is refused (409, naming both epochs); from a higher one the fence rises to it. A batch
//! from a lower epoch is refused (409) and changes nothing; from a higher one it raises the
//! fence (kept with the batch). So an old leader woken from a freeze cannot apply anything once
//! a newer one has said hello.
//!
//! **In order, exactly once.** `applied` is the last order number applied (-1 before the first)
//! and `applied_epoch` the epoch of the leader that applied it. A batch's entries must be
//! consecutive numbers, each at most `i64::MAX`, none of an epoch above the batch's and none
//! that no leader could have numbered (else 400, checked by [`Checked::new`] before the state
//! is looked at). Entries at or below `applied` are skipped; if the first remaining entry is
//! past `applied + 1` (a gap), nothing is applied and `applied` says where the leader resumes.
//! Each entry is applied in order: a sell adds its quantity, a buy subtracts it, both add it to
//! the volume.
//!
//! **Whole batches.** An unknown stock, a buy below zero or an overflow means the log and the
//! catalog disagree (the leader decided 404/409 before numbering): the whole batch is refused
//! with 422 naming the entry, and nothing of it (not even a fence raise) is kept, so no read
//! ever shows a partial or negative state.
//!
//! Caveats:
//! - Entries at or below `applied` are skipped without being compared with what was applied:
//!   the rules trust that a committed order is the same at its number in every leader's log
//!   (which the order replicas guarantee), so a re-sent batch from a new leader is a no-op.
//! - The names to invalidate after a batch are every stock of the batch the catalog now holds,
//!   skipped re-sends included: the first attempt may have died before it invalidated.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use log::{debug, info};

use crate::api::{ApplyBatch, CatalogState, LeaderHello, LogEntry, OrderType, StockRecord};
use crate::error::{Error, Result};

/// Stock name → position in the catalog's stock list, fixed once the catalog is open (the
/// stocks never change, only their numbers): lookups use it without the state's lock.
#[derive(Debug, Default)]
pub(crate) struct Index(HashMap<String, usize>);

impl Index {
    /// The index of `stocks`, or what is wrong with them (a name twice).
    pub(crate) fn of(stocks: &[StockRecord]) -> std::result::Result<Index, String> {
        let mut index = HashMap::new();
        for (i, stock) in stocks.iter().enumerate() {
            if index.insert(stock.name.clone(), i).is_some() {
                return Err(format!("duplicate stock {:?}", stock.name));
            }
        }
        Ok(Index(index))
    }

    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        self.0.get(name).copied()
    }
}

/// What a hello from `hello.leader` does to `state`: refused below the fence (409), else the
/// state with the fence raised to the hello's epoch, `None` when it is there already.
pub(crate) fn hello(state: &CatalogState, hello: &LeaderHello) -> Result<Option<CatalogState>> {
    if hello.epoch < state.epoch {
        info!(
            "refused the hello of leader {} of epoch {}: the catalog has seen epoch {}",
            hello.leader, hello.epoch, state.epoch
        );
        return Err(fenced(
            "leader hello",
            hello.epoch,
            hello.leader,
            state.epoch,
        ));
    }
    Ok((hello.epoch > state.epoch).then(|| CatalogState {
        epoch: hello.epoch,
        ..state.clone()
    }))
}

/// A batch that passed the checks that need no state (400): its entries are consecutive
/// numbers that fit the catalog's `i64`, none of an epoch above the batch's, each one a leader
/// could have numbered.
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    batch: &'a ApplyBatch,
    /// The entries' numbers as the catalog counts them (`applied` is -1 before the first).
    numbers: Vec<i64>,
}

impl<'a> Checked<'a> {
    pub(crate) fn new(batch: &'a ApplyBatch) -> Result<Checked<'a>> {
        let mut numbers = Vec::with_capacity(batch.entries.len());
        let gap = batch.first_gap();
        for (i, e) in batch.entries.iter().enumerate() {
            let n = i64::try_from(e.number).map_err(|_| {
                Error::BadRequest(format!("order number {} is too large", e.number))
            })?;
            if gap == Some(i) {
                return Err(Error::BadRequest(format!(
                    "apply entries must be consecutive: {n} follows {}",
                    numbers.last().copied().unwrap_or_default()
                )));
            }
            if e.epoch > batch.epoch {
                return Err(Error::BadRequest(format!(
                    "entry {n} has epoch {}, above the batch's epoch {}",
                    e.epoch, batch.epoch
                )));
            }
            e.validate()?;
            numbers.push(n);
        }
        Ok(Checked { batch, numbers })
    }

    pub(crate) fn batch(&self) -> &ApplyBatch {
        self.batch
    }
}

/// What a batch does to a state.
#[derive(Debug)]
pub(crate) struct Step {
    /// The state after the batch; equal to the state before when it changes nothing (a
    /// re-send or a gap from the fence's own epoch), which then needs no write.
    pub(crate) next: CatalogState,
    /// Distinct names of the batch's entries the catalog holds after it (applied now or
    /// before): the stocks every front-end must drop.
    pub(crate) names: Vec<String>,
    /// The order numbers this batch applies; `None` for a re-send, a gap or an empty batch.
    pub(crate) applies: Option<RangeInclusive<i64>>,
}

/// What `batch` does to `state` (the rules of the module doc). `Err`: the batch is fenced
/// (409) or cannot apply whole (422); nothing of it is to be kept.
pub(crate) fn apply(index: &Index, state: &CatalogState, checked: &Checked) -> Result<Step> {
    let (batch, numbers) = (checked.batch, &checked.numbers);
    if batch.epoch < state.epoch {
        debug!(
            "refused an apply from leader {} of epoch {} (fence {})",
            batch.leader, batch.epoch, state.epoch
        );
        return Err(fenced("apply", batch.epoch, batch.leader, state.epoch));
    }
    let mut next = state.clone();
    next.epoch = batch.epoch;
    // Skip what is applied already; the rest starts at `applied + 1` or is a gap.
    let skip = numbers.iter().take_while(|n| **n <= state.applied).count();
    let fresh = &batch.entries[skip..];
    let gap = numbers.get(skip).is_some_and(|n| *n > state.applied + 1);
    let mut applies = None;
    if gap {
        debug!(
            "apply from leader {} of epoch {}: entries resume at {}, past {}; nothing applied",
            batch.leader,
            batch.epoch,
            numbers[skip],
            state.applied + 1
        );
    } else if let Some(last) = numbers.last().filter(|_| !fresh.is_empty()) {
        for entry in fresh {
            if let Err(e) = apply_entry(index, &mut next.stocks, entry) {
                log::error!("refused a batch from leader {}: {e}", batch.leader);
                return Err(e);
            }
        }
        next.applied = *last;
        next.applied_epoch = batch.epoch;
        applies = Some(numbers[skip]..=*last);
    }
    let mut names: Vec<String> = Vec::new();
    for (entry, n) in batch.entries.iter().zip(numbers) {
        if *n <= next.applied && !names.contains(&entry.name) {
            names.push(entry.name.clone());
        }
    }
    Ok(Step {
        next,
        names,
        applies,
    })
}

/// One committed order applied to `stocks`; an error (422) names the entry.
fn apply_entry(index: &Index, stocks: &mut [StockRecord], entry: &LogEntry) -> Result<()> {
    let refuse = |why: String| {
        Error::Unprocessable(format!(
            "order {} ({} {} {}, epoch {}) cannot be applied: {why}; the log and the \
             catalog disagree, nothing of this batch was applied",
            entry.number,
            entry.kind.as_str(),
            entry.quantity,
            entry.name,
            entry.epoch
        ))
    };
    let stock = index
        .get(&entry.name)
        .and_then(|i| stocks.get_mut(i))
        .ok_or_else(|| refuse("no such stock".into()))?;
    let quantity = match entry.kind {
        OrderType::Buy => stock.quantity.checked_sub(entry.quantity).ok_or_else(|| {
            refuse(format!(
                "only {} left, the quantity would go negative",
                stock.quantity
            ))
        })?,
        OrderType::Sell => stock
            .quantity
            .checked_add(entry.quantity)
            .ok_or_else(|| refuse("the quantity would overflow".into()))?,
    };
    let volume = stock
        .volume
        .checked_add(entry.quantity)
        .ok_or_else(|| refuse("the volume would overflow".into()))?;
    stock.quantity = quantity;
    stock.volume = volume;
    Ok(())
}

fn fenced(what: &str, epoch: u64, leader: u32, fence: u64) -> Error {
    Error::Conflict(format!(
        "{what} from leader {leader} of epoch {epoch} refused: the catalog has seen epoch \
         {fence}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderType::{Buy, Sell};
    use crate::catalog::test_support::{batch, entry, fresh_records, hello as hi};

    /// One call on the state.
    enum Call {
        Hello(u64),
        Apply(ApplyBatch),
    }

    /// What a call must do: its error's status and a part of its message, or the state after
    /// it.
    enum Want {
        Refused(u16, &'static [&'static str]),
        State {
            /// (epoch, applied, applied_epoch)
            position: (u64, i64, u64),
            /// (quantity, volume) of A and B.
            holdings: [(u64, u64); 2],
            /// The names to invalidate (an apply), none for a hello.
            names: &'static [&'static str],
            /// Whether the state changed, so that the store must write it.
            changed: bool,
        },
    }

    /// Runs `script` in order on one state that starts fresh (A 100, B 3, nothing applied). A
    /// refused call must leave the state as it was: the rules return nothing to keep.
    fn run(script: Vec<(&str, Call, Want)>) {
        let mut state = CatalogState {
            epoch: 0,
            applied: -1,
            applied_epoch: 0,
            stocks: fresh_records(),
        };
        let index = Index::of(&state.stocks).unwrap();
        for (what, call, want) in script {
            let result = match &call {
                Call::Hello(epoch) => hello(&state, &hi(*epoch)).map(|next| {
                    let changed = next.is_some();
                    (next.unwrap_or_else(|| state.clone()), Vec::new(), changed)
                }),
                Call::Apply(b) => Checked::new(b)
                    .and_then(|checked| apply(&index, &state, &checked))
                    .map(|step| {
                        let changed = step.next != state;
                        (step.next, step.names, changed)
                    }),
            };
            match (result, want) {
                (Err(err), Want::Refused(status, parts)) => {
                    assert_eq!(err.status(), status, "{what}: {err}");
                    for part in parts {
                        assert!(err.message().contains(part), "{what}: {err} lacks {part}");
                    }
                }
                (
                    Ok((next, names, changed)),
                    Want::State {
                        position,
                        holdings,
                        names: want_names,
                        changed: want_changed,
                    },
                ) => {
                    let got: Vec<(u64, u64)> =
                        next.stocks.iter().map(|s| (s.quantity, s.volume)).collect();
                    assert_eq!(
                        (next.epoch, next.applied, next.applied_epoch),
                        position,
                        "{what}"
                    );
                    assert_eq!(got, holdings, "{what}");
                    assert_eq!(names, want_names, "{what}");
                    assert_eq!(changed, want_changed, "{what}: changed");
                    state = next;
                }
                (Err(err), Want::State { .. }) => panic!("{what}: refused: {err}"),
                (Ok((next, ..)), Want::Refused(..)) => panic!("{what}: accepted: {next:?}"),
            }
        }
    }

    fn state(
        position: (u64, i64, u64),
        holdings: [(u64, u64); 2],
        names: &'static [&'static str],
        changed: bool,
    ) -> Want {
        Want::State {
            position,
            holdings,
            names,
            changed,
        }
    }

    #[test]
    fn lower_epochs_are_fenced_and_change_nothing() {
        use Call::{Apply, Hello};
        let fence = |status| Want::Refused(status, &["epoch 1", "epoch 2"]);
        run(vec![
            (
                "hello 2",
                Hello(2),
                state((2, -1, 0), [(100, 0), (3, 0)], &[], true),
            ),
            (
                "apply 0 in epoch 2",
                Apply(batch(2, vec![entry(0, "A", Buy, 10)])),
                state((2, 0, 2), [(90, 10), (3, 0)], &["A"], true),
            ),
            // The old leader of epoch 1, woken from a freeze, re-sends and says hello.
            (
                "the old leader re-sends",
                Apply(batch(
                    1,
                    vec![entry(0, "A", Buy, 10), entry(1, "A", Buy, 5)],
                )),
                fence(409),
            ),
            ("the old leader says hello", Hello(1), fence(409)),
            (
                "the old leader sends a new entry",
                Apply(batch(1, vec![entry(1, "A", Buy, 5)])),
                fence(409),
            ),
            // An apply from a higher epoch raises the fence by itself.
            (
                "apply 1 in epoch 3",
                Apply(batch(3, vec![entry(1, "B", Sell, 1)])),
                state((3, 1, 3), [(90, 10), (4, 1)], &["B"], true),
            ),
            (
                "hello 2 after 3",
                Hello(2),
                Want::Refused(409, &["epoch 2", "epoch 3"]),
            ),
            // The same epoch says hello again: fine, and nothing to write.
            (
                "hello 3 again",
                Hello(3),
                state((3, 1, 3), [(90, 10), (4, 1)], &[], false),
            ),
        ]);
    }

    #[test]
    fn entries_apply_in_order_exactly_once() {
        use Call::Apply;
        let first = || batch(1, vec![entry(0, "A", Buy, 10), entry(1, "A", Sell, 4)]);
        let mut higher = entry(3, "A", Buy, 1);
        higher.epoch = 2;
        let bad = |parts| Want::Refused(400, parts);
        run(vec![
            (
                "first",
                Apply(first()),
                state((1, 1, 1), [(94, 14), (3, 0)], &["A"], true),
            ),
            // Re-sent whole: nothing changes (no write either), but the stocks are invalidated
            // again, since the first attempt may have died before it did.
            (
                "re-sent whole",
                Apply(first()),
                state((1, 1, 1), [(94, 14), (3, 0)], &["A"], false),
            ),
            (
                "overlapping: only the new entry applies",
                Apply(batch(
                    1,
                    vec![entry(1, "A", Sell, 4), entry(2, "B", Buy, 3)],
                )),
                state((1, 2, 1), [(94, 14), (0, 3)], &["A", "B"], true),
            ),
            (
                "a gap: nothing applies, applied says where to resume",
                Apply(batch(1, vec![entry(4, "A", Buy, 1), entry(5, "A", Buy, 1)])),
                state((1, 2, 1), [(94, 14), (0, 3)], &[], false),
            ),
            (
                "not consecutive",
                Apply(batch(1, vec![entry(3, "A", Buy, 1), entry(5, "A", Buy, 1)])),
                bad(&["consecutive"]),
            ),
            (
                "a number above i64::MAX",
                Apply(batch(1, vec![entry(u64::MAX, "A", Buy, 1)])),
                bad(&["too large"]),
            ),
            (
                "an entry of an epoch above the batch's",
                Apply(ApplyBatch {
                    epoch: 1,
                    leader: 3,
                    entries: vec![higher],
                }),
                bad(&["above the batch's epoch"]),
            ),
            (
                "resuming at applied + 1",
                Apply(batch(1, vec![entry(3, "A", Buy, 1), entry(4, "A", Buy, 1)])),
                state((1, 4, 1), [(92, 16), (0, 3)], &["A"], true),
            ),
        ]);
    }

    #[test]
    fn a_batch_that_cannot_apply_is_refused_whole() {
        let cases: &[(&str, Vec<LogEntry>, &'static [&'static str])] = &[
            (
                "buy below zero",
                vec![entry(0, "A", Sell, 1), entry(1, "B", Buy, 4)],
                &["order 1 (buy 4 B"],
            ),
            (
                "unknown stock",
                vec![entry(0, "A", Buy, 1), entry(1, "Z", Sell, 1)],
                &["no such stock"],
            ),
            (
                "quantity overflow",
                vec![entry(0, "A", Buy, 1), entry(1, "A", Sell, u64::MAX)],
                &["overflow"],
            ),
        ];
        for (name, entries, parts) in cases {
            // Not even the fence moves (the batch is of epoch 5): the next call still sees the
            // fresh state.
            run(vec![
                (
                    name,
                    Call::Apply(batch(5, entries.clone())),
                    Want::Refused(422, parts),
                ),
                (
                    name,
                    Call::Hello(0),
                    state((0, -1, 0), [(100, 0), (3, 0)], &[], false),
                ),
            ]);
        }
    }
}

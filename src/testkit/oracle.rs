//! The oracle of docs/spec.md §5 on a bazaar of real processes: the invariants read off the
//! replicas' files, the catalog and the samples taken during a run, one [`Invariant`] verdict
//! each. [`Cluster::check_invariants`] checks what the files and the catalog show once quiet;
//! [`Cluster::check_all`] adds every catalog sample; [`two_leaders_in_one_epoch`] judges the
//! sampled `/health` answers.
//!
//! Its sibling is the core's simulator oracle, `Net::check` in `src/order/sim.rs`, which checks
//! the same invariants on simulated replicas without I/O; this one sees only what a client, a
//! file or `/health` shows.
//!
//! Caveats: it judges what it is given: orders acknowledged to a client it was not told about
//! are checked only for numbering and agreement, and the samples are moments, not every state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;

use crate::api::{LogEntry, Order, OrderType, StockRecord};
use crate::error::Result;
use crate::testkit::cluster::{Cluster, CALL_TIMEOUT, QUIET_TIMEOUT};
use crate::testkit::config::{INITIAL_QUANTITY, STOCKS};

/// One invariant of docs/spec.md §5 and whether it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invariant {
    pub name: &'static str,
    /// `None` when it held; otherwise what broke it.
    pub violation: Option<String>,
}

/// The checks on a running cluster.
impl Cluster {
    /// Checks the invariants of docs/spec.md §5 that can be read off the files and the catalog once
    /// the load has stopped, given every order the clients were told about. Returns the log
    /// (empty when the files never became identical) and one verdict per invariant.
    pub fn check_invariants(&self, acknowledged: &[Order]) -> (Vec<LogEntry>, Vec<Invariant>) {
        let mut verdicts = Vec::new();
        let log = match self.wait_logs_identical(QUIET_TIMEOUT) {
            Ok(log) => {
                verdicts.push(Invariant {
                    name: "replica files byte-identical",
                    violation: None,
                });
                log
            }
            Err(e) => {
                verdicts.push(Invariant {
                    name: "replica files byte-identical",
                    violation: Some(e.to_string()),
                });
                let first = self.replica_ids().first().copied().unwrap_or(1);
                parse_log(&fs::read(self.log_path(first)).unwrap_or_default()).unwrap_or_default()
            }
        };
        verdicts.push(Invariant {
            name: "acknowledged orders stored unchanged",
            violation: acknowledged_stored(&log, acknowledged),
        });
        verdicts.push(Invariant {
            name: "numbers 0..N-1, one entry per request",
            violation: numbering(&log),
        });
        let quantities = match self.stocks() {
            Ok(stocks) => quantities(&log, &stocks),
            Err(e) => Some(format!("cannot read the catalog: {e}")),
        };
        verdicts.push(Invariant {
            name: "quantity = 100 - buys + sells for every stock",
            violation: quantities,
        });
        let whole = match self.catalog_view() {
            Ok(view) => catalog_prefix_violation(&initial_view(), &log, &[view], true),
            Err(e) => Some(format!("cannot read the catalog: {e}")),
        };
        verdicts.push(Invariant {
            name: "catalog (quantity and volume) = initial + the whole log",
            violation: whole,
        });
        let files: Vec<(u32, Vec<LogEntry>)> = self
            .replica_ids()
            .into_iter()
            .map(|id| {
                let bytes = fs::read(self.log_path(id)).unwrap_or_default();
                (id, parse_log(&bytes).unwrap_or_default())
            })
            .collect();
        verdicts.push(Invariant {
            name: "same number and epoch, same entry, in every file",
            violation: same_epoch_conflict(&files),
        });
        (log, verdicts)
    }

    /// The catalog as a [`CatalogView`] (signed, so that a negative quantity shows).
    pub(crate) fn catalog_view(&self) -> Result<CatalogView> {
        let list: Vec<SampledStock> = self.client.get(&self.catalog, "/stocks", CALL_TIMEOUT)?;
        Ok(list
            .into_iter()
            .map(|s| (s.name, (s.quantity, s.volume)))
            .collect())
    }

    /// [`Cluster::check_invariants`], plus invariant 4 at every moment sampled: each catalog
    /// sample equals the initial stocks plus a prefix of the final log.
    pub fn check_all(
        &self,
        acknowledged: &[Order],
        catalog_samples: &[CatalogView],
    ) -> (Vec<LogEntry>, Vec<Invariant>) {
        let (log, mut verdicts) = self.check_invariants(acknowledged);
        verdicts.push(Invariant {
            name: "every catalog sample = initial + a prefix of the log",
            violation: catalog_prefix_violation(&initial_view(), &log, catalog_samples, false),
        });
        (log, verdicts)
    }
}

/// A stock in `GET /stocks`, read with signed numbers so that a negative quantity is seen.
#[derive(serde::Deserialize)]
pub(crate) struct SampledStock {
    pub(crate) name: String,
    pub(crate) quantity: i64,
    pub(crate) volume: i64,
}

/// The catalog as the checks see it: stock → (quantity, volume).
pub type CatalogView = BTreeMap<String, (i64, i64)>;

/// The initial catalog of a test bazaar: every stock at quantity 100, volume 0.
pub(crate) fn initial_view() -> CatalogView {
    STOCKS
        .iter()
        .map(|s| (s.to_string(), (INITIAL_QUANTITY, 0)))
        .collect()
}

/// docs/spec.md §5.4 at every sampled moment: each sample must equal `initial` plus some prefix of
/// `log` (quantity − buys + sells, volume + traded quantities), never negative; with
/// `whole_at_end`, the last sample must be the whole log. Returns the first violation.
pub(crate) fn catalog_prefix_violation(
    initial: &CatalogView,
    log: &[LogEntry],
    samples: &[CatalogView],
    whole_at_end: bool,
) -> Option<String> {
    let names: Vec<&String> = initial.keys().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut state: Vec<(i64, i64)> = initial.values().copied().collect();
    let mut prefixes: HashMap<Vec<(i64, i64)>, usize> = HashMap::new();
    prefixes.entry(state.clone()).or_insert(0);
    for (k, entry) in log.iter().enumerate() {
        let Some(&i) = index.get(entry.name.as_str()) else {
            return Some(format!(
                "log entry {} trades unknown stock {}",
                k, entry.name
            ));
        };
        let q = entry.quantity as i64;
        state[i].0 += match entry.kind {
            OrderType::Buy => -q,
            OrderType::Sell => q,
        };
        state[i].1 += q;
        prefixes.entry(state.clone()).or_insert(k + 1);
    }
    let whole = state;
    let describe = |sample: &CatalogView| -> String {
        names
            .iter()
            .zip(&whole)
            .filter_map(|(name, want)| {
                let got = sample.get(*name).copied();
                (got != Some(*want)).then(|| {
                    format!("{name} (quantity, volume) {got:?} where the whole log gives {want:?}")
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (i, sample) in samples.iter().enumerate() {
        if sample.keys().ne(initial.keys()) {
            return Some(format!(
                "catalog sample {i} lists stocks {:?}",
                sample.keys().collect::<Vec<_>>()
            ));
        }
        if let Some((name, (q, _))) = sample.iter().find(|(_, (q, _))| *q < 0) {
            return Some(format!("catalog sample {i}: {name} has quantity {q} < 0"));
        }
        let values: Vec<(i64, i64)> = sample.values().copied().collect();
        if !prefixes.contains_key(&values) {
            return Some(format!(
                "catalog sample {i} of {} is initial + no prefix of the {}-entry log; {}",
                samples.len(),
                log.len(),
                closest_prefix(initial, log, &values)
            ));
        }
    }
    if whole_at_end {
        if let Some(last) = samples.last() {
            if last.values().copied().ne(whole.iter().copied()) {
                return Some(format!(
                    "the final catalog is not initial + the whole log: {}",
                    describe(last)
                ));
            }
        }
    }
    None
}

/// Which prefix of `log` comes closest to `sample` (fewest shares apart), and how the two
/// differ: the diagnosis of a sample that matches none.
fn closest_prefix(initial: &CatalogView, log: &[LogEntry], sample: &[(i64, i64)]) -> String {
    let names: Vec<&String> = initial.keys().collect();
    let mut state: Vec<(i64, i64)> = initial.values().copied().collect();
    let distance = |state: &[(i64, i64)]| -> i64 {
        state
            .iter()
            .zip(sample)
            .map(|(a, b)| (a.0 - b.0).abs() + (a.1 - b.1).abs())
            .sum()
    };
    let mut best = (distance(&state), 0, state.clone());
    for (k, entry) in log.iter().enumerate() {
        if let Some(i) = names.iter().position(|n| **n == entry.name) {
            let q = entry.quantity as i64;
            state[i].0 += match entry.kind {
                OrderType::Buy => -q,
                OrderType::Sell => q,
            };
            state[i].1 += q;
        }
        let d = distance(&state);
        if d < best.0 {
            best = (d, k + 1, state.clone());
        }
    }
    let diff: Vec<String> = names
        .iter()
        .zip(best.2.iter().zip(sample))
        .filter(|(_, (want, got))| want != got)
        .map(|(name, (want, got))| format!("{name} (quantity, volume) {got:?}, the log {want:?}"))
        .collect();
    format!(
        "closest: the first {} entries, {} shares apart: {}",
        best.1,
        best.0,
        diff.join("; ")
    )
}

/// docs/spec.md §5.8 read off the files: two replica files that hold the same number in the same
/// epoch hold the same entry there (two leaders of one epoch would number differently).
pub(crate) fn same_epoch_conflict(files: &[(u32, Vec<LogEntry>)]) -> Option<String> {
    for (a, (ida, la)) in files.iter().enumerate() {
        for (idb, lb) in &files[a + 1..] {
            for (x, y) in la.iter().zip(lb) {
                if x.epoch == y.epoch && x != y {
                    return Some(format!(
                        "order {} in epoch {}: replica {ida} holds {x:?}, replica {idb} holds {y:?}",
                        x.number, x.epoch
                    ));
                }
            }
        }
    }
    None
}

/// Replicas that said they lead, as sampled: id → the epochs they led in.
pub type LeaderSamples = BTreeMap<u32, HashSet<u64>>;

/// docs/spec.md §5.8 on samples of `/health`: no epoch led by two replicas.
pub fn two_leaders_in_one_epoch(samples: &LeaderSamples) -> Option<String> {
    let mut by_epoch: BTreeMap<u64, u32> = BTreeMap::new();
    for (&id, epochs) in samples {
        for &epoch in epochs {
            if let Some(other) = by_epoch.insert(epoch, id) {
                if other != id {
                    return Some(format!("replicas {other} and {id} both led epoch {epoch}"));
                }
            }
        }
    }
    None
}

fn acknowledged_stored(log: &[LogEntry], acknowledged: &[Order]) -> Option<String> {
    acknowledged
        .iter()
        .find_map(|order| match log.get(order.number as usize) {
            None => Some(format!("acknowledged order {} is missing", order.number)),
            Some(entry) if &Order::from(entry) != order => Some(format!(
                "order {} was acknowledged as {order:?} but stored as {entry:?}",
                order.number
            )),
            Some(_) => None,
        })
}

fn numbering(log: &[LogEntry]) -> Option<String> {
    let mut ids = HashSet::new();
    for (i, entry) in log.iter().enumerate() {
        if entry.number != i as u64 {
            return Some(format!("line {i} holds number {}", entry.number));
        }
        if !ids.insert(&entry.request_id) {
            return Some(format!("request id {} logged twice", entry.request_id));
        }
    }
    None
}

/// docs/spec.md §5.4 on the files: each stock's quantity in the catalog is 100 − buys + sells of the
/// log. (Not checked: that every prefix of the log stays non-negative. The leader logs each
/// batch in the order the catalog traded it, but an order retried after a fail-over is logged
/// where the new leader takes it, which may be after trades the catalog applied later. The
/// catalog's own quantity never goes negative; its type cannot.)
fn quantities(log: &[LogEntry], stocks: &BTreeMap<String, StockRecord>) -> Option<String> {
    for (name, stock) in stocks {
        let expected =
            log.iter()
                .filter(|e| &e.name == name)
                .fold(INITIAL_QUANTITY, |q, e| match e.kind {
                    OrderType::Buy => q - e.quantity as i64,
                    OrderType::Sell => q + e.quantity as i64,
                });
        if stock.quantity as i64 != expected {
            return Some(format!(
                "{name}: catalog has {}, the log says {expected}",
                stock.quantity
            ));
        }
    }
    None
}

/// Parses the bytes of an order log file strictly, with the replica's own parser
/// (`crate::order::logfile::entries`).
pub fn parse_log(bytes: &[u8]) -> Result<Vec<LogEntry>> {
    crate::order::logfile::entries(bytes, Path::new("order log"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderType::{Buy, Sell};

    fn entry(number: u64, name: &str, kind: OrderType, quantity: u64, rid: &str) -> LogEntry {
        LogEntry {
            number,
            name: name.into(),
            kind,
            quantity,
            epoch: 1,
            request_id: rid.into(),
        }
    }

    fn view(pairs: &[(&str, i64, i64)]) -> CatalogView {
        pairs
            .iter()
            .map(|(n, q, v)| (n.to_string(), (*q, *v)))
            .collect()
    }

    #[test]
    fn every_catalog_sample_must_be_a_prefix_of_the_log() {
        let initial = view(&[("A", 100, 0), ("B", 100, 0)]);
        let log = vec![
            entry(0, "A", Buy, 5, "r0"),
            entry(1, "B", Sell, 2, "r1"),
            entry(2, "A", Sell, 1, "r2"),
        ];
        let prefix0 = initial.clone();
        let prefix2 = view(&[("A", 95, 5), ("B", 102, 2)]);
        let whole = view(&[("A", 96, 6), ("B", 102, 2)]);
        let good = [prefix0.clone(), prefix2.clone(), whole.clone()];
        assert_eq!(catalog_prefix_violation(&initial, &log, &good, true), None);
        // Order 1 applied without order 0: a state no prefix of the log reaches.
        let skipped = view(&[("A", 100, 0), ("B", 102, 2)]);
        let bad = [prefix0.clone(), skipped, whole.clone()];
        let v = catalog_prefix_violation(&initial, &log, &bad, true).unwrap();
        assert!(v.contains("sample 1 of 3"), "{v}");
        // A trade the log lacks (the catalog-stall case): quantity right, volume off.
        let extra = view(&[("A", 96, 8), ("B", 102, 2)]);
        assert!(catalog_prefix_violation(&initial, &log, &[extra], false).is_some());
        // A valid prefix, but not the whole log once quiet.
        let v = catalog_prefix_violation(&initial, &log, &[prefix0, prefix2], true).unwrap();
        assert!(v.contains("whole log"), "{v}");
        let negative = view(&[("A", -1, 101), ("B", 100, 0)]);
        let v = catalog_prefix_violation(&initial, &log, &[negative], false).unwrap();
        assert!(v.contains("< 0"), "{v}");
    }

    #[test]
    fn two_leaders_of_one_epoch_are_caught_in_files_and_samples() {
        let mut other = entry(1, "B", Buy, 1, "x");
        other.epoch = 1;
        let a = vec![entry(0, "A", Buy, 5, "r0"), entry(1, "A", Sell, 2, "r1")];
        let b = vec![entry(0, "A", Buy, 5, "r0"), other];
        assert_eq!(same_epoch_conflict(&[(1, a.clone()), (2, a.clone())]), None);
        let v = same_epoch_conflict(&[(1, a), (3, b)]).unwrap();
        assert!(v.contains("order 1 in epoch 1"), "{v}");

        let mut leaders = LeaderSamples::new();
        leaders.entry(3).or_default().extend([1, 2]);
        leaders.entry(2).or_default().insert(3);
        assert_eq!(two_leaders_in_one_epoch(&leaders), None);
        leaders.entry(1).or_default().insert(2);
        assert!(two_leaders_in_one_epoch(&leaders)
            .unwrap()
            .contains("epoch 2"));
    }

    #[test]
    fn invariant_checks_catch_each_violation() {
        let log = vec![entry(0, "A", Buy, 5, "r0"), entry(1, "A", Sell, 2, "r1")];
        assert_eq!(numbering(&log), None);
        let gap = vec![entry(0, "A", Buy, 5, "r0"), entry(2, "A", Sell, 2, "r1")];
        assert!(numbering(&gap).unwrap().contains("line 1"));
        let twice = vec![entry(0, "A", Buy, 5, "r0"), entry(1, "A", Buy, 5, "r0")];
        assert!(numbering(&twice).unwrap().contains("twice"));

        let acked = vec![Order {
            number: 1,
            name: "A".into(),
            kind: Sell,
            quantity: 2,
        }];
        assert_eq!(acknowledged_stored(&log, &acked), None);
        let changed = vec![Order {
            number: 1,
            name: "A".into(),
            kind: Buy,
            quantity: 2,
        }];
        assert!(acknowledged_stored(&log, &changed).is_some());
        let lost = vec![Order {
            number: 7,
            name: "A".into(),
            kind: Buy,
            quantity: 2,
        }];
        assert!(acknowledged_stored(&log, &lost)
            .unwrap()
            .contains("missing"));

        let stock = |q| StockRecord {
            name: "A".into(),
            price: 1.0,
            quantity: q,
            volume: 7,
        };
        let stocks = |q| BTreeMap::from([("A".to_string(), stock(q))]);
        assert_eq!(quantities(&log, &stocks(97)), None);
        assert!(quantities(&log, &stocks(95))
            .unwrap()
            .contains("catalog has 95"));
        let oversold = vec![entry(0, "A", Buy, 101, "r0")];
        assert!(quantities(&oversold, &stocks(0))
            .unwrap()
            .contains("the log says -1"));
    }
}

//! The front-end's stock cache: a hand-written O(1) LRU plus the bookkeeping that keeps it
//! from ever serving a quantity older than an acknowledged trade.
//!
//! [`Lru`] is the textbook structure: a `HashMap` from key to slot in a slab `Vec` of nodes,
//! the nodes chained by `prev`/`next` slot indices into a list ordered from most recently used
//! (head) to least recently used (tail). `get` moves a node to the head, `put` inserts at the
//! head and evicts the tail when full, `remove` unlinks a node and `swap_remove`s it out of the
//! slab (patching the one node that moved), so the slab never has holes.
//!
//! Why not the `lru` crate, which keeps the same map: its list is built on raw pointers and
//! `unsafe`, and this crate has no `unsafe` at all; ours is a slab of indices in about a
//! hundred lines with its own tests, and the trace needs the keys in MRU order and `remove`,
//! which are one method each here. The cache's cost is the lock around it, not the list.
//!
//! [`Cache`] wraps it in a `parking_lot::Mutex` (even a hit reorders the list, so there is no
//! useful read-only path) and closes the miss/invalidate race:
//!
//! 1. a lookup that misses takes a [`Ticket`]: the key's invalidation generation, *before* it
//!    asks the catalog;
//! 2. the catalog's `POST /invalidation/<name>` (and the front-end itself, after every order)
//!    calls [`Cache::invalidate`], which bumps the generation and drops the key;
//! 3. the catalog's answer is inserted only if the generation is still the ticket's.
//!
//! So an answer that may predate an invalidation never enters the cache, and a lookup that
//! starts after an acknowledged trade (whose invalidation happened before the acknowledgement)
//! either misses and reads the catalog, or hits an entry inserted after the invalidation.
//!
//! With dump on, every change (`insert`, `hit`, `evict`, `invalidate`, plus a `start` marker
//! when the front-end boots) is appended to the trace as one JSON line
//! `{"ts_ms":..,"event":"hit","key":"X","items":[MRU..LRU]}`. The line is formatted and queued
//! while the lock is held, so the lines are in the order the changes happened, but written by a
//! thread of its own (`write_trace`): a hit costs a send, not a write to a file, under the lock
//! every lookup takes.
//!
//! A paused front-end may miss the catalog's invalidation altogether, so every entry also has
//! a lease: it is served for at most [`CACHE_LEASE`] after the lookup that fetched it began,
//! and the catalog holds back the answer to a trade that some front-end did not confirm until
//! that lease is over (an `expire` trace line marks an entry dropped for age).
//!
//! The cache also counts its hits and misses (every lookup is one or the other; with caching
//! off every lookup misses) for the front-end's live page (`Cache::stats`).
//!
//! Caveats:
//! - Generations are striped: [`GENERATION_SLOTS`] counters indexed by a hash of the key, not
//!   one per key, so that invalidations of arbitrary names cannot grow memory. Two keys sharing
//!   a slot only cost an occasional refused insert (a later miss), never a stale answer.
//! - The trace is appended without fsync: it is a demonstration aid, not state. A write error
//!   is logged once and turns the trace off. When `put` evicts, the `evict` and `insert` lines
//!   both show the items after the insert.
//! - The trace queue holds `TRACE_QUEUE_LINES` lines. When the writer falls that far behind,
//!   a change waits (under the lock) until there is room: no line is ever dropped, because the
//!   eval draws its cache plot from the trace; at worst the cache is as slow as when it wrote
//!   each line itself. The writer flushes whenever the queue is empty, so the file is complete
//!   as soon as the front-end is idle (the eval reads it while the front-end still runs, after
//!   its clients are done); `Cache::flush_trace` (called by `Frontend::shutdown`) waits until
//!   every line so far is written, and dropping the [`Cache`] flushes and joins the writer. A
//!   front-end that is killed, or exits on a signal, loses only the lines still queued.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::warn;
use parking_lot::Mutex;
use serde::Serialize;

use crate::api::{CacheStats, CacheView, Stock};
use crate::error::Result;
use crate::timing::CACHE_LEASE;

/// Number of invalidation-generation counters (see the Caveats of the module doc).
pub(crate) const GENERATION_SLOTS: usize = 1024;

/// How many trace lines may wait for the writer thread before a change waits for room (see
/// the Caveats of the module doc). A few seconds of a busy front-end's hits.
pub(crate) const TRACE_QUEUE_LINES: usize = 16 * 1024;

/// One entry of the LRU list.
#[derive(Debug)]
struct Node<V> {
    key: String,
    value: V,
    /// Slot of the next more recently used node.
    prev: Option<usize>,
    /// Slot of the next less recently used node.
    next: Option<usize>,
}

/// An O(1) least-recently-used map from `String` keys to `V`.
#[derive(Debug)]
pub(crate) struct Lru<V> {
    capacity: usize,
    index: HashMap<String, usize>,
    nodes: Vec<Node<V>>,
    /// Most recently used.
    head: Option<usize>,
    /// Least recently used: the next victim.
    tail: Option<usize>,
}

impl<V> Lru<V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Lru<V> {
        let capacity = capacity.max(1);
        Lru {
            capacity,
            index: HashMap::with_capacity(capacity),
            nodes: Vec::with_capacity(capacity),
            head: None,
            tail: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The value for `key`, which becomes the most recently used.
    pub(crate) fn get(&mut self, key: &str) -> Option<&V> {
        let slot = *self.index.get(key)?;
        self.unlink(slot);
        self.push_front(slot);
        Some(&self.nodes[slot].value)
    }

    /// Inserts or replaces `key` as the most recently used; returns the key evicted to make
    /// room, if any.
    pub(crate) fn put(&mut self, key: String, value: V) -> Option<String> {
        if let Some(&slot) = self.index.get(&key) {
            self.nodes[slot].value = value;
            self.unlink(slot);
            self.push_front(slot);
            return None;
        }
        let mut evicted = None;
        if self.nodes.len() >= self.capacity {
            if let Some(tail) = self.tail {
                let victim = self.nodes[tail].key.clone();
                self.remove(&victim);
                evicted = Some(victim);
            }
        }
        let slot = self.nodes.len();
        self.nodes.push(Node {
            key: key.clone(),
            value,
            prev: None,
            next: None,
        });
        self.index.insert(key, slot);
        self.push_front(slot);
        evicted
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let slot = self.index.remove(key)?;
        self.unlink(slot);
        let last = self.nodes.len() - 1;
        if slot != last {
            // The last node moves into `slot`: repoint its neighbours and its index entry.
            let (prev, next) = (self.nodes[last].prev, self.nodes[last].next);
            match prev {
                Some(p) => self.nodes[p].next = Some(slot),
                None => self.head = Some(slot),
            }
            match next {
                Some(n) => self.nodes[n].prev = Some(slot),
                None => self.tail = Some(slot),
            }
            if let Some(i) = self.index.get_mut(&self.nodes[last].key) {
                *i = slot;
            }
        }
        Some(self.nodes.swap_remove(slot).value)
    }

    /// The keys from most to least recently used.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(self.nodes.len());
        let mut cursor = self.head;
        while let Some(slot) = cursor {
            keys.push(self.nodes[slot].key.clone());
            cursor = self.nodes[slot].next;
        }
        keys
    }

    /// Takes `slot` out of the list (it stays in the slab).
    fn unlink(&mut self, slot: usize) {
        let (prev, next) = (self.nodes[slot].prev, self.nodes[slot].next);
        match prev {
            Some(p) => self.nodes[p].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.nodes[n].prev = prev,
            None => self.tail = prev,
        }
        self.nodes[slot].prev = None;
        self.nodes[slot].next = None;
    }

    /// Makes an unlinked `slot` the most recently used.
    fn push_front(&mut self, slot: usize) {
        self.nodes[slot].prev = None;
        self.nodes[slot].next = self.head;
        match self.head {
            Some(h) => self.nodes[h].prev = Some(slot),
            None => self.tail = Some(slot),
        }
        self.head = Some(slot);
    }
}

/// Permission to insert a catalog answer for `key`, valid while no invalidation of the key
/// happened since it was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    key: String,
    slot: usize,
    generation: u64,
    /// Before the catalog was asked: the entry expires [`CACHE_LEASE`] after this.
    taken: Instant,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lookup {
    Hit(Stock),
    /// Not cached (or caching is off): ask the catalog, then [`Cache::insert`] with the ticket.
    Miss(Ticket),
}

/// One line of the cache trace.
#[derive(Serialize)]
struct TraceLine<'a> {
    ts_ms: u128,
    event: &'a str,
    key: &'a str,
    items: &'a [String],
}

/// What the trace writer is sent.
enum TraceMessage {
    /// One whole line, newline included.
    Line(Vec<u8>),
    /// Flush everything before this, then answer.
    Flush(SyncSender<()>),
}

/// Everything the lock protects.
struct Inner {
    lru: Lru<(Stock, Instant)>,
    generations: Vec<u64>,
    /// The queue to the trace writer, `None` when dump is off (or after a write error).
    trace: Option<SyncSender<TraceMessage>>,
    hits: u64,
    misses: u64,
    evictions: u64,
    invalidations: u64,
}

/// The thread-safe cache of the front-end.
pub(crate) struct Cache {
    enabled: bool,
    capacity: usize,
    inner: Mutex<Inner>,
    /// The trace writer thread, joined on drop so that every line reaches the file.
    trace_writer: Option<JoinHandle<()>>,
}

impl Cache {
    /// An empty cache. With `trace` set (and caching on), every change is appended to that
    /// file, which is created if missing (with its directory).
    pub(crate) fn new(enabled: bool, capacity: usize, trace: Option<&Path>) -> Result<Cache> {
        let (trace, trace_writer) = match trace.filter(|_| enabled) {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                let (lines, queued) = sync_channel(TRACE_QUEUE_LINES);
                let writer = std::thread::Builder::new()
                    .name("cache-trace".into())
                    .spawn(move || write_trace(file, &queued))?;
                (Some(lines), Some(writer))
            }
            None => (None, None),
        };
        let cache = Cache {
            enabled,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                lru: Lru::new(capacity),
                generations: vec![0; GENERATION_SLOTS],
                trace,
                hits: 0,
                misses: 0,
                evictions: 0,
                invalidations: 0,
            }),
            trace_writer,
        };
        cache.inner.lock().record("start", "");
        Ok(cache)
    }

    /// A hit (which becomes the most recent) or a ticket for inserting the catalog's answer.
    pub(crate) fn lookup(&self, key: &str) -> Lookup {
        let slot = generation_slot(key);
        let mut inner = self.inner.lock();
        let now = Instant::now();
        if self.enabled {
            match inner.lru.get(key).cloned() {
                Some((stock, expires)) if now < expires => {
                    inner.record("hit", key);
                    inner.hits += 1;
                    return Lookup::Hit(stock);
                }
                Some(_) => {
                    inner.lru.remove(key);
                    inner.record("expire", key);
                }
                None => {}
            }
        }
        inner.misses += 1;
        Lookup::Miss(Ticket {
            key: key.to_string(),
            slot,
            generation: inner.generations[slot],
            taken: now,
        })
    }

    /// Inserts the catalog's answer unless the key was invalidated after the ticket was taken.
    /// Returns whether it was inserted.
    pub(crate) fn insert(&self, ticket: Ticket, stock: Stock) -> bool {
        if !self.enabled {
            return false;
        }
        let mut inner = self.inner.lock();
        if inner.generations[ticket.slot] != ticket.generation {
            return false;
        }
        let expires = ticket.taken + CACHE_LEASE;
        if let Some(evicted) = inner.lru.put(ticket.key.clone(), (stock, expires)) {
            inner.evictions += 1;
            inner.record("evict", &evicted);
        }
        inner.record("insert", &ticket.key);
        true
    }

    /// Drops `key` and refuses every insert whose ticket was taken before this call.
    pub(crate) fn invalidate(&self, key: &str) {
        let slot = generation_slot(key);
        let mut inner = self.inner.lock();
        inner.generations[slot] = inner.generations[slot].wrapping_add(1);
        if inner.lru.remove(key).is_some() {
            inner.invalidations += 1;
            inner.record("invalidate", key);
        }
    }

    /// What `GET /cache` shows.
    pub(crate) fn view(&self) -> CacheView {
        CacheView {
            enabled: self.enabled,
            capacity: self.capacity,
            items: self.inner.lock().lru.keys(),
        }
    }
}

impl Cache {
    /// The view of `GET /cache` plus the hit and miss counters, taken under one lock.
    pub(crate) fn stats(&self) -> CacheStats {
        let inner = self.inner.lock();
        CacheStats {
            enabled: self.enabled,
            capacity: self.capacity,
            items: inner.lru.keys(),
            hits: inner.hits,
            misses: inner.misses,
            evictions: inner.evictions,
            invalidations: inner.invalidations,
        }
    }
}

impl Cache {
    /// Returns once every trace line recorded so far is in the file (at once without a trace):
    /// for readers of the trace while the cache lives on, e.g. after a front-end shutdown
    /// whose connection threads still hold the service.
    pub(crate) fn flush_trace(&self) {
        let Some(lines) = self.inner.lock().trace.clone() else {
            return;
        };
        let (done, flushed) = sync_channel(1);
        // Waits outside the lock. Either call fails only if the writer stopped on an error.
        if lines.send(TraceMessage::Flush(done)).is_ok() {
            let _ = flushed.recv();
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written and flushed every line.
        self.inner.lock().trace = None;
        if let Some(writer) = self.trace_writer.take() {
            if writer.join().is_err() {
                warn!("cache trace: the writer thread panicked");
            }
        }
    }
}

impl Inner {
    /// Queues one trace line for the writer, if tracing.
    fn record(&mut self, event: &str, key: &str) {
        let Some(lines) = self.trace.as_ref() else {
            return;
        };
        let items = self.lru.keys();
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let line = TraceLine {
            ts_ms,
            event,
            key,
            items: &items,
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!("cache trace: cannot encode a line ({e}); tracing is off from now on");
                self.trace = None;
                return;
            }
        };
        bytes.push(b'\n');
        // Blocks while the queue is full rather than drop a line (module doc, Caveats). It
        // fails only when the writer has stopped after a write error, which it has logged.
        if lines.send(TraceMessage::Line(bytes)).is_err() {
            self.trace = None;
        }
    }
}

/// The trace writer thread: appends queued lines until the queue closes. It flushes whenever
/// the queue runs empty, so the file lags the cache only while lines keep coming, and it
/// hands the file whole lines only, so a crash leaves no torn line (append mode).
fn write_trace(file: File, queued: &Receiver<TraceMessage>) {
    let mut out = BufWriter::new(file);
    while let Ok(first) = queued.recv() {
        let mut next = Some(first);
        let mut written = Ok(());
        // Drains what is queued before flushing: one flush per burst rather than per line.
        while let (Some(message), Ok(())) = (next, &written) {
            written = match message {
                TraceMessage::Line(line) => out.write_all(&line),
                TraceMessage::Flush(done) => {
                    let flushed = out.flush();
                    // Answered even after an error: a flusher waits for the writer, not for
                    // success (and one left unanswered sees its channel close).
                    let _ = done.send(());
                    flushed
                }
            };
            next = queued.try_recv().ok();
        }
        if let Err(e) = written.and_then(|()| out.flush()) {
            // Dropping the queue's receiver makes the next `record` turn the trace off.
            warn!("cache trace: write failed ({e}); tracing is off from now on");
            return;
        }
    }
}

fn generation_slot(key: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % GENERATION_SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of an LRU script.
    enum Op {
        Put(&'static str, u32, Option<&'static str>),
        Get(&'static str, Option<u32>),
        Remove(&'static str, Option<u32>),
    }
    use Op::*;

    #[test]
    fn lru_scripts() {
        let cases: &[(&str, usize, &[Op], &[&str])] = &[
            ("empty", 2, &[], &[]),
            (
                "order is MRU first",
                3,
                &[Put("a", 1, None), Put("b", 2, None), Put("c", 3, None)],
                &["c", "b", "a"],
            ),
            (
                "evicts least recent",
                2,
                &[Put("a", 1, None), Put("b", 2, None), Put("c", 3, Some("a"))],
                &["c", "b"],
            ),
            (
                "get refreshes",
                2,
                &[
                    Put("a", 1, None),
                    Put("b", 2, None),
                    Get("a", Some(1)),
                    Put("c", 3, Some("b")),
                ],
                &["c", "a"],
            ),
            (
                "replace refreshes, no eviction",
                2,
                &[
                    Put("a", 1, None),
                    Put("b", 2, None),
                    Put("a", 10, None),
                    Get("a", Some(10)),
                ],
                &["a", "b"],
            ),
            ("miss", 2, &[Put("a", 1, None), Get("z", None)], &["a"]),
            (
                "remove middle keeps links",
                3,
                &[
                    Put("a", 1, None),
                    Put("b", 2, None),
                    Put("c", 3, None),
                    Remove("b", Some(2)),
                    Put("d", 4, None),
                    Put("e", 5, Some("a")),
                ],
                &["e", "d", "c"],
            ),
            (
                "remove head and tail",
                3,
                &[
                    Put("a", 1, None),
                    Put("b", 2, None),
                    Put("c", 3, None),
                    Remove("c", Some(3)),
                    Remove("a", Some(1)),
                    Remove("a", None),
                    Get("b", Some(2)),
                ],
                &["b"],
            ),
            (
                "capacity one",
                1,
                &[
                    Put("a", 1, None),
                    Put("b", 2, Some("a")),
                    Get("a", None),
                    Put("b", 3, None),
                    Get("b", Some(3)),
                ],
                &["b"],
            ),
            (
                "slot reuse after remove",
                2,
                &[
                    Put("a", 1, None),
                    Put("b", 2, None),
                    Remove("a", Some(1)),
                    Put("c", 3, None),
                    Get("b", Some(2)),
                    Put("d", 4, Some("c")),
                ],
                &["d", "b"],
            ),
        ];
        for (name, capacity, ops, want) in cases {
            let mut lru = Lru::new(*capacity);
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Put(k, v, evicted) => {
                        assert_eq!(
                            lru.put(k.to_string(), *v).as_deref(),
                            *evicted,
                            "{name}: op {i}"
                        )
                    }
                    Get(k, v) => assert_eq!(lru.get(k).copied(), *v, "{name}: op {i}"),
                    Remove(k, v) => assert_eq!(lru.remove(k), *v, "{name}: op {i}"),
                }
                assert!(lru.len() <= *capacity, "{name}: over capacity");
            }
            assert_eq!(lru.keys(), *want, "{name}");
            assert_eq!(lru.len(), want.len(), "{name}");
            // The index must agree with the list after all the moves.
            for key in *want {
                assert!(lru.get(key).is_some(), "{name}: {key} lost from the index");
            }
        }
    }

    fn stock(name: &str, quantity: u64) -> Stock {
        Stock {
            name: name.into(),
            price: 1.0,
            quantity,
        }
    }

    fn ticket(lookup: Lookup) -> Ticket {
        match lookup {
            Lookup::Miss(t) => t,
            Lookup::Hit(s) => panic!("unexpected hit {s:?}"),
        }
    }

    #[test]
    fn miss_then_insert_then_hit() {
        let cache = Cache::new(true, 2, None).unwrap();
        let t = ticket(cache.lookup("A"));
        assert!(cache.insert(t, stock("A", 100)));
        assert_eq!(cache.lookup("A"), Lookup::Hit(stock("A", 100)));
        assert_eq!(cache.view().items, vec!["A"]);
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = Cache::new(true, 1, None).unwrap();
        let t = ticket(cache.lookup("A"));
        cache.insert(t, stock("A", 1));
        cache.lookup("A");
        cache.lookup("A");
        cache.lookup("B");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (2, 2));
        assert_eq!((stats.items, stats.capacity), (vec!["A".to_string()], 1));
        let off = Cache::new(false, 1, None).unwrap();
        off.lookup("A");
        assert_eq!((off.stats().hits, off.stats().misses), (0, 1));
    }

    #[test]
    fn invalidate_between_ticket_and_insert_refuses_the_insert() {
        let cache = Cache::new(true, 2, None).unwrap();
        // The lookup misses and takes its ticket before asking the catalog...
        let stale = ticket(cache.lookup("A"));
        // ...a trade lands and its invalidation arrives while the answer is in flight...
        cache.invalidate("A");
        // ...so the pre-trade answer must not be cached.
        assert!(!cache.insert(stale, stock("A", 100)));
        let fresh = ticket(cache.lookup("A"));
        assert!(cache.insert(fresh, stock("A", 99)));
        assert_eq!(cache.lookup("A"), Lookup::Hit(stock("A", 99)));
    }

    #[test]
    fn invalidate_of_another_key_only_matters_on_a_shared_slot() {
        let cache = Cache::new(true, 4, None).unwrap();
        let other = (0..10_000)
            .map(|i| format!("K{i}"))
            .find(|k| generation_slot(k) != generation_slot("A"))
            .unwrap();
        let t = ticket(cache.lookup("A"));
        cache.invalidate(&other);
        assert!(cache.insert(t, stock("A", 5)));
    }

    #[test]
    fn an_entry_expires_one_lease_after_its_lookup_began() {
        let cache = Cache::new(true, 4, None).unwrap();
        let mut old = ticket(cache.lookup("A"));
        old.taken -= CACHE_LEASE;
        assert!(cache.insert(old, stock("A", 1)));
        assert!(matches!(cache.lookup("A"), Lookup::Miss(_)), "expired");
        assert!(cache.insert(ticket(cache.lookup("A")), stock("A", 2)));
        assert_eq!(cache.lookup("A"), Lookup::Hit(stock("A", 2)));
    }

    #[test]
    fn invalidate_removes_a_cached_key() {
        let cache = Cache::new(true, 2, None).unwrap();
        let t = ticket(cache.lookup("A"));
        cache.insert(t, stock("A", 1));
        cache.invalidate("A");
        assert!(matches!(cache.lookup("A"), Lookup::Miss(_)));
        assert!(cache.view().items.is_empty());
    }

    #[test]
    fn disabled_cache_never_hits() {
        let cache = Cache::new(false, 2, None).unwrap();
        let t = ticket(cache.lookup("A"));
        assert!(!cache.insert(t, stock("A", 1)));
        assert!(matches!(cache.lookup("A"), Lookup::Miss(_)));
        let view = cache.view();
        assert!(!view.enabled);
        assert!(view.items.is_empty());
    }

    #[test]
    fn trace_records_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.jsonl");
        let cache = Cache::new(true, 1, Some(&path)).unwrap();
        let t = ticket(cache.lookup("A"));
        cache.insert(t, stock("A", 1));
        cache.lookup("A");
        let t = ticket(cache.lookup("B"));
        cache.insert(t, stock("B", 1));
        cache.invalidate("B");
        cache.invalidate("B"); // not cached: no change, no line
        drop(cache); // flushes the trace writer
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let events: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l["event"].as_str().unwrap(), l["key"].as_str().unwrap()))
            .collect();
        assert_eq!(
            events,
            vec![
                ("start", ""),
                ("insert", "A"),
                ("hit", "A"),
                ("evict", "A"),
                ("insert", "B"),
                ("invalidate", "B")
            ]
        );
        assert_eq!(lines[4]["items"], serde_json::json!(["B"]));
        assert_eq!(lines[5]["items"], serde_json::json!([]));
        assert!(lines.iter().all(|l| l["ts_ms"].as_u64().is_some()));
    }
}

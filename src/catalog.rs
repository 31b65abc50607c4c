//! The catalog: every stock's price, remaining quantity and traded volume (SPEC §2).
//!
//! Protocol: `GET /stocks/<name>` → `StockRecord` (404 unknown), `GET /stocks` → every
//! `StockRecord` in catalog order, `POST /trades` with a `TradeBatch` (the leading order
//! replica's batch, applied in its order) → one `TradeOutcome` per order, `POST /orders` with
//! one `OrderRequest` → `TradeResult` (a batch of one, for hand use), `GET /health` →
//! `{"status":"ok"}`.
//!
//! State lives in `catalog.json`, `{"stocks":[StockRecord..],"recent_trades":[{"request_id":..,
//! "result":TradeResult}..]}`, created from `catalog.stocks` of the config only when it is
//! missing and replaced atomically after trades: temp file, fsync, rename, fsync of the
//! directory. A kill at any instant leaves the old or the new file, never a torn one; a
//! leftover temp file is removed at start, and a catalog.json that cannot be read or parsed
//! stops the catalog with an error instead of being replaced.
//!
//! In memory there are two views. The *ledger* (a `Mutex`) is where trades are decided and
//! applied, one at a time: a buy succeeds only while the quantity covers it (else 409), a sell
//! adds; both add to the volume; the result is remembered under its request id. The *durable*
//! stocks (a `parking_lot::RwLock`) are what lookups read: only what catalog.json holds. A trade
//! is answered only once a write covering it is done, and those writes are a group commit: the
//! first trade to take the writer's lock writes the whole ledger, covering every trade applied
//! meanwhile, and the trades queued behind it return without writing again. Lookups never wait
//! for a write. The last [`RECENT_TRADES`] results are kept by request id in the same file, so
//! they survive a crash: an order retried after a fail-over (same request id) gets the first
//! result back with `repeated: true` and is not traded twice (after that first trade is
//! written, like any other answer).
//!
//! After the lock is released and before the reply, the catalog tells the front-end to drop
//! the stock from its cache (`POST /invalidation/<name>`, [`INVALIDATION_TIMEOUT`]); a failure
//! is logged and the trade still succeeds. Invalidating before replying is what lets the
//! front-end promise that a lookup starting after an acknowledged trade never sees the old
//! quantity. Repeats invalidate again: the first attempt may have died before it did.
//!
//! Caveats:
//! - The whole file is rewritten per group of trades, including the recent-trade window (a few
//!   hundred KB when full): simple and crash-safe, but each write costs a millisecond or two.
//! - If catalog.json cannot be written, the catalog aborts: its ledger is ahead of the file and
//!   the unwritten trades, none of them answered, are dropped by the restart that resumes from
//!   the file (their retries trade again).
//! - A request id older than the last [`RECENT_TRADES`] trades is forgotten: a retry that late
//!   would trade again.
//! - A request id reused for a different stock is refused with 409 rather than traded.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::api::{
    Health, Invalidated, OrderRequest, OrderType, StockRecord, TradeBatch, TradeOutcome,
    TradeResult,
};
use crate::config::{Config, StockConfig};
use crate::error::{Error, Result};
use crate::http::{
    decode_segment, encode_segment, Client, Request, Response, Server, ServerOptions,
};

/// How many trades are remembered by request id for idempotent retries.
pub const RECENT_TRADES: usize = 4096;

/// How long a trade waits for the front-end to confirm a cache invalidation.
pub const INVALIDATION_TIMEOUT: Duration = Duration::from_millis(300);

/// One remembered trade, as stored in catalog.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RecentTrade {
    request_id: String,
    result: TradeResult,
    /// The ledger version this trade created; loaded trades are on disk already (0).
    #[serde(skip)]
    version: u64,
    /// This entry as JSON, made once when it is remembered: every write of catalog.json
    /// copies the whole window, and re-encoding thousands of entries per write is what the
    /// catalog spent its time on.
    #[serde(skip)]
    json: String,
}

/// The file format of catalog.json, as read ([`Ledger::file_bytes`] writes the same shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    stocks: Vec<StockRecord>,
    #[serde(default)]
    recent_trades: Vec<RecentTrade>,
}

/// Every trade applied so far, in order: what the next write of catalog.json will hold.
#[derive(Debug)]
struct Ledger {
    /// Counts the trades applied since start; a trade is durable once the write that
    /// covered its version is done.
    version: u64,
    /// In catalog order, which `GET /stocks` keeps.
    stocks: Vec<StockRecord>,
    /// Name → position in `stocks`.
    index: HashMap<String, usize>,
    /// Oldest first, at most [`RECENT_TRADES`].
    recent: VecDeque<RecentTrade>,
    /// Request id → position of its result in `recent`, counted from `recent_base`.
    recent_index: HashMap<String, u64>,
    /// The absolute sequence number of `recent[0]`, so indexes survive pops at the front.
    recent_base: u64,
    /// Most trades remembered: [`RECENT_TRADES`] (tests use fewer).
    window: usize,
}

impl Ledger {
    fn from_file(file: CatalogFile, window: usize) -> Result<Ledger> {
        let mut index = HashMap::new();
        for (i, stock) in file.stocks.iter().enumerate() {
            if index.insert(stock.name.clone(), i).is_some() {
                return Err(Error::Config(format!("duplicate stock {:?}", stock.name)));
            }
        }
        let mut state = Ledger {
            version: 0,
            stocks: file.stocks,
            index,
            recent: VecDeque::new(),
            recent_index: HashMap::new(),
            recent_base: 0,
            window,
        };
        for trade in file.recent_trades {
            state.remember(trade);
        }
        Ok(state)
    }

    /// catalog.json's contents: the stocks, encoded now, and the window's entries, encoded
    /// when they were remembered.
    fn file_bytes(&self) -> Result<Vec<u8>> {
        let window: usize = self.recent.iter().map(|t| t.json.len() + 1).sum();
        let mut out = Vec::with_capacity(window + 128 * self.stocks.len() + 64);
        out.extend_from_slice(br#"{"stocks":"#);
        serde_json::to_writer(&mut out, &self.stocks)?;
        out.extend_from_slice(br#","recent_trades":["#);
        let encoded = self.recent.iter().filter(|t| !t.json.is_empty());
        for (i, trade) in encoded.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(trade.json.as_bytes());
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }

    fn recall(&self, request_id: &str) -> Option<&RecentTrade> {
        let seq = self.recent_index.get(request_id)?;
        let offset = usize::try_from(seq.checked_sub(self.recent_base)?).ok()?;
        self.recent.get(offset)
    }

    /// Adds a trade to the window, dropping the oldest beyond its size.
    fn remember(&mut self, mut trade: RecentTrade) {
        if trade.json.is_empty() {
            // Cannot fail for strings and numbers; if it ever did, the entry is left out of
            // the file (its retry would trade again) rather than making the file invalid.
            trade.json = serde_json::to_string(&trade).unwrap_or_else(|e| {
                log::error!("cannot encode trade {}: {e}", trade.request_id);
                String::new()
            });
        }
        let seq = self.recent_base + self.recent.len() as u64;
        self.recent_index.insert(trade.request_id.clone(), seq);
        self.recent.push_back(trade);
        while self.recent.len() > self.window {
            if let Some(old) = self.recent.pop_front() {
                if self.recent_index.get(&old.request_id) == Some(&self.recent_base) {
                    self.recent_index.remove(&old.request_id);
                }
            }
            self.recent_base += 1;
        }
    }
}

/// The catalog's data and its file.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    /// Name → position in the stock lists (fixed once open).
    index: HashMap<String, usize>,
    /// What lookups see: the stocks as catalog.json holds them.
    durable: RwLock<Vec<StockRecord>>,
    /// Trades are decided and applied here, one at a time, before they are written.
    ledger: Mutex<Ledger>,
    /// Held by the thread writing catalog.json; the ledger version the file holds.
    written: Mutex<u64>,
}

impl Catalog {
    /// Opens `path`, creating it from `initial` when missing. Creates the directory if needed
    /// and removes a temp file left by a crash mid-write.
    pub fn open(path: &Path, initial: &[StockConfig]) -> Result<Catalog> {
        Catalog::open_with_window(path, initial, RECENT_TRADES)
    }

    /// [`Catalog::open`] remembering at most `window` trades.
    fn open_with_window(path: &Path, initial: &[StockConfig], window: usize) -> Result<Catalog> {
        let refuse = |why: String| Error::Config(format!("catalog {}: {why}", path.display()));
        if let Some(dir) = parent_dir(path) {
            fs::create_dir_all(dir)
                .map_err(|e| refuse(format!("cannot create its directory: {e}")))?;
        }
        let temp = temp_path(path);
        if temp.exists() {
            warn!("removing {} left by an interrupted write", temp.display());
            fs::remove_file(&temp)
                .map_err(|e| refuse(format!("cannot remove {}: {e}", temp.display())))?;
        }
        let state = match fs::read(path) {
            Ok(bytes) => {
                let file: CatalogFile = serde_json::from_slice(&bytes).map_err(|e| {
                    refuse(format!(
                        "not a valid catalog ({e}); refusing to start rather than overwrite it"
                    ))
                })?;
                let state = Ledger::from_file(file, window).map_err(|e| refuse(e.message()))?;
                info!(
                    "catalog loaded from {}: {} stocks",
                    path.display(),
                    state.stocks.len()
                );
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let stocks = initial
                    .iter()
                    .map(|s| StockRecord {
                        name: s.name.clone(),
                        price: s.price,
                        quantity: s.quantity,
                        volume: 0,
                    })
                    .collect();
                let state = Ledger::from_file(
                    CatalogFile {
                        stocks,
                        recent_trades: Vec::new(),
                    },
                    window,
                )
                .map_err(|e| refuse(e.message()))?;
                state
                    .file_bytes()
                    .and_then(|bytes| write_bytes_atomically(path, &bytes))
                    .map_err(|e| refuse(format!("cannot create: {e}")))?;
                info!(
                    "catalog created at {} with {} stocks",
                    path.display(),
                    state.stocks.len()
                );
                state
            }
            Err(e) => return Err(refuse(format!("cannot read: {e}"))),
        };
        Ok(Catalog {
            path: path.to_path_buf(),
            index: state.index.clone(),
            durable: RwLock::new(state.stocks.clone()),
            ledger: Mutex::new(state),
            written: Mutex::new(0),
        })
    }

    pub fn lookup(&self, name: &str) -> Result<StockRecord> {
        let i = self.index.get(name).ok_or_else(|| unknown(name))?;
        Ok(self.durable.read()[*i].clone())
    }

    pub fn list(&self) -> Vec<StockRecord> {
        self.durable.read().clone()
    }

    /// Applies a trade durably, or answers the first result again for a known request id.
    pub fn trade(&self, order: &OrderRequest) -> Result<TradeResult> {
        let mut results = self.trade_batch(std::slice::from_ref(order));
        results
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no trade result".into())))
    }

    /// Applies trades in the given order (the leader numbers them in the same order, so the
    /// order log replays exactly as the catalog traded) and returns once all are written.
    pub fn trade_batch(&self, orders: &[OrderRequest]) -> Vec<Result<TradeResult>> {
        let mut written_up_to = 0;
        let results: Vec<Result<TradeResult>> = {
            let mut ledger = self.ledger.lock();
            orders
                .iter()
                .map(|order| {
                    let (result, version) = self.apply(&mut ledger, order)?;
                    written_up_to = written_up_to.max(version);
                    Ok(result)
                })
                .collect()
        };
        self.make_durable(written_up_to);
        results
    }

    /// Decides and applies a trade in the ledger; its result and the ledger version that holds
    /// it (for a repeat: the first trade's).
    fn apply(&self, ledger: &mut Ledger, order: &OrderRequest) -> Result<(TradeResult, u64)> {
        if let Some(id) = &order.request_id {
            if let Some(first) = ledger.recall(id) {
                if first.result.stock.name != order.name {
                    return Err(Error::Conflict(format!(
                        "request id {id:?} was already used for a trade of {}",
                        first.result.stock.name
                    )));
                }
                let repeat = TradeResult {
                    stock: first.result.stock.clone(),
                    repeated: true,
                };
                return Ok((repeat, first.version));
            }
        }
        let i = *self
            .index
            .get(&order.name)
            .ok_or_else(|| unknown(&order.name))?;
        let before = &ledger.stocks[i];
        let mut after = before.clone();
        after.quantity = match order.kind {
            OrderType::Buy => before.quantity.checked_sub(order.quantity).ok_or_else(|| {
                Error::Conflict(format!(
                    "not enough stock: {} has {} left, cannot buy {}",
                    before.name, before.quantity, order.quantity
                ))
            })?,
            OrderType::Sell => before
                .quantity
                .checked_add(order.quantity)
                .ok_or_else(|| Error::BadRequest("quantity too large".into()))?,
        };
        after.volume = before
            .volume
            .checked_add(order.quantity)
            .ok_or_else(|| Error::BadRequest("quantity too large".into()))?;
        ledger.version += 1;
        let version = ledger.version;
        let result = TradeResult {
            stock: after.clone(),
            repeated: false,
        };
        ledger.stocks[i] = after;
        if let Some(id) = &order.request_id {
            ledger.remember(RecentTrade {
                json: String::new(),
                request_id: id.clone(),
                result: result.clone(),
                version,
            });
        }
        Ok((result, version))
    }

    /// Returns once catalog.json holds ledger `version`. Group commit: the first trade to take
    /// the writer's lock writes the ledger as it is then, which covers every trade applied so
    /// far; the trades queued behind it find themselves written and return at once.
    fn make_durable(&self, version: u64) {
        let mut written = self.written.lock();
        if *written >= version {
            return;
        }
        let (bytes, stocks, covered) = {
            let ledger = self.ledger.lock();
            (ledger.file_bytes(), ledger.stocks.clone(), ledger.version)
        };
        if let Err(e) = bytes.and_then(|b| write_bytes_atomically(&self.path, &b)) {
            // The ledger is now ahead of the file and its trades cannot be taken back one by
            // one: stop. None of them was acknowledged, and a restart resumes from the file.
            log::error!(
                "cannot write {}: {e}; stopping the catalog",
                self.path.display()
            );
            std::process::abort();
        }
        *self.durable.write() = stocks;
        *written = covered;
    }
}

fn unknown(name: &str) -> Error {
    Error::NotFound(format!("no such stock: {name}"))
}

fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `value` so that a crash at any instant leaves the old or the new file.
/// Replaces `path` with `bytes` so that a crash at any instant leaves the old or the new file.
fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(path);
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    // The rename is durable only once the directory entry is.
    File::open(parent_dir(path).unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

/// The catalog's HTTP face: the data plus the front-end to invalidate.
pub struct Service {
    catalog: Catalog,
    client: Client,
    frontend_addr: String,
}

impl Service {
    pub fn new(catalog: Catalog, frontend_addr: String) -> Service {
        Service {
            catalog,
            client: Client::new(),
            frontend_addr,
        }
    }

    /// The one router of the catalog.
    pub fn route(&self, req: &Request) -> Result<Response> {
        match (req.method.as_str(), req.segments().as_slice()) {
            ("GET", ["stocks"]) => Ok(Response::ok(self.catalog.list())),
            ("GET", ["stocks", name]) => {
                self.catalog.lookup(&decode_segment(name)).map(Response::ok)
            }
            ("POST", ["orders"]) => {
                let order = OrderRequest::parse(&req.body)?;
                let mut outcomes = self.trade(std::slice::from_ref(&order));
                let outcome = outcomes
                    .pop()
                    .unwrap_or_else(|| Err(Error::Internal("no outcome".into())));
                outcome.map(Response::ok)
            }
            ("POST", ["trades"]) => {
                let batch: TradeBatch = req.json()?;
                for order in &batch.orders {
                    order.validate()?;
                }
                let outcomes: Vec<TradeOutcome> = self
                    .trade(&batch.orders)
                    .into_iter()
                    .map(TradeOutcome::from)
                    .collect();
                Ok(Response::ok(outcomes))
            }
            ("GET", ["health"]) => Ok(Response::ok(Health {
                status: "ok".into(),
            })),
            (_, ["stocks"] | ["stocks", _] | ["orders"] | ["trades"] | ["health"]) => {
                Err(Error::MethodNotAllowed)
            }
            _ => Err(Error::NotFound(format!("no such route: {}", req.path))),
        }
    }

    /// Trades, then invalidates the front-end's cache entry of every stock traded (repeats
    /// too: the first attempt may have died before it did) before the caller hears back.
    fn trade(&self, orders: &[OrderRequest]) -> Vec<Result<TradeResult>> {
        let results = self.catalog.trade_batch(orders);
        let mut traded: Vec<&str> = Vec::new();
        for (order, result) in orders.iter().zip(&results) {
            let Ok(result) = result else { continue };
            if !result.repeated {
                info!(
                    "{} {} {} (request {}): quantity {}, volume {}",
                    order.kind.as_str(),
                    order.quantity,
                    order.name,
                    order.request_id.as_deref().unwrap_or("-"),
                    result.stock.quantity,
                    result.stock.volume
                );
            }
            if !traded.contains(&order.name.as_str()) {
                traded.push(&order.name);
            }
        }
        for name in traded {
            self.invalidate(name);
        }
        results
    }

    fn invalidate(&self, name: &str) {
        let path = format!("/invalidation/{}", encode_segment(name));
        let answer: Result<Invalidated> = self.client.post(
            &self.frontend_addr,
            &path,
            &serde_json::json!({}),
            INVALIDATION_TIMEOUT,
        );
        if let Err(e) = answer {
            warn!(
                "could not invalidate {name} at the front-end {}: {e}",
                self.frontend_addr
            );
        }
    }
}

/// Loads (or creates) the catalog and serves it on `config.catalog_addr()`.
pub fn start(config: Config) -> Result<Server> {
    let addr = config.catalog_addr();
    start_with_listener(config, crate::http::server::listen(&addr)?)
}

/// Loads (or creates) the catalog and serves it on an already bound listener (tests bind
/// `127.0.0.1:0`).
pub fn start_with_listener(config: Config, listener: TcpListener) -> Result<Server> {
    let catalog = Catalog::open(&config.catalog_path(), &config.catalog.stocks)?;
    let service = Arc::new(Service::new(catalog, config.frontend_addr()));
    let handler = move |req: &Request| service.route(req);
    let options = ServerOptions::new("catalog", config.catalog.threads, &config.http);
    let server = Server::start(listener, options, Arc::new(handler))?;
    info!("catalog listening on {}", server.local_addr());
    Ok(server)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "bazaar-catalog-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
        fn file(&self) -> PathBuf {
            self.0.join("sub").join("catalog.json")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn stocks() -> Vec<StockConfig> {
        vec![
            StockConfig {
                name: "A".into(),
                price: 1.5,
                quantity: 100,
            },
            StockConfig {
                name: "B".into(),
                price: 2.0,
                quantity: 3,
            },
        ]
    }

    fn order(name: &str, kind: OrderType, quantity: u64, id: Option<&str>) -> OrderRequest {
        OrderRequest {
            name: name.into(),
            quantity,
            kind,
            request_id: id.map(String::from),
        }
    }

    use OrderType::{Buy, Sell};

    #[test]
    fn trade_table() {
        // Each case runs its trades in order on a fresh catalog:
        // (trade, expected (quantity, volume, repeated) or error status).
        type Step = (OrderRequest, std::result::Result<(u64, u64, bool), u16>);
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "buy",
                vec![(order("A", Buy, 10, None), Ok((90, 10, false)))],
            ),
            (
                "sell adds",
                vec![(order("A", Sell, 5, None), Ok((105, 5, false)))],
            ),
            (
                "buy all",
                vec![(order("B", Buy, 3, None), Ok((0, 3, false)))],
            ),
            (
                "oversell refused, nothing changes",
                vec![
                    (order("B", Buy, 4, None), Err(409)),
                    (order("B", Buy, 1, None), Ok((2, 1, false))),
                ],
            ),
            ("unknown stock", vec![(order("Z", Buy, 1, None), Err(404))]),
            (
                "repeat answers the first result",
                vec![
                    (order("A", Buy, 10, Some("r1")), Ok((90, 10, false))),
                    (order("A", Sell, 7, Some("r2")), Ok((97, 17, false))),
                    (order("A", Buy, 10, Some("r1")), Ok((90, 10, true))),
                    (order("A", Buy, 1, None), Ok((96, 18, false))),
                ],
            ),
            (
                "refused trade is not remembered",
                vec![
                    (order("B", Buy, 9, Some("r")), Err(409)),
                    (order("B", Buy, 1, Some("r")), Ok((2, 1, false))),
                ],
            ),
            (
                "request id reused for another stock",
                vec![
                    (order("A", Buy, 1, Some("r")), Ok((99, 1, false))),
                    (order("B", Buy, 1, Some("r")), Err(409)),
                ],
            ),
            (
                "overflow",
                vec![(order("A", Sell, u64::MAX, None), Err(400))],
            ),
        ];
        for (name, steps) in cases {
            let dir = TempDir::new();
            let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
            for (i, (req, want)) in steps.iter().enumerate() {
                let got = catalog
                    .trade(req)
                    .map(|r| (r.stock.quantity, r.stock.volume, r.repeated))
                    .map_err(|e| e.status());
                assert_eq!(got, *want, "{name}: step {i}");
            }
        }
    }

    #[test]
    fn trades_survive_a_reopen() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        catalog.trade(&order("A", Buy, 10, Some("r1"))).unwrap();
        catalog.trade(&order("B", Sell, 2, Some("r2"))).unwrap();
        drop(catalog);
        // Different initial stocks: an existing file wins over the config.
        let catalog = Catalog::open(&dir.file(), &[]).unwrap();
        assert_eq!(catalog.lookup("A").unwrap().quantity, 90);
        assert_eq!(
            catalog.lookup("B").unwrap(),
            StockRecord {
                name: "B".into(),
                price: 2.0,
                quantity: 5,
                volume: 2
            }
        );
        let names: Vec<String> = catalog.list().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["A", "B"]);
        // The idempotency window survived too.
        let again = catalog.trade(&order("A", Buy, 10, Some("r1"))).unwrap();
        assert!(again.repeated);
        assert_eq!(again.stock.quantity, 90);
        assert_eq!(catalog.lookup("A").unwrap().quantity, 90);
    }

    /// Group commit: concurrent trades all land, each answered only once written, and the
    /// file read back holds every one of them.
    #[test]
    fn concurrent_trades_are_all_written() {
        let dir = TempDir::new();
        let catalog = Arc::new(Catalog::open(&dir.file(), &stocks()).unwrap());
        let traders: Vec<_> = (0..8)
            .map(|t| {
                let catalog = catalog.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let id = format!("t{t}-{i}");
                        let result = catalog.trade(&order("A", Sell, 1, Some(&id))).unwrap();
                        // Answered means written: the durable view already shows it.
                        assert!(catalog.lookup("A").unwrap().quantity >= result.stock.quantity);
                    }
                })
            })
            .collect();
        for t in traders {
            t.join().unwrap();
        }
        assert_eq!(catalog.lookup("A").unwrap().quantity, 260);
        drop(catalog);
        let reopened = Catalog::open(&dir.file(), &stocks()).unwrap();
        assert_eq!(reopened.lookup("A").unwrap().quantity, 260);
        assert_eq!(reopened.lookup("A").unwrap().volume, 160);
        let again = reopened.trade(&order("A", Sell, 1, Some("t3-7"))).unwrap();
        assert!(
            again.repeated,
            "a request id from before the reopen is remembered"
        );
    }

    #[test]
    fn leftover_temp_file_is_removed_and_corrupt_file_refused() {
        let dir = TempDir::new();
        let path = dir.file();
        Catalog::open(&path, &stocks()).unwrap();
        let before = fs::read(&path).unwrap();
        fs::write(temp_path(&path), b"{\"stocks\":[{\"na").unwrap();
        let catalog = Catalog::open(&path, &stocks()).unwrap();
        assert!(!temp_path(&path).exists());
        assert_eq!(catalog.lookup("A").unwrap().quantity, 100);

        fs::write(&path, b"{\"stocks\":[{\"name\":\"A\"").unwrap();
        match Catalog::open(&path, &stocks()) {
            Err(Error::Config(msg)) => assert!(msg.contains("not a valid catalog"), "{msg}"),
            other => panic!("corrupt catalog accepted: {other:?}"),
        }
        // Refusing never overwrites.
        assert_eq!(fs::read(&path).unwrap(), b"{\"stocks\":[{\"name\":\"A\"");
        fs::write(&path, &before).unwrap();
        fs::write(
            &path,
            br#"{"stocks":[{"name":"A","price":1.0,"quantity":-1,"volume":0}]}"#,
        )
        .unwrap();
        assert!(
            Catalog::open(&path, &stocks()).is_err(),
            "negative quantity accepted"
        );
    }

    #[test]
    fn recent_window_is_bounded_and_keeps_the_newest() {
        const WINDOW: usize = 8;
        let dir = TempDir::new();
        let catalog = Catalog::open_with_window(&dir.file(), &stocks(), WINDOW).unwrap();
        for i in 0..WINDOW + 2 {
            catalog
                .trade(&order("A", Sell, 1, Some(&format!("r{i}"))))
                .unwrap();
        }
        {
            let state = catalog.ledger.lock();
            assert_eq!(state.recent.len(), WINDOW);
            assert_eq!(state.recent_index.len(), WINDOW);
        }
        // The oldest ids are forgotten (they would trade again), the newest are not.
        assert!(
            !catalog
                .trade(&order("A", Sell, 1, Some("r0")))
                .unwrap()
                .repeated
        );
        let last = format!("r{}", WINDOW + 1);
        assert!(
            catalog
                .trade(&order("A", Sell, 1, Some(&last)))
                .unwrap()
                .repeated
        );
        drop(catalog);
        let text = fs::read_to_string(dir.file()).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(file["recent_trades"].as_array().unwrap().len(), WINDOW);
        assert_eq!(file["recent_trades"][WINDOW - 1]["request_id"], "r0");
        let catalog = Catalog::open_with_window(&dir.file(), &stocks(), WINDOW).unwrap();
        assert!(
            catalog
                .trade(&order("A", Sell, 1, Some(&last)))
                .unwrap()
                .repeated
        );
        assert!(
            catalog
                .trade(&order("A", Sell, 1, Some("r0")))
                .unwrap()
                .repeated
        );
        assert_eq!(catalog.ledger.lock().recent.len(), WINDOW);
        // A file with more trades than the window keeps the newest.
        drop(catalog);
        let catalog = Catalog::open_with_window(&dir.file(), &stocks(), 1).unwrap();
        assert_eq!(catalog.ledger.lock().recent.len(), 1);
        assert!(
            catalog
                .trade(&order("A", Sell, 1, Some("r0")))
                .unwrap()
                .repeated
        );
        assert!(
            !catalog
                .trade(&order("A", Sell, 1, Some(&last)))
                .unwrap()
                .repeated
        );
    }

    #[test]
    fn route_table() {
        let dir = TempDir::new();
        let catalog = Catalog::open(&dir.file(), &stocks()).unwrap();
        // Nothing listens on port 9 of localhost: invalidations fail fast and are only logged.
        let service = Service::new(catalog, "127.0.0.1:9".into());
        let cases: &[(&str, &str, &str, u16, &str)] = &[
            (
                "GET",
                "/stocks/A",
                "",
                200,
                r#"{"data":{"name":"A","price":1.5,"quantity":100,"volume":0}}"#,
            ),
            ("GET", "/stocks/Z", "", 404, "no such stock"),
            (
                "POST",
                "/orders",
                r#"{"name":"A","quantity":2,"type":"buy","request_id":"x"}"#,
                200,
                r#""quantity":98"#,
            ),
            (
                "POST",
                "/orders",
                r#"{"name":"A","quantity":2,"type":"buy","request_id":"x"}"#,
                200,
                r#""repeated":true"#,
            ),
            (
                "POST",
                "/orders",
                r#"{"name":"B","quantity":5,"type":"buy"}"#,
                409,
                "not enough stock",
            ),
            (
                "POST",
                "/orders",
                r#"{"name":"B","quantity":"5","type":"buy"}"#,
                400,
                "positive integer",
            ),
            ("GET", "/stocks", "", 200, r#"{"name":"B""#),
            ("GET", "/health", "", 200, r#"{"data":{"status":"ok"}}"#),
            ("DELETE", "/stocks/A", "", 405, "method"),
            ("GET", "/orders", "", 405, "method"),
            ("GET", "/elsewhere", "", 404, "no such route"),
        ];
        for (method, target, body, want, part) in cases {
            let resp: Response = service
                .route(&Request::new(method, target, body.as_bytes().to_vec()))
                .into();
            let text = String::from_utf8_lossy(&resp.body);
            assert_eq!(resp.status, *want, "{method} {target}: {text}");
            assert!(
                text.contains(part),
                "{method} {target}: {text} lacks {part}"
            );
        }
    }
}

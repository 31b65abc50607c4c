//! Wire types: every JSON body any service sends or receives, defined once.
//!
//! Successful answers are `{"data": ...}` (`Data`); failures are
//! `{"error":{"code":C,"message":"..."}}` (`ErrorBody`), plus `"request_id"` on a 503 whose
//! order must be re-sent under that id. The front-end, the catalog, the order
//! replicas, the client and the tests all use these types, so a field renamed here is renamed
//! everywhere.
//!
//! Client-supplied order bodies are validated by `OrderRequest::parse`, which is strict on
//! purpose (docs/spec.md §3): `quantity` must be a JSON integer above zero, never a string or a float.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The success envelope: `{"data": T}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Data<T> {
    pub(crate) data: T,
}

/// The error envelope: `{"error":{"code":C,"message":"..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// The inside of [`ErrorBody`]. `request_id` is there only on a 503 "re-send with the same
/// request_id" ([`Error::Resend`]): the id to re-send with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) code: u16,
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
}

impl From<&Error> for ErrorBody {
    fn from(err: &Error) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: err.status(),
                message: err.message(),
                request_id: err.request_id().map(str::to_string),
            },
        }
    }
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Buy,
    Sell,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Buy => "buy",
            OrderType::Sell => "sell",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<OrderType> {
        match s {
            "buy" => Ok(OrderType::Buy),
            "sell" => Ok(OrderType::Sell),
            other => Err(Error::BadRequest(format!(
                "type must be \"buy\" or \"sell\", not {other:?}"
            ))),
        }
    }
}

/// A stock as the front-end shows it: `GET /stocks/<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    pub name: String,
    pub(crate) price: f64,
    pub quantity: u64,
}

/// A stock with its traded volume, as the catalog stores it and `GET /stocks` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockRecord {
    pub name: String,
    pub price: f64,
    pub quantity: u64,
    pub volume: u64,
}

impl From<&StockRecord> for Stock {
    fn from(r: &StockRecord) -> Self {
        Stock {
            name: r.name.clone(),
            price: r.price,
            quantity: r.quantity,
        }
    }
}

/// An order as a client places it (`POST /orders`), and as the front-end forwards it to the
/// leader and the leader forwards it to the catalog. `request_id` makes retries idempotent: the
/// front-end fills it in when the client did not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub name: String,
    pub quantity: u64,
    #[serde(rename = "type")]
    pub kind: OrderType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Part of every 503 whose order may still commit: the client (and the front-end, which
/// retries such orders itself) should send it again with the same request id.
pub const RESEND: &str = "re-send with the same request_id";

/// Longest accepted request id, in bytes: ids are stored in every log line and travel in every
/// replication batch.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 128;

/// What a client's request id may contain: printable ASCII, space to `~` (docs/spec.md §3).
/// Anything else costs more in JSON than in bytes (a control character is written `\u0001`,
/// six bytes), breaks log lines for readers, and an id is an opaque token that never needs it.
pub(crate) fn is_request_id_char(b: u8) -> bool {
    (0x20..=0x7E).contains(&b)
}

impl OrderRequest {
    /// Parses and validates an order body, naming the first thing wrong with it.
    pub(crate) fn parse(body: &[u8]) -> Result<OrderRequest> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("malformed JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::BadRequest("order body must be a JSON object".into()))?;
        let field = |key: &str| {
            obj.get(key)
                .ok_or_else(|| Error::BadRequest(format!("missing field {key:?}")))
        };
        let name = check_name(field("name")?.as_str())?.to_string();
        let quantity = check_quantity(field("quantity")?.as_u64())?;
        let kind = OrderType::parse(
            field("type")?
                .as_str()
                .ok_or_else(|| Error::BadRequest("type must be \"buy\" or \"sell\"".into()))?,
        )?;
        let request_id = match obj.get("request_id") {
            None | Some(Value::Null) => None,
            Some(id) => Some(check_request_id(id.as_str())?.to_string()),
        };
        Ok(OrderRequest {
            name,
            quantity,
            kind,
            request_id,
        })
    }
}

impl OrderRequest {
    /// The checks of [`OrderRequest::parse`] on a typed value (the fuzz tests check that what
    /// `parse` accepts passes them).
    #[cfg(test)]
    pub(crate) fn validate(&self) -> Result<()> {
        check_fields(&self.name, self.quantity, self.request_id.as_deref())
    }
}

/// The rules a client's order obeys, however it arrives (a JSON body, the compatibility route).
/// Each field is checked by one function below; a `None` stands for a JSON value of the wrong
/// type, which gets the same message as a bad value.
#[cfg(test)]
fn check_fields(name: &str, quantity: u64, request_id: Option<&str>) -> Result<()> {
    check_name(Some(name))?;
    check_quantity(Some(quantity))?;
    if let Some(id) = request_id {
        check_request_id(Some(id))?;
    }
    Ok(())
}

fn check_name(name: Option<&str>) -> Result<&str> {
    name.filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadRequest("name must be a non-empty string".into()))
}

fn check_quantity(quantity: Option<u64>) -> Result<u64> {
    quantity
        .filter(|q| *q > 0)
        .ok_or_else(|| Error::BadRequest("quantity must be a positive integer".into()))
}

/// A client's request id: 1 to [`MAX_REQUEST_ID_LEN`] bytes, each [`is_request_id_char`].
fn check_request_id(id: Option<&str>) -> Result<&str> {
    id.filter(|s| {
        !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN && s.bytes().all(is_request_id_char)
    })
    .ok_or_else(|| {
        Error::BadRequest(format!(
            "request_id must be a string of 1 to {MAX_REQUEST_ID_LEN} printable ASCII \
             characters (space to '~', no control characters)"
        ))
    })
}

/// A request id already in a log: only its length is checked, not its characters. Logs
/// written before [`is_request_id_char`] was enforced may hold any characters, and they must
/// still load, replicate and be applied; only a new order meets the stricter rule.
fn check_logged_request_id(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(Error::BadRequest(format!(
            "request_id must be a string of 1 to {MAX_REQUEST_ID_LEN} bytes"
        )));
    }
    Ok(id)
}

/// A number as it appears in a path, a query parameter, a header or a line of the election
/// protocol: plain decimal digits, nothing else. `u64::from_str` also takes `+5`, which a
/// proxy or another parser in front of us may read differently; so does an empty string.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// [`parse_decimal`] for a request's path or query: a 400 naming `what` and the bad value.
pub(crate) fn decimal_param(s: &str, what: &str) -> Result<u64> {
    parse_decimal(s).ok_or_else(|| {
        Error::BadRequest(format!("{what} must be a non-negative integer, not {s:?}"))
    })
}

/// Mints a request id for an order whose sender gave none (the front-end, a replica) or that
/// a tool places (the client, the chaos and eval probes): `<tag>-<start>-<pid>-<n>`.
///
/// Ids must never repeat, not even across processes and restarts: a leader answers a known id
/// with the order it already logged, so a repeated id would acknowledge an old trade instead
/// of making a new one. `<start>` (wall-clock nanoseconds at the first id of this process)
/// and `<pid>` separate processes: two running at once have distinct pids, and a restarted
/// one starts later. `<n>` counts every id of the process, so several minters in one process
/// (client sessions, a front-end and replicas of an in-process test) never collide. The tag
/// only says who minted it, for a reader of the logs.
///
/// Caveat: a wall clock stepped back to the very nanosecond of an earlier start, in a process
/// that also got the earlier pid, could repeat ids.
pub fn new_request_id(tag: &str) -> String {
    static START: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = START.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{nanos:x}-{:x}", std::process::id())
    });
    let id = format!("{tag}-{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    debug_assert!(id.len() <= MAX_REQUEST_ID_LEN, "{id}");
    id
}

/// The answer to a successful order: `{"data":{"transaction_number":N}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAck {
    pub transaction_number: u64,
}

/// An order as `GET /orders/<n>` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub number: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: OrderType,
    pub quantity: u64,
}

/// One line of an order replica's log: the order plus the epoch of the leadership that wrote it
/// and the request id that makes retries idempotent. Replicas exchange these verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub number: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: OrderType,
    pub quantity: u64,
    pub epoch: u64,
    pub request_id: String,
}

impl LogEntry {
    /// The checks of [`OrderRequest::parse`] on a log entry a peer sent (replication, the
    /// catalog's apply): an entry no leader could have numbered is refused with a 400 naming it.
    /// The request id's characters are not checked (see `check_logged_request_id`): entries
    /// written by older versions must still replicate.
    pub(crate) fn validate(&self) -> Result<()> {
        check_name(Some(&self.name))
            .and_then(|_| check_quantity(Some(self.quantity)))
            .and_then(|_| check_logged_request_id(&self.request_id))
            .map(|_| ())
            .map_err(|e| Error::BadRequest(format!("order {}: {}", self.number, e.message())))
    }

    /// The exact length of `serde_json::to_vec(self)`, without encoding it: what this entry
    /// costs in a propagate, an apply batch or a log page, so that batches can be bounded by
    /// bytes (`order::core::MAX_BATCH_BYTES`). A proptest checks it against serde_json.
    pub(crate) fn encoded_len(&self) -> usize {
        // `{"number":N,"name":S,"type":T,"quantity":Q,"epoch":E,"request_id":S}`: the keys,
        // quotes, colons, commas and braces are fixed; the rest depends on the values.
        const FIXED: usize =
            r#"{"number":,"name":,"type":,"quantity":,"epoch":,"request_id":}"#.len();
        FIXED
            + decimal_len(self.number)
            + json_string_len(&self.name)
            + json_string_len(self.kind.as_str())
            + decimal_len(self.quantity)
            + decimal_len(self.epoch)
            + json_string_len(&self.request_id)
    }
}

/// How many decimal digits `n` has.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The length of `s` as a JSON string the way serde_json writes it: quotes around it; `"` and
/// `\` and the five control characters with a short escape (`\b \t \n \f \r`) take two
/// bytes; every other control character below 0x20 takes six (`\u00XX`); everything else,
/// DEL and non-ASCII included, is written as its own UTF-8 bytes.
fn json_string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 2,
            0x00..=0x1F => 6,
            _ => 1,
        })
        .sum::<usize>()
}

impl From<&LogEntry> for Order {
    fn from(e: &LogEntry) -> Self {
        Order {
            number: e.number,
            name: e.name.clone(),
            kind: e.kind,
            quantity: e.quantity,
        }
    }
}

/// `GET /cache` on the front-end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheView {
    pub(crate) enabled: bool,
    pub(crate) capacity: usize,
    /// Most recently used first.
    pub items: Vec<String>,
}

/// `POST /invalidation/<name>` on the front-end: `{"invalidated":"<name>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidated {
    pub invalidated: String,
}

/// `GET /health` on the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Health {
    pub(crate) status: String,
}

/// `GET /health` on the front-end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendHealth {
    pub(crate) status: String,
    /// The leading replica's id, `null` while none leads.
    pub leader: Option<u32>,
    /// Forwards to a replica that were retried after a failure.
    pub retries: u64,
    /// Leader selections that changed the leader.
    pub failovers: u64,
}

/// `GET /health` on an order replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaHealth {
    pub(crate) status: String,
    pub id: u32,
    /// `"leader"`, `"candidate"` or `"follower"`.
    pub role: String,
    /// The highest epoch this replica has granted or led.
    pub epoch: u64,
    /// The leader as this replica last heard of it.
    pub leader: Option<u32>,
    /// Highest order number held, -1 when the log is empty.
    pub latest: i64,
    /// Highest order number known committed (on a majority), -1 when none.
    pub commit: i64,
    /// Highest order number the catalog has applied, as the leader last heard (-1: unknown).
    pub applied: i64,
    /// Its disk was found wiped or damaged and no leader has repaired it yet: it votes for
    /// nobody and answers `Ping` with `WAIT` (docs/replication.md, "Storage faults").
    #[serde(default)]
    pub recovering: bool,
}

/// An order replica's `GET /health` as the front-end's live page reads it: lenient, so that
/// replicas with and without the majority-commit fields can both be shown. `commit` (highest
/// committed number) and `applied` (highest number the catalog applied) are `None` when the
/// replica does not report them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaHealthSeen {
    pub(crate) role: String,
    pub(crate) epoch: u64,
    pub(crate) latest: i64,
    #[serde(default)]
    pub(crate) commit: Option<i64>,
    #[serde(default)]
    pub(crate) applied: Option<i64>,
}

/// `GET /cluster` on the front-end: everything the live page at `/` draws, gathered in one go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterView {
    /// When this was gathered, milliseconds since the Unix epoch.
    pub(crate) now_ms: u64,
    /// The leading replica as this front-end sees it, `null` while none leads.
    pub(crate) leader: Option<u32>,
    /// The leader's epoch, `null` while none leads.
    pub(crate) epoch: Option<u64>,
    /// Forwards retried after a failure, and selections that changed the leader.
    pub(crate) retries: u64,
    pub(crate) failovers: u64,
    /// Every configured replica, in config order.
    pub(crate) replicas: Vec<ReplicaView>,
    pub(crate) catalog: CatalogView,
    pub(crate) cache: CacheStats,
    pub(crate) traffic: Traffic,
    /// The most recent leader changes, oldest first.
    pub(crate) leader_changes: Vec<LeaderChange>,
}

/// One replica on the live page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaView {
    pub(crate) id: u32,
    /// Its HTTP address.
    pub(crate) addr: String,
    /// False when its `/health` did not answer in time.
    pub(crate) up: bool,
    /// `"leader"`, `"follower"`, `"recovering"` as it reports itself, or `"down"`.
    pub(crate) role: String,
    /// True for the replica this front-end forwards orders to.
    pub(crate) is_leader: bool,
    pub(crate) epoch: Option<u64>,
    pub(crate) latest: Option<i64>,
    pub(crate) commit: Option<i64>,
    pub(crate) applied: Option<i64>,
    /// How many orders it holds fewer than the leader (`null` when either is unknown).
    pub(crate) behind: Option<i64>,
    /// Why it shows as down.
    pub(crate) error: Option<String>,
}

/// The catalog on the live page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CatalogView {
    pub(crate) up: bool,
    pub(crate) stocks: Vec<StockRecord>,
    pub(crate) error: Option<String>,
}

/// The front-end's cache with its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub capacity: usize,
    /// Most recently used first.
    pub items: Vec<String>,
    pub hits: u64,
    pub misses: u64,
    /// Entries pushed out by a newer one (the cache was full).
    #[serde(default)]
    pub evictions: u64,
    /// Entries dropped by an invalidation (invalidations of absent keys are not counted).
    #[serde(default)]
    pub invalidations: u64,
}

/// Requests the front-end handled: totals since it started and the last seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Traffic {
    pub(crate) orders: u64,
    pub(crate) lookups: u64,
    /// One sample per whole second, oldest first, ending with the last complete second.
    pub(crate) per_second: Vec<RateSample>,
}

/// Requests in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateSample {
    /// The second, in seconds since the Unix epoch.
    pub(crate) t: u64,
    pub(crate) orders: u64,
    pub(crate) lookups: u64,
}

/// A change of leader as the front-end saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaderChange {
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The leader before, `null` when there was none.
    pub(crate) from: Option<u32>,
    /// The new leader, `null` when no replica answered the selection.
    pub(crate) to: Option<u32>,
    /// The new leader's epoch (`null` with `to`).
    pub(crate) epoch: Option<u64>,
}

/// Serde for how far a log, a commit point or an apply point reaches, `Option<u64>` inside
/// (the replica core's `Last`: the last order number covered, `None` for none): the wire
/// spells `None` as −1, as it always has, so bodies are unchanged. Any other negative number is
/// refused when decoding (a 400 for a request, a failed call for an answer), never taken.
pub(crate) mod minus_one {
    use std::fmt;

    use serde::de::{self, Deserializer, Unexpected, Visitor};
    use serde::Serializer;

    use crate::error::{Error, Result};

    pub(crate) fn serialize<S: Serializer>(
        last: &Option<u64>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match *last {
            Some(number) => s.serialize_u64(number),
            None => s.serialize_i64(-1),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<u64>, D::Error> {
        d.deserialize_i64(LastVisitor)
    }

    struct LastVisitor;

    impl Visitor<'_> for LastVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an order number, or -1 for none")
        }

        fn visit_u64<E: de::Error>(self, number: u64) -> std::result::Result<Option<u64>, E> {
            Ok(Some(number))
        }

        fn visit_i64<E: de::Error>(self, wire: i64) -> std::result::Result<Option<u64>, E> {
            decode(wire).map_err(|_| E::invalid_value(Unexpected::Signed(wire), &self))
        }
    }

    /// `last` as `/health` and the metrics show it. A number beyond `i64::MAX` (no log gets
    /// there) shows as `i64::MAX`.
    pub(crate) fn encode(last: Option<u64>) -> i64 {
        last.map_or(-1, |number| i64::try_from(number).unwrap_or(i64::MAX))
    }

    /// The reverse of [`encode`], for fields that stay `i64` (the catalog's `applied`): −1 is
    /// `None`, a number below it is refused.
    pub(crate) fn decode(wire: i64) -> Result<Option<u64>> {
        match wire {
            -1 => Ok(None),
            _ => u64::try_from(wire)
                .map(Some)
                .map_err(|_| Error::BadRequest(format!("{wire} is below -1"))),
        }
    }
}

/// `GET /synchronize` on an order replica: how far its log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Highest order number held, -1 (`None`) when the log is empty.
    #[serde(with = "minus_one")]
    pub latest: Option<u64>,
    /// The highest epoch this replica has granted or led (persisted).
    pub(crate) epoch: u64,
    /// The epoch of the leader whose log this log is known to be a prefix of (persisted; 0
    /// when new). `(log_epoch, latest)` decides which log is more up to date.
    pub(crate) log_epoch: u64,
}

impl SyncState {
    /// The order in which logs are more up to date.
    pub(crate) fn rank(&self) -> (u64, Option<u64>) {
        (self.log_epoch, self.latest)
    }
}

/// A page of log entries: `GET /orders?since=N` on an order replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogPage {
    pub(crate) entries: Vec<LogEntry>,
    /// Highest order number the replica held when it answered, -1 (`None`) when empty.
    #[serde(with = "minus_one")]
    pub(crate) latest: Option<u64>,
}

/// The entry just before a replicated batch, so the follower can check that its log agrees up
/// to there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogPosition {
    pub(crate) number: u64,
    pub(crate) epoch: u64,
}

/// `POST /propagate`: leader to follower (replication and heartbeat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Propagate {
    /// The leader's epoch; a follower that has granted a higher one refuses with 409.
    pub(crate) epoch: u64,
    pub(crate) leader: u32,
    /// The entry before `entries[0]`, `None` when `entries` start at order 0.
    pub(crate) prev: Option<LogPosition>,
    pub(crate) entries: Vec<LogEntry>,
    /// The leader's highest number when its leadership began: a follower that holds the
    /// leader's log at least this far holds every order committed before this epoch, and only
    /// then counts as holding this epoch's log (`log_epoch`). -1 (`None`): it began empty.
    #[serde(with = "minus_one")]
    pub(crate) base: Option<u64>,
    /// The leader's commit point (shown by followers' `/health`), -1 (`None`) for none.
    #[serde(with = "minus_one")]
    pub(crate) commit: Option<u64>,
}

/// The follower's answer to [`Propagate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PropagateAck {
    /// False when `prev` did not match; the leader then resends from `latest + 1`.
    pub(crate) accepted: bool,
    /// The follower's highest order number after applying (or the hint where to resume), -1
    /// (`None`) for none.
    #[serde(with = "minus_one")]
    pub(crate) latest: Option<u64>,
}

/// `POST /vote`: a candidate asks a peer to grant it `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VoteRequest {
    pub(crate) epoch: u64,
    pub(crate) candidate: u32,
    /// A pre-vote: "would you grant it?", answered without changing or persisting anything,
    /// so that a replica cut off from its peers does not raise its epoch in vain.
    #[serde(default)]
    pub(crate) pre: bool,
}

/// The answer to [`VoteRequest`]: granted or not, and how far the voter's log goes, so that the
/// candidate can take the most up-to-date log of the majority that granted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VoteReply {
    pub(crate) granted: bool,
    /// The voter's log and its current (promised) epoch.
    pub(crate) state: SyncState,
}

/// `POST /leader` on the catalog: a new leader of `epoch` announces itself and reads where the
/// catalog stands. The catalog raises its fence to `epoch` (refusing applies from lower ones)
/// and persists that before it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHello {
    pub epoch: u64,
    pub leader: u32,
}

/// The catalog's state: `GET /state`, and the answer to [`LeaderHello`] and [`ApplyBatch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    /// The highest leader epoch the catalog has seen; it refuses applies from lower epochs.
    pub epoch: u64,
    /// The last order number applied, -1 before the first.
    pub applied: i64,
    /// The epoch of the leader that applied `applied` (0 before the first).
    pub(crate) applied_epoch: u64,
    /// Every stock after applying orders `0..=applied`, in catalog order.
    pub(crate) stocks: Vec<StockRecord>,
}

/// `POST /apply` on the catalog: committed orders, applied strictly in number order, each once.
/// Entries the catalog has already applied are skipped; if `entries[0]` is past the next number
/// it expects, nothing is applied and the answer's `applied` says where to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyBatch {
    pub epoch: u64,
    pub leader: u32,
    pub entries: Vec<LogEntry>,
}

/// `POST /invalidation` on a front-end (from the catalog): drop these stocks from the cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateBatch {
    pub names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replica bodies carry `Option<u64>` inside and the numbers they always carried on
    /// the wire: −1 for none; any other negative number is refused, never taken.
    #[test]
    fn minus_one_is_none_on_the_wire() {
        let ack = |latest| PropagateAck {
            accepted: true,
            latest,
        };
        for (latest, json) in [
            (None, r#"{"accepted":true,"latest":-1}"#),
            (Some(0), r#"{"accepted":true,"latest":0}"#),
            (Some(41), r#"{"accepted":true,"latest":41}"#),
        ] {
            assert_eq!(serde_json::to_string(&ack(latest)).unwrap(), json);
            assert_eq!(
                serde_json::from_str::<PropagateAck>(json).unwrap(),
                ack(latest)
            );
        }
        for bad in ["-2", "-9223372036854775808", "1.5", "\"3\"", "null"] {
            let json = format!(r#"{{"accepted":true,"latest":{bad}}}"#);
            assert!(
                serde_json::from_str::<PropagateAck>(&json).is_err(),
                "{json}"
            );
        }
        assert_eq!(minus_one::encode(None), -1);
        assert_eq!(minus_one::encode(Some(7)), 7);
        assert_eq!(minus_one::decode(-1), Ok(None));
        assert_eq!(minus_one::decode(7), Ok(Some(7)));
        assert!(minus_one::decode(-2).is_err());
    }

    #[test]
    fn order_validation_table() {
        let ok = |body: &str| OrderRequest::parse(body.as_bytes());
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"name":"GameStart","quantity":1,"type":"buy"}"#, None),
            (
                r#"{"name":"GameStart","quantity":3,"type":"sell","request_id":"r1"}"#,
                None,
            ),
            (
                r#"{"name":"GameStart","quantity":1,"type":"buy""#,
                Some("malformed JSON"),
            ),
            (r#"[1,2]"#, Some("JSON object")),
            (
                r#"{"quantity":1,"type":"buy"}"#,
                Some("missing field \"name\""),
            ),
            (
                r#"{"name":"X","type":"buy"}"#,
                Some("missing field \"quantity\""),
            ),
            (
                r#"{"name":"X","quantity":1}"#,
                Some("missing field \"type\""),
            ),
            (
                r#"{"name":"X","quantity":0,"type":"buy"}"#,
                Some("positive integer"),
            ),
            (
                r#"{"name":"X","quantity":-2,"type":"buy"}"#,
                Some("positive integer"),
            ),
            (
                r#"{"name":"X","quantity":1.5,"type":"buy"}"#,
                Some("positive integer"),
            ),
            (
                r#"{"name":"X","quantity":"1","type":"buy"}"#,
                Some("positive integer"),
            ),
            (r#"{"name":"X","quantity":1,"type":"hold"}"#, Some("buy")),
            (r#"{"name":"X","quantity":1,"type":7}"#, Some("buy")),
            (
                r#"{"name":"","quantity":1,"type":"buy"}"#,
                Some("non-empty"),
            ),
            (r#"{"name":3,"quantity":1,"type":"buy"}"#, Some("non-empty")),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":5}"#,
                Some("request_id"),
            ),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":"a b~!\"{}"}"#,
                None,
            ),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":""}"#,
                Some("printable ASCII"),
            ),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":"a\u0001"}"#,
                Some("printable ASCII"),
            ),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":"tab\there"}"#,
                Some("printable ASCII"),
            ),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":"del\u007f"}"#,
                Some("printable ASCII"),
            ),
            (
                r#"{"name":"X","quantity":1,"type":"buy","request_id":"caf\u00e9"}"#,
                Some("printable ASCII"),
            ),
        ];
        for (body, want) in cases {
            match (ok(body), want) {
                (Ok(_), None) => {}
                (Err(Error::BadRequest(msg)), Some(part)) => {
                    assert!(msg.contains(part), "{body}: {msg:?} lacks {part:?}")
                }
                (got, want) => panic!("{body}: got {got:?}, want error containing {want:?}"),
            }
        }
    }

    #[test]
    fn minted_request_ids_are_unique_across_threads_and_bounded() {
        let minters: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..100).map(|_| new_request_id("t")).collect::<Vec<_>>())
            })
            .collect();
        let ids: Vec<String> = minters
            .into_iter()
            .flat_map(|m| m.join().unwrap())
            .collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(ids.iter().all(|id| id.starts_with("t-")));
        assert!(ids.iter().all(|id| check_request_id(Some(id)).is_ok()));
    }

    #[test]
    fn request_ids_are_bounded_in_bytes_for_clients_and_in_logs() {
        let longest = "~".repeat(MAX_REQUEST_ID_LEN);
        assert!(check_request_id(Some(&longest)).is_ok());
        assert!(check_request_id(Some(&format!("{longest}~"))).is_err());
        // 43 three-byte characters are 129 bytes: the limit is in bytes, not characters.
        let entry = |request_id: String| LogEntry {
            number: 7,
            name: "GameStart".into(),
            kind: OrderType::Buy,
            quantity: 1,
            epoch: 1,
            request_id,
        };
        assert!(entry("\u{20ac}".repeat(43)).validate().is_err());
        // A log written before the printable-ASCII rule still replicates: its entries pass.
        assert!(entry("\u{1}".repeat(MAX_REQUEST_ID_LEN)).validate().is_ok());
        assert!(entry("\u{20ac}".repeat(42)).validate().is_ok());
        assert!(entry(String::new()).validate().is_err());
    }

    fn any_entry() -> impl proptest::strategy::Strategy<Value = LogEntry> {
        use proptest::prelude::*;
        // Strings from every class serde_json treats differently: plain, short escapes,
        // `\u00XX` escapes, DEL, multi-byte UTF-8.
        let text = proptest::collection::vec(
            prop_oneof![
                any::<char>(),
                (0u8..0x20).prop_map(char::from),
                Just('"'),
                Just('\\'),
                Just('\u{7f}'),
            ],
            0..40,
        )
        .prop_map(|chars| chars.into_iter().collect::<String>());
        (
            any::<u64>(),
            text.clone(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            text,
        )
            .prop_map(
                |(number, name, buy, quantity, epoch, request_id)| LogEntry {
                    number,
                    name,
                    kind: if buy { OrderType::Buy } else { OrderType::Sell },
                    quantity,
                    epoch,
                    request_id,
                },
            )
    }

    proptest::proptest! {
        #[test]
        fn encoded_len_is_the_length_serde_json_writes(entry in any_entry()) {
            let bytes = serde_json::to_vec(&entry).expect("a log entry encodes");
            proptest::prop_assert_eq!(entry.encoded_len(), bytes.len());
        }
    }

    #[test]
    fn encoded_len_at_the_edges() {
        for n in [0, 9, 10, 99, 100, u64::MAX] {
            let entry = LogEntry {
                number: n,
                name: "\u{0}\u{8}\u{b}\u{1f}".into(),
                kind: OrderType::Sell,
                quantity: n,
                epoch: n,
                request_id: "\u{7f}\u{80}\u{10ffff}\"\\/".into(),
            };
            assert_eq!(
                entry.encoded_len(),
                serde_json::to_vec(&entry).unwrap().len()
            );
        }
    }

    #[test]
    fn wire_names_match_the_spec() {
        let order = Order {
            number: 0,
            name: "GameStart".into(),
            kind: OrderType::Buy,
            quantity: 1,
        };
        assert_eq!(
            serde_json::to_string(&Data { data: order }).unwrap(),
            r#"{"data":{"number":0,"name":"GameStart","type":"buy","quantity":1}}"#
        );
        let err = ErrorBody::from(&Error::NotFound("no stock".into()));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error":{"code":404,"message":"no stock"}}"#
        );
        let err = ErrorBody::from(&Error::Resend {
            message: "late".into(),
            request_id: "fe-7".into(),
        });
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error":{"code":503,"message":"late","request_id":"fe-7"}}"#
        );
    }
}

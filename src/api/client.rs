//! The public REST bodies: what a client sends to the front-end and what it gets back
//! (docs/spec.md §3), and the rules an order from a client obeys.
//!
//! Successful answers are `{"data": ...}` ([`Data`]); failures are
//! `{"error":{"code":C,"message":"..."}}` ([`ErrorBody`]), plus `"request_id"` on a 503 whose
//! order must be re-sent under that id. The front-end forwards an [`OrderRequest`] to the
//! leader unchanged, so the replicas read this body too.
//!
//! Client-supplied order bodies are validated by [`OrderRequest::parse`], which is strict on
//! purpose (docs/spec.md §3): `quantity` must be a JSON integer above zero, never a string or a
//! float. The field rules (`check_name`, `check_quantity`) are shared with the log entries a
//! peer sends (`api::replication`), which must be orders a leader could have numbered.
//!
//! Caveats:
//! - These types are the wire: a field renamed here is renamed for every client, older ones
//!   included, and for every test that reads raw JSON. Rust names differ from wire names only
//!   through serde attributes (`kind` is `"type"`).
//! - [`new_request_id`] is unique only as far as a process's start time and pid are (see
//!   there).

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

pub(super) fn check_name(name: Option<&str>) -> Result<&str> {
    name.filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadRequest("name must be a non-empty string".into()))
}

pub(super) fn check_quantity(quantity: Option<u64>) -> Result<u64> {
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

/// `GET /cache` on the front-end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheView {
    pub(crate) enabled: bool,
    pub(crate) capacity: usize,
    /// Most recently used first.
    pub items: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LogEntry;

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

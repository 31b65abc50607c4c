//! Replica ↔ replica bodies: the log entries the replicas exchange (`POST /propagate`, log
//! pages of `GET /orders?since=N`), leader election (`POST /vote`, `GET /synchronize`), and
//! the [`minus_one`] serde adapter that keeps −1 on the wire for "no order".
//!
//! A [`LogEntry`] is also what the leader sends the catalog (`api::catalog::ApplyBatch`) and
//! what a replica's log file holds, one per line: it is the one shape of an order once it has
//! a number. What a message's entries must be before anything is done with them (numbered one
//! after the other, each an order a leader could have numbered) is decided here too, so that
//! the replica's HTTP layer, its core and the catalog apply one rule:
//! [`Propagate::first_gap`], [`first_gap`], [`LogEntry::validate`].
//!
//! Caveats:
//! - Inside, how far a log reaches is `Option<u64>` (`None`: nothing); on the wire it stays the
//!   `i64` it always was, −1 for none, through [`minus_one`]. A body with any other negative
//!   number is refused, never taken.
//! - A log entry's request id is checked for its length only, not its characters: logs of
//!   older versions hold ids that a client may no longer send, and they must still replicate.

use serde::{Deserialize, Serialize};

use super::client::{check_name, check_quantity, Order, OrderType, MAX_REQUEST_ID_LEN};
use crate::error::{Error, Result};

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
    /// The checks of [`OrderRequest::parse`](crate::api::OrderRequest::parse) on a log entry a peer sent (replication, the
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

/// A request id already in a log: only its length is checked, not its characters. Logs
/// written before `is_request_id_char` was enforced may hold any characters, and they must
/// still load, replicate and be applied; only a new order meets the stricter rule.
fn check_logged_request_id(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(Error::BadRequest(format!(
            "request_id must be a string of 1 to {MAX_REQUEST_ID_LEN} bytes"
        )));
    }
    Ok(id)
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

impl Propagate {
    /// Where the entries stop being numbered one after the other from just after `prev` (from
    /// 0 without one): the index of the first entry out of place, `None` when all are in place.
    /// Checked before a propagate changes anything, by the replica's HTTP layer (to name the
    /// entry in its 400) and again by its core (the authority, also driven without HTTP).
    pub(crate) fn first_gap(&self) -> Option<usize> {
        // After `u64::MAX` no number can come: any entry is out of place.
        let first = self.prev.map_or(Some(0), |prev| prev.number.checked_add(1));
        first_gap(first, &self.entries)
    }
}

/// The index of the first of `entries` whose number is not `first + i` (`first` is the number
/// `entries[0]` must have, `None` when none can be had), `None` when every entry is in place.
/// The one rule for "consecutive" of [`Propagate::first_gap`] and the catalog's
/// `ApplyBatch::first_gap`.
pub(crate) fn first_gap(first: Option<u64>, entries: &[LogEntry]) -> Option<usize> {
    entries
        .iter()
        .zip(0u64..)
        .position(|(e, i)| first.and_then(|first| first.checked_add(i)) != Some(e.number))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

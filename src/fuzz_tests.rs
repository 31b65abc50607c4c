//! Property-based fuzzing (proptest) of every parser that reads bytes from the outside: the
//! HTTP request head, the leader-selection lines, the CSV order log, and the JSON bodies
//! (orders, the catalog's `/leader` and `/apply` through its real router, replication and
//! invalidation bodies). Every test is named `fuzz_*`.
//!
//! Inside `cargo test` each runs a bounded number of cases ([`DEFAULT_CASES`], fewer for the
//! ones that write files); `PROPTEST_CASES=N` overrides them all, which is the longer run of
//! the README: `PROPTEST_CASES=100000 cargo test --release --lib fuzz_`.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::api::{InvalidateBatch, LogEntry, OrderRequest, OrderType, Propagate, VoteRequest};
use crate::config::StockConfig;
use crate::http::server::parse_head;
use crate::http::{Request, MAX_BODY_BYTES};
use crate::order::logfile::{encode, encode_file, OrderLog, PLAIN_HEADER};
use crate::selection::{Command, Reply};

/// Cases per test inside `cargo test` unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 256;

/// Cases of the tests that create a file per case.
const FILE_CASES: u32 = 64;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that look like an HTTP head often enough to get past the request line.
fn http_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        "[A-Z]{0,8}"
    ];
    let target = prop_oneof![
        Just("/orders".to_string()),
        Just("/stocks/GameStart".to_string()),
        "/[ -~]{0,40}",
        ".{0,20}"
    ];
    let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2"), Just("")];
    let header = prop_oneof![
        "[0-9+ -]{0,24}".prop_map(|v| format!("Content-Length: {v}")),
        Just("Transfer-Encoding: chunked".to_string()),
        "[a-z]{0,10}".prop_map(|v| format!("Transfer-Encoding: {v}")),
        "[ -~]{0,30}".prop_map(|v| format!("Authorization: Bearer {v}")),
        "[!-~]{0,12}: [ -~]{0,30}",
        ".{0,30}",
    ];
    (
        method,
        target,
        version,
        proptest::collection::vec(header, 0..8),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(m, t, v, headers, body, complete)| {
            let mut out = format!("{m} {t} {v}\r\n").into_bytes();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            if complete {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&body);
            out
        })
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    /// The HTTP head parser never panics; what it accepts is within the buffer and the limits,
    /// and the accessors of the request it builds never panic either.
    #[test]
    fn fuzz_http_request_head(
        buf in prop_oneof![proptest::collection::vec(any::<u8>(), 0..2048), http_head()]
    ) {
        if let Ok(Some((head_len, request, content_length))) = parse_head(&buf) {
            prop_assert!(head_len <= buf.len());
            prop_assert!(content_length <= MAX_BODY_BYTES);
            let _ = request.segments();
            let _ = request.query_param("stock");
            let _ = request.require_secret("s3cret");
            prop_assert_eq!(request.method.clone(), request.method.to_ascii_uppercase());
        }
    }

    /// Any line parses or not without panicking, and what parses formats back to a line that
    /// parses to the same command.
    #[test]
    fn fuzz_line_protocol_any_line(line in prop_oneof![
        ".{0,64}",
        "(You win|Ping|[0-9]{1,12})( [0-9a-z+-]{0,22}){0,3}[\r\n ]{0,2}",
    ]) {
        if let Some(command) = Command::parse(&line) {
            prop_assert_eq!(Command::parse(&command.to_string()), Some(command.clone()));
            if !command.secret().is_empty() {
                prop_assert!(command.redacted().ends_with(" <secret>"));
            }
        }
        let reply = Reply::parse(&line);
        let _ = reply.to_string();
    }

    /// Every command with a secret the config accepts (printable ASCII, no spaces) survives
    /// the one formatter and the one parser unchanged.
    #[test]
    fn fuzz_line_protocol_round_trip(
        kind in 0..3u8,
        id in any::<u32>(),
        number in proptest::option::of(any::<u64>()),
        secret in "[!-~]{1,40}",
    ) {
        let secret = if number.is_some() { secret } else { String::new() };
        let command = match kind {
            0 => Command::Ping,
            1 => Command::YouWin { hint: number, secret },
            _ => Command::Leader { id, epoch: number, secret },
        };
        prop_assert_eq!(Command::parse(&command.to_string()), Some(command));
    }

    /// Order bodies: never a panic; what is accepted is a valid order.
    #[test]
    fn fuzz_order_body(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        json_object(&["name", "quantity", "type", "request_id"]).prop_map(|v| v.to_string().into_bytes()),
    ]) {
        if let Ok(order) = OrderRequest::parse(&body) {
            prop_assert!(order.validate().is_ok());
            prop_assert!(order.quantity > 0 && !order.name.is_empty());
        }
    }

    /// Replication, vote and invalidation bodies: decoding never panics, and an entry that
    /// passes `LogEntry::validate` is one a leader could have numbered.
    #[test]
    fn fuzz_internal_bodies(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        json_object(&["epoch", "leader", "prev", "entries", "base", "commit", "candidate", "pre", "names"])
            .prop_map(|v| v.to_string().into_bytes()),
    ]) {
        let req = Request::new("POST", "/propagate", body);
        if let Ok(p) = req.json::<Propagate>() {
            for e in &p.entries {
                if e.validate().is_ok() {
                    prop_assert!(e.quantity > 0 && !e.name.is_empty() && !e.request_id.is_empty());
                }
            }
        }
        let _ = req.json::<VoteRequest>();
        let _ = req.json::<InvalidateBatch>();
    }
}

/// Leaves for JSON values: every type, and numbers at the edges.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..5).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1.5)),
        Just(Value::String("GameStart".into())),
        Just(Value::String("A".into())),
        Just(Value::String("buy".into())),
        Just(Value::String("sell".into())),
        ".{0,12}".prop_map(Value::from),
        Just(Value::String("x".repeat(200))),
    ]
}

/// A JSON value: a leaf, or arrays and objects of them (a few levels).
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object whose keys are mostly the real ones, with any values.
fn json_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => proptest::sample::select(keys).prop_map(String::from),
        1 => "[a-z_]{1,10}",
    ];
    proptest::collection::btree_map(key, json_value(), 0..7)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An apply entry, mostly plausible, sometimes wrong in one field.
fn apply_entry() -> impl Strategy<Value = Value> {
    (
        0u64..6,
        prop_oneof![Just(json!("A")), Just(json!("B")), json_leaf()],
        prop_oneof![Just(json!("buy")), Just(json!("sell")), json_leaf()],
        prop_oneof![(0u64..200).prop_map(Value::from), json_leaf()],
        prop_oneof![(0u64..4).prop_map(Value::from), json_leaf()],
        prop_oneof![".{0,8}".prop_map(Value::from), json_leaf()],
    )
        .prop_map(|(number, name, kind, quantity, epoch, request_id)| {
            json!({"number": number, "name": name, "type": kind, "quantity": quantity,
                   "epoch": epoch, "request_id": request_id})
        })
}

proptest! {
    #![proptest_config(config(FILE_CASES))]

    /// The CSV loader: a log of valid entries (in this format or the previous one) with
    /// anything inserted or cut at any byte never panics and always opens; it loads a prefix
    /// of what was written and, with checksums, never an entry that was not written. A cut
    /// only ever loses the torn last line and is never damage; damage leaves the file as found
    /// in `.damaged`.
    #[test]
    fn fuzz_csv_log_loader(
        entries in proptest::collection::vec(
            ("[A-Za-z]{1,8}", any::<bool>(), 1u64..1000, 1u64..5, "[!-~]{1,20}"), 0..6),
        plain in any::<bool>(),
        cut in any::<proptest::sample::Index>(),
        damage in proptest::option::of((any::<proptest::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 0..40))),
    ) {
        let entries: Vec<LogEntry> = entries.into_iter().enumerate().map(|(i, (name, buy, quantity, epoch, rid))| LogEntry {
            number: i as u64,
            name,
            kind: if buy { OrderType::Buy } else { OrderType::Sell },
            quantity,
            epoch,
            request_id: format!("{rid}-{i}"),
        }).collect();
        let (mut bytes, header) = if plain {
            let mut bytes = PLAIN_HEADER.as_bytes().to_vec();
            for e in &entries {
                bytes.extend(encode(e).unwrap());
            }
            (bytes, PLAIN_HEADER.len())
        } else {
            (encode_file(&entries).unwrap(), crate::order::logfile::HEADER.len())
        };
        let full = bytes.len();
        if let Some((at, junk)) = &damage {
            let at = header + at.index(full - header + 1);
            bytes.splice(at..at, junk.iter().copied());
        }
        let len = bytes.len();
        let bytes = if damage.is_none() { bytes[..header + cut.index(len - header + 1)].to_vec() } else { bytes };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders-1.csv");
        std::fs::write(&path, &bytes).unwrap();
        let log = OrderLog::open(&path);
        prop_assert!(log.is_ok(), "damage never refuses: {:?}", log.err());
        let log = log.unwrap();
        let loaded = log.since(0, usize::MAX).unwrap().entries;
        for (i, e) in loaded.iter().enumerate() {
            prop_assert_eq!(e.number, i as u64);
        }
        if damage.is_none() || !plain {
            prop_assert!(loaded.len() <= entries.len());
            prop_assert_eq!(&loaded[..], &entries[..loaded.len()]);
        }
        if damage.is_none() {
            prop_assert_eq!(log.damage(), None, "a cut is never damage");
            prop_assert!(loaded.len() + 1 >= entries.len() || bytes.len() < full);
        }
        if let Some(first) = log.damage() {
            prop_assert_eq!(first, loaded.len() as u64);
            let damaged = dir.path().join("orders-1.csv.damaged");
            prop_assert_eq!(std::fs::read(damaged).unwrap(), bytes, "kept as found");
        }
        drop(log);
        prop_assert_eq!(OrderLog::open(&path).unwrap().since(0, usize::MAX).unwrap().entries, loaded, "reopens the same");
    }

    /// The catalog's `/leader` and `/apply` through its real router, with the secret: any body
    /// gets 200 or a 4xx, never a 500, and a refused one changes neither the file nor the
    /// state it serves.
    #[test]
    fn fuzz_catalog_bodies(
        path in prop_oneof![Just("/apply"), Just("/leader")],
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            json_object(&["epoch", "leader", "entries"]).prop_map(|v| v.to_string().into_bytes()),
            (prop_oneof![(0u64..4).prop_map(Value::from), json_leaf()],
             prop_oneof![(1u64..4).prop_map(Value::from), json_leaf()],
             proptest::collection::vec(apply_entry(), 0..4))
                .prop_map(|(epoch, leader, entries)| json!({"epoch": epoch, "leader": leader, "entries": entries}).to_string().into_bytes()),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("catalog.json");
        let stocks = vec![
            StockConfig { name: "A".into(), price: 1.5, quantity: 100 },
            StockConfig { name: "B".into(), price: 2.0, quantity: 3 },
        ];
        let catalog = crate::catalog::Catalog::open(&file, &stocks).unwrap();
        let service = crate::catalog::CatalogApi::new(catalog, Vec::new(), "s3cret").unwrap();
        let state = |service: &crate::catalog::CatalogApi| {
            let r = service.route(&Request::new("GET", "/state", Vec::new())).unwrap();
            r.body
        };
        let before = (std::fs::read(&file).unwrap(), state(&service));
        let mut req = Request::new("POST", path, body);
        req.headers.push(("authorization".into(), "Bearer s3cret".into()));
        let status = match service.route(&req) {
            Ok(r) => r.status,
            Err(e) => e.status(),
        };
        prop_assert!(status == 200 || (400..500).contains(&status), "status {}", status);
        if status != 200 {
            prop_assert_eq!((std::fs::read(&file).unwrap(), state(&service)), before);
        }
    }
}

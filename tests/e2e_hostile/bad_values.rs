//! Bad values on every POST: every client-facing order body that must be refused, and the
//! internal endpoints' bodies, each answered with a JSON 4xx that changes nothing.
//!
//! Caveats: only bodies are varied here; junk framing is `junk.rs`'s.

use super::*;

/// Every client-facing order body that must be refused, whoever receives it.
fn bad_orders() -> Vec<String> {
    let long = "x".repeat(10 * 1024);
    let mut bodies: Vec<String> = [
        "",
        "{",
        "null",
        "[]",
        "\"order\"",
        "{}",
        r#"{"name":"GameStart","quantity":1,"type":"buy""#,
        r#"{"name":"GameStart","quantity":1}"#,
        r#"{"name":"GameStart","type":"buy"}"#,
        r#"{"quantity":1,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":0,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":-1,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1.5,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1.0,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1e3,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":9223372036854775808,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":18446744073709551616,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":100000000000000000000000000,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":"1","type":"buy"}"#,
        r#"{"name":"GameStart","quantity":null,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":true,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1,"type":"hold"}"#,
        r#"{"name":"GameStart","quantity":1,"type":"BUY"}"#,
        r#"{"name":"GameStart","quantity":1,"type":1}"#,
        r#"{"name":"GameStart","quantity":1,"type":null}"#,
        r#"{"name":1,"quantity":1,"type":"buy"}"#,
        r#"{"name":["GameStart"],"quantity":1,"type":"buy"}"#,
        r#"{"name":"","quantity":1,"type":"buy"}"#,
        r#"{"name":"Gämé","quantity":1,"type":"buy"}"#,
        r#"{"name":"GameStart/..","quantity":1,"type":"buy"}"#,
        r#"{"name":"../catalog.json","quantity":1,"type":"buy"}"#,
        r#"{"name":"..","quantity":1,"type":"buy"}"#,
        r#"{"name":"Game%00Start","quantity":1,"type":"buy"}"#,
        r#"{"name":"Game\u0000Start","quantity":1,"type":"buy"}"#,
        r#"{"name":"Game%2FStart","quantity":1,"type":"buy"}"#,
        r#"{"name":"GameStart","quantity":1,"type":"buy","request_id":""}"#,
        r#"{"name":"GameStart","quantity":1,"type":"buy","request_id":7}"#,
        r#"{"name":"GameStart","quantity":1,"type":"sell","extra":1,"quantity":0}"#,
        r#"{"name":"GameStart","quantity":1000000,"type":"buy"}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    bodies.push(format!(r#"{{"name":"{long}","quantity":1,"type":"buy"}}"#));
    bodies.push(format!(
        r#"{{"name":"GameStart","quantity":1,"type":"buy","request_id":"{long}"}}"#
    ));
    bodies.push(format!(
        r#"{{"name":"GameStart","quantity":1,"type":"buy","pad":"{}"}}"#,
        "y".repeat(70 * 1024)
    ));
    bodies
}

fn assert_json_4xx(what: &str, got: &(u16, Value)) {
    assert!(
        (400..500).contains(&got.0),
        "{what}: status {} (body {})",
        got.0,
        got.1
    );
    if got.0 != 413 || got.1 != Value::Null {
        assert_eq!(got.1["error"]["code"], got.0, "{what}: body {}", got.1);
    }
}

#[test]
fn bad_values_on_every_post_are_json_4xx() {
    let c = quiet_cluster();
    let secret = secret(&c);
    let auth = format!("Authorization: Bearer {secret}\r\n");
    let leader = c.wait_leader().unwrap();
    let follower = 1 + leader % 3;
    let before = snapshot(&c);
    let epoch = c.replica_health(leader).unwrap().epoch;
    let mut cases = 0;
    // Client orders, on the front-end and straight to the leading replica.
    for body in bad_orders() {
        for addr in [c.frontend.clone(), c.http_addr(Process::Order(leader))] {
            let got = raw(&addr, "POST", "/orders", &body);
            assert_json_4xx(&format!("{addr} /orders {:.80}", body), &got);
            cases += 1;
        }
    }
    // The reference client's POST /order with query parameters.
    for query in [
        "",
        "?stock=GameStart&quantity=-1&type=buy",
        "?stock=GameStart&quantity=0&type=buy",
        "?stock=GameStart&quantity=1.5&type=buy",
        "?stock=GameStart&quantity=99999999999999999999&type=buy",
        "?stock=GameStart&quantity=1&type=hold",
        "?stock=GameStart&quantity=1",
        "?stock=&quantity=1&type=buy",
        "?stock=..%2Fcatalog.json&quantity=1&type=buy",
        "?stock=Game%00Start&quantity=1&type=buy",
        "?stock=GameStart&amp;quantity=x&amp;type=buy",
    ] {
        let got = raw(&c.frontend, "POST", &format!("/order{query}"), "");
        assert_json_4xx(&format!("POST /order{query}"), &got);
        cases += 1;
    }
    // Names in paths.
    for name in [
        "..",
        "%2e%2e",
        "a%2Fb",
        "a%00b",
        "%FF",
        "G%C3%A4m%C3%A9",
        "GameStart%20",
    ] {
        let got = raw(&c.frontend, "GET", &format!("/stocks/{name}"), "");
        assert_json_4xx(&format!("/stocks/{name}"), &got);
        let got = raw(&c.catalog, "GET", &format!("/stocks/{name}"), "");
        assert_json_4xx(&format!("catalog /stocks/{name}"), &got);
        cases += 2;
    }
    let long = "x".repeat(10 * 1024);
    let got = raw(&c.frontend, "GET", &format!("/stocks/{long}"), "");
    assert_json_4xx("10 KB name in a path", &got);
    cases += 1;
    // Internal messages: malformed, wrong types, and valid JSON that lies.
    let entry = |number: u64, name: &str, epoch: u64| json!({"number":number,"name":name,"type":"buy","quantity":1,"epoch":epoch,"request_id":format!("lie-{number}")});
    let malformed = [
        "".to_string(),
        "{".into(),
        "[]".into(),
        "{}".into(),
        r#"{"epoch":"1","leader":1}"#.into(),
        r#"{"epoch":-1,"leader":1,"entries":[]}"#.into(),
        r#"{"epoch":1.5,"leader":1,"entries":[]}"#.into(),
        r#"{"epoch":18446744073709551616,"leader":1,"entries":[]}"#.into(),
    ];
    let mut internal: Vec<(String, &str, String)> = Vec::new();
    for body in &malformed {
        for path in ["/propagate", "/vote"] {
            internal.push((c.http_addr(Process::Order(follower)), path, body.clone()));
        }
        for path in ["/leader", "/apply"] {
            internal.push((c.catalog.clone(), path, body.clone()));
        }
        internal.push((c.frontend.clone(), "/invalidation", body.clone()));
    }
    let lies_to_follower = [
        // Entries whose numbers skip, from the current leader.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(1,"GameStart",epoch),entry(3,"GameStart",epoch)],"base":0,"commit":0}),
        // Numbers out of order.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(2,"GameStart",epoch),entry(1,"GameStart",epoch)],"base":0,"commit":0}),
        // An entry that no leader numbers: quantity 0.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":0,"epoch":epoch,"request_id":"zero"}],"base":0,"commit":0}),
        // An entry from an epoch above the message's.
        json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(1,"GameStart",epoch + 5)],"base":0,"commit":0}),
        // From a replica that does not exist.
        json!({"epoch":epoch,"leader":9,"prev":null,"entries":[],"base":-1,"commit":0}),
    ];
    for lie in &lies_to_follower {
        internal.push((
            c.http_addr(Process::Order(follower)),
            "/propagate",
            lie.to_string(),
        ));
    }
    let lies_to_catalog = [
        json!({"epoch":epoch,"leader":leader,"entries":[entry(1,"GameStart",epoch),entry(3,"GameStart",epoch)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[entry(2,"GameStart",epoch),entry(1,"GameStart",epoch)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[entry(1,"NoSuchStock",epoch)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[entry(1,"GameStart",epoch + 5)]}),
        json!({"epoch":epoch,"leader":leader,"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":1000000,"epoch":epoch,"request_id":"too-many"}]}),
        json!({"epoch":epoch,"leader":leader,"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":0,"epoch":epoch,"request_id":"zero"}]}),
        json!({"epoch":epoch,"leader":leader,"entries":[{"number":1,"name":"GameStart","type":"buy","quantity":1,"epoch":epoch,"request_id":long}]}),
        json!({"epoch":epoch - 1,"leader":leader,"entries":[entry(1,"GameStart",epoch - 1)]}),
    ];
    for lie in &lies_to_catalog {
        internal.push((c.catalog.clone(), "/apply", lie.to_string()));
    }
    internal.push((
        c.catalog.clone(),
        "/leader",
        json!({"epoch":epoch - 1,"leader":leader}).to_string(),
    ));
    internal.push((
        c.frontend.clone(),
        "/invalidation",
        json!({"names":"GameStart"}).to_string(),
    ));
    for (addr, path, body) in &internal {
        let got = raw_with(addr, "POST", path, &auth, body);
        assert_json_4xx(&format!("{addr}{path} {:.200}", body), &got);
        cases += 1;
    }
    // A heartbeat whose commit point is beyond the entries the follower holds cannot be told
    // from a leader's page of a long catch-up (commit above the page): it is taken, and the
    // follower shows no commit beyond what it holds (checked with the rest below).
    let far_commit = json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[],"base":0,"commit":50});
    let got = raw_with(
        &c.http_addr(Process::Order(follower)),
        "POST",
        "/propagate",
        &auth,
        &far_commit.to_string(),
    );
    assert!(got.0 == 200 || (400..500).contains(&got.0), "{got:?}");
    cases += 1;
    assert_unchanged("bad values", &before, &c);
    // An entry for a stock that does not exist, from the authenticated leader: a follower
    // cannot tell (it does not know the catalog's stocks) and may store it, but it never
    // commits (the leader does not hold it) and the catalog is untouched.
    let unknown = json!({"epoch":epoch,"leader":leader,"prev":{"number":0,"epoch":epoch},"entries":[entry(1,"NoSuchStock",epoch)],"base":0,"commit":0});
    let got = raw_with(
        &c.http_addr(Process::Order(follower)),
        "POST",
        "/propagate",
        &auth,
        &unknown.to_string(),
    );
    assert!(got.0 == 200 || (400..500).contains(&got.0), "{got:?}");
    assert_eq!(before.1[3], raw(&c.catalog, "GET", "/state", "").1);
    cases += 1;
    let (status, _) = raw(
        &c.frontend,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(status, 200, "a good order after the bad ones");
    println!("bad values: {cases} cases, each a JSON 4xx, nothing changed");
}

//! Intruders without the deployment secret: every internal endpoint and every line that
//! changes who leads, sent without the secret or with a wrong one, is refused (401 or `ERR
//! unauthorized`) and changes nothing (files, views, cache).
//!
//! Caveats: "nothing changed" is judged on what [`super::snapshot`] sees: the data files, each
//! replica's position, the catalog's state and the front-end's cache.

use super::*;

#[test]
fn intruders_get_401_or_err_and_change_nothing() {
    let c = quiet_cluster();
    let secret = secret(&c);
    let before = snapshot(&c);
    let leader = c.wait_leader().unwrap();
    let entry = json!({"number":1,"name":"GameStart","type":"sell","quantity":1000,"epoch":99,"request_id":"evil"});
    let propagate = json!({"epoch":99,"leader":1,"prev":{"number":0,"epoch":1},"entries":[entry],"base":0,"commit":1}).to_string();
    let vote = json!({"epoch":99,"candidate":1,"pre":false}).to_string();
    let hello = json!({"epoch":99,"leader":1}).to_string();
    let apply = json!({"epoch":99,"leader":1,"entries":[entry]}).to_string();
    let mut endpoints: Vec<(String, &str, String)> = Vec::new();
    for id in 1..=3 {
        let addr = c.http_addr(Process::Order(id));
        endpoints.push((addr.clone(), "/propagate", propagate.clone()));
        endpoints.push((addr, "/vote", vote.clone()));
    }
    endpoints.push((c.catalog.clone(), "/leader", hello));
    endpoints.push((c.catalog.clone(), "/apply", apply));
    endpoints.push((
        c.frontend.clone(),
        "/invalidation",
        json!({"names":["GameStart"]}).to_string(),
    ));
    endpoints.push((c.frontend.clone(), "/invalidation/GameStart", String::new()));
    let wrong = [
        String::new(),
        "Authorization: Bearer \r\n".to_string(),
        "Authorization: Bearer wrong\r\n".to_string(),
        format!("Authorization: Bearer {}x\r\n", secret),
        format!("Authorization: Basic {secret}\r\n"),
        format!("Authorization: bearer {secret}\r\n"),
        format!("Authorization: Bearer {}\r\n", &secret[..secret.len() - 1]),
    ];
    let mut cases = 0;
    for (addr, path, body) in &endpoints {
        for headers in &wrong {
            let got = raw_with(addr, "POST", path, headers, body);
            common::assert_error(&format!("{addr}{path} with {headers:?}"), &got, 401);
            cases += 1;
        }
    }
    // The line protocol: the lines that change who leads need the secret.
    for id in 1..=3 {
        let (_, broadcast, health) = &c.replicas[&id];
        let other = if id == leader { 1 + id % 3 } else { id };
        for text in [
            "You win".to_string(),
            "You win 99".to_string(),
            "You win 99 wrong".to_string(),
            format!("You win 99 {secret}x"),
            format!("{other}"),
            format!("{other} 99"),
            format!("{other} 99 wrong"),
            format!("{other} 99 {}", &secret[1..]),
        ] {
            assert_eq!(line(broadcast, &text), "ERR unauthorized", "{text:?}");
            cases += 1;
        }
        for text in [
            format!("You win 99 {secret}"),
            format!("{other} 99 {secret}"),
        ] {
            assert_eq!(line(health, &text), "ERR unknown command", "{text:?}");
            cases += 1;
        }
        assert_eq!(line(broadcast, "Ping"), "OK");
    }
    assert_unchanged("intruders", &before, &c);
    // The service still works, and the rightful selection line is taken.
    assert_eq!(
        line(&c.replicas[&leader].1, &format!("You win 0 {secret}")),
        format!("OK {}", c.replica_health(leader).unwrap().epoch)
    );
    let (status, _) = raw(
        &c.frontend,
        "POST",
        "/orders",
        r#"{"name":"GameStart","quantity":1,"type":"buy"}"#,
    );
    assert_eq!(status, 200);
    println!("intruders: {cases} cases, every one refused, nothing changed");
}

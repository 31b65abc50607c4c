//! Scenarios of a stalled or killed catalog (c, d, i of the module doc of `main.rs`): orders
//! without request ids around a stall, a retry sent after 4,200 other orders, the catalog
//! killed under load.
//!
//! Caveats: the stalls are SIGSTOPs of the catalog, timed against the front-end's forward
//! timeout; on a much slower machine they may hit the other side of it.

use super::*;

/// c. Orders without request ids (like curl); the catalog paused 1.8 s, later 3.5 s; the
/// catalog must never hold a trade the log lacks.
#[test]
fn catalog_stall_without_request_ids() {
    let (b, sampler) = start(Options::default());
    let load = Load::orders(&b.frontend, 4, false, "c", None);
    let mut findings = Findings::default();
    // A 1.8 s stall, then one past the front-end's forward timeout (3 s).
    for stall in [Duration::from_millis(1800), Duration::from_millis(3500)] {
        findings.check(load.wait_more(30, PROGRESS_TIMEOUT), || {
            format!("no progress before the {stall:?} stall")
        });
        b.signal(Process::Catalog, "STOP").unwrap();
        thread::sleep(stall);
        b.signal(Process::Catalog, "CONT").unwrap();
    }
    findings.check(load.wait_more(30, PROGRESS_TIMEOUT), || {
        "no progress after the catalog woke".into()
    });
    let tally = load.finish().expect("the load");
    eprintln!(
        "c: {} acknowledged, {} not acknowledged",
        tally.acked.len(),
        tally.failed
    );
    finish_and_check(&b, orders(&tally.acked), sampler, None, findings);
}

/// d. An order with request id X (acknowledged), orders with ids sent once each around and
/// during a catalog stall past the front-end's forward timeout (503 or acknowledged), then
/// ~4,200 other orders, then all of them re-sent: the same numbers where one was given, each
/// id logged once, and the catalog counts each once (catalog = log).
#[test]
fn late_retry_after_4200_orders() {
    const OTHERS: usize = 4200;
    const THREADS: usize = 8;
    const STALL: Duration = Duration::from_millis(3500);
    const SENDERS_LEAD: Duration = Duration::from_millis(300);
    let (b, sampler) = start(Options::default());
    let mut findings = Findings::default();
    let x_id = "d-late-X";
    let x = place_until(&b, 0, "GameStart", OrderType::Buy, x_id, RETRY_DEADLINE)
        .expect("the first order X");
    // Orders with ids, each sent once, around and during a catalog stall: some get 503.
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (fe, stop) = (b.frontend.clone(), stop.clone());
            thread::spawn(move || {
                let client = Client::new();
                let mut sent = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let rid = format!("d-Y-{t}-{i}");
                    let req = order_request("FishCo", 1, OrderType::Sell, Some(&rid));
                    let got = client.post::<_, OrderAck>(&fe, "/orders", &req, NO_MAJORITY_ANSWER);
                    sent.push((rid, got.ok().map(|a| a.transaction_number)));
                }
                sent
            })
        })
        .collect();
    thread::sleep(SENDERS_LEAD);
    b.signal(Process::Catalog, "STOP").unwrap();
    thread::sleep(STALL);
    b.signal(Process::Catalog, "CONT").unwrap();
    thread::sleep(SENDERS_LEAD);
    stop.store(true, Ordering::SeqCst);
    let ys: Vec<(String, Option<u64>)> = senders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let unanswered = ys.iter().filter(|(_, n)| n.is_none()).count();
    eprintln!(
        "d: {} orders around the stall, {unanswered} not acknowledged",
        ys.len()
    );
    let burst = Load::orders(&b.frontend, THREADS, true, "d", Some(OTHERS / THREADS));
    let started = Instant::now();
    let tally = burst.join_within(BURST_TIMEOUT).expect("the load");
    eprintln!(
        "d: {} other orders acknowledged in {:?} ({} failed)",
        tally.acked.len(),
        started.elapsed(),
        tally.failed
    );
    findings.check(
        tally.acked.len() + tally.summary.rejected as usize >= 4100,
        || {
            format!(
                "only {} other orders went through: the late retry is not late enough",
                tally.acked.len()
            )
        },
    );
    let mut acked = orders(&tally.acked);
    let x_again = place_until(&b, 0, "GameStart", OrderType::Buy, x_id, RETRY_DEADLINE);
    findings.check(x_again.as_ref().map(|o| o.number) == Some(x.number), || {
        format!("X re-sent got {x_again:?}, first {x:?}")
    });
    acked.push(x);
    // Every order of the stall re-sent late: the same number if it had one, traded once.
    for (rid, first) in &ys {
        let again = place_until(&b, 0, "FishCo", OrderType::Sell, rid, RETRY_DEADLINE);
        if let Some(first) = first {
            findings.check(again.as_ref().map(|o| o.number) == Some(*first), || {
                format!("{rid} re-sent got {again:?}, first number {first}")
            });
        }
        acked.extend(again);
    }
    let log = finish_and_check(&b, acked, sampler, None, findings);
    for id in std::iter::once(x_id).chain(ys.iter().map(|(rid, _)| rid.as_str())) {
        let lines = log.iter().filter(|e| e.request_id == id).count();
        assert_eq!(lines, 1, "request id {id} logged {lines} times");
    }
}

/// i. The catalog killed (-9) under load, between a commit and its apply; restarted.
#[test]
fn catalog_killed_under_load() {
    let (mut b, sampler) = start(Options::default());
    let with_ids = Load::orders(&b.frontend, 2, true, "i", None);
    let curl = Load::orders(&b.frontend, 2, false, "i-curl", None);
    assert!(
        with_ids.wait_more(30, PROGRESS_TIMEOUT),
        "no progress before the kill"
    );
    b.kill(Process::Catalog);
    thread::sleep(Duration::from_millis(500));
    b.start_service(Process::Catalog).unwrap();
    let mut findings = Findings::default();
    findings.check(with_ids.wait_more(30, PROGRESS_TIMEOUT), || {
        "no progress after the catalog restarted".into()
    });
    let (t1, t2) = (
        with_ids.finish().expect("the load"),
        curl.finish().expect("the load"),
    );
    let mut acked = orders(&t1.acked);
    acked.extend(orders(&t2.acked));
    finish_and_check(&b, acked, sampler, None, findings);
}

//! Scenarios of two front-ends and of cut replica links (f, g, h of the module doc of
//! `main.rs`): no stale lookup through the other front-end, a follower cut from the leader,
//! a leader cut from both followers.
//!
//! Caveats: links are cut by the harness's per-link TCP proxies (silent, not refused), so a
//! cut looks like a partition to the replicas, not like a crash.

use super::*;

/// f. Two front-ends: orders through one, lookups through the other never stale; both route
/// orders while the leader is killed: never two leaders in one epoch.
#[test]
fn two_frontends_no_stale_lookup_and_one_leader_per_epoch() {
    let (mut b, sampler) = start(Options {
        frontends: 2,
        ..Options::default()
    });
    let (fe0, fe1) = (b.frontends[0].clone(), b.frontends[1].clone());
    let mut findings = Findings::default();
    b.wait_leader().unwrap();
    common::wait_for(
        "front-end 1 to see a leader",
        Duration::from_secs(20),
        || b.frontend_health_of(1).ok()?.leader,
    );
    // Part 1: the probe trades through front-end 0 and looks up through front-end 1.
    let probe = probe(&fe0, &fe1, "f");
    let load0 = Load::orders(&fe0, 2, true, "f0", None);
    let load1 = Load::orders(&fe1, 2, true, "f1", None);
    assert!(
        load0.wait_more(20, PROGRESS_TIMEOUT),
        "no progress through front-end 0"
    );
    assert!(
        load1.wait_more(20, PROGRESS_TIMEOUT),
        "no progress through front-end 1"
    );
    // Part 2: both route orders while the leader dies; both re-select at once. Twice: the
    // second time the leader is whichever replica the first selections made.
    for round in 0..2 {
        let leader = b.wait_leader().unwrap();
        b.kill(Process::Order(leader));
        findings.check(load0.wait_more(20, PROGRESS_TIMEOUT), || {
            format!("round {round}: front-end 0 made no progress after order-{leader} died")
        });
        findings.check(load1.wait_more(20, PROGRESS_TIMEOUT), || {
            format!("round {round}: front-end 1 made no progress after order-{leader} died")
        });
        b.start_service(Process::Order(leader)).unwrap();
        b.wait_ready(leader).unwrap();
    }
    let (t0, t1) = (
        load0.finish().expect("the load"),
        load1.finish().expect("the load"),
    );
    findings.check(t0.summary.errors + t1.summary.errors == 0, || {
        format!(
            "clients saw {} errors for one crashed replica",
            t0.summary.errors + t1.summary.errors
        )
    });
    let mut acked = orders(&t0.acked);
    acked.extend(orders(&t1.acked));
    finish_and_check(&b, acked, sampler, Some(probe), findings);
}

/// g. A follower cut off from the leader (both directions) while the other follower stays:
/// orders go on, each held by a majority.
#[test]
fn follower_cut_from_the_leader_orders_go_on() {
    let (b, sampler) = start(Options {
        proxied_links: true,
        ..Options::default()
    });
    let load = Load::orders(&b.frontend, 3, true, "g", None);
    let probe = probe(&b.frontend, &b.frontend, "g");
    assert!(
        load.wait_more(20, PROGRESS_TIMEOUT),
        "no progress before the cut"
    );
    let leader = b.wait_leader().unwrap();
    let follower = if leader == 1 { 2 } else { 1 };
    b.cut(leader, follower).unwrap();
    b.cut(follower, leader).unwrap();
    let cut = Instant::now();
    let mut findings = Findings::default();
    findings.check(load.wait_more(40, PROGRESS_TIMEOUT), || {
        format!("orders stopped while only order-{follower} was cut from the leader")
    });
    for a in load.acked_since(cut).iter().take(10) {
        let held = b.wait_majority_holds(&a.order, MAJORITY_HOLD_TIMEOUT);
        findings.check(held.is_ok(), || format!("during the cut: {held:?}"));
    }
    b.heal_all();
    findings.check(load.wait_more(10, PROGRESS_TIMEOUT), || {
        "no progress after the heal".into()
    });
    let tally = load.finish().expect("the load");
    findings.check(tally.summary.errors == 0, || {
        format!(
            "clients saw {} errors for one cut follower",
            tally.summary.errors
        )
    });
    finish_and_check(&b, orders(&tally.acked), sampler, Some(probe), findings);
}

/// h. The leader cut off from both followers while the front-end still reaches it: nothing it
/// acknowledges alone, a new leader takes over; then heal.
#[test]
fn leader_cut_from_both_followers() {
    const CUT: Duration = Duration::from_secs(12);
    let (b, sampler) = start(Options {
        proxied_links: true,
        ..Options::default()
    });
    let load = Load::orders(&b.frontend, 3, true, "h", None);
    let probe = probe(&b.frontend, &b.frontend, "h");
    assert!(
        load.wait_more(20, PROGRESS_TIMEOUT),
        "no progress before the cut"
    );
    let old = b.wait_leader().unwrap();
    let old_epoch = b.replica_health(old).unwrap().epoch;
    b.isolate(old).unwrap();
    let cut = Instant::now();
    let mut findings = Findings::default();
    let (mut checked, mut held_by_one) = (0, 0);
    let mut took_over = None;
    while cut.elapsed() < CUT {
        // The newest acknowledgement, once per round: each check may wait for replication.
        let fresh = load.acked_since(cut);
        if let Some(a) = fresh.last().filter(|_| fresh.len() > checked) {
            checked = fresh.len();
            if let Err(e) = b.wait_majority_holds(&a.order, MAJORITY_HOLD_TIMEOUT) {
                held_by_one += 1;
                if held_by_one <= 3 {
                    findings.check(false, || {
                        format!("acknowledged while order-{old} was cut off: {e}")
                    });
                }
            }
        }
        if took_over.is_none() {
            took_over = b
                .leading_replica()
                .filter(|h| h.id != old && h.epoch > old_epoch)
                .map(|h| (h.id, h.epoch, cut.elapsed()));
        }
        thread::sleep(bazaar::testkit::cluster::SAMPLE_INTERVAL);
    }
    eprintln!(
        "h: {checked} orders acknowledged during the cut, {held_by_one} of those checked held \
         by fewer than two replicas; takeover {took_over:?}"
    );
    findings.check(took_over.is_some(), || {
        format!("no new leader took over within {CUT:?} of cutting order-{old} off")
    });
    b.heal_all();
    findings.check(load.wait_more(10, PROGRESS_TIMEOUT), || {
        "no progress after the heal".into()
    });
    let tally = load.finish().expect("the load");
    finish_and_check(&b, orders(&tally.acked), sampler, Some(probe), findings);
}

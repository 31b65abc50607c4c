//! `./run.sh docker-up` under container faults: five containers on a private network, client
//! load through the published front-end while the leader's container is killed and
//! restarted, a follower cut off and reconnected, the leader cut off from every other
//! container; then the invariants, with the replica files copied out of the containers.
//!
//! Caveats: skipped (passing, with a line saying why) without docker and docker-compose.

use super::*;

#[test]
fn docker_up_survives_container_faults_under_load() {
    if let Some(why) = docker_unavailable() {
        eprintln!("skipped: {why}; the container test needs a Docker engine and docker-compose");
        return;
    }
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let d = Deployment::new();
    let up = d.run_sh(&["docker-up"], UP_TIMEOUT);
    assert!(up.status.success(), "docker-up failed: {}", text(&up));
    // Quiet: neither the five endpoint_mode warnings nor the builder's deprecation notice.
    for noise in ["endpoint_mode", "DEPRECATED"] {
        assert!(
            !text(&up).contains(noise),
            "docker-up printed {noise}: {}",
            text(&up)
        );
    }
    // A secret of its own: the repository's old container secret is refused, the generated
    // one accepted.
    assert_internal_endpoint_needs(
        &d.publish,
        &std::fs::read_to_string(d.secret_file()).unwrap(),
    );
    // Five containers of this project; only the front-end published.
    let ps = d.compose(&["ps", "--quiet"]);
    assert_eq!(String::from_utf8_lossy(&ps.stdout).lines().count(), 5);
    let ports = d.docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={}", d.project),
        "--format",
        "{{.Names}} {{.Ports}}",
    ]);
    let published: Vec<String> = String::from_utf8_lossy(&ports.stdout)
        .lines()
        .filter(|l| l.contains("->"))
        .map(str::to_string)
        .collect();
    assert!(
        published.len() == 1 && published[0].contains("frontend"),
        "published: {published:?}"
    );
    let mut acknowledged = trade_and_read_back(&d.client, &d.publish, "docker-test");

    // Clients trade for as long as the faults last.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let port = d.port;
        let stop = stop.clone();
        thread::spawn(move || -> Summary {
            bazaar::client::run(&ClientOptions {
                prob: 0.6,
                seed: 7,
                n_request: 100_000,
                clients: 3,
                stop: Some(stop),
                ..ClientOptions::new("127.0.0.1", port)
            })
        })
    };
    let network = format!("{}_bazaar", d.project);
    let leader = wait_for("a leader", FAILOVER_TIMEOUT, || d.health()?.leader);

    // 1. The leader's container is killed, then started again.
    let container = d.container(&format!("order{leader}"));
    assert!(d.docker(&["kill", &container]).status.success());
    let next = wait_for("another leader", FAILOVER_TIMEOUT, || {
        d.health()?.leader.filter(|&l| l != leader)
    });
    assert!(d.docker(&["start", &container]).status.success());

    // 2. A follower is cut off from the network, then reconnected.
    let follower = (1..=3).rev().find(|&id| id != next).unwrap();
    let cut = d.container(&format!("order{follower}"));
    let disconnect = d.docker(&["network", "disconnect", &network, &cut]);
    assert!(disconnect.status.success(), "{}", text(&disconnect));
    thread::sleep(CUT_OFF_FOR); // the fault's duration, not a synchronisation
    let reconnect = d.docker(&[
        "network",
        "connect",
        "--alias",
        &format!("order{follower}"),
        &network,
        &cut,
    ]);
    assert!(reconnect.status.success(), "{}", text(&reconnect));

    // 3. The leader is cut off from both followers (and everything else on the network).
    let leader = wait_for("a leader", FAILOVER_TIMEOUT, || d.health()?.leader);
    let isolated = d.container(&format!("order{leader}"));
    let disconnect = d.docker(&["network", "disconnect", &network, &isolated]);
    assert!(disconnect.status.success(), "{}", text(&disconnect));
    wait_for(
        "a leader other than the isolated one",
        FAILOVER_TIMEOUT,
        || d.health()?.leader.filter(|&l| l != leader),
    );
    let reconnect = d.docker(&[
        "network",
        "connect",
        "--alias",
        &format!("order{leader}"),
        &network,
        &isolated,
    ]);
    assert!(reconnect.status.success(), "{}", text(&reconnect));

    stop.store(true, Ordering::SeqCst);
    let summary = load.join().unwrap();
    assert!(summary.orders > 0, "no load ran: {summary:?}");
    assert!(
        summary.ok(),
        "clients saw errors or mismatches across the faults: {}",
        summary.report()
    );
    acknowledged.extend(summary.acknowledged);

    // Once quiet: the three files (copied out of the containers) identical and consistent.
    let dir = tempfile::Builder::new()
        .prefix(&format!("bazaar-docker-{}-", d.project))
        .tempdir()
        .unwrap();
    let file = wait_for("identical replica files", QUIET_TIMEOUT, || {
        let files: Vec<Vec<u8>> = (1..=3).map(|id| d.replica_file(id, dir.path())).collect();
        (!files[0].is_empty() && files[0] == files[1] && files[1] == files[2])
            .then(|| files[0].clone())
    });
    let log = bazaar::testkit::cluster::parse_log(&file).unwrap();
    let stocks: Vec<StockRecord> = d.client.get(&d.publish, "/stocks", CALL_TIMEOUT).unwrap();
    assert_invariants(&log, &acknowledged, &stocks);

    // docker-down stops and removes the containers (the volumes go in Drop).
    let down = d.run_sh(&["docker-down"], DOCKER_TIMEOUT);
    assert!(down.status.success(), "{}", text(&down));
    let ps = d.compose(&["ps", "--quiet"]);
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "");
}

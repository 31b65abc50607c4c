//! Three order replicas and the catalog in one process, on ports chosen at run time: orders
//! commit on a majority and are applied by the catalog, a restarted follower catches up, a
//! fail-over keeps the numbering and recognises a retried request id, and the files end
//! byte-identical.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use bazaar::api::{OrderAck, OrderRequest, OrderType, ReplicaHealth, Role, StockRecord};
use bazaar::config::Config;
use bazaar::error::Error;
use bazaar::http::{Client, Server};
use bazaar::order::{self, Listeners, Replica};
use bazaar::selection;
use bazaar::testkit::cluster::{loopback_config, ClusterOptions};

const WAIT: Duration = Duration::from_secs(15);
const CALL: Duration = Duration::from_secs(5);
/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(20);

fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn port(l: &TcpListener) -> u16 {
    l.local_addr().unwrap().port()
}

/// Polls `check` until it is true, failing the test after [`WAIT`].
fn eventually(what: &str, check: impl FnMut() -> bool) {
    assert!(
        common::eventually(WAIT, POLL, check),
        "timed out waiting for: {what}"
    );
}

struct Cluster {
    /// The data directory, removed after the replicas are stopped (fields drop after `drop`).
    _dir: tempfile::TempDir,
    config: Config,
    replicas: Vec<Option<Replica>>,
    _catalog: Server,
    client: Client,
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bazaar-repl-{name}-"))
            .tempdir()
            .unwrap();
        let catalog = free_listener();
        let mut listeners: Vec<Listeners> = (0..3)
            .map(|_| Listeners {
                http: free_listener(),
                broadcast: free_listener(),
                health: free_listener(),
            })
            .collect();
        let mut ports = vec![port(&catalog), 1];
        for l in &listeners {
            ports.extend([port(&l.http), port(&l.broadcast), port(&l.health)]);
        }
        let options = ClusterOptions {
            cache: false,
            health_check_interval: 0.2,
            ..ClusterOptions::default()
        };
        let config: Config = loopback_config(dir.path().to_path_buf(), &ports, &options);
        let catalog = bazaar::catalog::start_with_listener(config.clone(), catalog).unwrap();
        let replicas = listeners
            .drain(..)
            .enumerate()
            .map(|(i, l)| Some(order::start_on(config.clone(), i as u32 + 1, l).unwrap()))
            .collect();
        Cluster {
            _dir: dir,
            config,
            replicas,
            _catalog: catalog,
            client: Client::new(),
        }
    }

    fn addr(&self, id: u32) -> String {
        self.config.replica(id).unwrap().http_addr()
    }

    fn stocks(&self) -> Vec<StockRecord> {
        self.client
            .get(&self.config.catalog_addr(), "/stocks", CALL)
            .unwrap()
    }

    fn health(&self, id: u32) -> Option<ReplicaHealth> {
        self.client.get(&self.addr(id), "/health", CALL).ok()
    }

    /// Until the replica answers `Ping` with `OK`: a replica that starts with no leader to
    /// catch up with says `WAIT` for a lease first.
    fn wait_ping(&self, id: u32) {
        let addr = self.config.replica(id).unwrap().broadcast_addr();
        eventually(&format!("replica {id} answers Ping"), || {
            selection::ping(&addr, selection::PING_TIMEOUT)
        });
    }

    fn wait_role(&self, id: u32, role: Role) {
        eventually(&format!("replica {id} is {}", role.as_str()), || {
            self.health(id).is_some_and(|h| h.role == role)
        });
    }

    fn order(&self, leader: u32, request_id: &str) -> Result<u64, Error> {
        let body = OrderRequest {
            name: "GameStart".into(),
            quantity: 1,
            kind: OrderType::Buy,
            request_id: Some(request_id.into()),
        };
        self.client
            .post::<_, OrderAck>(&self.addr(leader), "/orders", &body, CALL)
            .map(|a| a.transaction_number)
    }

    fn stop(&mut self, id: u32) {
        self.replicas[id as usize - 1].take().unwrap().shutdown();
    }

    fn restart(&mut self, id: u32) {
        let listeners = Listeners::bind(self.config.replica(id).unwrap()).unwrap();
        self.replicas[id as usize - 1] =
            Some(order::start_on(self.config.clone(), id, listeners).unwrap());
    }

    fn file(&self, id: u32) -> Vec<u8> {
        std::fs::read(self.config.order_log_path(id)).unwrap()
    }

    fn wait_identical(&self, ids: &[u32], orders: usize) {
        eventually(
            &format!("replicas {ids:?} hold identical files of {orders} orders"),
            || {
                let first = self.file(ids[0]);
                let lines = first.iter().filter(|&&b| b == b'\n').count();
                lines == orders + 1 && ids.iter().all(|&id| self.file(id) == first)
            },
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in self.replicas.drain(..).flatten() {
            replica.shutdown();
        }
    }
}

#[test]
fn orders_replicate_catch_up_and_fail_over() {
    let mut c = Cluster::new("main");
    for id in 1..=3 {
        c.wait_role(id, Role::Follower);
        c.wait_ping(id);
    }
    let leader =
        selection::select_leader(&c.config.order.replicas, 0, &c.config.secret).expect("a leader");
    assert_eq!(leader.id, 3);
    assert!(leader.epoch >= 1);
    assert_eq!(c.health(3).unwrap().role, Role::Leader);

    // Followers refuse orders with 421.
    assert!(matches!(c.order(1, "x"), Err(Error::NotLeader(_))));

    for i in 0..5 {
        assert_eq!(c.order(3, &format!("a{i}")).unwrap(), i);
    }
    // Acknowledged means stored on a majority and applied by the catalog: no waiting needed.
    let held = (1..=2)
        .filter(|&id| c.health(id).unwrap().latest == 4)
        .count();
    assert!(held >= 1, "a follower holds every acknowledged order");
    let game_start = c
        .stocks()
        .into_iter()
        .find(|s| s.name == "GameStart")
        .unwrap();
    assert_eq!(game_start.quantity, 95, "the catalog applied all five");
    assert_eq!(
        c.order(3, "a2").unwrap(),
        2,
        "a retried request id keeps its number"
    );
    c.wait_identical(&[1, 2, 3], 5);

    // A follower goes down; orders go on; it comes back and catches up before it is ready.
    c.stop(1);
    for i in 5..10 {
        assert_eq!(c.order(3, &format!("b{i}")).unwrap(), i);
    }
    c.restart(1);
    c.wait_role(1, Role::Follower);
    c.wait_identical(&[1, 2, 3], 10);

    // The leader goes down: the next selection picks 2 in a newer epoch, numbering goes on,
    // and a retry of an order the old leader acknowledged gets the same number.
    c.stop(3);
    let next = selection::select_leader(&c.config.order.replicas, leader.epoch, &c.config.secret)
        .expect("a new leader");
    assert_eq!(next.id, 2);
    assert!(next.epoch > leader.epoch);
    assert_eq!(c.order(2, "b7").unwrap(), 7);
    assert_eq!(c.order(2, "c10").unwrap(), 10);
    c.wait_identical(&[1, 2], 11);

    // The old leader returns: it must not lead, catches up, and the files converge.
    c.restart(3);
    c.wait_role(3, Role::Follower);
    assert_eq!(c.order(2, "c11").unwrap(), 11);
    c.wait_identical(&[1, 2, 3], 12);
    // The file is written before the replica publishes its status: the epoch follows.
    eventually("replica 3 is in the new epoch", || {
        c.health(3).is_some_and(|h| h.epoch == next.epoch)
    });
}

#[test]
fn a_returning_old_leader_loses_its_unreplicated_suffix() {
    let mut c = Cluster::new("suffix");
    for id in 1..=3 {
        c.wait_role(id, Role::Follower);
        c.wait_ping(id);
    }
    let leader = selection::select_leader(&c.config.order.replicas, 0, &c.config.secret).unwrap();
    assert_eq!(leader.id, 3);
    for i in 0..3 {
        c.order(3, &format!("a{i}")).unwrap();
    }
    c.wait_identical(&[1, 2, 3], 3);
    c.stop(3);
    // What a leader that crashed right after its local append leaves behind: an order in its
    // own file only, which never committed (sealed, chained from the line before: a whole
    // append, not damage).
    let path = c.config.order_log_path(3);
    let mut bytes = std::fs::read(&path).unwrap();
    let seal = std::str::from_utf8(&bytes[bytes.len() - 9..bytes.len() - 1]).unwrap();
    let prev = u32::from_str_radix(seal, 16).unwrap();
    let record = format!("3,GameStart,buy,9,{},lost", leader.epoch);
    bazaar::order::logfile::seal_line(prev, record.as_bytes(), &mut bytes);
    std::fs::write(&path, bytes).unwrap();

    let next =
        selection::select_leader(&c.config.order.replicas, leader.epoch, &c.config.secret).unwrap();
    assert_eq!(next.id, 2);
    c.restart(3);
    c.wait_role(3, Role::Follower);
    // Nothing new is written: the heartbeat alone must remove the suffix.
    c.wait_identical(&[1, 2, 3], 3);
    assert_eq!(
        c.order(2, "lost").unwrap(),
        3,
        "the lost order is retried as a new one"
    );
    c.wait_identical(&[1, 2, 3], 4);
}

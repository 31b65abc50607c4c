//! The bazaar in containers, end to end.
//!
//! - `./run.sh docker-up`: the image built `FROM scratch` from `dist/`, five containers on a
//!   private network; orders through the published front-end; under client load the leader's
//!   container is killed and restarted, a follower is cut off (`docker network disconnect`)
//!   and reconnected, and the leader is cut off from every other container; then the
//!   invariants of docs/spec.md §5, with the replica files copied out of the containers.
//! - The same compose file as a Docker Swarm stack on a one-node swarm (initialised by the
//!   test when none is active, and left again only then), with its secret made by
//!   `docker secret create`; a frozen catalog is replaced by swarm through its health check.
//! - Both refuse the development secrets the repository publishes on internal endpoints.
//!
//! Each test skips (passing, with a line saying why) when `docker info` or `docker-compose`
//! does not answer. Everything a test creates carries its own project or stack name and image
//! tag and is removed when it ends, also when it fails (the `Drop` of `Deployment` and
//! `Stack`). The tests take a lock so that they never build `dist/` under each other.
//!
//! Layout: `compose.rs` (docker-up under faults), `swarm.rs` (the swarm stack); this file
//! holds what both use (the lock, running commands, a deployment, the invariant checks).
//!
//! Caveats: a full run builds a static `dist/` and an image (minutes, first time); the faults
//! are `docker kill` and network disconnects, not freezes.

mod compose;
mod swarm;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bazaar::api::{
    FrontendHealth, LogEntry, Order, OrderAck, OrderRequest, OrderType, StockRecord,
};
use bazaar::client::{ClientOptions, Summary};
use bazaar::http::Client;
use bazaar::testkit::harness as common;
use common::wait_for;

/// One Docker test at a time: each runs `./run.sh dist`, which replaces the binaries in place.
static DOCKER: Mutex<()> = Mutex::new(());

/// A whole `docker-up`, including the static build when dist/ is stale.
const UP_TIMEOUT: Duration = Duration::from_secs(600);
/// Timeout of one REST call to the published front-end.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the front-end may take to name another leader after the leader's container died.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the replica files may take to become identical once quiet.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of the waits on docker itself (a process, a stack going away).
const POLL: Duration = Duration::from_millis(200);
/// Timeout of one docker command of the clean-up.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a cut-off replica stays cut off.
const CUT_OFF_FOR: Duration = Duration::from_secs(4);
/// How long a swarm stack may take to start every task and elect a leader.
const STACK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long swarm may take to replace a frozen task: three failed health checks 5 s apart
/// (deploy/compose.yaml), each waiting up to 4 s, then the restart.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `docker stack rm` may take to remove the stack's containers and network.
const STACK_RM_TIMEOUT: Duration = Duration::from_secs(60);
/// The quantity every stock starts with (deploy/bazaar.yaml).
const INITIAL_QUANTITY: i64 = 100;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Why Docker cannot be used here, or `None` when it can.
fn docker_unavailable() -> Option<String> {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !info.is_ok_and(|s| s.success()) {
        return Some("`docker info` does not answer".into());
    }
    let compose = Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !compose.is_ok_and(|s| s.success()) {
        return Some("`docker-compose` is not installed".into());
    }
    None
}

/// Runs a command with a deadline; its output.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if common::poll(timeout, POLL, || child.try_wait().unwrap()).is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

/// One containerised bazaar with names of its own; torn down on drop.
struct Deployment {
    project: String,
    image: String,
    /// The front-end's published port (on every interface: compose's long port syntax,
    /// which swarm needs, has no host address) and the address the test uses.
    port: u16,
    publish: String,
    client: Client,
    /// run.sh's run directory for this deployment: docker-up keeps its generated secret here.
    run_dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Deployment {
        let port = free_port();
        let tag = format!("{}{}", std::process::id(), fastrand::u32(..));
        Deployment {
            project: format!("bazaartest{tag}"),
            image: format!("stock-bazaar:test{tag}"),
            port,
            publish: format!("127.0.0.1:{port}"),
            client: Client::new(),
            run_dir: tempfile::Builder::new()
                .prefix("bazaar-docker-run-")
                .tempdir()
                .unwrap(),
        }
    }

    /// The secret file docker-up generates (see `docker_secret_file` in run.sh).
    fn secret_file(&self) -> PathBuf {
        self.run_dir
            .path()
            .join(format!("docker-{}.secret", self.project))
    }

    fn env<'a>(&'a self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.current_dir(root())
            .env("BAZAAR_IMAGE", &self.image)
            .env("BAZAAR_DOCKER_PROJECT", &self.project)
            .env("BAZAAR_PUBLISH", self.port.to_string())
            .env("BAZAAR_RUN_DIR", self.run_dir.path())
            .env("BAZAAR_SECRET_FILE", self.secret_file())
            .env_remove("BAZAAR_SECRET")
    }

    fn run_sh(&self, args: &[&str], timeout: Duration) -> Output {
        run(self.env(Command::new("./run.sh").args(args)), timeout)
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.args([
            "--project-name",
            &self.project,
            "--file",
            "deploy/compose.yaml",
            "--file",
            "deploy/compose.secret-file.yaml",
        ])
        .args(args);
        run(self.env(&mut cmd), DOCKER_TIMEOUT)
    }

    /// The container id of a compose service.
    fn container(&self, service: &str) -> String {
        let out = self.compose(&["ps", "--quiet", service]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn docker(&self, args: &[&str]) -> Output {
        run(Command::new("docker").args(args), DOCKER_TIMEOUT)
    }

    fn health(&self) -> Option<FrontendHealth> {
        self.client.get(&self.publish, "/health", CALL_TIMEOUT).ok()
    }

    /// Copies `/data/orders-N.csv` out of replica N's container.
    fn replica_file(&self, id: u32, dir: &Path) -> Vec<u8> {
        let dest = dir.join(format!("orders-{id}.csv"));
        let _ = std::fs::remove_file(&dest);
        let from = format!(
            "{}:/data/orders-{id}.csv",
            self.container(&format!("order{id}"))
        );
        self.docker(&["cp", &from, &dest.display().to_string()]);
        std::fs::read(&dest).unwrap_or_default()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Containers, the network and the named volumes of this project, then the image tag.
        let down = self.compose(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
        if !down.status.success() {
            eprintln!(
                "docker-compose down failed: {}",
                String::from_utf8_lossy(&down.stderr)
            );
        }
        let rmi = self.docker(&["rmi", &self.image]);
        if !rmi.status.success() {
            eprintln!(
                "docker rmi {} failed: {}",
                self.image,
                String::from_utf8_lossy(&rmi.stderr)
            );
        }
    }
}

/// A free port below the ephemeral range.
fn free_port() -> u16 {
    (0..1000)
        .map(|_| fastrand::u16(20_000..32_000))
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The front-end's invalidation endpoint (an internal one) refuses the development secrets the
/// repository publishes and accepts `secret`.
fn assert_internal_endpoint_needs(addr: &str, secret: &str) {
    let call = |secret: &str| {
        Client::with_secret(secret).post::<_, serde_json::Value>(
            addr,
            "/invalidation/GameStart",
            &serde_json::json!({}),
            CALL_TIMEOUT,
        )
    };
    for published in bazaar::config::DEVELOPMENT_SECRETS {
        let answer = call(published);
        assert!(
            matches!(answer, Err(bazaar::error::Error::Unauthorized(_))),
            "{published} accepted: {answer:?}"
        );
    }
    let answer = call(secret.trim());
    assert!(
        answer.is_ok(),
        "the deployment's own secret refused: {answer:?}"
    );
}

/// Places orders through the front-end and reads each back; returns them.
fn trade_and_read_back(client: &Client, addr: &str, tag: &str) -> Vec<Order> {
    let mut placed = Vec::new();
    for (i, kind) in [OrderType::Buy, OrderType::Sell, OrderType::Buy]
        .into_iter()
        .enumerate()
    {
        let request = OrderRequest {
            name: "GameStart".into(),
            quantity: 1 + i as u64,
            kind,
            request_id: Some(format!("{tag}-{i}")),
        };
        let ack: OrderAck = client
            .post(addr, "/orders", &request, CALL_TIMEOUT)
            .expect("order through the containerised front-end");
        placed.push(Order {
            number: ack.transaction_number,
            name: request.name,
            kind,
            quantity: request.quantity,
        });
    }
    for order in &placed {
        let got: Order = client
            .get(addr, &format!("/orders/{}", order.number), CALL_TIMEOUT)
            .unwrap();
        assert_eq!(&got, order);
    }
    placed
}

/// docs/spec.md §5 on what can be read from outside once quiet: the three files identical, every
/// acknowledged order stored as acknowledged, numbers 0..N-1 with one entry per request id,
/// and each stock's quantity (read through the front-end) = 100 − buys + sells of the log.
fn assert_invariants(log: &[LogEntry], acknowledged: &[Order], stocks: &[StockRecord]) {
    for order in acknowledged {
        let entry = log
            .get(order.number as usize)
            .unwrap_or_else(|| panic!("acknowledged order {} is missing", order.number));
        assert_eq!(Order::from(entry), *order, "order {} changed", order.number);
    }
    let mut ids = HashSet::new();
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(
            entry.number, i as u64,
            "line {i} holds number {}",
            entry.number
        );
        assert!(
            ids.insert(&entry.request_id),
            "request id {} twice",
            entry.request_id
        );
    }
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for entry in log {
        let q = expected.entry(&entry.name).or_insert(INITIAL_QUANTITY);
        match entry.kind {
            OrderType::Buy => *q -= entry.quantity as i64,
            OrderType::Sell => *q += entry.quantity as i64,
        }
    }
    for stock in stocks {
        let want = expected
            .get(stock.name.as_str())
            .copied()
            .unwrap_or(INITIAL_QUANTITY);
        assert_eq!(
            stock.quantity as i64, want,
            "{}: catalog vs log",
            stock.name
        );
    }
}

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

mod common;

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

/// A swarm stack of the compose file, and whatever the test changed to run it; all undone on
/// drop.
struct Stack {
    name: String,
    image: String,
    port: u16,
    node: String,
    labels_added: Vec<String>,
    swarm_created: bool,
    /// `docker swarm init` creates this network and `swarm leave` keeps it.
    gwbridge_created: bool,
    /// The Docker secret holding the deployment secret, once created.
    secret: Option<String>,
    client: Client,
}

/// The labels deploy/compose.yaml places its services by.
const NODE_LABELS: [&str; 5] = [
    "bazaar.catalog",
    "bazaar.order1",
    "bazaar.order2",
    "bazaar.order3",
    "bazaar.frontend",
];

impl Stack {
    fn docker(&self, args: &[&str]) -> Output {
        run(Command::new("docker").args(args), DOCKER_TIMEOUT)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn namespace_filter(&self) -> String {
        format!("label=com.docker.stack.namespace={}", self.name)
    }

    fn lines(&self, args: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.docker(args).stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let rm = self.docker(&["stack", "rm", &self.name]);
        if !rm.status.success() {
            eprintln!("docker stack rm {} failed: {}", self.name, text(&rm));
        }
        // Volumes can only go once the containers are gone; the network goes by itself.
        let filter = self.namespace_filter();
        let _ = common::poll(STACK_RM_TIMEOUT, POLL, || {
            (self.lines(&["ps", "-aq", "--filter", &filter]).is_empty()
                && self
                    .lines(&["network", "ls", "-q", "--filter", &filter])
                    .is_empty())
            .then_some(())
        });
        if let Some(secret) = &self.secret {
            let out = self.docker(&["secret", "rm", secret]);
            if !out.status.success() {
                eprintln!("docker secret rm {secret} failed: {}", text(&out));
            }
        }
        for volume in self.lines(&["volume", "ls", "-q", "--filter", &filter]) {
            let out = self.docker(&["volume", "rm", &volume]);
            if !out.status.success() {
                eprintln!("docker volume rm {volume} failed: {}", text(&out));
            }
        }
        let _ = self.docker(&["rmi", &self.image]);
        if self.swarm_created {
            let out = self.docker(&["swarm", "leave", "--force"]);
            if !out.status.success() {
                eprintln!("docker swarm leave failed: {}", text(&out));
            }
            if self.gwbridge_created {
                let _ = self.docker(&["network", "rm", "docker_gwbridge"]);
            }
        } else {
            for label in &self.labels_added {
                let _ = self.docker(&["node", "update", "--label-rm", label, &self.node]);
            }
        }
    }
}

#[test]
fn compose_file_deploys_as_a_swarm_stack() {
    if let Some(why) = docker_unavailable() {
        eprintln!("skipped: {why}; the swarm test needs a Docker engine and docker-compose");
        return;
    }
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let state = run(
        Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        DOCKER_TIMEOUT,
    );
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    let tag = format!("{}{}", std::process::id(), fastrand::u32(..));
    let mut stack = Stack {
        name: format!("bazaarswarm{tag}"),
        image: format!("stock-bazaar:swarm{tag}"),
        port: free_port(),
        node: String::new(),
        labels_added: Vec::new(),
        swarm_created: false,
        gwbridge_created: false,
        secret: None,
        client: Client::new(),
    };
    match state.as_str() {
        "active" => {}
        "inactive" => {
            let gwbridge = ["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"];
            stack.gwbridge_created = stack.lines(&gwbridge).is_empty();
            let init = stack.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            assert!(init.status.success(), "docker swarm init: {}", text(&init));
            stack.swarm_created = true;
        }
        other => {
            eprintln!("skipped: this engine's swarm is {other:?}, neither active nor inactive");
            return;
        }
    }
    let node = stack.lines(&["info", "--format", "{{.Swarm.NodeID}}"]);
    stack.node = node.first().cloned().expect("the swarm node id");
    let existing = stack.lines(&[
        "node",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &stack.node,
    ]);
    let existing = existing.join("");
    for label in NODE_LABELS {
        if !existing.contains(&format!("\"{label}\":\"true\"")) {
            let out = stack.docker(&[
                "node",
                "update",
                "--label-add",
                &format!("{label}=true"),
                &stack.node,
            ]);
            assert!(out.status.success(), "label the node: {}", text(&out));
            stack.labels_added.push(label.to_string());
        }
    }

    let dist = run(
        Command::new("./run.sh").arg("dist").current_dir(root()),
        UP_TIMEOUT,
    );
    assert!(dist.status.success(), "./run.sh dist: {}", text(&dist));
    let build = run(
        Command::new("docker")
            .args([
                "build",
                "--quiet",
                "--file",
                "deploy/Dockerfile",
                "--tag",
                &stack.image,
                ".",
            ])
            .current_dir(root()),
        UP_TIMEOUT,
    );
    assert!(build.status.success(), "docker build: {}", text(&build));
    // The deployment secret as deploy/README.md makes it: a Docker secret of its own.
    let secret_name = format!("{}_secret", stack.name);
    let secret_value = format!("{:032x}", fastrand::u128(..));
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_path = secret_dir.path().join("secret");
    std::fs::write(&secret_path, &secret_value).unwrap();
    let created = stack.docker(&[
        "secret",
        "create",
        &secret_name,
        &secret_path.display().to_string(),
    ]);
    assert!(
        created.status.success(),
        "docker secret create: {}",
        text(&created)
    );
    stack.secret = Some(secret_name.clone());
    let deploy = run(
        Command::new("docker")
            .args([
                "stack",
                "deploy",
                "--compose-file",
                "deploy/compose.yaml",
                &stack.name,
            ])
            .current_dir(root())
            .env("BAZAAR_IMAGE", &stack.image)
            .env("BAZAAR_PUBLISH", stack.port.to_string())
            .env("BAZAAR_SECRET_NAME", &secret_name),
        DOCKER_TIMEOUT,
    );
    assert!(
        deploy.status.success(),
        "docker stack deploy: {}",
        text(&deploy)
    );

    // One task per service, each placed by its label; then a leader behind the published port.
    let services = stack.lines(&[
        "stack",
        "services",
        "--format",
        "{{.Name}} {{.Replicas}}",
        &stack.name,
    ]);
    assert_eq!(services.len(), 5, "{services:?}");
    let addr = stack.addr();
    let leader = wait_for(
        "a leader through the stack's published port",
        STACK_TIMEOUT,
        || {
            stack
                .client
                .get::<FrontendHealth>(&addr, "/health", CALL_TIMEOUT)
                .ok()?
                .leader
        },
    );
    assert!((1..=3).contains(&leader));
    let placed = trade_and_read_back(&stack.client, &addr, "swarm-test");
    assert_eq!(placed.len(), 3);
    assert_internal_endpoint_needs(&addr, &secret_value);

    // A frozen (not crashed) catalog: its health check fails and swarm replaces the task.
    let catalog = format!("{}_catalog", stack.name);
    let container = stack.lines(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={catalog}"),
    ]);
    let container = container.first().expect("the catalog's container").clone();
    let stop = stack.docker(&["kill", "--signal", "STOP", &container]);
    assert!(stop.status.success(), "freeze the catalog: {}", text(&stop));
    wait_for(
        "swarm to replace the frozen catalog",
        REPLACE_TIMEOUT,
        || {
            let tasks = stack.lines(&["service", "ps", "-q", &catalog]);
            (tasks.len() >= 2).then_some(())
        },
    );
    // The new task serves: the front-end's `GET /stocks` always asks the catalog.
    wait_for("the replaced catalog to serve", STACK_TIMEOUT, || {
        stack
            .client
            .get::<Vec<StockRecord>>(&addr, "/stocks", CALL_TIMEOUT)
            .ok()
    });
}

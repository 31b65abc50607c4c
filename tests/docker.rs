//! `./run.sh docker-up` end to end: the image built `FROM scratch` from `dist/`, five
//! containers on a private network, orders placed through the published front-end and read
//! back, a leader container killed and restarted under load, and the replica files compared
//! from the volumes.
//!
//! Skips (passing, with a line saying why) when `docker info` or `docker-compose` does not
//! answer. Everything it creates carries this run's own project name and image tag and is
//! removed when the test ends, also when it fails (`Deployment`'s `Drop`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bazaar::api::{FrontendHealth, Order, OrderAck, OrderRequest, OrderType};
use bazaar::http::Client;

/// A whole `docker-up`, including the static build when dist/ is stale.
const UP_TIMEOUT: Duration = Duration::from_secs(600);
/// Timeout of one REST call to the published front-end.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the front-end may take to name another leader after the leader's container died.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the replica files may take to become identical once quiet.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(200);
/// Timeout of one docker command of the clean-up.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

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
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(POLL);
    }
    child.wait_with_output().unwrap()
}

/// One containerised bazaar with names of its own; torn down on drop.
struct Deployment {
    project: String,
    image: String,
    publish: String,
    client: Client,
}

impl Deployment {
    fn new() -> Deployment {
        let port = (0..1000)
            .map(|_| fastrand::u16(20_000..32_000))
            .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port");
        let tag = format!("{}{}", std::process::id(), fastrand::u32(..));
        Deployment {
            project: format!("bazaartest{tag}"),
            image: format!("stock-bazaar:test{tag}"),
            publish: format!("127.0.0.1:{port}"),
            client: Client::new(),
        }
    }

    fn env<'a>(&'a self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.current_dir(root())
            .env("BAZAAR_IMAGE", &self.image)
            .env("BAZAAR_DOCKER_PROJECT", &self.project)
            .env("BAZAAR_PUBLISH", &self.publish)
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

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(POLL);
    }
}

#[test]
fn docker_up_serves_orders_and_survives_a_leader_container_kill() {
    if let Some(why) = docker_unavailable() {
        eprintln!("skipped: {why}; the container test needs a Docker engine and docker-compose");
        return;
    }
    let d = Deployment::new();
    let up = d.run_sh(&["docker-up"], UP_TIMEOUT);
    assert!(
        up.status.success(),
        "docker-up failed: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    // Five containers of this project, on its own network; only the front-end published.
    let ps = d.compose(&["ps", "--quiet"]);
    assert_eq!(String::from_utf8_lossy(&ps.stdout).lines().count(), 5);
    let ports = d.docker(&[
        "ps",
        "--filter",
        &format!("name={}", d.project),
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

    // Orders through the published front-end, read back.
    let mut placed = Vec::new();
    for (i, kind) in [OrderType::Buy, OrderType::Sell, OrderType::Buy]
        .into_iter()
        .enumerate()
    {
        let request = OrderRequest {
            name: "GameStart".into(),
            quantity: 1 + i as u64,
            kind,
            request_id: Some(format!("docker-test-{i}")),
        };
        let ack: OrderAck = d
            .client
            .post(&d.publish, "/orders", &request, CALL_TIMEOUT)
            .expect("order through the containerised front-end");
        placed.push(Order {
            number: ack.transaction_number,
            name: request.name,
            kind,
            quantity: request.quantity,
        });
    }
    for order in &placed {
        let got: Order = d
            .client
            .get(
                &d.publish,
                &format!("/orders/{}", order.number),
                CALL_TIMEOUT,
            )
            .unwrap();
        assert_eq!(&got, order);
    }

    // Load from a client while the leader's container is killed and started again.
    let client = {
        let port = d.publish.rsplit(':').next().unwrap().to_string();
        thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_client"))
                .args(["--port", &port, "--clients", "3", "--prob", "0.6"])
                .args(["--n-request", "150", "--seed", "7"])
                .output()
                .unwrap()
        })
    };
    let leader = wait_for("a leader", FAILOVER_TIMEOUT, || d.health()?.leader);
    let container = d.container(&format!("order{leader}"));
    assert!(d.docker(&["kill", &container]).status.success());
    let next = wait_for("another leader", FAILOVER_TIMEOUT, || {
        d.health()?.leader.filter(|&l| l != leader)
    });
    assert_ne!(next, leader);
    assert!(d.docker(&["start", &container]).status.success());
    let out = client.join().unwrap();
    assert!(
        out.status.success(),
        "the client saw errors or mismatches across the fail-over: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Once quiet, the three replica files (copied out of their volumes) are identical and
    // hold what the clients were told.
    let dir = std::env::temp_dir().join(format!("bazaar-docker-{}", d.project));
    std::fs::create_dir_all(&dir).unwrap();
    let file = wait_for("identical replica files", QUIET_TIMEOUT, || {
        let files: Vec<Vec<u8>> = (1..=3).map(|id| d.replica_file(id, &dir)).collect();
        (!files[0].is_empty() && files[0] == files[1] && files[1] == files[2])
            .then(|| files[0].clone())
    });
    let log = bazaar::cluster::parse_log(&file).unwrap();
    for order in &placed {
        assert_eq!(Order::from(&log[order.number as usize]), *order);
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // docker-down stops and removes the containers (the volumes go in Drop).
    let down = d.run_sh(&["docker-down"], DOCKER_TIMEOUT);
    assert!(down.status.success());
    let ps = d.compose(&["ps", "--quiet"]);
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "");
}

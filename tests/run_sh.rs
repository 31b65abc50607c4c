//! `./run.sh` as a user meets it: commands it does not know, services the config does not
//! have, a port that is taken, a service that will not start, `demo` beside a running `up`.
//!
//! Each test runs run.sh against a bazaar of its own: a config on free ports written into a
//! temp directory (state there too), `BAZAAR_RUN_DIR` (pids and logs) in the same directory,
//! and `BAZAAR_BIN_DIR` set to the binaries cargo built for this run, so run.sh never builds.
//! `Drop` runs `./run.sh down` on it, which stops only what that run directory started.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bazaar::testkit::cluster::{loopback_config, port_count, ClusterOptions};

/// How long one run.sh command may take (an `up` that works takes a few seconds).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a failing `up` may take: it must fail fast, well under run.sh's 30 s wait.
const FAILS_WITHIN: Duration = Duration::from_secs(15);
/// Poll interval of the waits on run.sh.
const POLL: Duration = Duration::from_millis(50);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One private bazaar for run.sh.
struct Bazaar {
    dir: tempfile::TempDir,
    /// Catalog, front-end, then HTTP, broadcast and health ports of replicas 1 to n.
    ports: Vec<u16>,
}

impl Bazaar {
    fn new() -> Bazaar {
        Bazaar::with_replicas(3)
    }

    fn with_replicas(replicas: u32) -> Bazaar {
        let dir = tempfile::Builder::new()
            .prefix("bazaar-run-sh-")
            .tempdir()
            .unwrap();
        let options = ClusterOptions {
            replicas,
            ..ClusterOptions::default()
        };
        let ports = bazaar::local::free_ports(port_count(&options)).unwrap();
        let config = loopback_config(dir.path().join("data"), &ports, &options);
        std::fs::write(
            dir.path().join("bazaar.yaml"),
            serde_yaml::to_string(&config).unwrap(),
        )
        .unwrap();
        Bazaar { dir, ports }
    }

    fn frontend_port(&self) -> u16 {
        self.ports[1]
    }

    fn catalog_port(&self) -> u16 {
        self.ports[0]
    }

    fn pid_dir(&self) -> PathBuf {
        self.dir.path().join("run/pids")
    }

    /// `./run.sh ARGS` with this bazaar's config and run directory, plus `env`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_frontend")).parent().unwrap();
        let mut child = Command::new(root().join("run.sh"))
            .args(args)
            .env("BAZAAR_CONFIG", self.dir.path().join("bazaar.yaml"))
            .env("BAZAAR_RUN_DIR", self.dir.path().join("run"))
            .env("BAZAAR_BIN_DIR", bin_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if common::poll(COMMAND_TIMEOUT, POLL, || child.try_wait().unwrap()).is_none() {
            let _ = child.kill();
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Bazaar {
    fn drop(&mut self) {
        let down = self.run(&["down"], &[]);
        if !down.status.success() {
            eprintln!("./run.sh down: {}", text(&down));
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn unknown_commands_and_services_are_named() {
    let b = Bazaar::new();
    let cases: &[(&[&str], &str)] = &[
        (&["nonsense"], "unknown command 'nonsense'"),
        (&["start"], "start needs exactly one SERVICE"),
        (&["kill"], "kill needs exactly one SERVICE"),
        (&["start", "order-7"], "no service 'order-7'"),
        (&["kill", "order-7"], "no service 'order-7'"),
    ];
    for (args, want) in cases {
        let out = b.run(args, &[]);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains(want),
            "{args:?} should say {want:?}: {}",
            text(&out)
        );
        // The problem comes first, the usage (if any) after it.
        if let Some(usage) = err.find("usage:") {
            assert!(err.find(want).unwrap() < usage, "{args:?}: {err}");
        }
        assert!(!String::from_utf8_lossy(&out.stdout).contains("started"));
    }
    assert!(
        !b.pid_dir().join("order-7.pid").exists(),
        "a pid file for a service that does not exist"
    );
}

#[test]
fn up_names_a_taken_port_and_starts_nothing() {
    let b = Bazaar::new();
    // This test process holds the front-end's port.
    let taken = TcpListener::bind(("127.0.0.1", b.frontend_port())).unwrap();
    let started = Instant::now();
    let out = b.run(&["up"], &[]);
    assert!(
        !out.status.success(),
        "up with a taken port: {}",
        text(&out)
    );
    assert!(
        started.elapsed() < FAILS_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    let err = stderr(&out);
    let port = b.frontend_port();
    assert!(
        err.contains(&format!("port {port} (frontend) is already in use")),
        "{}",
        text(&out)
    );
    // `ss -ltnp` names this user's processes: this test.
    if Command::new("ss").arg("-V").output().is_ok() {
        assert!(
            err.contains(&format!("pid={}", std::process::id())),
            "the owner is not named: {err}"
        );
    }
    assert!(!listening(b.catalog_port()), "the catalog was started");
    let pids = std::fs::read_dir(b.pid_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pids, 0, "pid files left: {}", text(&out));
    drop(taken);
}

#[test]
fn up_stops_what_it_started_when_a_service_fails() {
    let b = Bazaar::new();
    // The front-end, the last to start, refuses the development secret on a reachable
    // address; the catalog and the replicas are up by then.
    let out = b.run(
        &["up"],
        &[
            ("FRONTEND_HOST", "0.0.0.0"),
            ("BAZAAR_SECRET", bazaar::config::DEVELOPMENT_SECRETS[0]),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("frontend exited"), "{}", text(&out));
    assert!(
        err.contains("published development value") && err.contains("BAZAAR_SECRET_FILE"),
        "the reason is not shown: {}",
        text(&out)
    );
    assert!(err.contains("stopping what it started"), "{}", text(&out));
    for port in [b.catalog_port(), b.ports[2], b.ports[5], b.ports[8]] {
        assert!(!listening(port), "port {port} still served: {}", text(&out));
    }
    let pids = std::fs::read_dir(b.pid_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pids, 0, "pid files left: {}", text(&out));
}

#[test]
fn demo_refuses_while_up_runs_and_leaves_it_running() {
    let b = Bazaar::new();
    let up = b.run(&["up"], &[]);
    assert!(up.status.success(), "{}", text(&up));
    let demo = b.run(&["demo"], &[]);
    assert!(!demo.status.success(), "{}", text(&demo));
    assert!(
        stderr(&demo).contains("is running"),
        "no reason given: {}",
        text(&demo)
    );
    // The user's bazaar still runs: every service answers.
    let status = b.run(&["status"], &[]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert_eq!(said.matches(" running (pid").count(), 5, "{said}");
    assert!(listening(b.frontend_port()));
    // A replica killed and started again: start waits until it listens and says so.
    let kill = b.run(&["kill", "order-1"], &[]);
    assert!(kill.status.success(), "{}", text(&kill));
    let start = b.run(&["start", "order-1"], &[]);
    assert!(start.status.success(), "{}", text(&start));
    assert!(listening(b.ports[2]), "order-1 does not listen after start");
}

#[test]
fn start_fails_when_the_service_exits_at_start() {
    let b = Bazaar::new();
    let out = b.run(
        &["start", "catalog"],
        &[
            ("CATALOG_HOST", "0.0.0.0"),
            ("BAZAAR_SECRET", bazaar::config::DEVELOPMENT_SECRETS[0]),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("catalog exited at start"),
        "{}",
        text(&out)
    );
    assert!(!b.pid_dir().join("catalog.pid").exists());
}

/// Every command takes its services from the config: with five replicas `up` starts and
/// waits for all five, `status` lists them, `start`/`kill` accept order-5, the logs are
/// compared across all five, and `down` stops every one (by their pid files).
#[test]
fn five_replicas_are_run_from_the_config() {
    let b = Bazaar::with_replicas(5);
    let up = b.run(&["up"], &[]);
    assert!(up.status.success(), "{}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("ids 1 2 3 4 5"),
        "{}",
        text(&up)
    );
    let replica_http = |id: usize| b.ports[2 + 3 * (id - 1)];
    for id in 1..=5 {
        assert!(listening(replica_http(id)), "order-{id} does not listen");
    }
    let status = b.run(&["status"], &[]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert_eq!(said.matches(" running (pid").count(), 7, "{said}");
    assert!(said.contains("order-5   running"), "{said}");
    let kill = b.run(&["kill", "order-5"], &[]);
    assert!(kill.status.success(), "{}", text(&kill));
    let start = b.run(&["start", "order-5"], &[]);
    assert!(start.status.success(), "{}", text(&start));
    assert!(
        listening(replica_http(5)),
        "order-5 does not listen after start"
    );
    let down = b.run(&["down"], &[]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("stopped order-5"),
        "{}",
        text(&down)
    );
    for id in 1..=5 {
        assert!(!listening(replica_http(id)), "order-{id} still listens");
    }
    // A demo of five replicas: it verifies every order and compares all five files.
    let demo = b.run(&["demo"], &[]);
    assert!(demo.status.success(), "{}", text(&demo));
    assert!(
        String::from_utf8_lossy(&demo.stdout).contains("orders in each of 5"),
        "{}",
        text(&demo)
    );
}

//! `./run.sh dist`: the binaries are static and run with nothing around them, from an empty
//! directory with an empty environment (what a `FROM scratch` container or a bare machine
//! gives them).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the catalog may take to answer after it was spawned.
const SERVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval while waiting for the catalog.
const POLL: Duration = Duration::from_millis(50);
/// Read timeout of one request to the catalog.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

const BINARIES: [&str; 4] = ["catalog", "order", "frontend", "client"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds dist/ once for all the tests here: they run as threads, and a second `dist` while
/// another test executes the binaries would replace them under it.
fn dist() -> PathBuf {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let built = *BUILT.get_or_init(|| {
        Command::new("./run.sh")
            .arg("dist")
            .current_dir(root())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(built, "./run.sh dist failed");
    root().join("dist")
}

fn empty_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("bazaar-dist-{tag}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn dist_binaries_are_static_and_start_from_nothing() {
    let dist = dist();
    assert!(
        dist.join("conf/bazaar.yaml").is_file(),
        "dist/conf/bazaar.yaml"
    );
    assert!(dist.join("README").is_file(), "dist/README");
    let empty_dir = empty_dir("help");
    let empty = empty_dir.path();
    for name in BINARIES {
        let bin = dist.join(name);
        let file = Command::new("file")
            .arg("-L")
            .arg(&bin)
            .output()
            .expect("the `file` command (apt-get install file; .ci/run installs it)");
        let said = String::from_utf8_lossy(&file.stdout);
        // Newer `file` calls a static-pie "static-pie linked", older ones "statically linked";
        // a dynamic binary is "dynamically linked" with an interpreter.
        assert!(
            said.contains("statically linked") || said.contains("static-pie linked"),
            "{name} is not static: {said}"
        );
        assert!(
            !said.contains("interpreter"),
            "{name} has an interpreter: {said}"
        );
        let help = Command::new(&bin)
            .arg("--help")
            .env_clear()
            .current_dir(empty)
            .output()
            .unwrap();
        assert!(
            help.status.success(),
            "{name} --help under env -i: {help:?}"
        );
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Usage"),
            "{name} --help prints no usage: {help:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(empty).unwrap().count(),
        0,
        "--help wrote files"
    );
}

#[test]
fn dist_catalog_serves_from_an_empty_directory() {
    let dist = dist();
    let empty_dir = empty_dir("serve");
    let empty = empty_dir.path();
    let port = free_port();
    // The only environment is the override of the port: nothing else leaks in.
    let mut child = Command::new(dist.join("catalog"))
        .arg("--config")
        .arg(dist.join("conf/bazaar.yaml"))
        .env_clear()
        .env("CATALOG_PORT", port.to_string())
        .current_dir(empty)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    // Stops early, with `Some(None)`, when the catalog exits.
    let answer = common::poll(SERVE_TIMEOUT, POLL, || {
        match get(&addr, "/stocks/GameStart") {
            Some(body) => Some(Some(body)),
            None => child.try_wait().unwrap().map(|_| None),
        }
    })
    .flatten();
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer.expect("the static catalog never answered GET /stocks/GameStart");
    assert!(answer.contains(r#""name":"GameStart""#), "{answer}");
    // It made its state where the config says (./data, relative to the empty directory).
    assert!(empty.join("data/catalog.json").is_file());
}

/// A 200 body, or `None` while the server is not answering.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(CALL_TIMEOUT)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A port free right now, below the ephemeral range (see `src/local.rs`).
fn free_port() -> u16 {
    let mut rng = fastrand::Rng::new();
    (0..1000)
        .map(|_| rng.u16(20_000..32_000))
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

#[test]
fn shipped_configs_load() {
    for path in [
        "conf/bazaar.yaml",
        "conf/multihost.yaml",
        "deploy/bazaar.yaml",
    ] {
        if let Err(e) = bazaar::config::Config::load(&root().join(path)) {
            panic!("{path}: {e}");
        }
    }
}

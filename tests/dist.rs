//! `./run.sh dist`: the binaries are static and run with nothing around them, from an empty
//! directory with an empty environment (what a `FROM scratch` container or a bare machine
//! gives them).

mod common;

use std::net::TcpListener;
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

/// More than a stripped binary weighs (about 3 MB), less than one with its symbols (17 MB).
const MAX_STRIPPED_SIZE: u64 = 8 << 20;

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
    let readme = std::fs::read_to_string(dist.join("README")).expect("dist/README");
    // Commands a user can paste in dist/: with ./, in the background, and the secret.
    for want in [
        "./catalog ",
        "./order ",
        "./frontend ",
        "./client ",
        "nohup",
        "kill",
        "BAZAAR_SECRET_FILE",
    ] {
        assert!(
            readme.contains(want),
            "dist/README lacks {want:?}:\n{readme}"
        );
    }
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
        // Stripped: a few MB, not the 17 MB with symbols and debug info (kept in .debug/).
        assert!(
            said.contains(", stripped") && !said.contains("not stripped"),
            "{name} is not stripped: {said}"
        );
        let size = std::fs::metadata(&bin).unwrap().len();
        assert!(size < MAX_STRIPPED_SIZE, "{name} is {size} bytes");
        assert!(dist.join(format!(".debug/{name}.debug")).is_file());
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

#[test]
fn dist_catalog_needs_a_secret_of_its_own_on_a_reachable_address() {
    let dist = dist();
    let dir = empty_dir("secret");
    let port = free_port();
    let catalog = |env: &[(&str, String)]| {
        Command::new(dist.join("catalog"))
            .arg("--config")
            .arg(dist.join("conf/bazaar.yaml"))
            .env_clear()
            .env("CATALOG_PORT", port.to_string())
            .env("CATALOG_HOST", "0.0.0.0")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The shipped development secret on 0.0.0.0: refused at start, saying how to set one.
    let refused = catalog(&[]).wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("catalog.host is 0.0.0.0") && said.contains("BAZAAR_SECRET_FILE"),
        "{said}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "it wrote state before refusing"
    );
    // A secret of its own from a file: it serves (reached on loopback).
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "a-secret-of-our-own\n").unwrap();
    let mut child = catalog(&[("BAZAAR_SECRET_FILE", secret.display().to_string())]);
    let addr = format!("127.0.0.1:{port}");
    let answer = common::poll(SERVE_TIMEOUT, POLL, || {
        match get(&addr, "/stocks/GameStart") {
            Some(body) => Some(Some(body)),
            None => child.try_wait().unwrap().map(|_| None),
        }
    })
    .flatten();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(answer.is_some(), "never served: {out:?}");
}

/// A 200 body, or `None` while the server is not answering.
fn get(addr: &str, path: &str) -> Option<String> {
    let got = bazaar::testkit::raw::exchange(addr, "GET", path, "", "", CALL_TIMEOUT).ok()?;
    (got.status == 200).then(|| String::from_utf8_lossy(&got.body).into_owned())
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
    for path in ["conf/bazaar.yaml", "conf/multihost.yaml"] {
        if let Err(e) = bazaar::config::Config::load(&root().join(path)) {
            panic!("{path}: {e}");
        }
    }
    // The container config reads the secret from the Docker secret's file, which only a
    // container has: given a file of its own, it loads, and it ships no secret itself.
    let dir = empty_dir("secret-file");
    let secret = dir.path().join("bazaar_secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let text = std::fs::read_to_string(root().join("deploy/bazaar.yaml")).unwrap();
    assert!(
        text.contains("secret_file: /run/secrets/bazaar_secret"),
        "{text}"
    );
    let env = |key: &str| (key == "BAZAAR_SECRET_FILE").then(|| secret.display().to_string());
    match bazaar::config::Config::from_yaml(&text, &env) {
        Ok(config) => assert_eq!(config.secret, "s3cret"),
        Err(e) => panic!("deploy/bazaar.yaml: {e}"),
    }
}

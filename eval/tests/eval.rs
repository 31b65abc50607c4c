//! `./run.sh eval` end to end, at a small size: every phase runs on private bazaars started
//! through run.sh, and the CSV (one row per run, probabilities as given), the plots and the
//! report come out complete; and `eval --host/--port` measures a running bazaar it did not
//! start, skipping what needs the deployment's machines.
//!
//! The service binaries are the root crate's: they must sit beside `eval` in the workspace's
//! `target/release`. `cargo test --release --workspace` (what `./run.sh test` runs) builds them
//! before any test runs; after `cargo test -p bazaar-eval` alone, run
//! `cargo build --release --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bazaar::testkit::cluster::{Binaries, Cluster, ClusterOptions, Process};

/// Three bazaar starts and the fail-over schedule (about 30 s of faults) on a shared machine.
const EVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Poll interval while the eval runs.
const POLL: Duration = Duration::from_millis(200);

/// The directory of the binaries cargo built for this run: `eval` and, beside it, the services
/// and the client (the eval finds them there too).
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_eval"))
        .parent()
        .expect("eval has a directory")
        .to_path_buf();
    for name in ["catalog", "order", "frontend", "client"] {
        assert!(
            dir.join(name).is_file(),
            "no {name} beside eval in {}: run `cargo build --release --workspace --bins` (or \
             `cargo test --release --workspace`), which builds the services with the eval",
            dir.display()
        );
    }
    dir
}

/// Polls `f` every `interval` until it gives `Some`, for at most `timeout`.
fn poll<T>(timeout: Duration, interval: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    bazaar::local::poll_every("a test condition", timeout, interval, f).ok()
}

/// Runs the eval binary with these arguments, writing to `out`; fails the test unless it
/// succeeds within [`EVAL_TIMEOUT`].
fn run_eval(args: &[&str], out: &Path) {
    // The workspace root, where run.sh is.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("eval/ has a parent")
        .to_path_buf();
    let mut child = Command::new(bin_dir().join("eval"))
        .args(args)
        .arg("--run-sh")
        .arg(root.join("run.sh"))
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("run eval");
    let Some(status) = poll(EVAL_TIMEOUT, POLL, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("eval still running after {EVAL_TIMEOUT:?}");
    };
    assert!(status.success(), "eval failed: {status}");
}

fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bazaar-eval-out-")
        .tempdir()
        .unwrap()
}

#[test]
fn eval_writes_csv_plots_and_report() {
    let out_dir = out_dir();
    let out = out_dir.path();
    run_eval(
        &[
            "--n-request",
            "20",
            "--probs",
            "0,0.25",
            "--repeats",
            "2",
            "--trace-requests",
            "20",
        ],
        out,
    );

    let csv = std::fs::read_to_string(out.join("latency.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "p,cache,run,type,mean_ms,p50_ms,p99_ms,max_ms,count,cache_hits,cache_misses"
    );
    // Per run: p = 0 lookups only; p = 0.25 lookups, orders, order queries; two runs, for
    // cache on and off.
    assert_eq!(lines.len(), 1 + 2 * 2 * (1 + 3), "{csv}");
    for (cache, run, kind) in [
        ("on", 1, "lookup"),
        ("on", 2, "lookup"),
        ("off", 1, "lookup"),
        ("on", 1, "order"),
        ("off", 2, "order_query"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("0.25,{cache},{run},{kind},"))),
            "no 0.25,{cache},{run},{kind} row in {csv}"
        );
    }
    // The front-end's counters: every lookup with the cache on is a hit or a miss.
    let on_lookup: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("0,on,1,lookup,"))
        .unwrap()
        .split(',')
        .collect();
    let count: u64 = on_lookup[8].parse().unwrap();
    let hits: u64 = on_lookup[9].parse().unwrap();
    let misses: u64 = on_lookup[10].parse().unwrap();
    assert_eq!(hits + misses, count, "{csv}");
    for svg in ["latency.svg", "cache-trace.svg", "failover.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg}"
        );
    }
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for needle in [
        "![latency against p](latency.svg)",
        "![cache over time](cache-trace.svg)",
        "![fail-over timeline](failover.svg)",
        "p = 0, 0.25.",
        "| 0.25 | on |",
        "2 run(s) per point",
        "**Hit ratio.**",
        "### Can clients notice failures?",
    ] {
        assert!(readme.contains(needle), "README lacks {needle}: {readme}");
    }
    // The fail-over phase ran its four faults and the clients saw no error.
    assert_eq!(readme.matches("| kill -9 ").count(), 4, "{readme}");
    assert!(
        readme.contains("| errors (transport failures, 5xx after the client's retries) | 0 |"),
        "{readme}"
    );
    assert!(readme.contains("**Not as errors.**"), "{readme}");
    assert!(
        readme.contains("| replica files once quiet (`cmp`) | identical"),
        "{readme}"
    );
}

#[test]
fn eval_measures_an_existing_deployment() {
    let dir = bin_dir();
    let binaries = Binaries {
        catalog: dir.join("catalog"),
        order: dir.join("order"),
        frontend: dir.join("frontend"),
    };
    let bazaar = Cluster::start(binaries, ClusterOptions::default()).expect("start a bazaar");
    let addr = bazaar.http_addr(Process::FRONTEND);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out_dir = out_dir();
    let out = out_dir.path();
    run_eval(
        &[
            "--host",
            host,
            "--port",
            port,
            "--n-request",
            "20",
            "--probs",
            "0.25",
            "--repeats",
            "2",
        ],
        out,
    );
    let csv = std::fs::read_to_string(out.join("latency.csv")).unwrap();
    // The deployment's own setting only (cache on), two runs of three request types.
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.starts_with("0.25,on,")),
        "{csv}"
    );
    assert!(out.join("latency.svg").exists());
    assert!(!out.join("cache-trace.svg").exists());
    assert!(!out.join("failover.svg").exists());
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    let at = format!("whose front-end is at `{addr}`");
    for needle in [
        at.as_str(),
        "## Latency against p, cache on (the deployment's setting)",
        "Files written: `latency.csv`, `latency.svg`, `README.md`.",
        "Not measured: against a deployment the cache dump",
        "Not measured: the faults are `./run.sh kill`",
    ] {
        assert!(readme.contains(needle), "README lacks {needle}: {readme}");
    }
    assert!(!readme.contains("failover.svg"), "{readme}");
    // The load went to the bazaar this test started: its catalog saw the trades.
    let traded: u64 = bazaar.stocks().unwrap().values().map(|s| s.volume).sum();
    assert!(traded > 0, "no trade reached the deployment");
}

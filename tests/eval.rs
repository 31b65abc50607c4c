//! `./run.sh eval` end to end, at a small size: every phase runs on private bazaars started
//! through run.sh, and the CSV, the plots and the report come out complete.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Three bazaar starts and the fail-over schedule (about 20 s of faults) on a shared machine.
const EVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Poll interval while the eval runs.
const POLL: Duration = Duration::from_millis(200);

#[test]
fn eval_writes_csv_plots_and_report() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::Builder::new()
        .prefix("bazaar-eval-out-")
        .tempdir()
        .unwrap();
    let out = out_dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eval"))
        .args([
            "--n-request",
            "20",
            "--probs",
            "0,0.5",
            "--trace-requests",
            "20",
        ])
        .arg("--run-sh")
        .arg(root.join("run.sh"))
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("run eval");
    let Some(status) = common::poll(EVAL_TIMEOUT, POLL, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("eval still running after {EVAL_TIMEOUT:?}");
    };
    assert!(status.success(), "eval failed: {status}");

    let csv = std::fs::read_to_string(out.join("latency.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "p,cache,type,mean_ms,p50_ms,p99_ms,count");
    // p = 0: lookups only; p = 0.5: lookups, orders, queries; for cache on and off.
    assert_eq!(lines.len(), 1 + 2 * (1 + 3), "{csv}");
    for (cache, kind) in [
        ("on", "lookup"),
        ("off", "lookup"),
        ("on", "order"),
        ("off", "query"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("0.5,{cache},{kind},"))),
            "no 0.5,{cache},{kind} row in {csv}"
        );
    }
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
    ] {
        assert!(readme.contains(needle), "README lacks {needle}");
    }
    // The fail-over phase ran its four faults and the clients saw no error.
    assert_eq!(readme.matches("| kill -9 ").count(), 4, "{readme}");
    assert!(
        readme.contains("| errors (transport failures, 5xx after the client's retries) | 0 |"),
        "{readme}"
    );
    assert!(
        readme.contains("| replica files once quiet (`cmp`) | identical"),
        "{readme}"
    );
}

//! The client binary fails fast and says why: nothing listening, a run of nothing; and its
//! summary shows the longest request beside the mean and percentiles.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A refused connection must end the run at once, not after the 15 s retry deadline.
const FAILS_WITHIN: Duration = Duration::from_secs(5);
/// The longest the client may run against a started bazaar here.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

fn client(args: &[&str], timeout: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if common::poll(timeout, POLL, || child.try_wait().unwrap()).is_none() {
        let _ = child.kill();
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn nothing_listening_fails_at_once_saying_connection_refused() {
    let port = bazaar::local::free_ports(1).unwrap()[0].to_string();
    let (out, took) = client(&["--port", &port], RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(took < FAILS_WITHIN, "took {took:?}: {}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection refused"), "{}", said(&out));
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{}", said(&out));
    assert!(
        !said(&out).contains("503"),
        "a refusal is no 503: {}",
        said(&out)
    );
}

#[test]
fn a_run_of_nothing_is_refused() {
    for (args, want) in [
        (&["--clients", "0"][..], "--clients must be at least 1"),
        (&["--n-request", "0"][..], "must be at least 1"),
        (&["--n_request", "0"][..], "must be at least 1"),
    ] {
        let (out, _) = client(args, RUN_TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", said(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}: {}",
            said(&out)
        );
    }
}

#[test]
fn the_summary_shows_max() {
    let bazaar = common::start(common::Options::default());
    let addr = bazaar.http_addr(common::Process::Frontend(0));
    let port = addr.rsplit(':').next().unwrap().to_string();
    let (out, _) = client(
        &[
            "--port",
            &port,
            "--clients",
            "2",
            "--n-request",
            "5",
            "--prob",
            "1",
        ],
        RUN_TIMEOUT,
    );
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["lookup", "order", "query"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} line: {text}"));
        assert!(line.contains(" max "), "{line}");
    }
}

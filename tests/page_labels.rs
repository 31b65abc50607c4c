//! The replica cards of the live page say what is true: how many orders a follower lacks, or
//! that it holds every order but has not yet heard of the last commits, and "up to date" only
//! when both match the leader. The page's own label functions (`src/frontend/page/index.html`,
//! from `const known` to `function renderReplicas`) run under Node.js with replica views as
//! `/cluster` gives them.
//!
//! Skipped (passing, with a line saying why) when `node` is not installed; the browser test
//! (tests/e2e_page.rs) renders the whole page.

use std::process::{Command, Stdio};

const PAGE: &str = include_str!("../src/frontend/page/index.html");

/// The page's label helpers, as the browser runs them.
fn label_functions() -> &'static str {
    let start = PAGE.find("const known").expect("the page defines `known`");
    let end = PAGE
        .find("function renderReplicas")
        .expect("the page defines renderReplicas");
    &PAGE[start..end]
}

#[test]
fn replica_labels_say_what_is_true() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipped: no `node` to run the page's JavaScript");
        return;
    }
    let script = format!(
        r#"{functions}
const leader = {{ is_leader: true, up: true, latest: 111, commit: 111, behind: 0 }};
const out = {{
  leader: lagText(leader, leader),
  equal: lagText({{ latest: 111, commit: 111, behind: 0 }}, leader),
  commitBehind: lagText({{ latest: 111, commit: 110, behind: 0 }}, leader),
  twoCommitsBehind: lagText({{ latest: 111, commit: 109, behind: 0 }}, leader),
  oneBehind: lagText({{ latest: 110, commit: 110, behind: 1 }}, leader),
  lastNumber: number(111, "none yet"),
  empty: number(-1, "none yet"),
}};
console.log(JSON.stringify(out));
"#,
        functions = label_functions()
    );
    let out = Command::new("node")
        .arg("-e")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "node: {out:?}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = |key: &str| got[key][1].as_str().unwrap_or_default().to_string();
    assert_eq!(label("leader"), "leads the log");
    assert_eq!(label("equal"), "up to date");
    assert_eq!(
        label("commitBehind"),
        "holds every order; hears of the last 1 commit with the next batch"
    );
    assert!(label("twoCommitsBehind").contains("last 2 commits"));
    assert_eq!(label("oneBehind"), "1 order behind the leader");
    assert_eq!(got["lastNumber"], 111);
    assert_eq!(got["empty"], "none yet");
}

#[test]
fn cards_name_numbers_as_numbers_and_applied_only_on_the_leader() {
    let functions = PAGE
        .find("function renderReplicas")
        .map(|start| &PAGE[start..])
        .unwrap();
    let render = &functions[..functions.find("\n}\n").unwrap()];
    assert!(render.contains(r#""last number""#), "{render}");
    assert!(
        !render.contains(r#"["latest""#),
        "a 'latest' label is back: {render}"
    );
    assert!(
        render.contains(r#"r.role === "leader" && known(r.applied)"#),
        "catalog applied must only be shown where it is known: {render}"
    );
}

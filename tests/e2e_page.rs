//! The live page in a real browser: headless Chromium loads `GET /` from a real bazaar, and the
//! test reads the DOM the page's JavaScript rendered (`--dump-dom`).
//!
//! Chromium is found as `$BAZAAR_CHROMIUM`, else `chromium`, `chromium-browser`,
//! `google-chrome` on the PATH. When none can render a page the test is skipped with a message
//! on stderr, unless `BAZAAR_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes it fail instead.
//!
//! Caveats:
//! - The DOM is read as text (ids and `data-` attributes the page sets on purpose), not with
//!   an HTML parser: a change of the page's markup may need a change here.
//! - Each check starts a fresh Chromium (a second or two on a small machine), so "shows it down
//!   within a few seconds" is measured with that overhead included.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{raw, wait_for, Options, Process};

/// Names tried, in order, when `BAZAAR_CHROMIUM` is not set.
const CANDIDATES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The longest one Chromium run may take (start, load, the page's first fetch, the dump).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(40);

/// Virtual time the page gets before the dump: enough for its first `/cluster` round trip
/// (Chromium holds virtual time while a fetch is pending) and a redraw.
const VIRTUAL_TIME_BUDGET_MS: u32 = 2500;

/// How soon after a kill the page must show the replica down and the new leader.
const SHOWS_DOWN_WITHIN: Duration = Duration::from_secs(20);

/// A headless Chromium with its own throw-away profile.
struct Browser {
    exe: String,
    /// The profile and the captured output, removed with the browser.
    dir: tempfile::TempDir,
}

impl Browser {
    /// The first candidate that renders a trivial page, or why none did.
    fn find() -> Result<Browser, String> {
        // The profile on tmpfs when there is one: Chromium's disk writes would otherwise slow
        // the replicas' fsyncs on a small machine.
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        let names: Vec<String> = match std::env::var("BAZAAR_CHROMIUM") {
            Ok(exe) => vec![exe],
            Err(_) => CANDIDATES.iter().map(|s| s.to_string()).collect(),
        };
        let mut why = Vec::new();
        for exe in names {
            let dir = tempfile::Builder::new()
                .prefix("bazaar-browser-")
                .tempdir_in(&base)
                .map_err(|e| format!("cannot create a directory in {}: {e}", base.display()))?;
            let browser = Browser {
                exe: exe.clone(),
                dir,
            };
            match browser.dump_dom("data:text/html,<p id=probe>rendered</p>") {
                Ok(dom) if dom.contains("rendered") => return Ok(browser),
                Ok(dom) => why.push(format!("{exe}: unexpected output {dom:.80}")),
                Err(e) => why.push(format!("{exe}: {e}")),
            }
        }
        Err(why.join("; "))
    }

    /// Runs Chromium headless with `args` and the URL; its stdout, if it exits in time.
    fn run(&self, args: &[String], url: &str) -> Result<String, String> {
        let out_path = self.dir.path().join("stdout");
        let out = fs::File::create(&out_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                self.dir.path().join("profile").display()
            ))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start: {e}"))?;
        let exited = common::poll(BROWSER_TIMEOUT, common::POLL, || {
            child.try_wait().ok().flatten()
        });
        let status = match exited {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {BROWSER_TIMEOUT:?}"));
            }
        };
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            return Err(format!("exited with {status}"));
        }
        Ok(stdout)
    }

    /// The DOM after the page's scripts ran for [`VIRTUAL_TIME_BUDGET_MS`].
    fn dump_dom(&self, url: &str) -> Result<String, String> {
        let budget = format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}");
        self.run(&[budget, "--dump-dom".into()], url)
    }
}

/// The browser, or `None` after saying why the test is skipped.
fn browser_or_skip() -> Option<Browser> {
    match Browser::find() {
        Ok(browser) => Some(browser),
        Err(why) if std::env::var("BAZAAR_REQUIRE_BROWSER").is_ok_and(|v| v == "1") => {
            panic!("BAZAAR_REQUIRE_BROWSER=1 but no headless Chromium runs: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED e2e_page: no headless Chromium could render a page ({why}); \
                 install Debian's `chromium` or set BAZAAR_CHROMIUM"
            );
            None
        }
    }
}

/// The start tag of the element with this id in a dumped DOM.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

/// An attribute of that start tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}

/// (role, marked as the leader) of each replica card, by id.
fn replicas(dom: &str) -> Vec<(u32, String, bool)> {
    (1..=3)
        .filter_map(|id| {
            let tag = tag_with_id(dom, &format!("replica-{id}"))?;
            Some((
                id,
                attr(tag, "data-role")?.to_string(),
                attr(tag, "data-leader")? == "true",
            ))
        })
        .collect()
}

/// The leader the header names.
fn leader_named(dom: &str) -> Option<String> {
    let tag = tag_with_id(dom, "leader-name")?;
    let from = dom.find(tag)? + tag.len();
    Some(dom[from..from + dom[from..].find('<')?].to_string())
}

#[test]
fn the_page_names_the_leader_and_every_replica_and_shows_a_killed_one_down() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let mut b = common::start(Options::default());
    let fe = b.frontend.clone();
    let url = format!("http://{fe}/");
    let leader = b.wait_leader().expect("a leader");

    // A little traffic, so the stocks, the cache and the counters have something to show.
    for name in ["GameStart", "FishCo", "BoarCo"] {
        assert_eq!(raw(&fe, "GET", &format!("/stocks/{name}"), "").0, 200);
        let body = format!(r#"{{"name":"{name}","quantity":2,"type":"buy"}}"#);
        assert_eq!(raw(&fe, "POST", "/orders", &body).0, 200);
    }
    assert_eq!(raw(&fe, "GET", "/stocks/GameStart", "").0, 200);

    let dom = browser.dump_dom(&url).expect("the page renders");
    assert_eq!(
        leader_named(&dom).as_deref(),
        Some(format!("order-{leader}").as_str()),
        "the header names the leader"
    );
    let cards = replicas(&dom);
    assert_eq!(cards.len(), 3, "a card per replica: {cards:?}");
    for (id, role, marked) in &cards {
        assert_ne!(role, "down", "order-{id} is running");
        assert_eq!(*marked, *id == leader, "order-{id} leader mark");
        assert!(
            dom.contains(&format!(">order-{id}<")),
            "order-{id} is named"
        );
    }
    assert!(
        dom.contains("id=\"stock-GameStart\""),
        "the stocks are listed"
    );
    assert!(tag_with_id(&dom, "cache-strip").is_some());
    assert!(!dom.contains("class=\"stale\""), "the page got its data");

    // Kill the leader: the page must show it down and a new leader within a few seconds.
    b.kill(Process::Order(leader));
    let dom = wait_for(
        "the page to show the killed leader down",
        SHOWS_DOWN_WITHIN,
        || {
            let dom = browser.dump_dom(&url).ok()?;
            let cards = replicas(&dom);
            let down = cards
                .iter()
                .any(|(id, role, _)| *id == leader && role == "down");
            let named = leader_named(&dom)?;
            (down && named.starts_with("order-") && named != format!("order-{leader}"))
                .then_some(dom)
        },
    );
    let new_leader = b.wait_leader().expect("a new leader");
    assert_eq!(leader_named(&dom), Some(format!("order-{new_leader}")));
    // Listed as "3 → 2", or as "3 lost" then "2 leads" when a selection found nobody between.
    let listed = tag_with_id(&dom, "failovers")
        .and_then(|tag| dom.split_once(tag))
        .map(|(_, rest)| rest.split("</ul>").next().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        listed.contains(&format!("→ order-{new_leader} (epoch"))
            || listed.contains(&format!("order-{new_leader} leads (epoch")),
        "the fail-over is listed: {listed}"
    );
}

//! Broken state on start: damaged logs, hard state and catalog files are named, kept aside and
//! recovered from; an unusable data directory makes the binary exit with the state code.
//!
//! Caveats: the binaries are run directly (not through the cluster's supervisor) so that their
//! exit and stderr are seen.

use super::*;

/// How long a binary started on broken state may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often [`run_to_exit`] looks whether the binary has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// Starts one binary with its stderr piped (stdout dropped).
fn spawn_piped(exe: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts one binary on `config` and waits for it to exit: (exit code, stderr).
fn run_to_exit(exe: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = spawn_piped(exe, args);
    let Some(status) = common::poll(EXIT_TIMEOUT, EXIT_POLL, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{} {args:?} still runs on broken state", exe.display());
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// Starts one binary on `config`, waits until a line of its stderr names `file` while it keeps
/// running, and kills it: the line, or `None` if it exited or never said so.
fn run_until_named(exe: &Path, args: &[&str], file: &str) -> Option<String> {
    use std::io::BufRead;
    let mut child = spawn_piped(exe, args);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let named = common::poll(EXIT_TIMEOUT, EXIT_POLL, || {
        rx.try_iter().find(|line| line.contains(file))
    });
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    named.filter(|_| running)
}

#[test]
fn damaged_state_on_start_is_named_kept_and_recovered_from() {
    // A real history: a cluster that traded, then stopped.
    let c = quiet_cluster();
    let dir = c.dir.clone();
    let config = c.config_path.display().to_string();
    let data = c.data_dir();
    let good: BTreeMap<PathBuf, Vec<u8>> = files(&c);
    let binaries = common::binaries();
    let mut c = c;
    for s in Process::ALL {
        c.kill(s);
    }
    let log1 = data.join("orders-1.csv");
    let good_log = good[&log1].clone();
    assert!(!good_log.is_empty());
    let log_text = String::from_utf8(good_log.clone()).unwrap();
    let mut log_lines = log_text.lines();
    let header = log_lines.next().unwrap().to_string();
    let first = log_lines.next().unwrap().to_string();
    assert!(first.starts_with("0,"), "{first}");
    // Entry 0 renumbered (the checksum no longer matches either); damage always has a good
    // line after it (a torn last line is what a crash leaves, and is cut away quietly).
    let renumber = |n: u64| first.replacen("0,", &format!("{n},"), 1);
    let log = |lines: &[String]| format!("{header}\n{}\n", lines.join("\n")).into_bytes();
    // (file, what is wrong, which binary, its bytes, extra flags)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "catalog.json",
            "corrupt",
            "catalog",
            b"{not json".to_vec(),
            vec![],
        ),
        (
            "catalog.json",
            "truncated",
            "catalog",
            good[&data.join("catalog.json")][..40].to_vec(),
            vec![],
        ),
        ("catalog.json", "empty", "catalog", Vec::new(), vec![]),
        (
            "orders-1.state.json",
            "corrupt",
            "order",
            b"\x00\x01garbage".to_vec(),
            vec!["--id", "1"],
        ),
        (
            "orders-1.state.json",
            "truncated",
            "order",
            good[&data.join("orders-1.state.json")][..5].to_vec(),
            vec!["--id", "1"],
        ),
        (
            "orders-1.csv",
            "damaged middle line",
            "order",
            log(&[first.clone(), renumber(1).replace(',', ";"), renumber(2)]),
            vec!["--id", "1"],
        ),
        (
            "orders-1.csv",
            "numbers skip",
            "order",
            log(&[first.clone(), renumber(5), renumber(6)]),
            vec!["--id", "1"],
        ),
        (
            "orders-1.csv",
            "numbers repeat",
            "order",
            log(&[first.clone(), first.clone(), renumber(1)]),
            vec!["--id", "1"],
        ),
    ];
    let mut n = 0;
    for (file, what, service, bytes, extra) in cases {
        let path = data.join(file);
        std::fs::write(&path, &bytes).unwrap();
        let exe = if service == "catalog" {
            &binaries.catalog
        } else {
            &binaries.order
        };
        let mut args = vec!["--config", config.as_str()];
        args.extend(extra);
        let line = run_until_named(exe, &args, file);
        assert!(
            line.is_some(),
            "{file} {what}: the {service} kept running and named the file"
        );
        let kept = data.join(format!("{file}.damaged"));
        assert_eq!(
            std::fs::read(&kept).ok(),
            Some(bytes),
            "{file} {what}: the damaged bytes are kept in {}",
            kept.display()
        );
        // Put every good file back for the next case (recovery may have rewritten others).
        for entry in std::fs::read_dir(&data).unwrap() {
            let p = entry.unwrap().path();
            if !good.contains_key(&p) {
                std::fs::remove_file(&p).unwrap();
            }
        }
        for (p, good_bytes) in &good {
            std::fs::write(p, good_bytes).unwrap();
        }
        n += 1;
    }
    // A data directory that is a file, not a directory: every service that keeps state.
    let moved = dir.join("data.moved");
    std::fs::rename(&data, &moved).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    for (exe, extra) in [
        (&binaries.catalog, vec![]),
        (&binaries.order, vec!["--id", "2"]),
    ] {
        let mut args = vec!["--config", config.as_str()];
        args.extend(extra);
        let (code, err) = run_to_exit(exe, &args);
        assert_eq!(
            code,
            Some(bazaar::startup::EXIT_STATE),
            "data dir is a file: {err}"
        );
        assert!(err.contains("data"), "names the directory: {err}");
        n += 1;
    }
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&moved, &data).unwrap();
    for (path, bytes) in &good {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    println!(
        "broken state: {n} cases, damage named and kept, an unusable data directory exits {}",
        bazaar::startup::EXIT_STATE
    );
}

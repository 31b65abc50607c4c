//! A full disk on append: orders into a small tmpfs until it fills; nothing acknowledged is lost
//! and the bazaar recovers once there is room again.
//!
//! Caveats: mounting a tmpfs needs the right to `mount`; where it is not allowed the test is
//! skipped (it says so).

use super::*;

/// Size of the tmpfs the full-disk test mounts as the data directory: room for a few hundred
/// orders in three logs.
const SMALL_DISK: &str = "48k";
/// How long the full-disk test keeps ordering into a full disk.
const FULL_DISK_FOR: Duration = Duration::from_secs(4);
/// Most orders the full-disk test sends before the disk must have filled.
const FULL_DISK_MAX_ORDERS: usize = 3000;

/// A cluster whose data directory is a small tmpfs; unmounted after the services are stopped.
struct SmallDisk {
    cluster: Option<Cluster>,
    mount: PathBuf,
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let dir = self.cluster.as_ref().map(|c| c.dir.clone());
        drop(self.cluster.take());
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
        if let Some(dir) = dir.filter(|_| !thread::panicking()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).unwrap();
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A full disk on append (a real ENOSPC, on a small tmpfs; skipped where `mount` is not
/// allowed): orders fail rather than being acknowledged, nothing acknowledged is lost, no
/// file is damaged, and once the disk has room again the bazaar serves orders.
#[test]
fn full_disk_on_append_loses_nothing_and_recovers() {
    let mut c = Cluster::configure(
        common::binaries(),
        Options {
            log_level: "info".into(),
            ..Options::default()
        },
    )
    .unwrap();
    let data = c.data_dir();
    if !mount_tmpfs(&data, SMALL_DISK) {
        println!("full disk: skipped, cannot mount a tmpfs here (needs root)");
        return;
    }
    c.keep_dir = false;
    c.start_service(Process::Catalog).unwrap();
    for id in 1..=3 {
        c.start_service(Process::Order(id)).unwrap();
    }
    for id in 1..=3 {
        c.wait_ready(id).unwrap();
    }
    c.start_service(Process::FRONTEND).unwrap();
    c.wait_leader().unwrap();
    let disk = SmallDisk {
        cluster: Some(c),
        mount: data.clone(),
    };
    let c = disk.cluster.as_ref().unwrap();
    let mut acknowledged = Vec::new();
    let mut statuses = BTreeMap::<u16, u64>::new();
    let mut full_since: Option<Instant> = None;
    for i in 0..FULL_DISK_MAX_ORDERS {
        let kind = if i.is_multiple_of(2) { "buy" } else { "sell" };
        let body =
            format!(r#"{{"name":"FishCo","quantity":1,"type":"{kind}","request_id":"disk-{i}"}}"#);
        let (status, answer) = raw(&c.frontend, "POST", "/orders", &body);
        *statuses.entry(status).or_default() += 1;
        if status == 200 {
            acknowledged.push(Order {
                number: answer["data"]["transaction_number"].as_u64().unwrap(),
                name: "FishCo".into(),
                kind: if kind == "buy" {
                    OrderType::Buy
                } else {
                    OrderType::Sell
                },
                quantity: 1,
            });
        } else {
            assert!(
                (400..600).contains(&status) && answer["error"]["code"] == status,
                "a failed order is a JSON error: {status} {answer}"
            );
            full_since.get_or_insert_with(Instant::now);
        }
        if full_since.is_some_and(|t| t.elapsed() > FULL_DISK_FOR) {
            break;
        }
    }
    println!(
        "full disk: {} orders on a {SMALL_DISK} tmpfs: statuses {statuses:?}",
        statuses.values().sum::<u64>()
    );
    assert!(full_since.is_some(), "the disk never filled: {statuses:?}");
    let logs = std::fs::read_dir(c.dir.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    let named = logs
        .lines()
        .find(|l| l.contains("No space left on device") || l.contains("os error 28"));
    println!("full disk: the services said: {named:?}");
    assert!(named.is_some(), "no log line says the disk is full");
    // Room again: the bazaar serves orders, and nothing acknowledged was lost.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(grown.success());
    common::wait_for(
        "an order accepted after the disk has room",
        CALL * 3,
        || {
            let (status, answer) = raw(
                &c.frontend,
                "POST",
                "/orders",
                r#"{"name":"FishCo","quantity":1,"type":"sell","request_id":"disk-after"}"#,
            );
            (status == 200).then(|| {
                acknowledged.push(Order {
                    number: answer["data"]["transaction_number"].as_u64().unwrap(),
                    name: "FishCo".into(),
                    kind: OrderType::Sell,
                    quantity: 1,
                })
            })
        },
    );
    c.wait_logs_identical(CALL * 2).unwrap();
    common::assert_invariants(c, &acknowledged);
}

//! Crash points for the fault-injection tests.
//!
//! `BAZAAR_FAILPOINT=<name>` (or `<name>:<k>`) in a replica's environment makes it
//! `std::process::abort()` the first (k-th) time an order reaches that point of the leader's
//! order path. The points are [`AFTER_CATALOG_TRADE`], [`AFTER_LOG_APPEND`],
//! [`AFTER_REPLICATE_ONE`] and [`BEFORE_REPLY`]. Without the variable every check is one
//! relaxed load of an already parsed value.
//!
//! Caveats: counting is per order reaching the point; for [`AFTER_REPLICATE_ONE`] it is per
//! order first stored by a follower. While that point is armed, sends to followers are
//! serialized ([`serial`]) so that "exactly one follower stored it" holds when the process
//! aborts; that slows replication, which only tests ever see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use log::error;
use parking_lot::{Mutex, MutexGuard};

/// The catalog traded, nothing is logged.
pub const AFTER_CATALOG_TRADE: &str = "after-catalog-trade";
/// The leader's own fsync is done, nothing is replicated.
pub const AFTER_LOG_APPEND: &str = "after-log-append";
/// Exactly one follower stored the order.
pub const AFTER_REPLICATE_ONE: &str = "after-replicate-one";
/// Replicated everywhere, not answered.
pub const BEFORE_REPLY: &str = "before-reply";

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("BAZAAR_FAILPOINT").ok()?;
            let (name, at) = parse(&value)?;
            Some(Armed {
                name,
                at,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// `name` or `name:k` (k ≥ 1); anything else arms nothing.
fn parse(value: &str) -> Option<(String, u64)> {
    let value = value.trim();
    let (name, at) = match value.split_once(':') {
        Some((name, k)) => (name, k.parse().ok().filter(|&k| k >= 1)?),
        None => (value, 1),
    };
    (!name.is_empty()).then(|| (name.to_string(), at))
}

/// Called by an order reaching point `name`: aborts the process if this is the armed hit.
pub fn hit(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name != name {
        return;
    }
    let n = armed.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if n == armed.at {
        error!("failpoint {name}:{n} reached: aborting");
        log::logger().flush();
        std::process::abort();
    }
}

/// While [`AFTER_REPLICATE_ONE`] is armed, a guard that serializes sends to followers.
pub fn serial() -> Option<MutexGuard<'static, ()>> {
    static SERIAL: Mutex<()> = Mutex::new(());
    armed()
        .filter(|a| a.name == AFTER_REPLICATE_ONE)
        .map(|_| SERIAL.lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases = [
            ("after-log-append", Some(("after-log-append", 1))),
            ("before-reply:3", Some(("before-reply", 3))),
            ("before-reply:0", None),
            ("before-reply:x", None),
            ("", None),
            (":2", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse(value),
                want.map(|(n, k)| (n.to_string(), k)),
                "{value:?}"
            );
        }
    }
}

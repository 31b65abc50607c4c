//! Fail points for the fault-injection tests.
//!
//! `BAZAAR_FAILPOINT=<name>` (or `<name>:<k>`) in a replica's environment makes it
//! `std::process::abort()` the first (k-th) time it reaches that point of its order path:
//! [`AFTER_LOG_APPEND`] (a sync that wrote entries), [`AFTER_REPLICATE_ONE`] (a follower
//! stored entries), [`AFTER_CATALOG_TRADE`] (the catalog applied a batch) and
//! [`BEFORE_REPLY`] (an order is about to be answered). [`FAIL_SYNC`] is not a crash: that
//! sync fails (see `store`). Without the variable every check is one load of a parsed value.
//!
//! Caveats: counting is per reach of the point, not per order (a batch reaches it once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use log::error;

/// The catalog applied a batch; the orders in it are not answered yet.
pub(crate) const AFTER_CATALOG_TRADE: &str = "after-catalog-trade";
/// The leader's own fsync is done, nothing is replicated.
pub(crate) const AFTER_LOG_APPEND: &str = "after-log-append";
/// Exactly one follower stored the order.
pub(crate) const AFTER_REPLICATE_ONE: &str = "after-replicate-one";
/// Replicated everywhere, not answered.
pub(crate) const BEFORE_REPLY: &str = "before-reply";
/// Not a crash: the k-th log sync with entries to write fails (see `store`).
pub(crate) const FAIL_SYNC: &str = "fail-sync";

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
pub(crate) fn hit(name: &str) {
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

/// True exactly the k-th time the armed point `name` is reached (a fault to inject, not a
/// crash).
pub(crate) fn fails(name: &str) -> bool {
    let Some(armed) = armed() else { return false };
    armed.name == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at
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

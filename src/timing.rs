//! Every timeout and lease of the bazaar, in one place, because they are not independent: a
//! front-end's cache lease, the catalog's wait for an unconfirmed invalidation, the leader's
//! lease and the front-end's forward timeout only keep their promises together. Relations
//! between them are written here as `const` assertions, so that changing one number without
//! the others fails the build instead of a test (or a deployment).
//!
//! Today this holds the cache lease, the one contract between two services; the other timing
//! constants still live beside the code that uses them and move here one by one.
//!
//! Caveats:
//! - A lease is only as good as the clocks that measure it: both sides count on their own
//!   monotonic clock, so a lease holds between processes on one machine or machines whose
//!   clocks run at the same rate, not across a clock that jumps or a paused virtual machine.

use std::time::Duration;

/// How long a front-end may serve a cached stock, counted from before it asked the catalog.
///
/// Two services rely on it:
/// - the **front-end** (`frontend::cache`) serves a cached entry only within this lease of the
///   lookup that fetched it, whether or not an invalidation arrived;
/// - the **catalog** (`catalog::routes`), when some front-end did not confirm an invalidation
///   (it may be paused or cut off), answers the apply only once this lease has passed since
///   the change became visible to lookups, so whatever that front-end cached before the trade
///   has expired by then, and no lookup that starts after the acknowledgement shows the
///   pre-trade quantity (docs/spec.md §5.5).
pub(crate) const CACHE_LEASE: Duration = Duration::from_secs(1);

//! (being written) Leader selection: the TCP line protocol between front-end and replicas.

use std::time::Duration;

use crate::config::ReplicaConfig;

/// How long the front-end waits for `OK` to a `Ping` (a stopped process still accepts TCP).
pub const PING_TIMEOUT: Duration = Duration::from_millis(300);

/// How long the front-end waits for `OK` to `You win`: the winner first catches up.
pub const YOU_WIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of a leader selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub id: u32,
    pub epoch: u64,
}

/// `Ping` on `addr` (a replica's broadcast or health port): true if it answered `OK` in time.
pub fn ping(addr: &str, timeout: Duration) -> bool {
    let _ = (addr, timeout);
    todo!()
}

/// Front-end side of SPEC §4: ping replicas from the highest id down, tell the first that
/// answers `You win <epoch_hint>`, then tell every other replica `<id> <epoch>`.
/// `epoch_hint` is the highest epoch the caller has seen; the winner answers with the epoch it
/// took, which is above every epoch it and its reachable peers know.
/// Returns `None` when no replica answers.
pub fn select_leader(replicas: &[ReplicaConfig], epoch_hint: u64) -> Option<Leadership> {
    let _ = (replicas, epoch_hint);
    todo!()
}

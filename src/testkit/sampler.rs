//! The sampler: on a thread of its own, the catalog's `/stocks` and every replica's `/health`
//! every [`SAMPLE_INTERVAL`] while a test or chaos run goes on, so that the oracle
//! ([`crate::testkit::oracle`]) can check invariant 4 at every sampled moment and that no
//! epoch was led by two replicas.
//!
//! Caveats: a sample that fails (a service down or frozen) is skipped, so a long fault leaves
//! a gap; the samples are moments the sampler happened to see, not every state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::api::{ReplicaHealth, Role};
use crate::error::Result;
use crate::testkit::cluster::{Cluster, REPLICA_READ_TIMEOUT};
use crate::testkit::oracle::{CatalogView, LeaderSamples, SampledStock};

/// Interval between two samples of the catalog (or of the replicas' roles) during a run.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Samples, on a thread of its own until [`Sampler::finish`], the catalog's `/stocks` and the
/// replicas' `/health` (who says it leads in which epoch). Samples that fail (a service down or
/// frozen) are skipped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(Vec<CatalogView>, LeaderSamples)>>,
}

impl Sampler {
    pub fn start(cluster: &Cluster) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (catalog, replicas, client) = (
            cluster.catalog.clone(),
            cluster.replicas.clone(),
            cluster.client.clone(),
        );
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut views = Vec::new();
                let mut leaders = LeaderSamples::new();
                while !flag.load(Ordering::SeqCst) {
                    let list: Result<Vec<SampledStock>> =
                        client.get(&catalog, "/stocks", REPLICA_READ_TIMEOUT);
                    if let Ok(list) = list {
                        views.push(
                            list.into_iter()
                                .map(|s| (s.name, (s.quantity, s.volume)))
                                .collect(),
                        );
                    }
                    for (id, (http, _, _)) in &replicas {
                        let health: Result<ReplicaHealth> =
                            client.get(http, "/health", SAMPLE_INTERVAL);
                        if let Ok(h) = health {
                            if h.role == Role::Leader {
                                leaders.entry(*id).or_default().insert(h.epoch);
                            }
                        }
                    }
                    thread::sleep(SAMPLE_INTERVAL);
                }
                (views, leaders)
            })
            .ok();
        Sampler { stop, handle }
    }

    /// Stops sampling; returns the catalog samples and who led which epoch.
    pub fn finish(mut self) -> (Vec<CatalogView>, LeaderSamples) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

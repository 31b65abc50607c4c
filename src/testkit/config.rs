//! The config of a test bazaar: [`ClusterOptions`] (the knobs a test turns) and
//! [`loopback_config`], which turns them and a list of free ports into the typed
//! [`Config`] every service of the bazaar reads; [`crate::testkit::cluster::Cluster::configure`]
//! writes it out with serde. The one place test bazaars are described.
//!
//! Caveats: every stock starts at [`INITIAL_QUANTITY`] at one price, and the secret is a fixed
//! development value, accepted because every service binds loopback only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{
    CatalogConfig, Config, Endpoint, FrontendConfig, HttpConfig, OrderConfig, ReplicaConfig,
    StockConfig,
};

/// The stocks of a test bazaar (the shipped config's), each starting at quantity 100.
pub use crate::config::SHIPPED_STOCKS as STOCKS;

/// The quantity every stock starts with.
pub const INITIAL_QUANTITY: i64 = 100;

/// The price of every stock of a test bazaar.
const PRICE: f64 = 10.5;
/// Where every service of a test bazaar listens.
pub(crate) const LOOPBACK: &str = "127.0.0.1";
/// The deployment secret of every test bazaar.
const SECRET: &str = "cluster-test-secret";
/// Request threads of each service.
const THREADS: usize = 8;

/// Knobs of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub cache: bool,
    pub cache_size: usize,
    pub health_check_interval: f64,
    /// Extra environment for one replica, e.g. `BAZAAR_FAILPOINT`.
    pub replica_env: BTreeMap<u32, Vec<(String, String)>>,
    /// Extra environment for one front-end (by index), e.g. its own
    /// `HEALTH_CHECK_INTERVAL`.
    pub frontend_env: BTreeMap<usize, Vec<(String, String)>>,
    /// Log level of the services.
    pub log_level: String,
    /// How many front-ends run (at least 1); the extra ones are listed in the config under
    /// `frontend.others` and started as `frontend --index i`.
    pub frontends: usize,
    /// Route every directed replica→replica HTTP link through a `LinkProxy` owned by this
    /// process, so that tests can [`crate::testkit::cluster::Cluster::cut`] and `Cluster::heal` single links.
    pub proxied_links: bool,
    /// How many order replicas run (ids 1 to `replicas`); odd, so that a majority
    /// (`replicas / 2 + 1`) survives `replicas / 2` failures. Default 3.
    pub replicas: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            cache: true,
            cache_size: 10,
            health_check_interval: 0.25,
            replica_env: BTreeMap::new(),
            frontend_env: BTreeMap::new(),
            log_level: "debug".into(),
            frontends: 1,
            proxied_links: false,
            replicas: 3,
        }
    }
}

/// How many ports [`loopback_config`] takes for `options`: the catalog's, the front-end's,
/// three per replica and one per further front-end.
pub fn port_count(options: &ClusterOptions) -> usize {
    2 + 3 * options.replicas as usize + options.frontends.max(1) - 1
}

/// The typed config of a bazaar on loopback: `ports` are the catalog's, the front-end's, then
/// each replica's HTTP, leader-broadcast and health ports (ids 1 to `options.replicas`), then
/// any further front-ends' ([`port_count`] in all; ports beyond the replicas' are taken as
/// further front-ends). The one place test bazaars are described; written out with serde.
pub fn loopback_config(data_dir: PathBuf, ports: &[u16], options: &ClusterOptions) -> Config {
    let replica_ports = 3 * options.replicas as usize;
    let other_ports = ports.get(2 + replica_ports..).unwrap_or_default();
    let mut replica_configs = Vec::new();
    for id in 1..=options.replicas {
        let base = 2 + 3 * (id as usize - 1);
        let (http, bcast, health) = (ports[base], ports[base + 1], ports[base + 2]);
        replica_configs.push(ReplicaConfig {
            id,
            host: LOOPBACK.into(),
            port: http.into(),
            leader_broadcast_port: bcast.into(),
            health_check_port: health.into(),
        });
    }
    Config {
        output_dir: data_dir,
        health_check_interval: options.health_check_interval,
        secret: SECRET.into(),
        secret_file: None,
        http: HttpConfig::default(),
        catalog: CatalogConfig {
            host: LOOPBACK.into(),
            port: ports[0].into(),
            threads: THREADS,
            stocks: STOCKS
                .iter()
                .map(|name| StockConfig {
                    name: name.to_string(),
                    price: PRICE,
                    quantity: INITIAL_QUANTITY as u64,
                })
                .collect(),
        },
        frontend: FrontendConfig {
            host: LOOPBACK.into(),
            port: ports[1].into(),
            threads: THREADS,
            cache: options.cache,
            cache_size: options.cache_size,
            dump: false,
            cache_log_path: None,
            others: other_ports
                .iter()
                .map(|&port| Endpoint {
                    host: LOOPBACK.into(),
                    port: port.into(),
                })
                .collect(),
        },
        order: OrderConfig {
            threads: THREADS,
            replicas: replica_configs,
        },
    }
}

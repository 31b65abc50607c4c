//! The deployment description: one YAML file (`conf/bazaar.yaml`) for every process.
//!
//! [`Config::load`] reads the file, applies the environment overrides of the reference design
//! (`CATALOG_PORT`, `CACHE_SIZE`, ...; see `ENV_KEYS`, and `ORDER_HOST<id>`, ... for every
//! configured replica id; see `REPLICA_ENV_PREFIXES`) and validates the result.
//! Any problem becomes one [`Error::Config`] line that names the key, and the binaries exit
//! with code 2 on it. Unknown keys are errors, not silently ignored, so a typo cannot turn into
//! a default.
//!
//! Scripts do not parse the file: [`Config::shell_lines`] (`frontend --print-config`) gives
//! them the resolved values. Test configs are written by serializing a [`Config`].
//!
//! Every state file lives under `output_dir` (`OUTPUT_DIR`): `catalog.json`,
//! `orders-N.csv`, `orders-N.state.json` and, with dump on, the cache trace.
//!
//! The parts, each in a file of its own:
//!
//! - here: the YAML types, loading, the addresses and paths every service derives from them,
//!   and the printed values ([`Config::shell_lines`]);
//! - `env`: the environment overrides;
//! - `secret`: the deployment secret (`secret`, `secret_file`, `BAZAAR_SECRET`,
//!   `BAZAAR_SECRET_FILE`) and the refusal of a published one off loopback
//!   ([`Config::refuse_development_secret`], [`DEVELOPMENT_SECRETS`]);
//! - `validate`: the checks serde cannot make.
//!
//! Caveats:
//! - Loading is all or nothing: the first problem stops the binary, even one in a part of the
//!   file that the process does not use (a front-end refuses a bad replica port too), so that
//!   every process of a deployment agrees on what the file says.
//! - The environment is read once, at load: changing it later changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod env;
mod secret;
mod validate;

#[cfg(feature = "testkit")]
pub(crate) use env::is_env_override;
pub use secret::DEVELOPMENT_SECRETS;

/// Where binaries look for the config when `--config` is not given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "conf/bazaar.yaml";

/// Longest stock name: names travel in every order log line and replication batch.
pub(crate) const MAX_STOCK_NAME_LEN: usize = 64;

/// The stock names of the shipped `conf/bazaar.yaml`, compiled in: the one list that test
/// bazaars, the benches and the evaluation start with. (Empty only if the shipped file did
/// not parse, which a unit test rules out.)
pub static SHIPPED_STOCKS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    Config::from_yaml(include_str!("../../conf/bazaar.yaml"), &|_| None)
        .map(|c| c.catalog.stocks.into_iter().map(|s| s.name).collect())
        .unwrap_or_default()
});

/// Which service a process runs, for the checks that depend on the address it binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Catalog,
    /// The front-end this process serves (after `Config::serve_frontend`).
    Frontend,
    /// The order replica with this id.
    Order(u32),
}

/// The whole deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of every state file.
    pub output_dir: PathBuf,
    /// Seconds between the front-end's active health checks of the leader.
    pub(crate) health_check_interval: f64,
    /// The deployment's shared secret: required on every endpoint that only services call
    /// (replication, the catalog's apply path, invalidation, the election lines). After
    /// loading, the secret in effect (read from `secret_file` when that is set).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// A file holding the secret, read at load (`BAZAAR_SECRET_FILE`). `None` once loaded:
    /// its contents are in `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) http: HttpConfig,
    pub catalog: CatalogConfig,
    pub frontend: FrontendConfig,
    pub order: OrderConfig,
}

/// Limits of the HTTP server layer, shared by every service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Most connections a service keeps open; more are answered 503 and closed.
    pub(crate) max_connections: usize,
    /// A keep-alive connection with no request for this long is closed.
    pub(crate) idle_timeout_ms: u64,
    /// A request whose headers and body take longer than this to arrive is dropped.
    pub(crate) request_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            idle_timeout_ms: 10_000,
            request_timeout_ms: 5_000,
        }
    }
}

impl HttpConfig {
    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// One stock of the initial catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StockConfig {
    pub(crate) name: String,
    pub(crate) price: f64,
    #[serde(default = "default_quantity")]
    pub(crate) quantity: u64,
}

fn default_quantity() -> u64 {
    100
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    pub(crate) host: String,
    pub port: u32,
    /// Size of the request thread pool.
    pub threads: usize,
    pub(crate) stocks: Vec<StockConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    pub(crate) host: String,
    pub port: u32,
    pub threads: usize,
    /// Serve lookups from the LRU cache.
    pub(crate) cache: bool,
    pub cache_size: usize,
    /// Append every cache change to `cache_log_path`.
    pub dump: bool,
    /// Where the cache trace goes; default `<output_dir>/frontend-cache.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache_log_path: Option<PathBuf>,
    /// More front-ends of the deployment (`frontend --index 1` serves the first of these):
    /// the catalog invalidates every one, and any of them may select the leader.
    #[serde(default)]
    pub(crate) others: Vec<Endpoint>,
}

/// A host and port of one more front-end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderConfig {
    pub(crate) threads: usize,
    pub replicas: Vec<ReplicaConfig>,
}

/// Where one order replica listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    pub(crate) id: u32,
    pub(crate) host: String,
    /// HTTP.
    pub port: u32,
    /// TCP: `Ping`, `You win`, `<id>`.
    pub leader_broadcast_port: u32,
    /// TCP: `Ping`.
    pub health_check_port: u32,
}

impl ReplicaConfig {
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    pub fn broadcast_addr(&self) -> String {
        format!("{}:{}", self.host, self.leader_broadcast_port)
    }
    pub(crate) fn health_addr(&self) -> String {
        format!("{}:{}", self.host, self.health_check_port)
    }
}

impl Config {
    /// Reads `path`, applies the environment, validates.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let config = Config::from_yaml(&text, &|key| std::env::var(key).ok())?;
        config.refuse_stray_overrides(std::env::vars().map(|(key, _)| key))?;
        Ok(config)
    }

    /// Parses YAML text, then applies overrides looked up with `env` and validates. Tests pass
    /// a closure instead of touching the process environment.
    pub fn from_yaml(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut config: Config =
            serde_yaml::from_str(text).map_err(|e| Error::Config(yaml_error(e)))?;
        if config.secret_file.is_some() && !config.secret.is_empty() {
            return Err(Error::Config(
                "secret, secret_file: give one of them, not both".into(),
            ));
        }
        config.apply_env(env)?;
        config.read_secret_file()?;
        config.validate()?;
        Ok(config)
    }

    /// The replica with this id.
    pub fn replica(&self, id: u32) -> Result<&ReplicaConfig> {
        self.order
            .replicas
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::Config(format!("order.replicas: no replica with id {id}")))
    }

    pub(crate) fn health_check_interval(&self) -> Duration {
        Duration::from_secs_f64(self.health_check_interval)
    }

    pub fn catalog_addr(&self) -> String {
        format!("{}:{}", self.catalog.host, self.catalog.port)
    }

    pub(crate) fn frontend_addr(&self) -> String {
        format!("{}:{}", self.frontend.host, self.frontend.port)
    }

    /// Every front-end of the deployment: the default one first, then `frontend.others`.
    pub(crate) fn frontend_addrs(&self) -> Vec<String> {
        std::iter::once(self.frontend_addr())
            .chain(
                self.frontend
                    .others
                    .iter()
                    .map(|f| format!("{}:{}", f.host, f.port)),
            )
            .collect()
    }

    /// What scripts need to know of the resolved deployment (the file with its environment
    /// overrides applied), one `name=value` line each: `output_dir`, `catalog_host`,
    /// `catalog_port`, `frontend_host`, `frontend_port`, `replica_ids` (space-separated) and
    /// `order_<id>_host`, `order_<id>_port`, `order_<id>_leader_broadcast_port`,
    /// `order_<id>_health_check_port` for each replica. `frontend --print-config` prints it;
    /// `run.sh` reads it instead of parsing the YAML itself. A value runs to the end of its
    /// line, spaces included.
    pub fn shell_lines(&self) -> String {
        let mut lines = vec![
            format!("output_dir={}", self.output_dir.display()),
            format!("catalog_host={}", self.catalog.host),
            format!("catalog_port={}", self.catalog.port),
            format!("frontend_host={}", self.frontend.host),
            format!("frontend_port={}", self.frontend.port),
        ];
        let ids: Vec<String> = self
            .order
            .replicas
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        lines.push(format!("replica_ids={}", ids.join(" ")));
        for r in &self.order.replicas {
            let id = r.id;
            lines.push(format!("order_{id}_host={}", r.host));
            lines.push(format!("order_{id}_port={}", r.port));
            lines.push(format!(
                "order_{id}_leader_broadcast_port={}",
                r.leader_broadcast_port
            ));
            lines.push(format!(
                "order_{id}_health_check_port={}",
                r.health_check_port
            ));
        }
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    /// Makes front-end `index` of `Config::frontend_addrs` the one this process serves.
    pub fn serve_frontend(&mut self, index: usize) -> Result<()> {
        if index == 0 {
            return Ok(());
        }
        let other = self
            .frontend
            .others
            .get(index - 1)
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!(
                    "--index {index}: frontend.others has {} entries",
                    self.frontend.others.len()
                ))
            })?;
        let default = Endpoint {
            host: std::mem::replace(&mut self.frontend.host, other.host),
            port: std::mem::replace(&mut self.frontend.port, other.port),
        };
        self.frontend.others[index - 1] = default;
        Ok(())
    }

    pub(crate) fn catalog_path(&self) -> PathBuf {
        self.output_dir.join("catalog.json")
    }

    pub fn order_log_path(&self, id: u32) -> PathBuf {
        self.output_dir.join(format!("orders-{id}.csv"))
    }

    pub(crate) fn order_state_path(&self, id: u32) -> PathBuf {
        self.output_dir.join(format!("orders-{id}.state.json"))
    }

    pub fn cache_log_path(&self) -> PathBuf {
        self.frontend
            .cache_log_path
            .clone()
            .unwrap_or_else(|| self.output_dir.join("frontend-cache.jsonl"))
    }
}

/// A config error naming `key`.
fn bad(key: &str, why: String) -> Result<()> {
    Err(Error::Config(format!("{key}: {why}")))
}

/// serde_yaml puts the key path first ("catalog.port: invalid type ..."): keep it on one line.
fn yaml_error(err: serde_yaml::Error) -> String {
    err.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const SHIPPED: &str = include_str!("../../conf/bazaar.yaml");

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml(text, &move |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn shipped_stocks_are_the_shipped_files() {
        assert!(SHIPPED_STOCKS.len() >= 10, "{:?}", *SHIPPED_STOCKS);
        assert!(SHIPPED_STOCKS.iter().any(|s| s == "GameStart"));
    }

    #[test]
    fn shipped_config_is_valid() {
        let c = load(SHIPPED, &[]).unwrap();
        assert_eq!(c.catalog.port, 8090);
        assert_eq!(c.frontend.port, 8080);
        assert_eq!(c.catalog.stocks.len(), 14);
        assert!(c.catalog.stocks.iter().all(|s| s.quantity == 100));
        assert!(c.frontend.cache_size < c.catalog.stocks.len());
        let ids: Vec<u32> = c.order.replicas.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(c.replica(2).unwrap().port, 8092);
        assert_eq!(c.replica(3).unwrap().leader_broadcast_port, 9093);
        assert_eq!(c.replica(1).unwrap().health_check_port, 9191);
    }

    /// conf/five.yaml (README: `BAZAAR_CONFIG=conf/five.yaml ./run.sh up`) is the shipped
    /// config with replicas 4 and 5 on ports of their own and a data directory of its own.
    #[test]
    fn five_replica_config_is_valid() {
        let shipped = load(SHIPPED, &[]).unwrap();
        let c = load(include_str!("../../conf/five.yaml"), &[]).unwrap();
        let ids: Vec<u32> = c.order.replicas.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_ne!(c.output_dir, shipped.output_dir);
        assert_eq!(c.catalog.stocks, shipped.catalog.stocks);
        assert_eq!(c.replica(5).unwrap().port, 8095);
        let mut ports = vec![c.catalog.port, c.frontend.port];
        for r in &c.order.replicas {
            ports.extend([r.port, r.leader_broadcast_port, r.health_check_port]);
        }
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        let moved = load(
            include_str!("../../conf/five.yaml"),
            &[("ORDER_PORT5", "7005")],
        )
        .unwrap();
        assert_eq!(moved.replica(5).unwrap().port, 7005);
    }

    #[test]
    fn env_overrides_the_file() {
        let c = load(
            SHIPPED,
            &[
                ("CATALOG_PORT", "7000"),
                ("ORDER_HOST2", "10.0.0.2"),
                ("ORDER_PORT3", "7003"),
                ("ORDER_LEADER_BROADCAST_PORT1", "7101"),
                ("ORDER_HEALTH_CHECK_PORT2", "7202"),
                ("FRONTEND_HOST", "0.0.0.0"),
                ("OUTPUT_DIR", "/tmp/x"),
                ("HEALTH_CHECK_INTERVAL", "0.25"),
                ("CACHE", "0"),
                ("CACHE_SIZE", "3"),
                ("CACHE_LOG_PATH", "/tmp/c.jsonl"),
                ("DUMP", "true"),
            ],
        )
        .unwrap();
        assert_eq!(c.catalog.port, 7000);
        assert_eq!(c.replica(2).unwrap().host, "10.0.0.2");
        assert_eq!(c.replica(3).unwrap().port, 7003);
        assert_eq!(c.replica(1).unwrap().leader_broadcast_port, 7101);
        assert_eq!(c.replica(2).unwrap().health_check_port, 7202);
        assert_eq!(c.frontend.host, "0.0.0.0");
        assert_eq!(c.order_log_path(1), PathBuf::from("/tmp/x/orders-1.csv"));
        assert_eq!(c.health_check_interval(), Duration::from_millis(250));
        assert!(!c.frontend.cache);
        assert_eq!(c.frontend.cache_size, 3);
        assert_eq!(c.cache_log_path(), PathBuf::from("/tmp/c.jsonl"));
        assert!(c.frontend.dump);
    }

    #[test]
    fn bad_configs_name_the_key() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, &str, Env, &str)] = &[
            (
                "port out of range",
                "port: 8090",
                &[("CATALOG_PORT", "70000")],
                "catalog.port",
            ),
            (
                "port zero",
                "port: 8080",
                &[("FRONTEND_PORT", "0")],
                "frontend.port",
            ),
            (
                "env not a number",
                "",
                &[("ORDER_PORT2", "abc")],
                "ORDER_PORT2",
            ),
            (
                "cache size zero",
                "cache_size: 10",
                &[("CACHE_SIZE", "0")],
                "frontend.cache_size",
            ),
            ("bad flag", "", &[("CACHE", "maybe")], "CACHE"),
            ("unknown key", "output_dir: data", &[], "colour"),
            ("duplicate id", "id: 2", &[], "duplicate replica id"),
            (
                "interval",
                "",
                &[("HEALTH_CHECK_INTERVAL", "-1")],
                "health_check_interval",
            ),
            (
                "secret with a space",
                "",
                &[("BAZAAR_SECRET", "two words")],
                "secret",
            ),
        ];
        for (what, needle, env, want) in cases {
            let text = match *what {
                "unknown key" => {
                    SHIPPED.replacen("output_dir: data", "colour: blue\noutput_dir: data", 1)
                }
                "duplicate id" => SHIPPED.replacen("id: 3", "id: 2", 1),
                _ => SHIPPED.to_string(),
            };
            assert!(text.contains(needle), "{what}: fixture lacks {needle:?}");
            match load(&text, env) {
                Err(Error::Config(msg)) => {
                    assert!(msg.contains(want), "{what}: {msg:?} does not name {want:?}");
                    assert!(!msg.contains('\n'), "{what}: message spans lines: {msg:?}");
                }
                other => panic!("{what}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn replica_overrides_follow_the_configured_ids() {
        let text = SHIPPED.replacen("id: 3", "id: 12", 1);
        let c = load(
            &text,
            &[("ORDER_PORT12", "7012"), ("ORDER_HOST1", "10.0.0.1")],
        )
        .unwrap();
        assert_eq!(c.replica(12).unwrap().port, 7012);
        assert_eq!(c.replica(1).unwrap().host, "10.0.0.1");
        assert!(is_env_override("ORDER_HEALTH_CHECK_PORT12"));
        assert!(is_env_override("CACHE_SIZE"));
        assert!(!is_env_override("ORDER_PORT"));
        assert!(!is_env_override("ORDER_PORTX"));
        assert!(!is_env_override("ORDER_PORT02"));
        let stray = c.refuse_stray_overrides(["ORDER_PORT3".to_string()].into_iter());
        assert!(matches!(stray, Err(Error::Config(m)) if m.contains("ORDER_PORT3")));
    }

    #[test]
    fn serialized_config_loads_back_unchanged() {
        let c = load(SHIPPED, &[("CACHE_LOG_PATH", "/tmp/c.jsonl")]).unwrap();
        let text = serde_yaml::to_string(&c).unwrap();
        assert_eq!(load(&text, &[]).unwrap(), c);
    }

    #[test]
    fn shell_lines_show_the_overrides() {
        let c = load(
            SHIPPED,
            &[("FRONTEND_PORT", "7080"), ("ORDER_PORT2", "7002")],
        )
        .unwrap();
        let lines = c.shell_lines();
        assert!(lines.contains("frontend_port=7080\n"), "{lines}");
        assert!(lines.contains("order_2_port=7002\n"), "{lines}");
        assert!(lines.contains("replica_ids=1 2 3\n"), "{lines}");
        assert!(lines.contains("output_dir=data\n"), "{lines}");
    }

    #[test]
    fn secret_file_is_read_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.txt");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let path = file.to_str().unwrap();
        // The env names a file: it beats the key `secret` of the shipped file.
        let c = load(SHIPPED, &[("BAZAAR_SECRET_FILE", path)]).unwrap();
        assert_eq!(c.secret, "from-the-file");
        assert_eq!(c.secret_file, None);
        // The key names a file.
        let keyed = SHIPPED.replacen(
            "secret: dev-secret-change-me",
            &format!("secret_file: {path}"),
            1,
        );
        assert_eq!(load(&keyed, &[]).unwrap().secret, "from-the-file");
        // BAZAAR_SECRET beats the key secret_file.
        assert_eq!(
            load(&keyed, &[("BAZAAR_SECRET", "from-env")])
                .unwrap()
                .secret,
            "from-env"
        );
        // The loaded config serializes with the secret itself and loads back unchanged.
        let c = load(&keyed, &[]).unwrap();
        assert_eq!(load(&serde_yaml::to_string(&c).unwrap(), &[]).unwrap(), c);
        let missing = dir.path().join("missing");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let both_keys = SHIPPED.replacen(
            "secret: dev-secret-change-me",
            &format!("secret: x\nsecret_file: {path}"),
            1,
        );
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            ("both keys", &both_keys, vec![], "not both"),
            (
                "both env",
                SHIPPED,
                vec![("BAZAAR_SECRET", "x"), ("BAZAAR_SECRET_FILE", path)],
                "not both",
            ),
            (
                "missing file",
                SHIPPED,
                vec![("BAZAAR_SECRET_FILE", missing.to_str().unwrap())],
                "secret_file: cannot read",
            ),
            (
                "empty file",
                SHIPPED,
                vec![("BAZAAR_SECRET_FILE", empty.to_str().unwrap())],
                "is empty",
            ),
        ];
        for (what, text, env, want) in cases {
            match load(text, &env) {
                Err(Error::Config(m)) => assert!(m.contains(want), "{what}: {m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn development_secret_only_on_loopback() {
        let c = load(SHIPPED, &[]).unwrap();
        for host in ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"] {
            assert!(
                c.refuse_development_secret_on("frontend.host", host)
                    .is_ok(),
                "{host}"
            );
        }
        for host in ["0.0.0.0", "::", "192.168.1.5", "frontend", "example.org"] {
            match c.refuse_development_secret_on("frontend.host", host) {
                Err(Error::Config(m)) => {
                    assert!(m.contains("frontend.host") && m.contains(host), "{m}");
                    assert!(m.contains("BAZAAR_SECRET_FILE"), "says how: {m}");
                    assert!(!m.contains('\n'), "{m}");
                }
                other => panic!("{host}: {other:?}"),
            }
        }
        // Every shipped config's secret counts, and so does a copy of the template.
        for text in [
            SHIPPED,
            include_str!("../../conf/multihost.yaml"),
            include_str!("../../conf/five.yaml"),
        ] {
            let c = load(text, &[]).unwrap();
            assert!(c.refuse_development_secret_on("k", "0.0.0.0").is_err());
        }
        let copied = load(SHIPPED, &[("BAZAAR_SECRET", "prod-change-me")]).unwrap();
        assert!(copied.refuse_development_secret_on("k", "0.0.0.0").is_err());
        let reachable = load(SHIPPED, &[("ORDER_HOST2", "0.0.0.0")]).unwrap();
        assert!(reachable
            .refuse_development_secret(Service::Catalog)
            .is_ok());
        match reachable.refuse_development_secret(Service::Order(2)) {
            Err(Error::Config(m)) => assert!(m.contains("id 2") && m.contains("0.0.0.0"), "{m}"),
            other => panic!("{other:?}"),
        }
        let own = load(SHIPPED, &[("BAZAAR_SECRET", "3f9a1c2e")]).unwrap();
        assert!(own.refuse_development_secret_on("k", "0.0.0.0").is_ok());
    }

    #[test]
    fn broken_yaml_is_one_line() {
        match load("catalog: [unclosed", &[]) {
            Err(Error::Config(msg)) => assert!(!msg.contains('\n')),
            other => panic!("{other:?}"),
        }
    }
}

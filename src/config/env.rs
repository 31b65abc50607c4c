//! The environment overrides of the config file (docs/spec.md §1): the reference design's
//! variable names (`CATALOG_PORT`, `CACHE_SIZE`, ...: [`ENV_KEYS`]) for single keys, and
//! `ORDER_HOST<id>`, ... ([`REPLICA_ENV_PREFIXES`]) for each replica id the file configures.
//! A value that does not parse is a config error naming the variable.
//!
//! Caveats:
//! - An `ORDER_…<id>` variable for an id the file does not configure is refused at start
//!   ([`Config::load`]), since it is most likely a typo; the check reads the whole process
//!   environment, so a leftover variable of another deployment stops the binary too.
//! - Tests pass a closure instead of the process environment ([`Config::from_yaml`]); only
//!   [`Config::load`] reads the real one.

use std::path::PathBuf;

use super::Config;
use crate::error::{Error, Result};

/// The environment variables that override one key of the file (docs/spec.md §1), with the reference
/// names. The replicas' keys are in [`REPLICA_ENV_PREFIXES`].
pub(crate) const ENV_KEYS: &[&str] = &[
    "CATALOG_HOST",
    "CATALOG_PORT",
    "FRONTEND_HOST",
    "FRONTEND_PORT",
    "OUTPUT_DIR",
    "HEALTH_CHECK_INTERVAL",
    "CACHE",
    "CACHE_SIZE",
    "CACHE_LOG_PATH",
    "DUMP",
    "BAZAAR_SECRET",
    "BAZAAR_SECRET_FILE",
];

/// The overrides of one replica's keys: the prefix followed by the replica's id, for any id
/// the file configures (`ORDER_PORT2`, `ORDER_HOST12`, ...).
pub(crate) const REPLICA_ENV_PREFIXES: &[&str] = &[
    "ORDER_HOST",
    "ORDER_PORT",
    "ORDER_LEADER_BROADCAST_PORT",
    "ORDER_HEALTH_CHECK_PORT",
];

/// True for the name of an environment variable that overrides a key of the config: one of
/// [`ENV_KEYS`], or a prefix of [`REPLICA_ENV_PREFIXES`] followed by a replica id.
#[cfg(feature = "testkit")]
pub(crate) fn is_env_override(key: &str) -> bool {
    ENV_KEYS.contains(&key) || replica_override(key).is_some()
}

/// `ORDER_<FIELD><id>` split into its prefix and id.
fn replica_override(key: &str) -> Option<(&'static str, u32)> {
    REPLICA_ENV_PREFIXES.iter().find_map(|&prefix| {
        let digits = key.strip_prefix(prefix)?;
        // The id exactly as `apply_env` spells it: `ORDER_PORT+1` or `ORDER_PORT02` (which
        // `parse` would accept) are no replica's key, since nothing would ever read them.
        let id: u32 = digits.parse().ok()?;
        (id.to_string() == digits).then_some((prefix, id))
    })
}

impl Config {
    /// An override of a replica the file does not configure is most likely a typo or a
    /// leftover of another deployment: refuse it rather than run without it.
    pub(super) fn refuse_stray_overrides(&self, keys: impl Iterator<Item = String>) -> Result<()> {
        for key in keys {
            if let Some((_, id)) = replica_override(&key) {
                if self.replica(id).is_err() {
                    return Err(Error::Config(format!(
                        "{key}: no order replica with id {id}"
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
            value
                .trim()
                .parse()
                .map_err(|_| Error::Config(format!("{key}: cannot parse {value:?}")))
        }
        fn flag(key: &str, value: &str) -> Result<bool> {
            match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" | "" => Ok(false),
                _ => Err(Error::Config(format!(
                    "{key}: expected true/false or 1/0, not {value:?}"
                ))),
            }
        }
        if env("BAZAAR_SECRET").is_some() && env("BAZAAR_SECRET_FILE").is_some() {
            return Err(Error::Config(
                "BAZAAR_SECRET, BAZAAR_SECRET_FILE: set one of them, not both".into(),
            ));
        }
        for &key in ENV_KEYS {
            let Some(value) = env(key) else { continue };
            match key {
                "CATALOG_HOST" => self.catalog.host = value,
                "CATALOG_PORT" => self.catalog.port = parse(key, &value)?,
                "FRONTEND_HOST" => self.frontend.host = value,
                "FRONTEND_PORT" => self.frontend.port = parse(key, &value)?,
                "OUTPUT_DIR" => self.output_dir = PathBuf::from(value),
                "HEALTH_CHECK_INTERVAL" => self.health_check_interval = parse(key, &value)?,
                "CACHE" => self.frontend.cache = flag(key, &value)?,
                "CACHE_SIZE" => self.frontend.cache_size = parse(key, &value)?,
                "CACHE_LOG_PATH" => self.frontend.cache_log_path = Some(PathBuf::from(value)),
                "DUMP" => self.frontend.dump = flag(key, &value)?,
                // The environment beats whichever of the two keys the file used.
                "BAZAAR_SECRET" => {
                    self.secret = value;
                    self.secret_file = None;
                }
                "BAZAAR_SECRET_FILE" => {
                    self.secret_file = Some(PathBuf::from(value));
                    self.secret.clear();
                }
                _ => return Err(Error::Internal(format!("unhandled env key {key}"))),
            }
        }
        for replica in &mut self.order.replicas {
            for &prefix in REPLICA_ENV_PREFIXES {
                let key = format!("{prefix}{}", replica.id);
                let Some(value) = env(&key) else { continue };
                match prefix {
                    "ORDER_HOST" => replica.host = value,
                    "ORDER_PORT" => replica.port = parse(&key, &value)?,
                    "ORDER_LEADER_BROADCAST_PORT" => {
                        replica.leader_broadcast_port = parse(&key, &value)?
                    }
                    "ORDER_HEALTH_CHECK_PORT" => replica.health_check_port = parse(&key, &value)?,
                    _ => return Err(Error::Internal(format!("unhandled env key {key}"))),
                }
            }
        }
        Ok(())
    }
}

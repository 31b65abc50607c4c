//! The checks serde cannot make on a parsed config: ranges, emptiness, uniqueness. The first
//! problem found is the error, one line naming its key; the binaries exit with code 2 on it.
//!
//! Caveats:
//! - Only the first problem is reported: fixing it may reveal the next one.
//! - Hosts are not resolved and ports not tried here: a port in use or a host that is not on
//!   this machine is found when the service binds (`http::server::listen`), also exit code 2.

use std::collections::HashSet;

use super::{bad, Config, MAX_STOCK_NAME_LEN};
use crate::error::Result;

impl Config {
    /// Checks what serde cannot: ranges, emptiness, uniqueness. The first problem found is the
    /// error, naming its key.
    pub(super) fn validate(&self) -> Result<()> {
        self.validate_ports()?;
        self.validate_secret()?;
        self.validate_limits()?;
        self.validate_stocks()?;
        self.validate_replicas()
    }

    /// Every port of the deployment within 1-65535 (the YAML type is wider so that an
    /// out-of-range port is named here instead of failing as a type error).
    fn validate_ports(&self) -> Result<()> {
        let mut ports = vec![("catalog.port".to_string(), self.catalog.port)];
        ports.push(("frontend.port".into(), self.frontend.port));
        for (i, f) in self.frontend.others.iter().enumerate() {
            ports.push((format!("frontend.others[{i}].port"), f.port));
        }
        for (i, r) in self.order.replicas.iter().enumerate() {
            ports.push((format!("order.replicas[{i}].port"), r.port));
            ports.push((
                format!("order.replicas[{i}].leader_broadcast_port"),
                r.leader_broadcast_port,
            ));
            ports.push((
                format!("order.replicas[{i}].health_check_port"),
                r.health_check_port,
            ));
        }
        for (key, port) in &ports {
            if !(1..=65535).contains(port) {
                return bad(key, format!("port {port} is out of range 1-65535"));
            }
        }
        Ok(())
    }

    /// Sizes, counts and durations: none may be zero (a zero thread pool or timeout would
    /// start a service that can never answer).
    fn validate_limits(&self) -> Result<()> {
        if self.frontend.cache_size == 0 {
            return bad("frontend.cache_size", "must be at least 1".into());
        }
        if !(self.health_check_interval.is_finite() && self.health_check_interval > 0.0) {
            return bad(
                "health_check_interval",
                "must be a positive number of seconds".into(),
            );
        }
        for (key, n) in [
            ("catalog.threads", self.catalog.threads),
            ("frontend.threads", self.frontend.threads),
            ("order.threads", self.order.threads),
            ("http.max_connections", self.http.max_connections),
        ] {
            if n == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.http.idle_timeout_ms == 0 || self.http.request_timeout_ms == 0 {
            return bad("http", "timeouts must be at least 1 ms".into());
        }
        Ok(())
    }

    /// Stock names travel in URL paths and order log lines, so they must be usable in both.
    fn validate_stocks(&self) -> Result<()> {
        if self.catalog.stocks.is_empty() {
            return bad("catalog.stocks", "needs at least one stock".into());
        }
        let mut names = HashSet::new();
        for (i, s) in self.catalog.stocks.iter().enumerate() {
            if s.name.is_empty()
                || s.name.len() > MAX_STOCK_NAME_LEN
                || s.name.contains(['/', '?', '&', ' '])
            {
                return bad(
                    &format!("catalog.stocks[{i}].name"),
                    format!("{:?} is not a usable name", s.name),
                );
            }
            if !names.insert(&s.name) {
                return bad(
                    &format!("catalog.stocks[{i}].name"),
                    format!("duplicate stock {:?}", s.name),
                );
            }
            if !(s.price.is_finite() && s.price >= 0.0) {
                return bad(
                    &format!("catalog.stocks[{i}].price"),
                    "must be a non-negative number".into(),
                );
            }
        }
        Ok(())
    }

    /// Ids start at 1 and are unique: they name the log files and rank the leader selection.
    fn validate_replicas(&self) -> Result<()> {
        if self.order.replicas.is_empty() {
            return bad("order.replicas", "needs at least one replica".into());
        }
        let mut ids = HashSet::new();
        for (i, r) in self.order.replicas.iter().enumerate() {
            if r.id == 0 {
                return bad(&format!("order.replicas[{i}].id"), "ids start at 1".into());
            }
            if !ids.insert(r.id) {
                return bad(
                    &format!("order.replicas[{i}].id"),
                    format!("duplicate replica id {}", r.id),
                );
            }
        }
        Ok(())
    }
}

//! The deployment secret: where it comes from and where it may not be used.
//!
//! `secret` (`BAZAAR_SECRET`) gives it in the file, `secret_file` (`BAZAAR_SECRET_FILE`) names
//! a file holding it (a Docker secret under `/run/secrets/`, a file of mode 0600). The file is
//! read once at load; its surrounding whitespace (the final newline of `echo secret > file`)
//! is not part of the secret. An environment variable beats the keys of the file, and naming
//! both a secret and a secret file at the same level is an error rather than a silent choice.
//! [`Config::refuse_development_secret`] is the check every service makes before it binds: a
//! shipped development secret is only good on loopback.
//!
//! Caveats:
//! - "Development secret" means one of [`DEVELOPMENT_SECRETS`] or any secret containing
//!   `change-me`: a copied template is caught, a weak secret of your own is not.
//! - Whether a host is loopback is decided from its spelling (`localhost`, `127.x.y.z`,
//!   `::1`), without resolving it: a name that resolves to loopback counts as reachable, which
//!   errs on the safe side.

use super::{bad, Config, Service};
use crate::error::{Error, Result};

/// The secrets this repository ships in its configs. Anyone can read them, so a service that
/// others can reach must not use them ([`Config::refuse_development_secret`]).
pub const DEVELOPMENT_SECRETS: &[&str] = &[
    "dev-secret-change-me",
    "multihost-dev-secret-change-me",
    "container-dev-secret-change-me",
];

/// How to make and give a secret of one's own: the end of the refusal's message.
const HOW_TO_SET_A_SECRET: &str = "make one (head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > secret.txt; chmod 600 secret.txt) and give it with BAZAAR_SECRET_FILE=secret.txt or secret_file: in the config (in a swarm: docker secret create, see deploy/README.md)";

impl Config {
    /// Replaces `secret_file` by its contents in `secret`.
    pub(super) fn read_secret_file(&mut self) -> Result<()> {
        let Some(path) = self.secret_file.take() else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!("secret_file: cannot read {}: {e}", path.display()))
        })?;
        self.secret = text.trim().to_string();
        if self.secret.is_empty() {
            return bad("secret_file", format!("{} is empty", path.display()));
        }
        Ok(())
    }

    /// Refuses to run `service` on a host other than loopback with a secret that this
    /// repository publishes: others could call its internal endpoints with it. Every service
    /// binary calls this before it starts.
    pub fn refuse_development_secret(&self, service: Service) -> Result<()> {
        let (key, host) = match service {
            Service::Catalog => ("catalog.host".to_string(), &self.catalog.host),
            Service::Frontend => ("frontend.host".to_string(), &self.frontend.host),
            Service::Order(id) => (
                format!("order.replicas[id {id}].host"),
                &self.replica(id)?.host,
            ),
        };
        self.refuse_development_secret_on(&key, host)
    }

    /// [`Config::refuse_development_secret`] for the address `host` of config key `key`.
    pub(super) fn refuse_development_secret_on(&self, key: &str, host: &str) -> Result<()> {
        if is_loopback(host) || !is_development_secret(&self.secret) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "secret: {key} is {host}, reachable from other machines, but the secret is the \
             published development value {:?}: {HOW_TO_SET_A_SECRET}",
            self.secret
        )))
    }

    pub(super) fn validate_secret(&self) -> Result<()> {
        if self.secret.trim().is_empty() {
            return bad(
                "secret",
                "must not be empty (set secret or secret_file, or BAZAAR_SECRET or BAZAAR_SECRET_FILE)"
                    .into(),
            );
        }
        // It travels in an HTTP header and as one word of a leader-selection line.
        if !self.secret.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(
                "secret",
                "must be printable ASCII without spaces (it is sent in a header and a line)".into(),
            );
        }
        Ok(())
    }
}

/// A shipped secret, or one copied from a shipped template.
fn is_development_secret(secret: &str) -> bool {
    DEVELOPMENT_SECRETS.contains(&secret) || secret.contains("change-me")
}

/// True for a host that only this machine can reach, judged by its spelling.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

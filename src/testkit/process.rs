//! The process supervisor of a test bazaar: which binaries run ([`Binaries`]), the names of
//! its services ([`Process`]), and spawning, signalling, killing and reaping them
//! ([`Cluster::start_service`], [`Cluster::signal`], [`Cluster::kill`]...). A started service
//! writes its output to `logs/<name>.log` in the cluster's directory.
//!
//! Caveats: signals are sent with the `kill` command (no libc binding), so `STOP`/`CONT`
//! need it on the `PATH`; a service is "started" once its `/health` answers, which says it
//! listens, not that it has caught up (see [`Cluster::wait_ready`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::local::poll;
use crate::testkit::cluster::{Cluster, START_TIMEOUT};

/// A service of the bazaar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    Catalog,
    Order(u32),
    /// Front-end `i`: 0 is the config's default one, `i >= 1` serves `frontend.others[i-1]`
    /// (`frontend --index i`).
    Frontend(usize),
}

impl Process {
    /// The default front-end.
    pub const FRONTEND: Process = Process::Frontend(0);

    /// The five processes of a bazaar with one front-end and three replicas (see
    /// [`Cluster::processes`] for any other size).
    pub const ALL: [Process; 5] = [
        Process::FRONTEND,
        Process::Catalog,
        Process::Order(1),
        Process::Order(2),
        Process::Order(3),
    ];

    pub fn name(self) -> String {
        match self {
            Process::Catalog => "catalog".into(),
            Process::Order(id) => format!("order-{id}"),
            Process::Frontend(0) => "frontend".into(),
            Process::Frontend(i) => format!("frontend-{i}"),
        }
    }
}

/// Where the service binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub catalog: PathBuf,
    pub order: PathBuf,
    pub frontend: PathBuf,
}

impl Binaries {
    /// The binaries next to the running executable (how `chaos` finds them).
    pub fn beside_current_exe() -> Result<Binaries> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .ok_or_else(|| Error::Internal("executable has no directory".into()))?;
        Ok(Binaries {
            catalog: dir.join("catalog"),
            order: dir.join("order"),
            frontend: dir.join("frontend"),
        })
    }

    /// The binaries cargo built for the integration test or bench that is running: they sit
    /// in the target directory, one level above the test executable's `deps/` (where
    /// `CARGO_BIN_EXE_<name>` points too; that variable exists only at compile time, in the
    /// test crate, so the shared harness finds them at run time instead).
    pub fn of_cargo_test() -> Result<Binaries> {
        let exe = std::env::current_exe()?;
        let mut dir = exe
            .parent()
            .ok_or_else(|| Error::Internal("executable has no directory".into()))?;
        if dir.ends_with("deps") {
            dir = dir
                .parent()
                .ok_or_else(|| Error::Internal("deps/ has no parent".into()))?;
        }
        Ok(Binaries {
            catalog: dir.join("catalog"),
            order: dir.join("order"),
            frontend: dir.join("frontend"),
        })
    }
}

/// The supervisor: start, signal, kill and reap the services of a [`Cluster`].
impl Cluster {
    /// Spawns one service (it resumes from its files) and waits until it answers `/health`.
    pub fn start_service(&mut self, service: Process) -> Result<()> {
        if self.children.contains_key(&service) {
            return Err(Error::Internal(format!(
                "{} is already running",
                service.name()
            )));
        }
        let (mut cmd, exe) = self.command(service)?;
        let child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot spawn {}: {e}", exe.display())))?;
        self.children.insert(service, child);
        let addr = self.http_addr(service);
        let client = self.client.clone();
        let mut exited = None;
        poll(
            &format!("{} /health", service.name()),
            START_TIMEOUT,
            || {
                let child = self.children.get_mut(&service)?;
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return Some(());
                }
                let health =
                    client.get::<serde_json::Value>(&addr, "/health", Duration::from_secs(1));
                health.ok().map(|_| ())
            },
        )?;
        if let Some(status) = exited {
            self.children.remove(&service);
            let log_path = self
                .dir
                .join("logs")
                .join(format!("{}.log", service.name()));
            let log = fs::read_to_string(log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(Error::Unavailable(format!(
                "{} exited at start ({status}): {}",
                service.name(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(())
    }

    /// The command that starts `service` on this cluster's config, its log file and
    /// environment (the caller's overrides removed, this service's own added), and its binary.
    fn command(&self, service: Process) -> Result<(Command, PathBuf)> {
        let (exe, args): (&Path, Vec<String>) = match service {
            Process::Catalog => (&self.binaries.catalog, vec![]),
            Process::Order(id) => (&self.binaries.order, vec!["--id".into(), id.to_string()]),
            Process::Frontend(0) => (&self.binaries.frontend, vec![]),
            Process::Frontend(i) => (
                &self.binaries.frontend,
                vec!["--index".into(), i.to_string()],
            ),
        };
        let log = fs::OpenOptions::new().create(true).append(true).open(
            self.dir
                .join("logs")
                .join(format!("{}.log", service.name())),
        )?;
        let mut cmd = Command::new(exe);
        cmd.args(&args)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--log-level")
            .arg(&self.options.log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The config file alone describes this cluster: no override of the caller's applies.
        for (key, _) in std::env::vars() {
            if crate::config::is_env_override(&key) {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("BAZAAR_FAILPOINT");
        if let Process::Frontend(i) = service {
            for (k, v) in self
                .options
                .frontend_env
                .get(&i)
                .cloned()
                .unwrap_or_default()
            {
                cmd.env(k, v);
            }
        }
        if let Process::Order(id) = service {
            for (k, v) in self
                .options
                .replica_env
                .get(&id)
                .cloned()
                .unwrap_or_default()
            {
                cmd.env(k, v);
            }
            // This replica reaches each peer through the proxy of that directed link; its own
            // port is left alone, so it still binds the real one.
            for ((from, to), proxy) in &self.links {
                if *from == id {
                    cmd.env(format!("ORDER_PORT{to}"), proxy.port().to_string());
                }
            }
        }
        Ok((cmd, exe.to_path_buf()))
    }

    /// The process id of a running service (tests and benches read its CPU time and RSS from
    /// `/proc`).
    pub fn pid(&self, service: Process) -> Option<u32> {
        self.children.get(&service).map(Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, service: Process) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) to a running service.
    pub fn signal(&self, service: Process, signal: &str) -> Result<()> {
        let child = self
            .children
            .get(&service)
            .ok_or_else(|| Error::Internal(format!("{} is not running", service.name())))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            return Err(Error::Internal(format!(
                "kill -{signal} {} failed",
                service.name()
            )));
        }
        Ok(())
    }

    /// True if the service's process has exited by itself (e.g. at a fail point).
    pub fn has_exited(&mut self, service: Process) -> bool {
        match self.children.get_mut(&service) {
            Some(child) => child.try_wait().map(|s| s.is_some()).unwrap_or(true),
            None => true,
        }
    }

    /// Forgets a service whose process has exited by itself.
    pub fn reap(&mut self, service: Process) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.wait();
        }
    }
}

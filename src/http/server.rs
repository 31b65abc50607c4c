//! (being written) The blocking HTTP/1.1 server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::Handler;
use crate::config::HttpConfig;
use crate::error::Result;

/// How a server runs: pool size and connection limits.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Service name, for logs and thread names.
    pub name: String,
    /// Size of the fixed pool that runs handlers.
    pub threads: usize,
    /// Most open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// A keep-alive connection with no new request for this long is closed.
    pub idle_timeout: Duration,
    /// A request whose headers and body take longer than this to arrive is dropped.
    pub request_timeout: Duration,
}

impl ServerOptions {
    pub fn new(name: &str, threads: usize, http: &HttpConfig) -> ServerOptions {
        ServerOptions {
            name: name.to_string(),
            threads,
            max_connections: http.max_connections,
            idle_timeout: http.idle_timeout(),
            request_timeout: http.request_timeout(),
        }
    }
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    local_addr: SocketAddr,
}

impl Server {
    /// Binds `addr` and starts serving `handler` in background threads.
    pub fn bind(addr: &str, options: ServerOptions, handler: Arc<dyn Handler>) -> Result<Server> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| crate::error::Error::Config(format!("cannot listen on {addr}: {e}")))?;
        Server::start(listener, options, handler)
    }

    /// Serves on an already bound listener.
    pub fn start(listener: TcpListener, options: ServerOptions, handler: Arc<dyn Handler>) -> Result<Server> {
        let _ = (options, handler);
        todo!("server being written: {:?}", listener.local_addr())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes idle connections, waits for running handlers (bounded).
    pub fn shutdown(self) {}

    /// Blocks the calling thread until the server stops.
    pub fn join(self) {}
}

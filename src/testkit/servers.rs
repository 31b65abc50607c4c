//! The two servers the benches compare, each answering every request with one fixed JSON body:
//!
//! - `bazaar::http::Server` with a handler pool of [`POOL_THREADS`];
//! - bare tiny_http 0.12.0 as its README runs it (`Server::from_listener`, a `recv()` loop)
//!   feeding a `threadpool::ThreadPool` of the same size, as the first design had it.
//!
//! Both start on a listener the caller bound, so that a bench can connect clients before the
//! server serves.
//!
//! Caveats: tiny_http is used exactly as released (no `TCP_NODELAY` on its sockets, which std's
//! listener cannot set), because that is what the decision was about. It is a dependency of
//! the `testkit` feature only (benches and tests), never of the services.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::config::HttpConfig;
use crate::error::{Error, Result};
use crate::http::{Request, Response, Server, ServerOptions};

/// Handler threads, the same for both servers.
pub const POOL_THREADS: usize = 8;

/// A running server of either kind; `stop` shuts it down and waits for it.
pub struct Running {
    pub stop: Box<dyn FnOnce()>,
}

/// Which server to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TinyHttp,
    Bazaar,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::TinyHttp => "tiny_http 0.12.0 + ThreadPool(8)",
            Kind::Bazaar => "bazaar::http::Server (pool 8)",
        }
    }

    pub fn start(self, listener: TcpListener, body: &str) -> Result<Running> {
        match self {
            Kind::TinyHttp => start_tiny_http(listener, body),
            Kind::Bazaar => start_bazaar(listener, body),
        }
    }
}

fn start_bazaar(listener: TcpListener, body: &str) -> Result<Running> {
    let body = body.as_bytes().to_vec();
    let handler = move |_: &Request| {
        Ok(Response {
            status: 200,
            body: body.clone(),
            content_type: crate::http::JSON,
            allow: None,
            request_id: None,
        })
    };
    let options = ServerOptions::new("bench", POOL_THREADS, &HttpConfig::default());
    let server = Server::start(listener, options, Arc::new(handler))?;
    Ok(Running {
        stop: Box::new(move || server.shutdown()),
    })
}

fn start_tiny_http(listener: TcpListener, body: &str) -> Result<Running> {
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| Error::Internal(format!("cannot start tiny_http: {e}")))?;
    let server = Arc::new(server);
    let body: Arc<str> = body.into();
    let dispatcher = {
        let server = server.clone();
        thread::Builder::new()
            .name("tiny-recv".into())
            .spawn(move || tiny_http_dispatch(&server, &body))?
    };
    Ok(Running {
        stop: Box::new(move || stop_tiny_http(server, dispatcher)),
    })
}

/// tiny_http's `recv()` loop: each request goes to the pool, which answers it.
fn tiny_http_dispatch(server: &tiny_http::Server, body: &Arc<str>) {
    let pool = threadpool::ThreadPool::new(POOL_THREADS);
    while let Ok(request) = server.recv() {
        let body = body.clone();
        pool.execute(move || {
            let response = tiny_http::Response::from_string(&*body);
            // The header is a constant that tiny_http accepts; were it refused, the answer
            // would merely go without it.
            let response = match tiny_http::Header::from_bytes("Content-Type", "application/json") {
                Ok(header) => response.with_header(header),
                Err(()) => response,
            };
            let _ = request.respond(response);
        });
    }
    pool.join();
}

fn stop_tiny_http(server: Arc<tiny_http::Server>, dispatcher: JoinHandle<()>) {
    server.unblock();
    let _ = dispatcher.join();
    drop(server);
}

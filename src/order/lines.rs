//! The replica's two TCP line listeners (protocol: [`crate::selection`]).
//!
//! Each listener thread only accepts (the accept loop it shares with the HTTP server); every
//! connection gets a short-lived thread that reads one line with a [`LINE_READ_TIMEOUT`],
//! answers one line and closes, so a client that connects and says nothing holds one small
//! thread for a moment and never blocks the others.
//! `You win` can take a few seconds (the replica catches up first), which is why answering is
//! not done on the accepting thread.
//!
//! Caveats: at most [`MAX_LINE_CONNECTIONS`] connections are served at once per replica; more
//! are closed at once (the front-end sees a failed ping and tries again on its next check).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use ::log::debug;

use crate::error::Result;
use crate::http::server::{accept_loop, Admission};
use crate::selection::{Command, Reply, MAX_LINE_BYTES};
use crate::timing::{LINE_READ_TIMEOUT, LINE_WRITE_TIMEOUT};

/// What the replica answers to one parsed line (the core decides; see `Shared::line` in `order::routes`).
pub(crate) type Answerer = dyn Fn(Command) -> Reply + Send + Sync;

/// True once the replica is stopping.
pub(crate) type Stopped = Arc<dyn Fn() -> bool + Send + Sync>;

/// Line connections served at once, per replica.
pub(crate) const MAX_LINE_CONNECTIONS: usize = 64;

/// Which port a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Port {
    /// `Ping`, `You win`, `<id> <epoch>`.
    Broadcast,
    /// `Ping` only.
    Health,
}

/// Starts the accepting thread for `port`.
pub(crate) fn spawn(
    id: u32,
    answer: Arc<Answerer>,
    listener: TcpListener,
    port: Port,
    stopped: Stopped,
) -> Result<JoinHandle<()>> {
    Ok(std::thread::Builder::new()
        .name(thread_name(id, port))
        .spawn(move || listen_loop(id, answer, listener, port, stopped))?)
}

/// `order-<id>-broadcast` or `order-<id>-health`: the accepting thread and, with `-conn`,
/// its connection threads.
fn thread_name(id: u32, port: Port) -> String {
    match port {
        Port::Broadcast => format!("order-{id}-broadcast"),
        Port::Health => format!("order-{id}-health"),
    }
}

/// Unblocks the accepting threads after `Replica::shutdown` (they notice the flag on the next accept).
pub(crate) fn wake(addrs: &[SocketAddr]) {
    for addr in addrs {
        let _ = TcpStream::connect_timeout(addr, LINE_READ_TIMEOUT);
    }
}

/// Accepts connections and hands each to its own short-lived thread.
fn listen_loop(
    id: u32,
    answer: Arc<Answerer>,
    listener: TcpListener,
    port: Port,
    stopped: Stopped,
) {
    let admission = Admission {
        name: thread_name(id, port),
        max_connections: MAX_LINE_CONNECTIONS,
        stack_bytes: None,
    };
    // Closed without a word: the front-end takes a silent close as a failed ping.
    let refuse = |_| debug!("replica {id}: too many line connections, closing one");
    accept_loop(
        &listener,
        &admission,
        || stopped(),
        refuse,
        move |stream| serve_connection(id, &*answer, stream, port),
    );
}

/// Reads one line, answers one line.
fn serve_connection(id: u32, answer: &Answerer, stream: TcpStream, port: Port) {
    let result = (|| -> std::io::Result<()> {
        stream.set_read_timeout(Some(LINE_READ_TIMEOUT))?;
        stream.set_write_timeout(Some(LINE_WRITE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut line = String::new();
        BufReader::new((&stream).take(MAX_LINE_BYTES)).read_line(&mut line)?;
        let reply = match (port, Command::parse(&line)) {
            (_, Some(Command::Ping)) => answer(Command::Ping),
            (Port::Broadcast, Some(command)) => answer(command),
            _ => Reply::Error("unknown command".into()),
        };
        (&stream).write_all(format!("{reply}\n").as_bytes())
    })();
    if let Err(e) = result {
        debug!("replica {}: line connection: {e}", id);
    }
}

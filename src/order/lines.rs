//! The replica's two TCP line listeners (protocol: [`crate::election`]).
//!
//! Each listener thread only accepts; every connection gets a short-lived thread that reads
//! one line with a [`LINE_READ_TIMEOUT`], answers one line and closes, so a client that
//! connects and says nothing holds one small thread for a moment and never blocks the others.
//! `You win` can take a few seconds (the replica catches up first), which is why answering is
//! not done on the accepting thread.
//!
//! Caveats: at most [`MAX_LINE_CONNECTIONS`] connections are served at once per replica; more
//! are closed at once (the front-end sees a failed ping and tries again on its next check).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ::log::{debug, warn};

use crate::election::{Command, Reply, MAX_LINE_BYTES};
use crate::error::Result;

/// What the replica answers to one parsed line (the core decides; see `order::Shared::line`).
pub(crate) type Answerer = dyn Fn(Command) -> Reply + Send + Sync;

/// True once the replica is stopping.
pub(crate) type Stopped = Arc<dyn Fn() -> bool + Send + Sync>;

/// How long a line connection may take to send its line.
pub const LINE_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// How long writing the answer may take.
pub const LINE_WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// Line connections served at once, per replica.
pub const MAX_LINE_CONNECTIONS: usize = 64;

/// Which port a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
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
    let name = format!(
        "order-{}-{}",
        id,
        if port == Port::Broadcast {
            "broadcast"
        } else {
            "health"
        }
    );
    Ok(std::thread::Builder::new()
        .name(name)
        .spawn(move || listen_loop(id, answer, listener, port, stopped))?)
}

/// Unblocks the accepting threads after `Node::stop` (they notice the flag on the next accept).
pub fn wake(addrs: &[SocketAddr]) {
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
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopped() {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                warn!("replica {}: accept on the {port:?} port: {e}", id);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_LINE_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            debug!("replica {}: too many line connections, closing one", id);
            continue;
        }
        let (answer2, active2) = (answer.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("order-{}-line", id))
            .spawn(move || {
                serve_connection(id, &*answer2, stream, port);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            warn!("replica {}: cannot start a line thread: {e}", id);
        }
    }
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

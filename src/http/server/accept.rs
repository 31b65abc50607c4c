//! Accepting connections, for every listener of a process (the HTTP server's and a replica's
//! line ports): a thread per admitted connection, a cap on how many run at once, and the
//! refusal of one more.
//!
//! Caveats:
//! - `accept` has no timeout: the owner stops the loop by setting its flag and then
//!   connecting once itself, which wakes the loop to see it.
//! - A failed `accept` (out of file descriptors, say) is retried after [`ACCEPT_BACKOFF`]; the
//!   loop never gives up on its own.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// After a failed `accept` (e.g. out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// How [`accept_loop`] admits connections.
pub(crate) struct Admission {
    /// Names the log lines and, with `-conn`, the connection threads.
    pub(crate) name: String,
    /// Most connections served at once; one more goes to `refuse` instead.
    pub(crate) max_connections: usize,
    /// Stack of a connection thread; `None` for the default.
    pub(crate) stack_bytes: Option<usize>,
}

/// The accepting thread of every listener (the HTTP server's and the replica's line ports):
/// each admitted connection gets a thread of its own that runs `serve`, so a slow or silent
/// client only ever holds its own thread. At most `max_connections` run at once; one more is
/// handed to `refuse` on this thread and dropped. Returns once `stopped()` holds after an
/// accept (the owner wakes it with a connection of its own: `accept` has no timeout).
pub(crate) fn accept_loop(
    listener: &TcpListener,
    admission: &Admission,
    stopped: impl Fn() -> bool,
    refuse: impl Fn(TcpStream),
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let name = &admission.name;
    let serve = Arc::new(serve);
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopped() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("{name}: accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= admission.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            refuse(stream);
            continue;
        }
        let mut builder = thread::Builder::new().name(format!("{name}-conn"));
        if let Some(bytes) = admission.stack_bytes {
            builder = builder.stack_size(bytes);
        }
        let (serve, done) = (serve.clone(), Closes(open.clone()));
        if let Err(e) = builder.spawn(move || {
            let _done = done;
            serve(stream);
        }) {
            log::warn!("{name}: cannot spawn a connection thread: {e}");
        }
    }
}

/// Counts a connection as closed when dropped: when its thread ends, even by a panic, or when
/// the thread could not be started (the closure, and this with it, is dropped then).
struct Closes(Arc<AtomicUsize>);

impl Drop for Closes {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

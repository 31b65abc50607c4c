//! Leader selection: the TCP line protocol between the front-end and the order replicas.
//!
//! Every exchange is one connection carrying one line each way, and every read has a timeout,
//! because a stopped (`kill -STOP`) process still completes TCP connects through the kernel's
//! listen queue and would otherwise hang the caller.
//!
//! On a replica's leader-broadcast port:
//!
//! | request                      | answer                   | meaning                                       |
//! |------------------------------|--------------------------|-----------------------------------------------|
//! | `Ping`                       | `OK` (or `WAIT`)         | alive, and ready to lead (`WAIT`: recovering) |
//! | `You win <hint> <secret>`    | `OK <epoch>` (or `WAIT`) | catch up, take an epoch above `hint`, lead    |
//! | `<id> <epoch> <secret>`      | `OK`                     | replica `<id>` leads in `<epoch>`             |
//! | either without the secret    | `ERR unauthorized`       | nothing changes                               |
//! | anything else                | `ERR unknown command`    |                                               |
//!
//! `<secret>` is the deployment's shared secret (docs/spec.md §1; config `secret`, no whitespace): the
//! two lines that change who leads are for the front-ends only. The reference design's short
//! forms (`You win`, `You win <hint>`, `<id>`, `<id> <epoch>`) still parse, with an empty
//! secret, so that they get `ERR unauthorized` rather than `ERR unknown command`.
//! On the health-check port only `Ping` is understood.
//!
//! [`select_leader`] is the front-end's side: ping the replicas from the highest id down, tell
//! the first that answers `OK` that it won (with the highest epoch the front-end has seen as a
//! hint), and once it answers `OK <epoch>`, tell every other replica `<id> <epoch>`. A winner
//! that does not confirm (it may have died or be recovering), or confirms with an epoch below
//! the hint (a deposed leader that has not heard yet), is skipped and the next is tried.
//! The algorithm itself is `select_with`, which takes the transport as a closure so that it
//! can be tested without sockets.
//!
//! The replica's side of the protocol (what each line does to its state) is in
//! `crate::order`; this module only parses lines (`Command::parse`).
//!
//! Caveats: the announcement `<id> <epoch>` is best effort; a replica that misses it learns the
//! new leader from the leader's first `/propagate`. Nothing here protects against two
//! front-ends selecting different leaders at once: the epochs make the older one step down as
//! soon as it meets a replica that has seen the newer epoch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use log::{debug, info, warn};

use crate::api::parse_decimal;
use crate::config::ReplicaConfig;
use crate::timing::ANNOUNCE_TIMEOUT;
pub use crate::timing::{PING_TIMEOUT, YOU_WIN_TIMEOUT};

/// Longest line either side reads: every valid line is a few bytes, so a peer sending more is
/// not speaking this protocol.
pub(crate) const MAX_LINE_BYTES: u64 = 256;

/// The outcome of a leader selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub id: u32,
    pub epoch: u64,
}

/// One request line of the protocol, as a replica understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `Ping`.
    Ping,
    /// `You win <hint> <secret>`: `hint` is the highest epoch the front-end has seen.
    YouWin { hint: Option<u64>, secret: String },
    /// `<id> <epoch> <secret>`: replica `id` now leads.
    Leader {
        id: u32,
        epoch: Option<u64>,
        secret: String,
    },
}

impl Command {
    /// Parses one line (without its line ending); `None` for anything unknown. A missing
    /// secret parses as an empty one (the caller refuses it); a secret needs the number before
    /// it, so `You win 7` is hint 7 without a secret.
    pub(crate) fn parse(line: &str) -> Option<Command> {
        let line = line.trim();
        if line == "Ping" {
            return Some(Command::Ping);
        }
        if let Some(rest) = line.strip_prefix("You win") {
            // "You winner" must not parse as "You win" with a hint.
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            let (hint, secret) = number_and_secret(rest)?;
            return Some(Command::YouWin { hint, secret });
        }
        let (id, rest) = line.split_once(' ').unwrap_or((line, ""));
        let id = parse_decimal(id)?;
        let (epoch, secret) = number_and_secret(rest)?;
        Some(Command::Leader {
            id: u32::try_from(id).ok()?,
            epoch,
            secret,
        })
    }

    /// The line for a log: the secret replaced by `<secret>`.
    pub(crate) fn redacted(&self) -> String {
        let mut shown = self.clone();
        if let Command::YouWin { secret, .. } | Command::Leader { secret, .. } = &mut shown {
            if !secret.is_empty() {
                *secret = "<secret>".into();
            }
        }
        shown.to_string()
    }

    /// The secret the line carries (empty for `Ping` and for lines without one).
    pub(crate) fn secret(&self) -> &str {
        match self {
            Command::Ping => "",
            Command::YouWin { secret, .. } | Command::Leader { secret, .. } => secret,
        }
    }
}

/// `[<number> [<secret>]]`, whitespace separated, nothing after.
fn number_and_secret(rest: &str) -> Option<(Option<u64>, String)> {
    let mut words = rest.split_ascii_whitespace();
    let number = match words.next() {
        None => return Some((None, String::new())),
        Some(word) => parse_decimal(word)?,
    };
    let secret = words.next().unwrap_or("").to_string();
    if words.next().is_some() {
        return None;
    }
    Some((Some(number), secret))
}

impl std::fmt::Display for Command {
    /// The line as sent, without its line end: the one formatter of requests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Ping => write!(f, "Ping"),
            Command::YouWin { hint, secret } => {
                write!(f, "You win")?;
                write_number_and_secret(f, *hint, secret)
            }
            Command::Leader { id, epoch, secret } => {
                write!(f, "{id}")?;
                write_number_and_secret(f, *epoch, secret)
            }
        }
    }
}

/// The inverse of [`number_and_secret`]: a secret is only written after its number.
fn write_number_and_secret(
    f: &mut std::fmt::Formatter<'_>,
    number: Option<u64>,
    secret: &str,
) -> std::fmt::Result {
    if let Some(n) = number {
        write!(f, " {n}")?;
        if !secret.is_empty() {
            write!(f, " {secret}")?;
        }
    }
    Ok(())
}

/// A replica's answer line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `OK`.
    Ok,
    /// `OK <epoch>`: the answer to `You win`.
    OkEpoch(u64),
    /// `WAIT`: this replica cannot lead now (no majority granted it, or a leader is alive).
    Wait,
    /// `ERR <why>`.
    Error(String),
    /// Anything else.
    Other,
}

impl std::fmt::Display for Reply {
    /// The line as sent, without its line end: the one formatter of answers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Ok => write!(f, "OK"),
            Reply::OkEpoch(epoch) => write!(f, "OK {epoch}"),
            Reply::Wait => write!(f, "WAIT"),
            Reply::Error(why) => write!(f, "ERR {why}"),
            Reply::Other => write!(f, "ERR unknown answer"),
        }
    }
}

impl Reply {
    pub(crate) fn parse(line: &str) -> Reply {
        let line = line.trim();
        match line {
            "OK" => Reply::Ok,
            "WAIT" => Reply::Wait,
            _ if line.starts_with("ERR ") => Reply::Error(line["ERR ".len()..].to_string()),
            _ => match line.strip_prefix("OK ").map(|e| parse_decimal(e.trim())) {
                Some(Some(epoch)) => Reply::OkEpoch(epoch),
                _ => Reply::Other,
            },
        }
    }
}

/// Sends one line to `addr` and reads one line back, all within `timeout` per phase.
/// Any failure (refused, timed out, closed early, over-long line) is `None`.
pub fn exchange(addr: &str, line: &str, timeout: Duration) -> Option<String> {
    let result = (|| -> std::io::Result<String> {
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
        let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        BufReader::new(stream)
            .take(MAX_LINE_BYTES)
            .read_line(&mut answer)?;
        if !answer.ends_with('\n') {
            return Err(std::io::Error::other("no complete answer line"));
        }
        Ok(answer.trim_end().to_string())
    })();
    match result {
        Ok(answer) => Some(answer),
        Err(e) => {
            let shown = Command::parse(line).map_or_else(|| format!("{line:?}"), |c| c.redacted());
            debug!("{shown} to {addr}: {e}");
            None
        }
    }
}

/// `Ping` on `addr` (a replica's broadcast or health port): true if it answered `OK` in time.
/// A recovering replica answers `WAIT`, which is false.
pub fn ping(addr: &str, timeout: Duration) -> bool {
    exchange(addr, &Command::Ping.to_string(), timeout)
        .is_some_and(|answer| Reply::parse(&answer) == Reply::Ok)
}

/// Front-end side of docs/spec.md §4: ping replicas from the highest id down, tell the first that
/// answers `You win <epoch_hint>`, then tell every other replica `<id> <epoch>`.
/// `epoch_hint` is the highest epoch the caller has seen; the winner answers with the epoch it
/// took, which is above every epoch it and its reachable peers know.
/// Returns `None` when no replica answers.
/// `secret` is the deployment's secret, sent on `You win` and on the announcements.
pub fn select_leader(
    replicas: &[ReplicaConfig],
    epoch_hint: u64,
    secret: &str,
) -> Option<Leadership> {
    let chosen = select_with(replicas, epoch_hint, secret, &mut |addr, line, timeout| {
        exchange(addr, line, timeout)
    });
    match chosen {
        Some(l) => info!("leader selected: replica {} in epoch {}", l.id, l.epoch),
        None => warn!("leader selection: no order replica is ready"),
    }
    chosen
}

/// The selection algorithm over any transport: `ask(addr, line, timeout)` returns the answer
/// line or `None`. Pure apart from what `ask` does, so it is unit-tested with a fake. An
/// `OK <epoch>` below `epoch_hint` is not a leadership: the next replica is tried.
pub(crate) fn select_with(
    replicas: &[ReplicaConfig],
    epoch_hint: u64,
    secret: &str,
    ask: &mut dyn FnMut(&str, &str, Duration) -> Option<String>,
) -> Option<Leadership> {
    let mut candidates: Vec<&ReplicaConfig> = replicas.iter().collect();
    candidates.sort_by_key(|r| std::cmp::Reverse(r.id));
    for candidate in &candidates {
        let addr = candidate.broadcast_addr();
        let pinged = ask(&addr, &Command::Ping.to_string(), PING_TIMEOUT).map(|a| Reply::parse(&a));
        if pinged != Some(Reply::Ok) {
            debug!("replica {} is not a candidate: {pinged:?}", candidate.id);
            continue;
        }
        let you_win = Command::YouWin {
            hint: Some(epoch_hint),
            secret: secret.to_string(),
        }
        .to_string();
        let won = ask(&addr, &you_win, YOU_WIN_TIMEOUT).map(|a| Reply::parse(&a));
        let epoch = match won {
            Some(Reply::OkEpoch(epoch)) if epoch >= epoch_hint => epoch,
            // A leader of an epoch older than one this front-end has seen has been deposed,
            // whether it knows yet or not (it may have been frozen): forwarding to it would
            // read and decide from a stale log.
            Some(Reply::OkEpoch(epoch)) => {
                warn!(
                    "replica {} answered epoch {epoch}, below {epoch_hint} already seen: \
                     not the leader",
                    candidate.id
                );
                continue;
            }
            // A replica that speaks the reference design's protocol answers a bare OK.
            Some(Reply::Ok) => epoch_hint,
            other => {
                warn!(
                    "replica {} did not take the leadership: {other:?}",
                    candidate.id
                );
                continue;
            }
        };
        let announcement = Command::Leader {
            id: candidate.id,
            epoch: Some(epoch),
            secret: secret.to_string(),
        };
        let (announcement, shown) = (announcement.to_string(), announcement.redacted());
        for other in candidates.iter().filter(|r| r.id != candidate.id) {
            if ask(&other.broadcast_addr(), &announcement, ANNOUNCE_TIMEOUT).is_none() {
                debug!("replica {} missed the announcement {shown}", other.id);
            }
        }
        return Some(Leadership {
            id: candidate.id,
            epoch,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn command_parse_table() {
        let win = |hint: Option<u64>, secret: &str| Command::YouWin {
            hint,
            secret: secret.into(),
        };
        let lead = |id: u32, epoch: Option<u64>, secret: &str| Command::Leader {
            id,
            epoch,
            secret: secret.into(),
        };
        let cases: &[(&str, Option<Command>)] = &[
            ("Ping", Some(Command::Ping)),
            ("Ping\r", Some(Command::Ping)),
            ("Ping s3cret", None),
            ("You win", Some(win(None, ""))),
            ("You win 7", Some(win(Some(7), ""))),
            ("You win  12 ", Some(win(Some(12), ""))),
            ("You win 7 s3cret", Some(win(Some(7), "s3cret"))),
            ("You win 7 s3cret\r", Some(win(Some(7), "s3cret"))),
            ("You win 7 s3cret extra", None),
            ("You win s3cret", None),
            ("You win x", None),
            ("You win +7 s3cret", None),
            ("You win 18446744073709551616 s", None),
            ("You winner", None),
            ("3", Some(lead(3, None, ""))),
            ("3 9", Some(lead(3, Some(9), ""))),
            ("3 9 s3cret", Some(lead(3, Some(9), "s3cret"))),
            ("3 9 1", Some(lead(3, Some(9), "1"))),
            ("3 9 s3cret 1", None),
            ("3 x", None),
            ("3 x s3cret", None),
            ("4294967296 1 s", None),
            ("-1", None),
            ("+1", None),
            ("", None),
            ("ping", None),
            ("GET / HTTP/1.1", None),
        ];
        for (line, want) in cases {
            assert_eq!(Command::parse(line), *want, "{line:?}");
        }
    }

    #[test]
    fn command_format_round_trips_and_redacts() {
        let cases = [
            (Command::Ping, "Ping"),
            (
                Command::YouWin {
                    hint: Some(4),
                    secret: "s3cret".into(),
                },
                "You win 4 s3cret",
            ),
            (
                Command::Leader {
                    id: 2,
                    epoch: Some(5),
                    secret: "s3cret".into(),
                },
                "2 5 s3cret",
            ),
        ];
        for (command, line) in cases {
            assert_eq!(command.to_string(), line);
            assert_eq!(Command::parse(line), Some(command.clone()));
            assert!(!command.redacted().contains("s3cret"), "{line}");
        }
    }

    #[test]
    fn reply_parse_table() {
        let cases = [
            ("OK", Reply::Ok),
            ("OK 4", Reply::OkEpoch(4)),
            ("OK x", Reply::Other),
            ("OK +4", Reply::Other),
            ("WAIT", Reply::Wait),
            (
                "ERR unknown command",
                Reply::Error("unknown command".into()),
            ),
            ("", Reply::Other),
        ];
        for (line, want) in cases {
            assert_eq!(Reply::parse(line), want, "{line:?}");
        }
    }

    fn replicas(ids: &[u32]) -> Vec<ReplicaConfig> {
        ids.iter()
            .map(|&id| ReplicaConfig {
                id,
                host: "h".into(),
                port: 1,
                leader_broadcast_port: 9000 + id,
                health_check_port: 2,
            })
            .collect()
    }

    /// Each case: the answers per replica id to `Ping` and to `You win`, and the expected
    /// winner. Missing answers are timeouts.
    #[test]
    fn selection_table() {
        type Answers = &'static [(u32, Option<&'static str>, Option<&'static str>)];
        let cases: &[(&str, Answers, Option<Leadership>)] = &[
            (
                "highest id wins",
                &[
                    (1, Some("OK"), Some("OK 5")),
                    (2, Some("OK"), Some("OK 5")),
                    (3, Some("OK"), Some("OK 5")),
                ],
                Some(Leadership { id: 3, epoch: 5 }),
            ),
            (
                "dead highest is skipped",
                &[
                    (1, Some("OK"), Some("OK 5")),
                    (2, Some("OK"), Some("OK 6")),
                    (3, None, None),
                ],
                Some(Leadership { id: 2, epoch: 6 }),
            ),
            (
                "recovering replica is skipped",
                &[
                    (1, Some("OK"), Some("OK 5")),
                    (2, Some("OK"), Some("OK 6")),
                    (3, Some("WAIT"), None),
                ],
                Some(Leadership { id: 2, epoch: 6 }),
            ),
            (
                "winner that does not confirm is skipped",
                &[
                    (1, Some("OK"), Some("OK 8")),
                    (2, Some("OK"), Some("WAIT")),
                    (3, Some("OK"), None),
                ],
                Some(Leadership { id: 1, epoch: 8 }),
            ),
            (
                "a leader below the highest epoch seen is deposed: try the next",
                &[
                    (1, Some("OK"), Some("OK 6")),
                    (2, Some("OK"), Some("OK 5")),
                    (3, Some("OK"), Some("OK 3")),
                ],
                Some(Leadership { id: 2, epoch: 5 }),
            ),
            (
                "the sitting leader re-confirmed at the highest epoch seen",
                &[(2, Some("OK"), Some("OK 5")), (3, Some("OK"), Some("OK 4"))],
                Some(Leadership { id: 3, epoch: 4 }),
            ),
            (
                "only stale leaders: none",
                &[(1, Some("OK"), Some("OK 0")), (3, Some("OK"), Some("OK 3"))],
                None,
            ),
            (
                "bare OK keeps the hint",
                &[(1, Some("OK"), Some("OK"))],
                Some(Leadership { id: 1, epoch: 4 }),
            ),
            (
                "nobody answers",
                &[(1, None, None), (2, Some("ERR x"), None)],
                None,
            ),
        ];
        for (what, answers, want) in cases {
            let ids: Vec<u32> = answers.iter().map(|a| a.0).collect();
            let table: HashMap<String, (Option<&str>, Option<&str>)> = answers
                .iter()
                .map(|&(id, ping, win)| (format!("h:{}", 9000 + id), (ping, win)))
                .collect();
            let mut announced = Vec::new();
            let got = select_with(&replicas(&ids), 4, "s3cret", &mut |addr, line, _| {
                let (ping, win) = table[addr];
                match line {
                    "Ping" => ping.map(String::from),
                    "You win 4 s3cret" => win.map(String::from),
                    other => {
                        announced.push((addr.to_string(), other.to_string()));
                        Some("OK".into())
                    }
                }
            });
            assert_eq!(got, *want, "{what}");
            if let Some(winner) = got {
                let others = ids.iter().filter(|&&id| id != winner.id).count();
                assert_eq!(
                    announced.len(),
                    others,
                    "{what}: every other replica is told"
                );
                let line = format!("{} {} s3cret", winner.id, winner.epoch);
                assert!(
                    announced.iter().all(|(_, l)| *l == line),
                    "{what}: {announced:?}"
                );
            }
        }
    }

    #[test]
    fn ping_times_out_on_a_silent_listener() {
        // A listener that accepts (the kernel does) but never answers, like a stopped process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = std::time::Instant::now();
        assert!(!ping(&addr, Duration::from_millis(100)));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
        assert!(!ping(&addr, Duration::from_millis(100)), "refused");
    }
}

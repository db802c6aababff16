//! Letting peers in through a listening socket without letting strangers hold the door.
//!
//! Every accepted connection runs its handshake and hello on its own thread, so a connection
//! that sends nothing (or sends garbage slowly) delays nobody else. At most
//! [`MAX_IN_FLIGHT`] handshakes run at once; when another connection arrives, the oldest
//! unfinished one is cut to make room, and any that has not finished within
//! [`HANDSHAKE_TIMEOUT`] is cut too. A real rank finishes in a few round trips, so only
//! strangers are ever cut; a rank cut by bad luck in a flood dials again.
//!
//! A connection that fails is closed without a word to it, and logged to stderr: at most
//! [`LOG_BURST`] lines every [`LOG_WINDOW`] per process, so that a flood of strangers cannot
//! fill the log; the next line printed says how many were left out.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::auth;
use crate::config::CommConfig;
use crate::frame::Kind;
use crate::transport::connection::{Connection, LinkError, Pacer};
use crate::transport::messages::Hello;
use crate::transport::socket::tune;

/// Longest a single incoming connection may take to authenticate and introduce itself.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes running at once on one listener.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// How often the listener looks for connections and finished handshakes when idle.
const POLL: Duration = Duration::from_millis(2);

/// A peer that proved the secret and introduced itself.
pub(crate) struct Admitted {
    pub conn: Connection,
    pub hello: Hello,
    pub from: SocketAddr,
}

/// What the listener does with an admitted peer: keep listening, or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Listen,
    Done,
}

/// A handshake in progress: a handle on its socket to cut it, and when it started.
struct InFlight {
    id: u64,
    from: SocketAddr,
    started: Instant,
    cut: TcpStream,
}

impl InFlight {
    fn cut(&self, cfg: &CommConfig, why: &str) {
        let _ = self.cut.shutdown(Shutdown::Both);
        log_stranger(cfg, self.from, why);
    }
}

/// Lines about dropped connections printed at most per [`LOG_WINDOW`].
pub(crate) const LOG_BURST: u32 = 10;
/// The window of [`LOG_BURST`].
pub(crate) const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Counts lines in fixed windows of [`LOG_WINDOW`]: the first [`LOG_BURST`] of a window print,
/// the rest are counted and reported with the next line that prints.
struct LogLimit {
    window: Option<Instant>,
    printed: u32,
    left_out: u64,
}

impl LogLimit {
    /// `Some(lines left out since the last printed one)` when a line may print at `now`;
    /// `None` when it is left out.
    fn check(&mut self, now: Instant) -> Option<u64> {
        if self.window.is_none_or(|w| now.duration_since(w) >= LOG_WINDOW) {
            self.window = Some(now);
            self.printed = 0;
        }
        if self.printed >= LOG_BURST {
            self.left_out += 1;
            return None;
        }
        self.printed += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

static LOG_LIMIT: Mutex<LogLimit> = Mutex::new(LogLimit { window: None, printed: 0, left_out: 0 });

pub(crate) fn log_stranger(cfg: &CommConfig, from: SocketAddr, reason: &str) {
    let verdict = LOG_LIMIT.lock().map(|mut l| l.check(Instant::now())).unwrap_or(Some(0));
    let Some(left_out) = verdict else { return };
    let more = match left_out {
        0 => String::new(),
        n => format!(" ({n} more dropped connections not shown)"),
    };
    eprintln!("asgd-comm: rank {} dropped a connection from {from}: {reason}{more}", cfg.rank);
}

/// Accepts connections on the non-blocking `listener` and admits them concurrently (see the
/// module docs), handing each authenticated peer to `take` in the order they finish, until
/// `take` says [`Next::Done`], `deadline` passes or `stop` is set.
///
/// Returns whether `take` finished. Errors: the listener's own failures.
pub(crate) fn admit(
    cfg: &CommConfig,
    listener: &TcpListener,
    deadline: Instant,
    stop: Option<&AtomicBool>,
    mut take: impl FnMut(Admitted) -> Next,
) -> io::Result<bool> {
    thread::scope(|s| {
        let (done_tx, done_rx) = flume::unbounded::<(u64, Result<Admitted, String>)>();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut next_id = 0u64;
        let result = 'listen: loop {
            let mut busy = false;
            // Finished handshakes first, so a peer that made it is not cut below.
            while let Ok((id, outcome)) = done_rx.try_recv() {
                busy = true;
                let Some(at) = in_flight.iter().position(|f| f.id == id) else {
                    continue; // already cut and logged
                };
                let flight = in_flight.remove(at);
                match outcome {
                    Ok(admitted) => {
                        if take(admitted) == Next::Done {
                            break 'listen Ok(true);
                        }
                    }
                    Err(reason) => {
                        if let Some(f) = flight {
                            log_stranger(cfg, f.from, &reason);
                        }
                    }
                }
            }
            let now = Instant::now();
            while in_flight.front().is_some_and(|f| now.duration_since(f.started) >= HANDSHAKE_TIMEOUT) {
                if let Some(f) = in_flight.pop_front() {
                    f.cut(cfg, &format!("it did not finish the handshake within {HANDSHAKE_TIMEOUT:?}"));
                }
            }
            match listener.accept() {
                Ok((stream, from)) => {
                    busy = true;
                    if in_flight.len() >= MAX_IN_FLIGHT {
                        if let Some(oldest) = in_flight.pop_front() {
                            oldest.cut(cfg, &format!("{MAX_IN_FLIGHT} newer connections were waiting to authenticate"));
                        }
                    }
                    match start(cfg, s, stream, from, next_id, done_tx.clone()) {
                        Ok(flight) => in_flight.push_back(flight),
                        Err(e) => log_stranger(cfg, from, &format!("could not start its handshake: {e}")),
                    }
                    next_id += 1;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                // The peer gave up between SYN and accept: not our problem, keep listening.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => break Err(e),
            }
            if now >= deadline || stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                break Ok(false);
            }
            if !busy {
                thread::sleep(POLL);
            }
        };
        // Cut whatever is still in flight so that its thread ends before the scope does.
        for f in in_flight {
            f.cut(cfg, "the listener stopped before its handshake finished");
        }
        result
    })
}

/// Starts the handshake of one accepted connection on its own thread.
fn start<'scope>(
    cfg: &'scope CommConfig,
    s: &'scope thread::Scope<'scope, '_>,
    stream: TcpStream,
    from: SocketAddr,
    id: u64,
    done: flume::Sender<(u64, Result<Admitted, String>)>,
) -> io::Result<InFlight> {
    // Accepted sockets may inherit non-blocking mode on some platforms.
    stream.set_nonblocking(false)?;
    let cut = stream.try_clone()?;
    thread::Builder::new().name("asgd-comm-admit".into()).spawn_scoped(s, move || {
        let outcome = handshake(cfg, stream).map(|(conn, hello)| Admitted { conn, hello, from });
        // The listener may have stopped waiting; then the connection just closes.
        let _ = done.send((id, outcome));
    })?;
    Ok(InFlight { id, from, started: Instant::now(), cut })
}

/// Authenticates an accepted connection as the server and reads its hello.
fn handshake(cfg: &CommConfig, stream: TcpStream) -> Result<(Connection, Hello), String> {
    tune(&stream, HANDSHAKE_TIMEOUT).map_err(|e| e.to_string())?;
    let pacer = Pacer::new(cfg.net_delay, cfg.net_rate_mbps);
    let mut conn = Connection::new(stream, cfg.max_frame_bytes, cfg.checksum, pacer).map_err(|e| e.to_string())?;
    auth::server_handshake(&mut conn, cfg.secret.as_ref(), cfg.seals()).map_err(|f| f.reason)?;
    let frame = match conn.expect_frame(Kind::Hello) {
        Ok(frame) => frame,
        Err(LinkError::SealMismatch { peer_seals }) => {
            // An authenticated rank set up differently: a frame in this rank's mode makes it
            // fail with the same explanation instead of a bare close.
            let _ = conn.write_frame(Kind::Abort, 0, &[]);
            let (theirs, ours) = if peer_seals { ("encrypts", "does not") } else { ("does not encrypt", "does") };
            return Err(format!(
                "it proved the secret but {theirs} its frames and this rank {ours}; set the same ASGD_COMM_ENCRYPT on every rank"
            ));
        }
        Err(e) => return Err(describe_missing_hello(e)),
    };
    let hello = Hello::decode(&frame.payload).map_err(|e| format!("its hello does not decode: {e}"))?;
    Ok((conn, hello))
}

fn describe_missing_hello(e: LinkError) -> String {
    match e {
        LinkError::Closed | LinkError::Cut => "it closed the connection after the handshake".into(),
        LinkError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            "it sent no hello in time after the handshake".into()
        }
        LinkError::Io(e) => format!("socket error while reading its hello: {e}"),
        LinkError::Frame(e) => format!("its hello is not a valid frame ({e})"),
        LinkError::Forged => "its hello fails its authentication tag".into(),
        _ => "it sent another message where its hello was due".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood prints its first lines of each window, and the next line says how many it left
    /// out.
    #[test]
    fn a_flood_of_dropped_connections_prints_a_burst_per_window() {
        let t0 = Instant::now();
        let mut limit = LogLimit { window: None, printed: 0, left_out: 0 };
        let first: Vec<Option<u64>> = (0..LOG_BURST + 5).map(|_| limit.check(t0)).collect();
        assert_eq!(&first[..LOG_BURST as usize], vec![Some(0); LOG_BURST as usize].as_slice());
        assert_eq!(&first[LOG_BURST as usize..], [None; 5].as_slice());
        assert_eq!(limit.check(t0 + LOG_WINDOW / 2), None, "the window is not over");
        assert_eq!(limit.check(t0 + LOG_WINDOW), Some(6), "the next window's first line counts the 6 left out");
        assert_eq!(limit.check(t0 + LOG_WINDOW), Some(0));
    }
}

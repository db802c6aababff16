//! Heartbeats over the rendezvous connections, so that a timed-out collective names the rank
//! that is really at fault rather than the neighbour this rank happened to wait on.
//!
//! When one rank of a ring hangs with its sockets open, every rank times out at about the
//! same moment, each waiting on its own predecessor; the ring alone cannot tell who started
//! it. Rank 0 can: each member keeps its rendezvous connection to rank 0 open as a control
//! link and sends a heartbeat every beat interval `H`, carrying how many collectives its comm
//! thread has started and whether it is inside one. Rank 0 answers each heartbeat with a
//! verdict: the ranks it has not heard from for the silence limit `L` (silent: stopped or
//! stuck), and the ranks that, outside any collective, have started fewer collectives than
//! another rank and not moved for `L` (behind: alive, but no longer calling collectives).
//! A member that gets no answer for `L` holds rank 0 itself silent.
//!
//! Each link is one thread on each side in lock step (the member writes a beat and reads the
//! answer, rank 0's thread reads a beat and writes the answer), so a single thread owns each
//! sealed [`Connection`] and its nonces. The service never fails a collective by itself; it
//! only names the culprit of one that failed ([`Liveness::name_culprit`]). A control link
//! that closes (its process exited) just ends its threads, silently, and its rank is left
//! out of later verdicts, since the ring reports an exit by itself within milliseconds.
//!
//! `L` is half the comm timeout `T`, at most [`MAX_SILENCE`], and `H` is a quarter of `L`:
//! a rank that stopped is flagged after `L` plus one beat, and the others hear of it one
//! beat later, at `3T/4`, before their own collectives time out at `T`. Heartbeats are
//! 33-byte frames, so even `H` = 10 ms costs nothing worth measuring.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{CommError, Op};
use crate::frame::Kind;
use crate::transport::connection::Connection;
use crate::transport::messages::{decode_verdict, encode_verdict, Beat, Flag, Suspicion};

/// Longest silence limit: with the default 300 s timeout a hung rank is flagged after 10 s.
pub(crate) const MAX_SILENCE: Duration = Duration::from_secs(10);
/// Shortest beat interval, for very short timeouts in tests.
const MIN_BEAT: Duration = Duration::from_millis(10);

/// The silence limit `L` and the beat interval `H` for the comm timeout `timeout`.
pub(crate) fn intervals(timeout: Duration) -> (Duration, Duration) {
    let silence = (timeout / 2).min(MAX_SILENCE);
    (silence, (silence / 4).max(MIN_BEAT))
}

/// How far this rank's comm thread has got, written by it and read by the heartbeat thread:
/// collectives started times two, plus one while one is in progress, so a heartbeat reads
/// both at once.
#[derive(Default)]
struct Progress(AtomicU64);

impl Progress {
    fn get(&self) -> Beat {
        let v = self.0.load(Ordering::Relaxed);
        Beat { started: v >> 1, inside: v & 1 == 1 }
    }

    /// Only the comm thread writes, so a load and a store do not race with another write.
    fn set(&self, beat: Beat) {
        self.0.store((beat.started << 1) | u64::from(beat.inside), Ordering::Relaxed);
    }
}

/// What rank 0 knows of one rank.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_beat: Instant,
    beat: Beat,
    /// When `beat` last changed.
    moved: Instant,
    /// Its control link has closed: the process exited, which the ring reports by itself.
    closed: bool,
}

/// Rank 0's record of every rank, shared by its heartbeat threads.
struct Table {
    seen: Vec<Seen>,
    silence: Duration,
}

impl Table {
    fn new(world_size: usize, silence: Duration, now: Instant) -> Table {
        let seen = Seen { last_beat: now, beat: Beat { started: 0, inside: false }, moved: now, closed: false };
        Table { seen: vec![seen; world_size], silence }
    }

    fn record(&mut self, rank: usize, beat: Beat, now: Instant) {
        let s = &mut self.seen[rank];
        s.last_beat = now;
        if s.beat != beat {
            s.beat = beat;
            s.moved = now;
        }
    }

    fn close(&mut self, rank: usize) {
        self.seen[rank].closed = true;
    }

    /// The verdict at `now`, with rank 0's own progress `own`: silent ranks, then ranks
    /// behind, each group longest first.
    fn verdict(&mut self, own: Beat, now: Instant) -> Vec<Flag> {
        self.record(0, own, now);
        let open = || self.seen.iter().enumerate().filter(|(_, s)| !s.closed);
        let most = open().map(|(_, s)| s.beat.started).max().unwrap_or(0);
        let mut flags: Vec<(Suspicion, Duration, usize)> = open()
            .filter_map(|(rank, s)| {
                let silent = now.saturating_duration_since(s.last_beat);
                let still = now.saturating_duration_since(s.moved);
                if silent > self.silence {
                    Some((Suspicion::Silent, silent, rank))
                } else if s.beat.started < most && !s.beat.inside && still > self.silence {
                    Some((Suspicion::Behind, still, rank))
                } else {
                    None
                }
            })
            .collect();
        flags.sort_by_key(|&(suspicion, span, rank)| (suspicion == Suspicion::Behind, std::cmp::Reverse(span), rank));
        flags
            .into_iter()
            .map(|(suspicion, span, rank)| Flag { rank: rank as u32, suspicion, for_ms: millis(span) })
            .collect()
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// What a member last heard from rank 0.
struct Heard {
    flags: Vec<Flag>,
    /// When `flags` arrived.
    at: Instant,
    /// When the unanswered heartbeat was sent, if one is.
    awaiting: Option<Instant>,
    /// The control link has closed. Rank 0 often exits because it failed at the same moment
    /// as this rank, so its last verdict still counts until it is a silence limit old.
    ended: bool,
}

/// A member's side: the latest verdict, and a condition to wait for a fresher one.
struct Watch {
    heard: Mutex<Heard>,
    fresh: Condvar,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Heard> {
        self.heard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Heard)) {
        change(&mut self.lock());
        self.fresh.notify_all();
    }
}

enum Role {
    Lead(Arc<Mutex<Table>>),
    Follow(Arc<Watch>),
}

/// This rank's part in the liveness service: rank 0 answers every member, a member beats to
/// rank 0. Dropping it ends its threads within moments.
pub(crate) struct Liveness {
    role: Role,
    progress: Arc<Progress>,
    silence: Duration,
    beat: Duration,
    /// Dropped to stop the threads: their waits on `stopped` end at once.
    stop: Option<flume::Sender<()>>,
    stopped: flume::Receiver<()>,
    /// Clones of the control sockets, shut down to wake a thread blocked on one.
    wakers: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

impl Liveness {
    /// Rank 0's side: one thread per member's control link `(rank, connection)`.
    pub(crate) fn lead(members: Vec<(usize, Connection)>, world_size: usize, timeout: Duration) -> Liveness {
        let (silence, beat) = intervals(timeout);
        let table = Arc::new(Mutex::new(Table::new(world_size, silence, Instant::now())));
        let mut live = Liveness::empty(Role::Lead(Arc::clone(&table)), silence, beat);
        for (rank, conn) in members {
            let (table, progress) = (Arc::clone(&table), Arc::clone(&live.progress));
            let closing = Arc::clone(&table);
            let spawned = live.spawn(format!("asgd-beat-0-{rank}"), conn, move |conn, stop| {
                answer(conn, rank, &table, &progress, stop);
                lock(&table).close(rank);
            });
            if !spawned {
                lock(&closing).close(rank);
            }
        }
        live
    }

    /// A member's side: one thread that beats to rank 0 over `conn`.
    pub(crate) fn follow(conn: Connection, rank: usize, world_size: usize, timeout: Duration) -> Liveness {
        let (silence, beat) = intervals(timeout);
        let heard = Heard { flags: Vec::new(), at: Instant::now(), awaiting: None, ended: false };
        let watch = Arc::new(Watch { heard: Mutex::new(heard), fresh: Condvar::new() });
        let mut live = Liveness::empty(Role::Follow(Arc::clone(&watch)), silence, beat);
        let progress = Arc::clone(&live.progress);
        let ending = Arc::clone(&watch);
        let spawned = live.spawn(format!("asgd-beat-{rank}"), conn, move |conn, stop| {
            beat_to_rank_0(conn, world_size, beat, &progress, &watch, stop);
            watch.update(|h| h.ended = true);
        });
        if !spawned {
            ending.update(|h| h.ended = true);
        }
        live
    }

    fn empty(role: Role, silence: Duration, beat: Duration) -> Liveness {
        let (stop, stopped) = flume::bounded(0);
        Liveness {
            role,
            progress: Arc::default(),
            silence,
            beat,
            stop: Some(stop),
            stopped,
            wakers: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// Runs `body` on its own thread with the link; the link is shut down when it returns,
    /// so the other end sees the close. `false` when there is no thread (the OS refused one,
    /// or the socket): then the link is just dropped, and the other end leaves this one out.
    fn spawn(
        &mut self,
        name: String,
        conn: Connection,
        body: impl FnOnce(&mut Connection, &flume::Receiver<()>) + Send + 'static,
    ) -> bool {
        let stop = self.stopped.clone();
        let (Ok(waker), Ok(())) = (conn.try_clone_stream(), conn.set_timeout(self.beat)) else {
            return false;
        };
        let mut conn = conn;
        let spawned = thread::Builder::new().name(name).spawn(move || {
            body(&mut conn, &stop);
            conn.shutdown();
        });
        match spawned {
            Ok(thread) => {
                self.wakers.push(waker);
                self.threads.push(thread);
                true
            }
            Err(_) => false,
        }
    }

    /// The comm thread is starting a collective.
    pub(crate) fn begin(&self) {
        let Beat { started, .. } = self.progress.get();
        self.progress.set(Beat { started: started + 1, inside: true });
    }

    /// The collective begun last has ended, either way.
    pub(crate) fn end(&self) {
        let Beat { started, .. } = self.progress.get();
        self.progress.set(Beat { started, inside: false });
    }

    /// The current verdict, most suspect first. A member waits up to about one beat for a
    /// verdict newer than this call, since the one it holds may be a beat old.
    fn flags(&self) -> Vec<Flag> {
        match &self.role {
            Role::Lead(table) => lock(table).verdict(self.progress.get(), Instant::now()),
            Role::Follow(watch) => {
                let asked = Instant::now();
                let give_up = asked + self.beat + self.beat / 2;
                let mut heard = watch.lock();
                while !heard.ended && heard.at < asked {
                    let left = give_up.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    heard = watch.fresh.wait_timeout(heard, left).unwrap_or_else(|p| p.into_inner()).0;
                }
                let now = Instant::now();
                if heard.ended && now - heard.at > self.silence {
                    // Rank 0 left a while ago; what it said then no longer describes the job.
                    Vec::new()
                } else if !heard.ended && heard.awaiting.is_some_and(|sent| now - sent > self.silence) {
                    // Rank 0 has not answered for the silence limit: it is the silent one.
                    vec![Flag { rank: 0, suspicion: Suspicion::Silent, for_ms: millis(now - heard.at) }]
                } else {
                    let age = millis(now - heard.at);
                    heard.flags.iter().map(|f| Flag { for_ms: f.for_ms.saturating_add(age), ..*f }).collect()
                }
            }
        }
    }

    /// Names the real culprit of a collective that failed with `err`: a timeout, or another
    /// rank's failure notice, becomes [`CommError::Hung`] or [`CommError::Stalled`] naming
    /// the rank the verdict suspects most. A notice that already names a suspected rank is
    /// kept, so every rank names the one the first reporter named; any other error, or a
    /// verdict that suspects nobody, is returned as it is.
    pub(crate) fn name_culprit(&self, err: CommError, timeout: Duration) -> CommError {
        let (op, named): (Op, Option<usize>) = match &err {
            CommError::Timeout { op, .. } => (*op, None),
            CommError::PeerFailed { op, rank, .. } => (*op, Some(*rank)),
            _ => return err,
        };
        let flags = self.flags();
        let Some(first) = flags.first() else { return err };
        if named.is_some_and(|named| flags.iter().any(|f| f.rank as usize == named)) {
            return err;
        }
        let (rank, span) = (first.rank as usize, Duration::from_millis(u64::from(first.for_ms)));
        match first.suspicion {
            Suspicion::Silent => CommError::Hung { rank, op, silent: span, after: timeout },
            Suspicion::Behind => CommError::Stalled { rank, op, behind: span, after: timeout },
        }
    }
}

impl Drop for Liveness {
    /// Ends every heartbeat thread: the stop channel closes, which ends a wait between
    /// beats, and the sockets shut down, which ends a blocked read or write.
    fn drop(&mut self) {
        self.stop = None;
        for waker in &self.wakers {
            let _ = waker.shutdown(Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until `conn` has bytes to read, polling at its read timeout so a stop is noticed.
/// `false` when the link closed, failed, or the service is stopping.
///
/// Peeking leaves a frame whole in the socket: a read timeout inside `read_frame` would lose
/// the bytes already taken. The link is in lock step, so nothing waits in the connection's
/// own read buffer while this peeks.
fn readable(conn: &Connection, stop: &flume::Receiver<()>) -> bool {
    let mut byte = [0u8; 1];
    while !stop.is_disconnected() {
        match conn.stream().peek(&mut byte) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Rank 0's thread for member `rank`: reads a heartbeat, records it, answers with the verdict.
fn answer(conn: &mut Connection, rank: usize, table: &Mutex<Table>, progress: &Progress, stop: &flume::Receiver<()>) {
    while readable(conn, stop) {
        let beat = match conn.read_frame() {
            Ok(Some(frame)) if frame.kind == Kind::Beat => Beat::decode(&frame.payload),
            _ => return,
        };
        let Ok(beat) = beat else { return };
        let now = Instant::now();
        let flags = {
            let mut table = lock(table);
            table.record(rank, beat, now);
            table.verdict(progress.get(), now)
        };
        if conn.write_frame(Kind::Verdict, 0, &encode_verdict(&flags)).is_err() {
            return;
        }
    }
}

/// A member's thread: beats, waits for rank 0's verdict, keeps it, sleeps one beat.
fn beat_to_rank_0(
    conn: &mut Connection,
    world_size: usize,
    interval: Duration,
    progress: &Progress,
    watch: &Watch,
    stop: &flume::Receiver<()>,
) {
    loop {
        if conn.write_frame(Kind::Beat, 0, &progress.get().encode()).is_err() {
            return;
        }
        watch.update(|h| h.awaiting = Some(Instant::now()));
        if !readable(conn, stop) {
            return;
        }
        let flags = match conn.read_frame() {
            Ok(Some(frame)) if frame.kind == Kind::Verdict => decode_verdict(&frame.payload, world_size),
            _ => return,
        };
        let Ok(flags) = flags else { return };
        watch.update(|h| {
            (h.flags, h.at, h.awaiting) = (flags, Instant::now(), None);
        });
        if !matches!(stop.recv_timeout(interval), Err(flume::RecvTimeoutError::Timeout)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::connection::Pacer;
    use std::net::TcpListener;

    const L: Duration = Duration::from_millis(100);

    fn beat(started: u64, inside: bool) -> Beat {
        Beat { started, inside }
    }

    fn ranks(flags: &[Flag]) -> Vec<(u32, Suspicion)> {
        flags.iter().map(|f| (f.rank, f.suspicion)).collect()
    }

    #[test]
    fn intervals_leave_a_beat_and_a_margin_inside_the_timeout() {
        assert_eq!(intervals(Duration::from_secs(2)), (Duration::from_secs(1), Duration::from_millis(250)));
        assert_eq!(intervals(Duration::from_secs(300)), (MAX_SILENCE, MAX_SILENCE / 4));
        for t in [1, 2, 5, 60, 300] {
            let t = Duration::from_secs(t);
            let (silence, beat) = intervals(t);
            assert!(silence + 2 * beat < t, "{t:?}");
        }
    }

    #[test]
    fn silent_ranks_come_first_then_ranks_behind_longest_first() {
        let t0 = Instant::now();
        let mut table = Table::new(4, L, t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        // Everyone in collective 5; rank 3 then falls silent, rank 2 finishes 4 and stops.
        for r in 1..4 {
            table.record(r, beat(5, true), at(10));
        }
        table.record(2, beat(4, false), at(20));
        assert!(table.verdict(beat(5, true), at(50)).is_empty());
        table.record(1, beat(5, true), at(200));
        table.record(2, beat(4, false), at(200));
        let flags = table.verdict(beat(5, true), at(210));
        assert_eq!(ranks(&flags), [(3, Suspicion::Silent), (2, Suspicion::Behind)]);
        assert_eq!((flags[0].for_ms, flags[1].for_ms), (200, 190));
        // A closed link is left out: the ring reports an exit by itself.
        table.close(3);
        assert_eq!(ranks(&table.verdict(beat(5, true), at(210))), [(2, Suspicion::Behind)]);
        // Rank 0 is judged on its own progress, and a rank inside an older collective is
        // waiting, not stalled.
        table.record(2, beat(4, true), at(220));
        table.record(1, beat(6, true), at(220));
        assert!(table.verdict(beat(5, false), at(300)).is_empty());
        table.record(1, beat(6, true), at(400));
        table.record(2, beat(4, true), at(400));
        let flags = table.verdict(beat(5, false), at(420));
        assert_eq!(ranks(&flags), [(0, Suspicion::Behind)]);
        assert_eq!(flags[0].for_ms, 120);
    }

    fn link() -> (Connection, Connection) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let conn = |s| Connection::new(s, 1 << 16, true, Pacer::new(Duration::ZERO, None)).unwrap();
        (conn(client), conn(server))
    }

    fn timeout_from(rank: usize) -> CommError {
        CommError::Timeout { rank, op: Op::AllReduce, after: 2 * L }
    }

    #[test]
    fn a_member_learns_that_rank_0_stopped_calling_collectives_and_drops_fast() {
        let (member_end, lead_end) = link();
        let lead = Liveness::lead(vec![(1, lead_end)], 2, 2 * L);
        let member = Liveness::follow(member_end, 1, 2, 2 * L);
        member.begin();
        member.end();
        member.begin();
        // A timeout before the silence limit has passed keeps its own wording.
        assert!(matches!(member.name_culprit(timeout_from(0), 2 * L), CommError::Timeout { .. }));
        thread::sleep(L + L / 2);
        let named = member.name_culprit(timeout_from(0), 2 * L);
        assert!(matches!(named, CommError::Stalled { rank: 0, .. }), "{named}");
        assert!(named.to_string().contains("rank 0 stopped calling collectives"), "{named}");
        let named = lead.name_culprit(timeout_from(1), 2 * L);
        assert!(matches!(named, CommError::Stalled { rank: 0, .. }), "{named}");
        // A notice that already names a suspect is kept; other errors are left alone.
        let notice = CommError::PeerFailed { rank: 0, op: Op::AllReduce, reporter: 1, reason: "x".into() };
        assert!(matches!(lead.name_culprit(notice, 2 * L), CommError::PeerFailed { .. }));
        let closed = CommError::PeerClosed { rank: 1, op: Op::AllReduce };
        assert!(matches!(lead.name_culprit(closed, 2 * L), CommError::PeerClosed { .. }));
    }

    #[test]
    fn dropping_ends_the_threads_at_once_not_after_a_beat() {
        // A 60 s timeout beats every 2.5 s: a thread that slept out its beat would show.
        let (member_end, lead_end) = link();
        let lead = Liveness::lead(vec![(1, lead_end)], 2, Duration::from_secs(60));
        let member = Liveness::follow(member_end, 1, 2, Duration::from_secs(60));
        thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(member);
        drop(lead);
        assert!(start.elapsed() < Duration::from_millis(500), "drop took {:?}", start.elapsed());
    }

    #[test]
    fn a_silent_rank_0_is_named_and_a_closed_link_names_nobody() {
        let (member_end, mut lead_end) = link();
        let member = Liveness::follow(member_end, 1, 2, 2 * L);
        // Rank 0 reads the first heartbeat and never answers.
        lead_end.set_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(lead_end.read_frame().unwrap().map(|f| f.kind), Some(Kind::Beat));
        thread::sleep(L + L / 2);
        let named = member.name_culprit(timeout_from(1), 2 * L);
        assert!(matches!(named, CommError::Hung { rank: 0, .. }), "{named}");
        assert!(named.to_string().contains("rank 0 is hung (no heartbeat for"), "{named}");
        drop(lead_end);
        let start = Instant::now();
        while !matches!(member.name_culprit(timeout_from(1), 2 * L), CommError::Timeout { .. }) {
            assert!(start.elapsed() < Duration::from_secs(5), "the closed link was not noticed");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_member_that_stops_beating_is_silent_and_one_that_leaves_is_forgotten() {
        let (member_end, lead_end) = link();
        let (quiet_end, quiet_lead_end) = link();
        let lead = Liveness::lead(vec![(1, lead_end), (2, quiet_lead_end)], 3, 2 * L);
        let member = Liveness::follow(member_end, 1, 3, 2 * L);
        thread::sleep(L + L / 2);
        // Rank 2 connected and never beat.
        let named = lead.name_culprit(timeout_from(1), 2 * L);
        assert!(matches!(named, CommError::Hung { rank: 2, .. }), "{named}");
        let named = member.name_culprit(timeout_from(0), 2 * L);
        assert!(matches!(named, CommError::Hung { rank: 2, .. }), "{named}");
        drop(quiet_end);
        let start = Instant::now();
        while !matches!(lead.name_culprit(timeout_from(1), 2 * L), CommError::Timeout { .. }) {
            assert!(start.elapsed() < Duration::from_secs(5), "the closed link was not noticed");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

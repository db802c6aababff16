//! Elastic jobs: model averaging that goes on when a rank dies or hangs, and takes in a rank
//! that joins while the job runs.
//!
//! Rank 0 coordinates. Every other rank keeps one authenticated (and, with a secret, sealed)
//! connection to it, and each averaging round goes through rank 0 as a star: the members send
//! their snapshots, rank 0 sums what arrives, divides by the number of contributions and sends
//! the same average back to every member. Whoever does not deliver its snapshot is out of the
//! job from that round on, and rank 0 knows exactly who that is:
//!
//! - a rank killed (or that exited) closes its connection, so it is dropped at once;
//! - a rank that hangs (stopped, or stuck in a step) is dropped after the comm timeout with no
//!   snapshot from it, and named as hung; if it ever wakes up it is told it was dropped;
//! - a rank that connects while the job runs (a restarted one, with the same `RANK` and the
//!   same settings) is checked like a starting rank, waits for the next round, and receives
//!   that round's average and the step to go on from; it takes part from the round after.
//!
//! Every reply carries the membership (a generation number and the ranks in it), so the
//! members can re-divide the data among themselves. Rank 0 is the one rank the job cannot
//! lose: if it dies the members fail, naming it, as in a fail-stop job.
//!
//! Why a star and not the ring: the ring moves `2 (n - 1) / n` of the model per rank per
//! round against the star's `n - 1` at rank 0, but a ring that loses a rank must stop every
//! rank, agree on who is left and re-dial its links before anyone can go on, and which rank to
//! blame for a stalled ring is a guess from its neighbours. In the star a round is complete
//! when rank 0 has heard from every member or given up on it, membership changes between two
//! rounds with nothing to re-dial, and the rank at fault is the one rank 0 waited for. At the
//! model sizes asgd averages over TCP (a few MB every few steps) rank 0's link is not the
//! bottleneck; fail-stop jobs keep the ring.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::admission::{self, Admitted, Next};
use crate::config::CommConfig;
use crate::error::{CommError, Op};
use crate::frame::Kind;
use crate::handle::{Handle, Reply};
use crate::rendezvous;
use crate::transport::connection::{Connection, LinkError, Mode};
use crate::transport::messages::{AbortNotice, Hello, Purpose};
use crate::transport::socket::listen;

/// Tags carry a 29-bit round number above the 3-bit op code, as the ring's do.
const SEQ_MASK: u32 = (1 << 29) - 1;
/// Longest a rank that joins a running job waits to be let in (the next round may be a few
/// steps away, or the job may be evaluating).
const JOIN_WAIT: Duration = Duration::from_secs(900);
/// Longest an admitted peer may take to send its join request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most settings values a join request may carry.
const MAX_SETTINGS: usize = 1 << 16;

/// The ranks in an elastic job at some round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Counts membership changes: 0 for the job as it started.
    pub generation: u64,
    /// The ranks taking part, in increasing order (rank 0 always first).
    pub ranks: Vec<usize>,
}

impl Membership {
    /// Where `rank` stands among the members (its share of the data), if it is one.
    pub fn position(&self, rank: usize) -> Option<usize> {
        self.ranks.iter().position(|&r| r == rank)
    }
}

/// A membership change, as rank 0 saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The round at whose end it took effect (1 for the first round).
    pub round: u32,
    /// The rank that left or joined.
    pub rank: usize,
    /// Whether it joined (else it left).
    pub joined: bool,
    /// Why it left, or the step it joined at.
    pub detail: String,
    /// Seconds since the job formed.
    pub at_s: f64,
}

/// The model and position a rank that joined a running job starts from.
#[derive(Clone, Debug)]
pub struct JoinedAt {
    /// The step the job had reached when this rank was let in; it trains from there.
    pub step: u64,
    /// The round it was let in at; its first own round is the next.
    pub round: u32,
    /// The average of that round (in the order the ranks' snapshots use).
    pub model: Vec<f32>,
}

/// What must agree between the ranks of an elastic job, checked whenever a rank comes in.
pub struct Agreement {
    /// The settings, as the caller encodes them; compared bit for bit.
    pub settings: Vec<f32>,
    /// Length of the averaged buffers (the model), which must also agree.
    pub model_len: usize,
    /// Words a mismatch for rank 0's log: rank 0's settings, the incoming rank's, and its rank.
    pub describe: fn(ours: &[f32], theirs: &[f32], rank: usize) -> String,
}

struct Request {
    buf: Vec<f32>,
    step: u64,
    reply: flume::Sender<Reply>,
}

/// One rank's membership in an elastic job: averages through rank 0 that survive the loss of
/// any other rank, and let ranks join mid-run (see the module docs).
pub struct Elastic {
    rank: usize,
    world_size: usize,
    membership: Arc<Mutex<Membership>>,
    changes: Arc<Mutex<Vec<Change>>>,
    tx: Option<flume::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Elastic {
    /// Joins the elastic job of `cfg` (`world_size` is the most ranks it may have): rank 0
    /// listens and waits for every other rank to come in, each checked against `agreement`,
    /// or until `cfg.timeout`; another rank dials rank 0 and is either one of the starting
    /// ranks (`None`) or, when the job already runs, let in at the next round (`Some`, with the
    /// model and step to go on from).
    ///
    /// Errors: as [`crate::Communicator::connect`]; a rank refused by rank 0 (other settings,
    /// another model length, its `RANK` already in the job) fails with rank 0's reason, and
    /// rank 0 fails when a starting rank's settings differ.
    pub fn connect(cfg: &CommConfig, agreement: Agreement) -> Result<(Elastic, Option<JoinedAt>), CommError> {
        cfg.validate()?;
        let membership = Arc::new(Mutex::new(Membership { generation: 0, ranks: vec![cfg.rank] }));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = flume::unbounded::<Request>();
        if cfg.world_size == 1 {
            let thread = spawn(cfg.rank, move || serve_alone(rx));
            return Ok((Elastic::new(cfg, membership, changes, tx, thread), None));
        }
        let (setup, joined) = if cfg.rank == 0 {
            (Setup::Coordinator(Coordinator::form(cfg, agreement, membership.clone(), changes.clone())?), None)
        } else {
            let (member, joined) = Member::join(cfg, &agreement, membership.clone())?;
            (Setup::Member(member), joined)
        };
        let thread = match setup {
            Setup::Coordinator(c) => spawn(0, move || c.serve(rx)),
            Setup::Member(m) => spawn(cfg.rank, move || m.serve(rx)),
        };
        Ok((Elastic::new(cfg, membership, changes, tx, thread), joined))
    }

    fn new(
        cfg: &CommConfig,
        membership: Arc<Mutex<Membership>>,
        changes: Arc<Mutex<Vec<Change>>>,
        tx: flume::Sender<Request>,
        thread: Option<JoinHandle<()>>,
    ) -> Elastic {
        Elastic { rank: cfg.rank, world_size: cfg.world_size, membership, changes, tx: Some(tx), thread }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The most ranks the job may have (`WORLD_SIZE`).
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The members as of the last round this rank finished.
    pub fn membership(&self) -> Membership {
        lock(&self.membership).clone()
    }

    /// Every membership change so far (recorded by rank 0 only).
    pub fn changes(&self) -> Vec<Change> {
        lock(&self.changes).clone()
    }

    /// Starts averaging `buf` (this rank's snapshot, taken after `step` steps) over the ranks
    /// that deliver theirs in this round. Every rank must pass buffers of the same length.
    pub fn start_average(&self, buf: Vec<f32>, step: u64) -> Handle<Vec<f32>> {
        let (reply, rx) = flume::bounded(1);
        match &self.tx {
            Some(tx) => match tx.send(Request { buf, step, reply }) {
                Ok(()) => Handle::new(Op::AllReduce, rx, std::convert::identity),
                Err(flume::SendError(req)) => Handle::failed(
                    Op::AllReduce,
                    req.buf,
                    CommError::Shutdown { op: Op::AllReduce },
                    std::convert::identity,
                ),
            },
            None => {
                Handle::failed(Op::AllReduce, buf, CommError::Shutdown { op: Op::AllReduce }, std::convert::identity)
            }
        }
    }

    /// Replaces `buf` with this round's average. Blocks until done.
    ///
    /// Errors: a lost connection to rank 0 (or, on rank 0, nothing: lost members are dropped),
    /// or this rank having been dropped by rank 0.
    pub fn average(&self, buf: &mut Vec<f32>, step: u64) -> Result<(), CommError> {
        let (back, result) = self.start_average(std::mem::take(buf), step).wait_with_buffer();
        *buf = back;
        result
    }
}

impl Drop for Elastic {
    /// Lets queued rounds finish, then closes the connections.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Elastic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elastic").field("rank", &self.rank).field("membership", &self.membership()).finish()
    }
}

enum Setup {
    Coordinator(Coordinator),
    Member(Member),
}

fn spawn(rank: usize, f: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("asgd-elastic-{rank}")).spawn(f).ok()
}

fn serve_alone(rx: flume::Receiver<Request>) {
    for Request { buf, reply, .. } in rx.iter() {
        let _ = reply.send((buf, Ok(())));
    }
}

fn tag_of(round: u32) -> u32 {
    ((round & SEQ_MASK) << 3) | Op::AllReduce.code()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// Messages (the payload of `Kind::Elastic` frames).

#[derive(Debug, Clone, PartialEq)]
enum Msg {
    /// A rank asks to come in: the length of its model and its settings.
    Request { model_len: u64, settings: Vec<f32> },
    /// The job starts with these members.
    Start { members: Vec<u32> },
    /// The job already runs; the rank is let in at the end of round `round`.
    Wait { round: u32 },
    /// The average of round `round` follows; the members from now on.
    Round { round: u32, generation: u64, members: Vec<u32> },
    /// The rank is in from the end of round `round`, at `step`; the average follows.
    Joined { round: u32, step: u64, generation: u64, members: Vec<u32> },
    /// The rank is refused: its settings differ from rank 0's, which are these.
    Differ { settings: Vec<f32> },
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let members = |out: &mut Vec<u8>, m: &[u32]| {
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            m.iter().for_each(|r| out.extend_from_slice(&r.to_le_bytes()));
        };
        match self {
            Msg::Request { model_len, settings } => {
                out.push(1);
                out.extend_from_slice(&model_len.to_le_bytes());
                put_values(&mut out, settings);
            }
            Msg::Differ { settings } => {
                out.push(6);
                put_values(&mut out, settings);
            }
            Msg::Start { members: m } => {
                out.push(2);
                members(&mut out, m);
            }
            Msg::Wait { round } => {
                out.push(3);
                out.extend_from_slice(&round.to_le_bytes());
            }
            Msg::Round { round, generation, members: m } => {
                out.push(4);
                out.extend_from_slice(&round.to_le_bytes());
                out.extend_from_slice(&generation.to_le_bytes());
                members(&mut out, m);
            }
            Msg::Joined { round, step, generation, members: m } => {
                out.push(5);
                out.extend_from_slice(&round.to_le_bytes());
                out.extend_from_slice(&step.to_le_bytes());
                out.extend_from_slice(&generation.to_le_bytes());
                members(&mut out, m);
            }
        }
        out
    }

    fn decode(buf: &[u8]) -> Result<Msg, String> {
        let mut r = Bytes(buf);
        let msg = match r.take(1)?[0] {
            1 => Msg::Request { model_len: r.u64()?, settings: r.values()? },
            6 => Msg::Differ { settings: r.values()? },
            2 => Msg::Start { members: r.members()? },
            3 => Msg::Wait { round: r.u32()? },
            4 => Msg::Round { round: r.u32()?, generation: r.u64()?, members: r.members()? },
            5 => Msg::Joined { round: r.u32()?, step: r.u64()?, generation: r.u64()?, members: r.members()? },
            other => return Err(format!("unknown elastic message {other}")),
        };
        if !r.0.is_empty() {
            return Err(format!("{} bytes past the end of the message", r.0.len()));
        }
        Ok(msg)
    }
}

fn put_values(out: &mut Vec<u8>, values: &[f32]) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    out.extend_from_slice(bytemuck::cast_slice(values));
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the message is shorter than its fields".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short")?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }
    fn values(&mut self) -> Result<Vec<f32>, String> {
        let n = self.u32()? as usize;
        if n > MAX_SETTINGS {
            return Err(format!("{n} settings values is more than {MAX_SETTINGS}"));
        }
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn members(&mut self) -> Result<Vec<u32>, String> {
        let n = self.u32()? as usize;
        if n > MAX_SETTINGS {
            return Err(format!("a membership of {n} ranks"));
        }
        (0..n).map(|_| self.u32()).collect()
    }
}

fn send(conn: &mut Connection, msg: &Msg) -> Result<(), LinkError> {
    conn.write_frame(Kind::Elastic, 0, &msg.encode())
}

fn receive(conn: &mut Connection) -> Result<Msg, LinkError> {
    let frame = conn.expect_frame(Kind::Elastic)?;
    Msg::decode(&frame.payload)
        .map_err(|e| LinkError::Unexpected(format!("an elastic message that does not decode: {e}")))
}

/// Sends `buf` as data frames of at most `chunk` elements.
fn send_data(conn: &mut Connection, tag: u32, buf: &[f32], chunk: usize) -> Result<(), LinkError> {
    buf.chunks(chunk).try_for_each(|c| conn.write_data(tag, c, None))
}

/// Receives `buf.len()` elements sent by [`send_data`] with the same `chunk`.
fn receive_data(conn: &mut Connection, tag: u32, buf: &mut [f32], chunk: usize) -> Result<(), LinkError> {
    let mut scratch = [0.0f32; 1];
    buf.chunks_mut(chunk).try_for_each(|c| conn.read_data(tag, c, Mode::Copy, &mut scratch, false).map(|_| ()))
}

fn members_of(ranks: &[usize]) -> Vec<u32> {
    ranks.iter().map(|&r| r as u32).collect()
}

fn ranks_of(members: &[u32], world_size: usize) -> Result<Vec<usize>, String> {
    let ranks: Vec<usize> = members.iter().map(|&r| r as usize).collect();
    if ranks.iter().any(|&r| r >= world_size) || ranks.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("a membership {ranks:?} that is not increasing ranks below {world_size}"));
    }
    Ok(ranks)
}

// ---------------------------------------------------------------------------------------
// Rank 0.

struct Coordinator {
    cfg: CommConfig,
    agreement: Agreement,
    members: BTreeMap<usize, Connection>,
    /// Let in, waiting for the end of the current round.
    pending: Vec<(usize, Connection)>,
    incoming: flume::Receiver<Admitted>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    round: u32,
    generation: u64,
    membership: Arc<Mutex<Membership>>,
    changes: Arc<Mutex<Vec<Change>>>,
    formed: Instant,
    scratch: Vec<f32>,
}

impl Coordinator {
    /// Listens, and waits until every rank of `cfg.world_size` has come in and agreed.
    fn form(
        cfg: &CommConfig,
        agreement: Agreement,
        membership: Arc<Mutex<Membership>>,
        changes: Arc<Mutex<Vec<Change>>>,
    ) -> Result<Coordinator, CommError> {
        let deadline = Instant::now() + cfg.timeout;
        let master = rendezvous::resolve(&cfg.master_addr, cfg.master_port)?;
        let bind_ip = rendezvous::bind_ip(cfg, &master)?;
        let addr = SocketAddr::new(bind_ip, cfg.master_port);
        let listener = listen(addr, cfg.socket_buffer_bytes).map_err(|source| CommError::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (incoming_tx, incoming) = flume::unbounded();
        let listener = spawn_listener(cfg.clone(), listener, stop.clone(), incoming_tx);
        let mut c = Coordinator {
            cfg: cfg.clone(),
            agreement,
            members: BTreeMap::new(),
            pending: Vec::new(),
            incoming,
            stop,
            listener,
            round: 0,
            generation: 0,
            membership,
            changes,
            formed: Instant::now(),
            scratch: Vec::new(),
        };
        while c.members.len() + 1 < cfg.world_size {
            let admitted = match c.incoming.recv_deadline(deadline) {
                Ok(a) => a,
                Err(_) => {
                    let absent: Vec<usize> = (1..cfg.world_size).filter(|r| !c.members.contains_key(r)).collect();
                    c.shut();
                    return Err(CommError::RendezvousTimeout {
                        after: cfg.timeout,
                        detail: format!("rank 0 is still waiting for ranks {absent:?}"),
                    });
                }
            };
            match c.check(admitted) {
                Ok((rank, conn)) => {
                    c.members.insert(rank, conn);
                }
                Err(Refusal::Settings(rank, theirs)) => {
                    c.shut();
                    return Err(CommError::SettingsDiffer { rank, rank0: c.agreement.settings.clone(), theirs });
                }
                Err(Refusal::Other) => {}
            }
        }
        let ranks: Vec<usize> = std::iter::once(0).chain(c.members.keys().copied()).collect();
        let start = Msg::Start { members: members_of(&ranks) };
        for (&rank, conn) in c.members.iter_mut() {
            let _ = conn.set_timeout(cfg.timeout);
            send(conn, &start).map_err(|e| e.into_comm(rank, Op::Rendezvous, cfg.timeout))?;
        }
        *lock(&c.membership) = Membership { generation: 0, ranks };
        c.formed = Instant::now();
        Ok(c)
    }

    /// Checks a peer that came in: its hello, its request, its settings and model length.
    /// A refused peer is told why; the connection of an accepted one is returned.
    fn check(&mut self, Admitted { mut conn, hello, .. }: Admitted) -> Result<(usize, Connection), Refusal> {
        let cfg = &self.cfg;
        let rank = hello.rank as usize;
        let refuse = |conn: Connection, reason: String| {
            rendezvous::refuse(cfg, conn, hello.rank, reason);
            Err(Refusal::Other)
        };
        if hello.purpose != Purpose::Elastic {
            return refuse(
                conn,
                "it is not in elastic mode and this job is; start every rank with the same flags".into(),
            );
        }
        if hello.world_size as usize != cfg.world_size {
            return refuse(
                conn,
                format!(
                    "it says WORLD_SIZE is {} but rank 0 says {}; start every rank with the same WORLD_SIZE",
                    hello.world_size, cfg.world_size
                ),
            );
        }
        if rank == 0 || rank >= cfg.world_size {
            return refuse(conn, format!("its RANK {rank} is not between 1 and {}", cfg.world_size - 1));
        }
        if self.members.contains_key(&rank) || self.pending.iter().any(|(r, _)| *r == rank) {
            return refuse(conn, format!("rank {rank} is already in the job; give every process its own RANK"));
        }
        let _ = conn.set_timeout(REQUEST_TIMEOUT);
        let (model_len, settings) = match receive(&mut conn) {
            Ok(Msg::Request { model_len, settings }) => (model_len, settings),
            Ok(other) => return refuse(conn, format!("it sent {other:?} where its join request was due")),
            Err(e) => {
                eprintln!("asgd-comm: rank 0 dropped rank {rank}: no join request from it ({e:?})");
                return Err(Refusal::Other);
            }
        };
        let ours = &self.agreement.settings;
        let same = settings.len() == ours.len() && settings.iter().zip(ours).all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            let sentence = (self.agreement.describe)(ours, &settings, rank);
            eprintln!("asgd-comm: rank 0 refused rank {rank} at {}: {sentence}", conn.peer_addr());
            let _ = send(&mut conn, &Msg::Differ { settings: ours.clone() });
            return Err(Refusal::Settings(rank, settings));
        }
        if model_len != self.agreement.model_len as u64 {
            return refuse(
                conn,
                format!("its model has {model_len} values and rank 0's has {}", self.agreement.model_len),
            );
        }
        Ok((rank, conn))
    }

    fn record(&self, rank: usize, joined: bool, detail: String) {
        let ranks = lock(&self.membership).ranks.clone();
        let what = if joined { "joined the job" } else { "left the job" };
        eprintln!(
            "asgd-comm: rank {rank} {what} at round {} ({detail}); {} ranks go on: {ranks:?}",
            self.round,
            ranks.len()
        );
        lock(&self.changes).push(Change {
            round: self.round,
            rank,
            joined,
            detail,
            at_s: self.formed.elapsed().as_secs_f64(),
        });
    }

    fn serve(mut self, rx: flume::Receiver<Request>) {
        for Request { mut buf, step, reply } in rx.iter() {
            self.round_of(&mut buf, step);
            let _ = reply.send((buf, Ok(())));
        }
        self.shut();
    }

    /// One round: gathers the members' snapshots into `buf` (rank 0's own) and averages them,
    /// drops the members that did not deliver, lets in whoever asked since the last round, and
    /// sends the average back to all of them with the new membership.
    fn round_of(&mut self, buf: &mut [f32], step: u64) {
        self.round = self.round.wrapping_add(1);
        let tag = tag_of(self.round);
        let timeout = self.cfg.timeout;
        self.scratch.resize(buf.len(), 0.0);
        let chunk = self.cfg.chunk_elems();
        let mut count = 1usize;
        let mut left = Vec::new();
        for (&rank, conn) in self.members.iter_mut() {
            let _ = conn.set_timeout(timeout);
            match receive_data(conn, tag, &mut self.scratch, chunk) {
                Ok(()) => {
                    buf.iter_mut().zip(&self.scratch).for_each(|(b, s)| *b += s);
                    count += 1;
                }
                Err(e) => left.push((rank, describe_loss(&e, timeout))),
            }
        }
        let scale = 1.0 / count as f32;
        buf.iter_mut().for_each(|x| *x *= scale);
        for (rank, reason) in &left {
            if let Some(mut conn) = self.members.remove(rank) {
                let notice = AbortNotice {
                    suspect: *rank as u32,
                    reporter: 0,
                    op: Op::AllReduce,
                    tampered: false,
                    reason: format!("at round {} ({reason})", self.round),
                };
                let _ = conn.set_timeout(Duration::from_millis(200));
                let _ = conn.write_frame(Kind::Abort, 0, &notice.encode());
            }
        }
        // Peers that came in since the last round join at its end. Checked only now, after the
        // members that left are gone: a rank restarted right after it died asks to come back
        // before rank 0 has seen its old connection close.
        while let Ok(admitted) = self.incoming.try_recv() {
            if let Ok((rank, mut conn)) = self.check(admitted) {
                if send(&mut conn, &Msg::Wait { round: self.round }).is_ok() {
                    self.pending.push((rank, conn));
                }
            }
        }
        let joining = std::mem::take(&mut self.pending);
        let changed = !left.is_empty() || !joining.is_empty();
        if changed {
            self.generation += 1;
        }
        let mut ranks: Vec<usize> =
            std::iter::once(0).chain(self.members.keys().copied()).chain(joining.iter().map(|(r, _)| *r)).collect();
        ranks.sort_unstable();
        *lock(&self.membership) = Membership { generation: self.generation, ranks: ranks.clone() };
        for (rank, reason) in left {
            self.record(rank, false, reason);
        }
        let members = members_of(&ranks);
        let round = Msg::Round { round: self.round, generation: self.generation, members: members.clone() };
        let mut unreachable = Vec::new();
        for (&rank, conn) in self.members.iter_mut() {
            if let Err(e) = send(conn, &round).and_then(|()| send_data(conn, tag, buf, chunk)) {
                unreachable.push((rank, describe_loss(&e, timeout)));
            }
        }
        for (rank, mut conn) in joining {
            let joined = Msg::Joined { round: self.round, step, generation: self.generation, members: members.clone() };
            let _ = conn.set_timeout(timeout);
            match send(&mut conn, &joined).and_then(|()| send_data(&mut conn, tag, buf, chunk)) {
                Ok(()) => {
                    self.members.insert(rank, conn);
                    self.record(rank, true, format!("from step {step}"));
                }
                Err(e) => unreachable.push((rank, describe_loss(&e, timeout))),
            }
        }
        // A member that could not be sent this average is gone; the others learn of it with
        // the next round's membership.
        for (rank, reason) in unreachable {
            self.members.remove(&rank);
            self.generation += 1;
            {
                let mut m = lock(&self.membership);
                m.ranks.retain(|&r| r != rank);
                m.generation = self.generation;
            }
            self.record(rank, false, reason);
        }
    }

    /// Stops listening and tells ranks still waiting to come in that the job is over.
    fn shut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
        for (rank, conn) in self.pending.drain(..) {
            rendezvous::refuse(&self.cfg, conn, rank as u32, "the job finished before this rank could join".into());
        }
        while let Ok(Admitted { conn, hello, .. }) = self.incoming.try_recv() {
            rendezvous::refuse(&self.cfg, conn, hello.rank, "the job finished before this rank could join".into());
        }
        for (_, mut conn) in std::mem::take(&mut self.members) {
            let _ = conn.write_frame(Kind::Bye, 0, &[]);
        }
    }
}

enum Refusal {
    /// Its settings (these, of this rank) differ from rank 0's.
    Settings(usize, Vec<f32>),
    Other,
}

/// Why a member's snapshot did not arrive (or an average could not be sent), in words.
fn describe_loss(e: &LinkError, timeout: Duration) -> String {
    match e {
        LinkError::Closed | LinkError::Cut | LinkError::Bye => "its connection closed".into(),
        LinkError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            format!("hung: nothing from it for {timeout:?}")
        }
        LinkError::Io(io) => format!("its connection failed: {io}"),
        LinkError::Abort(n) => format!("it stopped: {}", n.reason),
        LinkError::Forged => "a frame from it failed its authentication tag".into(),
        other => format!("{other:?}"),
    }
}

/// Admits connections on `listener` until `stop`, handing each authenticated peer to `tx`.
fn spawn_listener(
    cfg: CommConfig,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    tx: flume::Sender<Admitted>,
) -> Option<JoinHandle<()>> {
    spawn(0, move || {
        // Until told to stop: a rank may come back at any time while the job runs.
        let forever = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
        let result = admission::admit(&cfg, &listener, forever, Some(&stop), |admitted| {
            let _ = tx.send(admitted);
            Next::Listen
        });
        if let Err(e) = result {
            eprintln!("asgd-comm: rank 0 stopped letting ranks in: its listener failed: {e}");
        }
    })
}

// ---------------------------------------------------------------------------------------
// Every other rank.

struct Member {
    cfg: CommConfig,
    conn: Connection,
    round: u32,
    membership: Arc<Mutex<Membership>>,
}

impl Member {
    fn join(
        cfg: &CommConfig,
        agreement: &Agreement,
        membership: Arc<Mutex<Membership>>,
    ) -> Result<(Member, Option<JoinedAt>), CommError> {
        let deadline = Instant::now() + cfg.timeout;
        let master = rendezvous::resolve(&cfg.master_addr, cfg.master_port)?;
        // Only for its refusal of a public address without a secret: a member listens nowhere.
        rendezvous::bind_ip(cfg, &master)?;
        let hello = Hello {
            purpose: Purpose::Elastic,
            rank: cfg.rank as u32,
            world_size: cfg.world_size as u32,
            port: 0,
            advertise: None,
        };
        let mut conn = rendezvous::dial(cfg, &master, 0, &hello, deadline)?;
        let link = |e: LinkError| match e {
            LinkError::Abort(notice) => CommError::Config(notice.reason),
            LinkError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                CommError::RendezvousTimeout {
                    after: cfg.timeout,
                    detail: "rank 0 never let this rank in, so some ranks did not join".into(),
                }
            }
            other => other.into_comm(0, Op::Rendezvous, cfg.timeout),
        };
        let request = Msg::Request { model_len: agreement.model_len as u64, settings: agreement.settings.clone() };
        send(&mut conn, &request).map_err(link)?;
        // Rank 0 answers once every starting rank is in, which may take until the deadline.
        let _ = conn.set_timeout(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
        let protocol = |detail: String| CommError::Protocol { rank: 0, op: Op::Rendezvous, detail };
        let (round, ranks, joined) = match receive(&mut conn).map_err(link)? {
            Msg::Start { members } => (0, ranks_of(&members, cfg.world_size).map_err(protocol)?, None),
            Msg::Differ { settings } => {
                return Err(CommError::SettingsDiffer {
                    rank: cfg.rank,
                    rank0: settings,
                    theirs: agreement.settings.clone(),
                })
            }
            Msg::Wait { round } => {
                eprintln!("asgd-comm: rank {} joins the running job at the end of round {round}", cfg.rank);
                let _ = conn.set_timeout(JOIN_WAIT.max(cfg.timeout));
                let (round, step, generation, members) = match receive(&mut conn).map_err(link)? {
                    Msg::Joined { round, step, generation, members } => (round, step, generation, members),
                    other => return Err(protocol(format!("it sent {other:?} where the joining round was due"))),
                };
                let ranks = ranks_of(&members, cfg.world_size).map_err(protocol)?;
                let mut model = vec![0.0; agreement.model_len];
                receive_data(&mut conn, tag_of(round), &mut model, cfg.chunk_elems()).map_err(link)?;
                *lock(&membership) = Membership { generation, ranks: ranks.clone() };
                (round, ranks, Some(JoinedAt { step, round, model }))
            }
            other => return Err(protocol(format!("it sent {other:?} where the start of the job was due"))),
        };
        if joined.is_none() {
            *lock(&membership) = Membership { generation: 0, ranks };
        }
        Ok((Member { cfg: cfg.clone(), conn, round, membership }, joined))
    }

    fn serve(mut self, rx: flume::Receiver<Request>) {
        let mut failed: Option<String> = None;
        for Request { mut buf, reply, .. } in rx.iter() {
            let result = match &failed {
                Some(why) => Err(CommError::Aborted(why.clone())),
                None => {
                    let r = self.round_of(&mut buf);
                    if let Err(e) = &r {
                        failed = Some(e.to_string());
                    }
                    r
                }
            };
            let _ = reply.send((buf, result));
        }
        if failed.is_none() {
            let _ = self.conn.write_frame(Kind::Bye, 0, &[]);
        }
    }

    fn round_of(&mut self, buf: &mut [f32]) -> Result<(), CommError> {
        self.round = self.round.wrapping_add(1);
        let tag = tag_of(self.round);
        let (timeout, chunk) = (self.cfg.timeout, self.cfg.chunk_elems());
        // Rank 0 may wait for each hung member for a whole timeout before it answers.
        let patience = timeout.saturating_mul(self.cfg.world_size as u32);
        let _ = self.conn.set_timeout(patience);
        let rank = self.cfg.rank;
        let err = |e: LinkError| match e {
            LinkError::Abort(n) if n.suspect as usize == rank && n.reporter == 0 => {
                CommError::Dropped { reason: n.reason }
            }
            e => e.into_comm(0, Op::AllReduce, patience),
        };
        send_data(&mut self.conn, tag, buf, chunk).map_err(err)?;
        let (round, generation, members) = match receive(&mut self.conn).map_err(err)? {
            Msg::Round { round, generation, members } => (round, generation, members),
            other => {
                return Err(CommError::Protocol {
                    rank: 0,
                    op: Op::AllReduce,
                    detail: format!("it sent {other:?} where an average was due"),
                })
            }
        };
        if round != self.round {
            return Err(CommError::Protocol {
                rank: 0,
                op: Op::AllReduce,
                detail: format!("it answered round {round} while this rank is at round {}", self.round),
            });
        }
        let ranks = ranks_of(&members, self.cfg.world_size).map_err(|detail| CommError::Protocol {
            rank: 0,
            op: Op::AllReduce,
            detail,
        })?;
        receive_data(&mut self.conn, tag, buf, chunk).map_err(err)?;
        let mut m = lock(&self.membership);
        if m.generation != generation {
            eprintln!("asgd-comm: rank {} now trains with ranks {ranks:?}", self.cfg.rank);
        }
        *m = Membership { generation, ranks };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        let msgs = [
            Msg::Request { model_len: 1 << 40, settings: vec![1.5, -0.0, f32::MAX] },
            Msg::Start { members: vec![0, 1, 3] },
            Msg::Wait { round: 7 },
            Msg::Round { round: 9, generation: 2, members: vec![0, 2] },
            Msg::Joined { round: 12, step: 96, generation: 3, members: vec![0, 1, 2, 3] },
            Msg::Differ { settings: vec![97.0, 0.0] },
        ];
        for m in msgs {
            let bytes = m.encode();
            assert_eq!(Msg::decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(Msg::decode(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(Msg::decode(&long).is_err());
        }
        assert!(Msg::decode(&[9]).is_err());
        // A length field far past the payload is refused before anything is allocated.
        let mut huge = vec![1];
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Msg::decode(&huge).is_err());
    }

    #[test]
    fn memberships_must_be_increasing_ranks_of_the_job() {
        assert_eq!(ranks_of(&[0, 1, 3], 4).unwrap(), vec![0, 1, 3]);
        assert!(ranks_of(&[0, 4], 4).is_err());
        assert!(ranks_of(&[0, 2, 1], 4).is_err());
        assert!(ranks_of(&[0, 0], 4).is_err());
        let m = Membership { generation: 1, ranks: vec![0, 1, 3] };
        assert_eq!((m.position(3), m.position(2)), (Some(2), None));
    }
}

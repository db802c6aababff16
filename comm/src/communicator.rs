//! The public face of the comm layer: a [`Communicator`] owns a comm thread, which owns the
//! sockets and runs collectives one after another in the order they were started.

use std::thread::JoinHandle;

use crate::collectives::Ring;
use crate::config::CommConfig;
use crate::error::{CommError, Op};
use crate::handle::{Handle, Reply};
use crate::plan;
use crate::rendezvous;

/// Tags carry a 29-bit sequence number above the 3-bit op code.
const SEQ_MASK: u32 = (1 << 29) - 1;

#[derive(Debug, Clone, Copy)]
enum Work {
    AllReduce { average: bool },
    Broadcast { root: usize },
    AllGather { seg_len: usize },
    Barrier,
}

impl Work {
    fn op(self) -> Op {
        match self {
            Work::AllReduce { .. } => Op::AllReduce,
            Work::Broadcast { .. } => Op::Broadcast,
            Work::AllGather { .. } => Op::AllGather,
            Work::Barrier => Op::Barrier,
        }
    }
}

struct Request {
    work: Work,
    buf: Vec<f32>,
    reply: flume::Sender<Reply>,
}

/// One rank's membership in a job, and the collectives it can run with the others.
///
/// Every rank must start the same collectives, with buffers of the same length, in the same
/// order (as with MPI and NCCL); a mismatch is detected and reported as
/// [`CommError::Protocol`]. Collectives run on a dedicated comm thread in start order, so
/// `start_*` returns at once and training can go on while data moves. Every blocking step has
/// the configured timeout: when a peer dies or hangs, each rank gets an error naming a rank
/// and the operation instead of hanging. After such an error the communicator refuses further
/// collectives ([`CommError::Aborted`]).
///
/// `Communicator` is `Send + Sync`; several threads may start collectives, but then the order
/// they are started in must still agree across ranks.
pub struct Communicator {
    rank: usize,
    world_size: usize,
    tx: Option<flume::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Communicator {
    /// Joins the job described by the environment ([`CommConfig::from_env`]).
    ///
    /// Errors: a bad variable ([`CommError::Config`]), no secret on a non-loopback address
    /// ([`CommError::Insecure`]), or any rendezvous failure.
    pub fn from_env() -> Result<Communicator, CommError> {
        Communicator::connect(&CommConfig::from_env()?)
    }

    /// Joins the job: rank 0 listens on `master_addr:master_port`, the others dial it, every
    /// connection is authenticated, and each rank connects to its successor in the ring.
    /// Blocks until all `world_size` ranks have joined or `config.timeout` has passed.
    ///
    /// Errors: see [`Communicator::from_env`].
    pub fn connect(config: &CommConfig) -> Result<Communicator, CommError> {
        config.validate()?;
        let ring = rendezvous::establish(config)?;
        Ok(Communicator::spawn(config.rank, config.world_size, ring, config.chunk_elems()))
    }

    /// A world of one rank, without any socket: every collective returns its input (averages
    /// divide by 1). Useful for single-process runs and tests.
    pub fn single() -> Communicator {
        Communicator::spawn(0, 1, None, 1 << 18)
    }

    fn spawn(rank: usize, world_size: usize, ring: Option<Ring>, chunk_elems: usize) -> Communicator {
        let (tx, rx) = flume::unbounded::<Request>();
        let thread = std::thread::Builder::new()
            .name(format!("asgd-comm-{rank}"))
            .spawn(move || serve(ring, rx, chunk_elems))
            .ok();
        // Without a thread the channel's receiver is gone and every start fails with Shutdown.
        Communicator { rank, world_size, tx: Some(tx), thread }
    }

    /// This rank, `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks in the job.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    fn start<T>(&self, work: Work, buf: Vec<f32>, finish: fn(Vec<f32>) -> T) -> Handle<T> {
        let op = work.op();
        let (reply, rx) = flume::bounded(1);
        match &self.tx {
            Some(tx) => match tx.send(Request { work, buf, reply }) {
                Ok(()) => Handle::new(op, rx, finish),
                Err(flume::SendError(req)) => Handle::failed(op, req.buf, CommError::Shutdown { op }, finish),
            },
            None => Handle::failed(op, buf, CommError::Shutdown { op }, finish),
        }
    }

    /// Starts an element-wise sum of `buf` over all ranks (ring reduce-scatter then
    /// all-gather, chunked and pipelined). On completion every rank holds the same sum.
    pub fn start_all_reduce(&self, buf: Vec<f32>) -> Handle<Vec<f32>> {
        self.start(Work::AllReduce { average: false }, buf, std::convert::identity)
    }

    /// Starts an element-wise mean of `buf` over all ranks (the sum divided by `world_size`),
    /// e.g. to average a model snapshot while training goes on.
    pub fn start_average(&self, buf: Vec<f32>) -> Handle<Vec<f32>> {
        self.start(Work::AllReduce { average: true }, buf, std::convert::identity)
    }

    /// Starts copying `root`'s `buf` into every rank's `buf` (all must have the same length).
    /// An out-of-range `root` fails at once with [`CommError::InvalidArgument`].
    pub fn start_broadcast(&self, buf: Vec<f32>, root: usize) -> Handle<Vec<f32>> {
        if root >= self.world_size {
            let err = CommError::InvalidArgument {
                op: Op::Broadcast,
                detail: format!("root rank {root} does not exist in a world of {}", self.world_size),
            };
            return Handle::failed(Op::Broadcast, buf, err, std::convert::identity);
        }
        self.start(Work::Broadcast { root }, buf, std::convert::identity)
    }

    /// Starts gathering every rank's `local` (all the same length `m`) into one vector of
    /// `world_size * m` elements in rank order; `local`'s allocation is reused for it.
    pub fn start_all_gather(&self, mut local: Vec<f32>) -> Handle<Vec<f32>> {
        let seg_len = local.len();
        let Some(total) = seg_len.checked_mul(self.world_size) else {
            let err = CommError::InvalidArgument { op: Op::AllGather, detail: "the gathered length overflows".into() };
            return Handle::failed(Op::AllGather, local, err, std::convert::identity);
        };
        local.resize(total, 0.0);
        local.copy_within(0..seg_len, self.rank * seg_len);
        self.start(Work::AllGather { seg_len }, local, std::convert::identity)
    }

    /// Starts a barrier: it completes on a rank only after every rank has started it.
    pub fn start_barrier(&self) -> Handle<()> {
        self.start(Work::Barrier, vec![0.0], |_| ())
    }

    /// Sums `buf` element-wise over all ranks, in place. Blocks until done.
    ///
    /// Errors: see [`Communicator`]; on error `buf` holds unspecified values.
    pub fn all_reduce(&self, buf: &mut Vec<f32>) -> Result<(), CommError> {
        let (back, result) = self.start_all_reduce(std::mem::take(buf)).wait_with_buffer();
        *buf = back;
        result
    }

    /// Replaces `buf` with its element-wise mean over all ranks. Blocks until done.
    ///
    /// Errors: as [`Communicator::all_reduce`].
    pub fn average(&self, buf: &mut Vec<f32>) -> Result<(), CommError> {
        let (back, result) = self.start_average(std::mem::take(buf)).wait_with_buffer();
        *buf = back;
        result
    }

    /// Copies `root`'s `buf` into every rank's `buf`. Blocks until done.
    ///
    /// Errors: as [`Communicator::all_reduce`], or [`CommError::InvalidArgument`] for a bad root.
    pub fn broadcast(&self, buf: &mut Vec<f32>, root: usize) -> Result<(), CommError> {
        let (back, result) = self.start_broadcast(std::mem::take(buf), root).wait_with_buffer();
        *buf = back;
        result
    }

    /// Returns every rank's `local` concatenated in rank order. Blocks until done.
    ///
    /// Errors: as [`Communicator::all_reduce`].
    pub fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        self.start_all_gather(local.to_vec()).wait()
    }

    /// Returns once every rank has reached the barrier.
    ///
    /// Errors: as [`Communicator::all_reduce`].
    pub fn barrier(&self) -> Result<(), CommError> {
        self.start_barrier().wait()
    }
}

impl Drop for Communicator {
    /// Lets queued collectives finish, says goodbye to the successor and closes the sockets.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator").field("rank", &self.rank).field("world_size", &self.world_size).finish()
    }
}

/// The comm thread: runs requests in arrival order until every sender is gone.
fn serve(mut ring: Option<Ring>, requests: flume::Receiver<Request>, chunk_elems: usize) {
    let mut seq: u32 = 0;
    let mut failed: Option<String> = None;
    for Request { work, mut buf, reply } in requests.iter() {
        let op = work.op();
        let result = match (&failed, ring.as_mut()) {
            (Some(why), _) => Err(CommError::Aborted(why.clone())),
            // A world of one: the input already is the result.
            (None, None) => Ok(()),
            (None, Some(ring)) => {
                let tag = (seq << 3) | op.code();
                seq = seq.wrapping_add(1) & SEQ_MASK;
                let result = run(ring, work, &mut buf, tag, chunk_elems);
                if let Err(e) = &result {
                    if !e.leaves_ring_intact() {
                        ring.send_abort(e, op);
                        failed = Some(e.to_string());
                    }
                }
                result
            }
        };
        // The caller may have dropped its handle; that is allowed.
        let _ = reply.send((buf, result));
    }
    if let Some(ring) = ring {
        ring.close(failed.is_none());
    }
}

fn run(ring: &mut Ring, work: Work, buf: &mut [f32], tag: u32, chunk_elems: usize) -> Result<(), CommError> {
    let (n, rank) = (ring.world_size, ring.rank);
    match work {
        Work::AllReduce { average } => {
            ring.run(&plan::all_reduce(buf.len(), n, rank, chunk_elems), buf, Op::AllReduce, tag)?;
            if average {
                let scale = 1.0 / n as f32;
                buf.iter_mut().for_each(|x| *x *= scale);
            }
            Ok(())
        }
        Work::Broadcast { root } => {
            ring.run(&plan::broadcast(buf.len(), n, rank, root, chunk_elems), buf, Op::Broadcast, tag)
        }
        Work::AllGather { seg_len } => {
            ring.run(&plan::all_gather(seg_len, n, rank, chunk_elems), buf, Op::AllGather, tag)
        }
        // A one-element sum reaches every rank only after every rank has added to it.
        Work::Barrier => ring.run(&plan::all_reduce(buf.len(), n, rank, chunk_elems), buf, Op::Barrier, tag),
    }
}

//! The errors of the comm layer: one enum, one sentence each, naming the rank, the operation
//! and the fix where there is one.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::frame::FrameError;

/// The operation a rank was doing when something went wrong; it appears in error messages and,
/// as a small code, in the tag of every data frame so that ranks calling different collectives
/// notice it instead of mixing up their buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Joining the job: connecting to rank 0, authenticating, forming the ring.
    Rendezvous,
    /// [`crate::Communicator::all_reduce`] and [`crate::Communicator::average`].
    AllReduce,
    /// [`crate::Communicator::broadcast`].
    Broadcast,
    /// [`crate::Communicator::all_gather`].
    AllGather,
    /// [`crate::Communicator::barrier`].
    Barrier,
}

impl Op {
    /// The code carried in frame tags (3 bits).
    pub(crate) fn code(self) -> u32 {
        match self {
            Op::Rendezvous => 0,
            Op::AllReduce => 1,
            Op::Broadcast => 2,
            Op::AllGather => 3,
            Op::Barrier => 4,
        }
    }

    /// The inverse of [`Op::code`]; `None` for codes no build uses.
    pub(crate) fn from_code(code: u32) -> Option<Op> {
        Some(match code {
            0 => Op::Rendezvous,
            1 => Op::AllReduce,
            2 => Op::Broadcast,
            3 => Op::AllGather,
            4 => Op::Barrier,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Rendezvous => "rendezvous",
            Op::AllReduce => "all_reduce",
            Op::Broadcast => "broadcast",
            Op::AllGather => "all_gather",
            Op::Barrier => "barrier",
        })
    }
}

/// Everything that can go wrong in the comm layer.
///
/// After any error raised by a collective (everything but [`CommError::Config`],
/// [`CommError::Insecure`] and [`CommError::InvalidArgument`]) the communicator is unusable:
/// later collectives return [`CommError::Aborted`], as the ring may hold half-sent data.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// A variable or config field has a value that cannot be used; the message names it and
    /// says what to set.
    #[error("{0}")]
    Config(String),

    /// No shared secret and a non-loopback address to listen on, without the opt-in.
    #[error(
        "no shared secret is set and this rank would listen on {addr}, which is not a loopback \
         address; set ASGD_SECRET (or ASGD_SECRET_FILE) to the same value on every rank, or set \
         ASGD_ALLOW_INSECURE=1 to accept unauthenticated peers on a network you trust"
    )]
    Insecure {
        /// The address this rank would have listened on.
        addr: IpAddr,
    },

    /// The listening socket could not be opened.
    #[error("could not listen on {addr}: {source}; choose a free MASTER_PORT or another ASGD_BIND_ADDR")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },

    /// `MASTER_ADDR` could not be turned into an address.
    #[error("could not resolve MASTER_ADDR {host:?}: {detail}; set it to an IP address or a host name this machine can resolve")]
    Resolve {
        /// The host name as given.
        host: String,
        /// What the resolver said.
        detail: String,
    },

    /// The job did not assemble in time.
    #[error(
        "rendezvous did not finish within {after:?}: {detail}; start all WORLD_SIZE ranks with \
         the same MASTER_ADDR and MASTER_PORT, or raise ASGD_COMM_TIMEOUT_S"
    )]
    RendezvousTimeout {
        /// The configured timeout.
        after: Duration,
        /// What was still missing.
        detail: String,
    },

    /// The handshake with a peer failed: it did not answer in time, it holds another
    /// secret, or it does not speak this protocol. The reason says which, and the fix.
    #[error("authentication with {peer} failed: {reason}")]
    Auth {
        /// The peer's address (and rank, when known).
        peer: String,
        /// Why it failed and what to do, one clause.
        reason: String,
    },

    /// A sealed frame failed its authentication tag: something on the network path between
    /// two ranks altered, replayed, reordered or dropped data.
    #[error("{}", tampered_message(*from, *to, *op))]
    Tampered {
        /// The rank that sent the frame.
        from: usize,
        /// The rank that received it, when another rank reported it; `None` when this rank did.
        to: Option<usize>,
        /// The collective in progress.
        op: Op,
    },

    /// No byte moved for the whole timeout.
    #[error(
        "timed out after {after:?} waiting for rank {rank} during {op}; that rank (or one before \
         it in the ring) is dead or hung, or ASGD_COMM_TIMEOUT_S is too short"
    )]
    Timeout {
        /// The rank this rank was reading from or writing to.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// The configured timeout.
        after: Duration,
    },

    /// A collective stopped making progress, and rank 0's liveness service heard no heartbeat
    /// from `rank` for longer than its silence limit: that process is stopped or stuck (a
    /// rank whose control link to rank 0 stays silent names rank 0).
    #[error(
        "rank {rank} is hung (no heartbeat for {:.1} s), so {op} gave up after {after:?}; its \
         process is stopped or stuck with its sockets open: resume or restart it, or raise \
         ASGD_COMM_TIMEOUT_S if it was only busy",
        .silent.as_secs_f64()
    )]
    Hung {
        /// The rank that went silent.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// How long it had been silent.
        silent: Duration,
        /// The configured timeout.
        after: Duration,
    },

    /// A collective stopped making progress, and rank 0's liveness service sees `rank` alive
    /// but no longer starting collectives while another rank has started more.
    #[error(
        "rank {rank} stopped calling collectives (it has started fewer than another rank and not \
         moved for {:.1} s), so {op} gave up after {after:?}; every rank must call the same \
         collectives in the same order, so look for what holds that rank outside them",
        .behind.as_secs_f64()
    )]
    Stalled {
        /// The rank that stopped calling collectives.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// How long it had not moved while behind.
        behind: Duration,
        /// The configured timeout.
        after: Duration,
    },

    /// The peer's end of the connection closed.
    #[error("rank {rank} closed its connection during {op}; it has probably exited or crashed")]
    PeerClosed {
        /// The rank whose connection closed.
        rank: usize,
        /// The collective in progress.
        op: Op,
    },

    /// A socket error other than a close or a timeout.
    #[error("the connection to rank {rank} failed during {op}: {source}")]
    Io {
        /// The rank at the other end.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// What the OS said.
        source: io::Error,
    },

    /// Another rank detected a failure and passed the news along the ring.
    #[error("rank {rank} failed during {op}, as reported by rank {reporter}: {reason}")]
    PeerFailed {
        /// The rank believed to have failed.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// The rank that first saw the failure.
        reporter: usize,
        /// Its error message.
        reason: String,
    },

    /// The peer sent something this protocol does not allow at this point.
    #[error("rank {rank} sent an invalid message during {op}: {detail}")]
    Protocol {
        /// The rank that sent it.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// What was wrong.
        detail: String,
    },

    /// A frame failed to decode (bad header, too large, checksum, cut short).
    #[error("rank {rank} sent a bad frame during {op}: {source}")]
    Frame {
        /// The rank that sent it.
        rank: usize,
        /// The collective in progress.
        op: Op,
        /// What the decoder found.
        source: FrameError,
    },

    /// An earlier collective failed, so this communicator can no longer be used.
    #[error("this communicator stopped after an earlier failure ({0}); restart the job")]
    Aborted(String),

    /// A collective was called with arguments it cannot accept; nothing was sent.
    #[error("invalid arguments to {op}: {detail}")]
    InvalidArgument {
        /// The collective called.
        op: Op,
        /// What was wrong.
        detail: String,
    },

    /// A rank coming into an elastic job holds settings other than rank 0's; both sides get
    /// both sets (as the caller encoded them), so that each can say which setting differs.
    #[error("rank {rank}'s settings differ from rank 0's; every rank of a job must use the same settings")]
    SettingsDiffer {
        /// The rank refused.
        rank: usize,
        /// Rank 0's settings.
        rank0: Vec<f32>,
        /// The refused rank's.
        theirs: Vec<f32>,
    },

    /// Rank 0 of an elastic job dropped this rank (it hung past the timeout, or could not be
    /// reached), and the others went on without it.
    #[error("rank 0 dropped this rank from the elastic job: {reason}; the others went on without it, and a rank started again with the same RANK and settings joins back")]
    Dropped {
        /// Why, and at which round.
        reason: String,
    },

    /// The comm thread is gone (it panicked, or the communicator is shutting down).
    #[error("the comm thread has stopped, so {op} cannot run; this is a bug in asgd-comm")]
    Shutdown {
        /// The collective that could not run.
        op: Op,
    },
}

fn tampered_message(from: usize, to: Option<usize>, op: Op) -> String {
    let link = match to {
        Some(to) => format!("the link from rank {from} to rank {to}"),
        None => format!("the link from rank {from} to this rank"),
    };
    format!(
        "{link} delivered a frame during {op} that fails its authentication tag, so something between \
         the two ranks altered, replayed, reordered or dropped data; stop trusting this run's results \
         and check the network path between them (proxies, middleboxes, faulty hardware)"
    )
}

impl CommError {
    /// The rank this error blames, if any: the one that timed out, closed, or was reported
    /// failed by another rank.
    pub fn suspect_rank(&self) -> Option<usize> {
        match self {
            CommError::Timeout { rank, .. }
            | CommError::Hung { rank, .. }
            | CommError::Stalled { rank, .. }
            | CommError::PeerClosed { rank, .. }
            | CommError::Io { rank, .. }
            | CommError::PeerFailed { rank, .. }
            | CommError::Protocol { rank, .. }
            | CommError::Frame { rank, .. } => Some(*rank),
            CommError::Tampered { from, .. } => Some(*from),
            _ => None,
        }
    }

    /// Whether the communicator stays usable after this error (nothing went on the wire).
    pub(crate) fn leaves_ring_intact(&self) -> bool {
        matches!(self, CommError::InvalidArgument { .. } | CommError::Aborted(_) | CommError::Shutdown { .. })
    }
}

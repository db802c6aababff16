//! The group of processes a run belongs to: a process on its own, or one rank of a job
//! joined from the environment (torchrun's, Slurm's or Open MPI's variables).

use std::time::Duration;

use asgd_comm::{CommConfig, CommError, Communicator};
use asgd_engine::train::Shard;

/// An emulated slower network between the processes of a job (for experiments on one
/// machine); `Default` is the network as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NetEmulation {
    /// Added to every message.
    pub delay: Option<Duration>,
    /// Bandwidth limit in MB/s.
    pub rate_mbps: Option<f64>,
}

/// How this process trains with others: its communicator, rank and world size.
pub struct Job {
    comm: Communicator,
}

impl Job {
    /// A process on its own (a world of one).
    pub fn single() -> Self {
        Self { comm: Communicator::single() }
    }

    /// Joins the job the environment describes (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
    /// `MASTER_PORT`, or Slurm's or Open MPI's variables; see [`CommConfig::from_env`]), or
    /// a world of one without them. Blocks until every rank has joined.
    pub fn from_env(net: NetEmulation) -> Result<Self, CommError> {
        let mut cfg = CommConfig::from_env()?;
        if cfg.world_size <= 1 {
            return Ok(Self::single());
        }
        if let Some(d) = net.delay {
            cfg.net_delay = d;
        }
        if net.rate_mbps.is_some() {
            cfg.net_rate_mbps = net.rate_mbps;
        }
        Ok(Self { comm: Communicator::connect(&cfg)? })
    }

    /// A job over a communicator the caller connected.
    pub fn from_communicator(comm: Communicator) -> Self {
        Self { comm }
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of processes.
    pub fn world(&self) -> usize {
        self.comm.world_size()
    }

    /// Whether this process trains with others.
    pub fn is_distributed(&self) -> bool {
        self.world() > 1
    }

    /// This process's share of the data.
    pub fn shard(&self) -> Shard {
        Shard { rank: self.rank(), world: self.world() }
    }

    /// The communicator, for collectives of the caller's own.
    pub fn communicator(&self) -> &Communicator {
        &self.comm
    }
}

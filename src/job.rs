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
    link: Link,
}

enum Link {
    /// A fail-stop job: the ring, formed when the job was joined.
    Ring(Communicator),
    /// An elastic job: averages through rank 0, joined when the run starts (the settings and
    /// the model, which every rank coming in is checked against, are known then).
    Elastic(Box<CommConfig>),
}

impl Job {
    /// A process on its own (a world of one).
    pub fn single() -> Self {
        Self { link: Link::Ring(Communicator::single()) }
    }

    /// Joins the job the environment describes (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
    /// `MASTER_PORT`, or Slurm's or Open MPI's variables; see [`CommConfig::from_env`]), or
    /// a world of one without them. Blocks until every rank has joined.
    pub fn from_env(net: NetEmulation) -> Result<Self, CommError> {
        match Self::config_from_env(net)? {
            None => Ok(Self::single()),
            Some(cfg) => Ok(Self { link: Link::Ring(Communicator::connect(&cfg)?) }),
        }
    }

    /// An elastic job from the environment, as [`Job::from_env`] reads it: a rank that dies or
    /// hangs is dropped and the others go on, and a rank started again (same `RANK`, same
    /// settings) comes back in while the job runs (see [`asgd_comm::Elastic`]). `WORLD_SIZE`
    /// is the most ranks the job has; rank 0 must stay. The ranks meet when [`crate::run`]
    /// starts, which checks every rank's settings and model against rank 0's. Local SGD and
    /// DaSGD run elastic; the other algorithms are refused.
    pub fn elastic_from_env(net: NetEmulation) -> Result<Self, CommError> {
        match Self::config_from_env(net)? {
            None => Ok(Self::single()),
            Some(cfg) => {
                cfg.validate()?;
                Ok(Self { link: Link::Elastic(Box::new(cfg)) })
            }
        }
    }

    fn config_from_env(net: NetEmulation) -> Result<Option<CommConfig>, CommError> {
        let mut cfg = CommConfig::from_env()?;
        if cfg.world_size <= 1 {
            return Ok(None);
        }
        if let Some(d) = net.delay {
            cfg.net_delay = d;
        }
        if net.rate_mbps.is_some() {
            cfg.net_rate_mbps = net.rate_mbps;
        }
        Ok(Some(cfg))
    }

    /// A job over a communicator the caller connected.
    pub fn from_communicator(comm: Communicator) -> Self {
        Self { link: Link::Ring(comm) }
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        match &self.link {
            Link::Ring(c) => c.rank(),
            Link::Elastic(cfg) => cfg.rank,
        }
    }

    /// The number of processes (for an elastic job, the most it may have).
    pub fn world(&self) -> usize {
        match &self.link {
            Link::Ring(c) => c.world_size(),
            Link::Elastic(cfg) => cfg.world_size,
        }
    }

    /// Whether this process trains with others.
    pub fn is_distributed(&self) -> bool {
        self.world() > 1
    }

    /// Whether a lost rank leaves the others training ([`Job::elastic_from_env`]).
    pub fn is_elastic(&self) -> bool {
        matches!(self.link, Link::Elastic(_))
    }

    /// This process's share of the data at the start.
    pub fn shard(&self) -> Shard {
        Shard { rank: self.rank(), world: self.world(), live: None }
    }

    /// The communicator, for collectives of the caller's own; `None` for an elastic job,
    /// whose ranks meet only when the run starts.
    pub fn communicator(&self) -> Option<&Communicator> {
        match &self.link {
            Link::Ring(c) => Some(c),
            Link::Elastic(_) => None,
        }
    }

    pub(crate) fn elastic_config(&self) -> Option<&CommConfig> {
        match &self.link {
            Link::Elastic(cfg) => Some(cfg),
            Link::Ring(_) => None,
        }
    }
}

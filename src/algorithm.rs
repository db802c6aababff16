//! The training algorithms as values: which one, and the settings that belong to it.
//!
//! [`AlgorithmKind`] names an algorithm (and is where its user-facing name comes from);
//! [`Algorithm`] is one with its settings, ready for [`crate::run`]. The defaults here are
//! what the algorithms are known to need (see each one's documentation); the `asgd` binary's
//! flags default to them.

use std::fmt;

use asgd_engine::train::{AsyncConfig, Decoupling, DelaySpec, StaleLr, Weights};

/// The six algorithms, without their settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlgorithmKind {
    /// Synchronous SGD; with several replicas in a process, lock-step data parallel; across
    /// processes, DDP (gradients all-reduced every step).
    Sync,
    /// Partial decoupled ASGD: forward and backward threads, layer-wise asynchronous updates.
    Pdasgd,
    /// Asynchronous SGD with one whole-model update after the full backward pass.
    Hogwild,
    /// Local SGD: models averaged across processes, blocking, every `period` steps.
    LocalSgd,
    /// DaSGD: local SGD whose average is applied `delay` steps after it started.
    Dasgd,
    /// LASGD: asynchronous lanes inside each process, models averaged across processes.
    Lasgd,
}

impl AlgorithmKind {
    /// Every algorithm, in the order the documentation lists them.
    pub const ALL: [AlgorithmKind; 6] =
        [Self::Sync, Self::Pdasgd, Self::Hogwild, Self::LocalSgd, Self::Dasgd, Self::Lasgd];

    /// The algorithm's name as users write it (`sync`, `pdasgd`, `hogwild`, `localsgd`,
    /// `dasgd`, `lasgd`); [`AlgorithmKind::parse`] reads it back.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Pdasgd => "pdasgd",
            Self::Hogwild => "hogwild",
            Self::LocalSgd => "localsgd",
            Self::Dasgd => "dasgd",
            Self::Lasgd => "lasgd",
        }
    }

    /// Parses a [`AlgorithmKind::name`].
    pub fn parse(s: &str) -> Result<Self, asgd_engine::EngineError> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            asgd_engine::EngineError::InvalidArgument(format!(
                "unknown algorithm '{s}'; use one of {}",
                names.join(", ")
            ))
        })
    }

    /// Whether replicas update without waiting for each other inside a process (the
    /// decoupled lanes of PD-ASGD, Hogwild and LASGD).
    pub fn is_asynchronous(self) -> bool {
        matches!(self, Self::Pdasgd | Self::Hogwild | Self::Lasgd)
    }

    /// Whether the algorithm runs across processes ([`AlgorithmKind::Pdasgd`] and
    /// [`AlgorithmKind::Hogwild`] run inside one; LASGD is their form across processes).
    pub fn runs_across_processes(self) -> bool {
        !matches!(self, Self::Pdasgd | Self::Hogwild)
    }

    /// The SGD momentum to use when the caller has no better value: 0.9 for all. With the
    /// published PD-ASGD (live weights, no warm-up) 0.9 diverged on MNIST and 0.5 lost 2.3
    /// points to SGD; with weight prediction ([`Weights::Predict`], the default lanes) and a
    /// warm-up, 0.9 ends within 0.5 points of SGD (BENCHMARKS.md).
    pub fn default_momentum(self) -> f32 {
        0.9
    }

    /// SGD's learning rate for `model` when the caller gives none: 0.05, but 0.02 for
    /// convolutional networks under PD-ASGD and Hogwild. Measured on MNIST with weight
    /// prediction, momentum 0.9 and the warm-up: the MLP ended within 0.4 points of SGD at
    /// 0.05 and 1.8 points below at 0.02; LeNet-5 was unstable at 0.05 and within 0.2 points at
    /// 0.02 (BENCHMARKS.md). The ResNets take LeNet-5's rate, not measured on them yet.
    pub fn default_sgd_lr(self, model: &asgd_models::ModelConfig) -> f32 {
        match (self, model) {
            (Self::Pdasgd | Self::Hogwild, asgd_models::ModelConfig::Mlp { .. }) => 0.05,
            (Self::Pdasgd | Self::Hogwild, _) => 0.02,
            _ => 0.05,
        }
    }

    /// Steps of linear learning-rate warm-up when the caller gives none: 400 for PD-ASGD
    /// and Hogwild (stale gradients make the first steps the least stable), none otherwise
    /// (LASGD's recipe, with no queue, needs none).
    pub fn default_warmup(self) -> u64 {
        match self {
            Self::Pdasgd | Self::Hogwild => 400,
            _ => 0,
        }
    }
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The lanes of one replica of an asynchronous algorithm (PD-ASGD, Hogwild, LASGD).
///
/// The default is one forward and two backward threads (a backward pass costs about two
/// forward passes, the ratio the PD-ASGD paper uses) with one batch queued between them, the
/// scheduled rate whatever the staleness, and weight prediction: the forward pass reads a
/// copy of the parameters moved ahead along the optimiser's direction by the expected
/// staleness. That closed PD-ASGD's gap to SGD (MLP -0.38, LeNet-5 -0.15 points on MNIST);
/// [`AsyncSettings::published`] is the paper's method, with the live parameters. With a queue
/// of 2 PD-ASGD diverged on the MNIST MLP; with 1 it trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsyncSettings {
    /// Forward threads per replica (at least 1).
    pub fwd_threads: usize,
    /// Backward threads per replica (at least 1).
    pub bwd_threads: usize,
    /// Batches that may wait between a replica's forward and backward threads; 0: a forward
    /// pass waits for a free backward thread (with one of each, staleness is at most 1).
    pub queue: usize,
    /// Which parameter values a batch's forward and backward passes read.
    pub weights: Weights,
    /// How an update's staleness scales its learning rate.
    pub stale_lr: StaleLr,
}

impl Default for AsyncSettings {
    fn default() -> Self {
        Self { weights: Weights::Predict, ..Self::published() }
    }
}

impl AsyncSettings {
    /// The PD-ASGD paper's lanes: as the default, with the live parameters.
    pub fn published() -> Self {
        let c = AsyncConfig::default();
        Self {
            fwd_threads: c.fwd_threads,
            bwd_threads: c.bwd_threads,
            queue: c.queue,
            weights: Weights::Live,
            stale_lr: c.stale_lr,
        }
    }

    /// The best lanes measured for `kind`: the default, but for LASGD one backward thread and
    /// no queue, so that a batch is at most one update stale inside each process (97.51%
    /// against DDP's 97.85% on 4 processes, BENCHMARKS.md).
    pub fn for_kind(kind: AlgorithmKind) -> Self {
        match kind {
            AlgorithmKind::Lasgd => Self { bwd_threads: 1, queue: 0, ..Self::default() },
            _ => Self::default(),
        }
    }

    /// The engine's configuration of the decoupled loop.
    pub(crate) fn config(&self, decoupling: Decoupling, delays: DelaySpec) -> AsyncConfig {
        AsyncConfig {
            decoupling,
            fwd_threads: self.fwd_threads,
            bwd_threads: self.bwd_threads,
            queue: self.queue,
            delays,
            stale_lr: self.stale_lr,
            weights: self.weights,
        }
    }
}

/// Model averaging across processes: every `period` steps a snapshot is averaged, and the
/// average is applied `delay` steps after it started (`delay < period`).
///
/// The default is an average every 8 steps, applied 2 steps after it started. A longer
/// delay hides a slower network (BENCHMARKS.md measures delays of 4 and 6 against 50 ms
/// messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Averaging {
    /// Steps between averages (at least 1).
    pub period: u64,
    /// Steps between the start of an average and its use (DaSGD; for LASGD the latest use,
    /// sooner when it is back); smaller than `period`; 0 waits for every average.
    pub delay: u64,
}

impl Default for Averaging {
    fn default() -> Self {
        Self { period: 8, delay: 2 }
    }
}

impl Averaging {
    /// Checks that each average is applied before the next one starts.
    pub fn check(&self) -> Result<(), crate::TrainError> {
        if self.period == 0 || self.delay >= self.period {
            return Err(crate::TrainError::Averaging { period: self.period, delay: self.delay });
        }
        Ok(())
    }
}

/// An algorithm with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Synchronous SGD: one replica, one command encoder per step; several replicas in one
    /// process: lock-step data parallel (gradients averaged every step); across processes,
    /// DDP with the all-reduce overlapping the backward pass.
    Sync,
    /// PD-ASGD (Teguemne Fokam et al., arXiv 2410.05985), inside one process.
    Pdasgd(AsyncSettings),
    /// Hogwild-style ASGD (whole-model updates), inside one process.
    Hogwild(AsyncSettings),
    /// Local SGD: averages every `period` steps, blocking. In one process, plain SGD.
    LocalSgd {
        /// Steps between averages.
        period: u64,
    },
    /// DaSGD (Zhou et al., arXiv 2006.00441): `w <- avg + (w - snapshot)` `delay` steps after
    /// the snapshot. In one process, plain SGD.
    Dasgd(Averaging),
    /// LASGD (Avidor et al., arXiv 2203.13085): PD-ASGD lanes in each process, averaged across
    /// processes, overlapped with training. In one process, its local part: PD-ASGD.
    Lasgd {
        /// The lanes inside each process.
        lanes: AsyncSettings,
        /// The averaging across processes.
        averaging: Averaging,
    },
}

impl Algorithm {
    /// `kind` with the settings that belong to it taken from `lanes` and `averaging`.
    pub fn new(kind: AlgorithmKind, lanes: AsyncSettings, averaging: Averaging) -> Self {
        match kind {
            AlgorithmKind::Sync => Self::Sync,
            AlgorithmKind::Pdasgd => Self::Pdasgd(lanes),
            AlgorithmKind::Hogwild => Self::Hogwild(lanes),
            AlgorithmKind::LocalSgd => Self::LocalSgd { period: averaging.period },
            AlgorithmKind::Dasgd => Self::Dasgd(averaging),
            AlgorithmKind::Lasgd => Self::Lasgd { lanes, averaging },
        }
    }

    /// `kind` with its default settings ([`AsyncSettings::for_kind`]).
    pub fn with_defaults(kind: AlgorithmKind) -> Self {
        Self::new(kind, AsyncSettings::for_kind(kind), Averaging::default())
    }

    /// Which algorithm this is.
    pub fn kind(&self) -> AlgorithmKind {
        match self {
            Self::Sync => AlgorithmKind::Sync,
            Self::Pdasgd(_) => AlgorithmKind::Pdasgd,
            Self::Hogwild(_) => AlgorithmKind::Hogwild,
            Self::LocalSgd { .. } => AlgorithmKind::LocalSgd,
            Self::Dasgd(_) => AlgorithmKind::Dasgd,
            Self::Lasgd { .. } => AlgorithmKind::Lasgd,
        }
    }

    /// Its user-facing name ([`AlgorithmKind::name`]).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// [`AlgorithmKind::default_momentum`].
    pub fn default_momentum(&self) -> f32 {
        self.kind().default_momentum()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_settings_follow_the_kind() {
        for k in AlgorithmKind::ALL {
            assert_eq!(AlgorithmKind::parse(k.name()).unwrap(), k);
            assert_eq!(Algorithm::with_defaults(k).kind(), k);
        }
        assert!(AlgorithmKind::parse("adam").unwrap_err().to_string().contains("sync, pdasgd"));
        let avg = Averaging { period: 4, delay: 0 };
        assert_eq!(
            Algorithm::new(AlgorithmKind::LocalSgd, AsyncSettings::default(), avg),
            Algorithm::LocalSgd { period: 4 }
        );
        assert!(Averaging { period: 4, delay: 4 }.check().is_err() && avg.check().is_ok());
        assert_eq!(AsyncSettings::default().bwd_threads, 2);
    }
}

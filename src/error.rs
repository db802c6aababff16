//! The error of a training run ([`crate::run`]): typed, so that a caller can tell a diverged
//! run from a dead peer from a bad setting, and say in its own words what to change.

use asgd_comm::CommError;
use asgd_engine::EngineError;

use crate::algorithm::AlgorithmKind;

/// Why a run failed. Each message is one sentence naming the thing; what to change is the
/// caller's to add (the `asgd` binary names its flags).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The training loss stopped being a finite number: the learning rate or the momentum
    /// is too high for this model (and staleness) — or a warm-up is missing.
    #[error("the training loss became {loss} at step {step}")]
    Diverged {
        /// Steps taken when the loss was read back.
        step: u64,
        /// The mean training loss read back (NaN or infinite).
        loss: f64,
    },
    /// Joining the job or a collective failed (a peer down, a wrong secret, a timeout).
    #[error(transparent)]
    Comm(#[from] CommError),
    /// An algorithm that runs inside one process (PD-ASGD, Hogwild) was asked to run across
    /// several; LASGD is their form across processes.
    #[error("{algorithm} runs inside one process; across processes use lasgd (asynchronous lanes in each process, averaged across processes)")]
    OneProcessOnly {
        /// The algorithm asked for.
        algorithm: AlgorithmKind,
    },
    /// Several replicas per process across processes, which only LASGD runs.
    #[error("{algorithm} trains one replica per process across processes, not {replicas}; only lasgd runs several")]
    ReplicasAcrossProcesses {
        /// The algorithm asked for.
        algorithm: AlgorithmKind,
        /// Replicas given to this process.
        replicas: usize,
    },
    /// An elastic job asked of an algorithm that cannot drop or take in ranks mid-run: DDP
    /// needs every rank at every step, PD-ASGD and Hogwild run in one process.
    #[error("{algorithm} cannot run elastic; localsgd, dasgd and lasgd can")]
    NotElastic {
        /// The algorithm asked for.
        algorithm: AlgorithmKind,
    },
    /// Stopping at the target accuracy across processes: the ranks must all run the same
    /// steps, and only rank 0 evaluates.
    #[error("stopping at the target accuracy works in one process only: ranks must all run the same steps")]
    StopAtTargetAcrossProcesses,
    /// Not one batch per step fits in the training set (shared by `world` processes).
    #[error("the batch size {batch} is larger than the {samples} training samples{}", shared(*world))]
    BatchTooLarge {
        /// Samples per step.
        batch: usize,
        /// Training samples.
        samples: usize,
        /// Processes sharing them.
        world: usize,
    },
    /// An averaging delay not smaller than its period (or a period of 0).
    #[error("an average's delay ({delay} steps) must be smaller than its period ({period} steps), and the period at least 1")]
    Averaging {
        /// Steps between averages.
        period: u64,
        /// Steps between an average's start and its use.
        delay: u64,
    },
    /// A rank of a job runs with a setting that differs from rank 0's (another algorithm,
    /// averaging, model, batch, seed, dataset, optimiser or length); found on every rank alike
    /// before training.
    #[error("rank {rank} runs with {setting} {value} but rank 0 with {expected}; every rank of a job must use the same settings")]
    SettingsDiffer {
        /// The setting's key (`algo`, `avg_period`, `batch`, ...).
        setting: String,
        /// The lowest rank whose value differs.
        rank: usize,
        /// That rank's value (`(none)` where it has no such setting).
        value: String,
        /// Rank 0's value (`(none)` where it has no such setting).
        expected: String,
    },
    /// Anything else the engine reports (device, data, checkpoint, shapes, arguments).
    #[error(transparent)]
    Engine(EngineError),
}

fn shared(world: usize) -> String {
    if world > 1 {
        format!(" shared by {world} processes")
    } else {
        String::new()
    }
}

impl From<EngineError> for TrainError {
    /// Lifts the engine's typed cases: a divergence, and a comm error that a step algorithm
    /// or periodic hook raised inside a training loop.
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Diverged { step, loss } => Self::Diverged { step, loss },
            EngineError::External(inner) => match inner.downcast::<CommError>() {
                Ok(comm) => Self::Comm(*comm),
                Err(other) => Self::Engine(EngineError::External(other)),
            },
            other => Self::Engine(other),
        }
    }
}

/// A comm failure inside a training loop, carried through the engine whole (see
/// [`TrainError::from`]).
pub(crate) fn comm_err(e: CommError) -> EngineError {
    EngineError::External(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_lift_to_their_typed_cases() {
        let lifted = TrainError::from(EngineError::Diverged { step: 3, loss: f64::NAN });
        assert!(matches!(lifted, TrainError::Diverged { step: 3, loss } if loss.is_nan()));
        let comm = TrainError::from(comm_err(CommError::Aborted("rank 2 closed".into())));
        assert!(matches!(&comm, TrainError::Comm(CommError::Aborted(m)) if m == "rank 2 closed"), "{comm:?}");
        let other = TrainError::from(EngineError::External("not comm".into()));
        assert!(matches!(&other, TrainError::Engine(EngineError::External(_))), "{other:?}");
        assert_eq!(other.to_string(), "not comm");
        let batch = TrainError::BatchTooLarge { batch: 500, samples: 1437, world: 4 };
        assert_eq!(
            batch.to_string(),
            "the batch size 500 is larger than the 1437 training samples shared by 4 processes"
        );
    }
}

//! One entry point for every algorithm: [`run`] picks the training loop that runs a
//! [`RunSpec`]'s [`Algorithm`] in this process or across the processes of a [`Job`].
//!
//! | algorithm | one process | across processes |
//! |---|---|---|
//! | sync | SGD (one replica), lock-step data parallel (several, or injected delays) | DDP: gradient all-reduce every step |
//! | pdasgd, hogwild | the decoupled lanes, layer-wise or whole-model updates | refused: use lasgd |
//! | localsgd, dasgd | plain SGD on the first replica (nothing to average with) | SGD steps with periodic averaging |
//! | lasgd | its local part: PD-ASGD lanes | PD-ASGD lanes, averaged across processes |

use std::time::Duration;

use asgd_engine::data::Splits;
use asgd_engine::optim::{OptimConfig, Optimizer};
use asgd_engine::train::{
    train_data_parallel, train_decoupled, train_decoupled_with, train_steps, train_sync, undelayed_step_time,
    Checkpoint, Decoupling, DelaySpec, Event, Observer, Position, StepAlgorithm, Summary, TrainConfig,
};
use asgd_engine::{Device, EngineError, Model};
use asgd_models::ModelConfig;

use crate::algorithm::{Algorithm, AlgorithmKind};
use crate::distributed::{AveragingStep, DdpStep, Delayed, LasgdAveraging};
use crate::error::TrainError;
use crate::job::Job;

/// How a process's replicas map to devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lanes {
    /// Every lane of every replica submits to one device (one queue).
    #[default]
    Shared,
    /// Each replica's lanes run on a device of its own, opened from the same adapter;
    /// updates then cross devices through the host.
    Separate,
}

impl Lanes {
    /// Both mappings.
    pub const ALL: [Lanes; 2] = [Self::Shared, Self::Separate];

    /// `shared` or `separate`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Separate => "separate",
        }
    }
}

/// Everything about a run but the model and the data.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The algorithm and its settings.
    pub algorithm: Algorithm,
    /// Replicas (workers) in this process, each with its own lanes; several run lock-step
    /// data parallel under sync and asynchronously under pdasgd, hogwild and lasgd.
    pub workers: usize,
    /// Where the replicas run.
    pub lanes: Lanes,
    /// Emulated slow devices; across processes `worker=N` names rank N.
    pub delays: DelaySpec,
    /// The optimiser and its hyper-parameters (its learning rate is the schedule's base).
    pub optim: OptimConfig,
    /// Epochs, batch, schedule, evaluation, checkpoints (its `lr` is replaced by the
    /// optimiser's). Its `shard` is
    /// the job's; across processes only rank 0 evaluates and writes the checkpoint.
    pub config: TrainConfig,
    /// Where the run starts (a checkpoint's `meta.position` when resuming, with its
    /// `meta.elapsed` as `config.elapsed`).
    pub start: Position,
}

impl RunSpec {
    /// `algorithm` with `optim` (whose learning rate becomes the schedule's base), one replica
    /// on one device, no delays, from the start.
    pub fn new(algorithm: Algorithm, optim: OptimConfig, config: TrainConfig) -> Self {
        Self {
            algorithm,
            optim,
            workers: 1,
            lanes: Lanes::Shared,
            delays: DelaySpec::default(),
            config,
            start: Position::default(),
        }
    }

    /// Checks that this run can go ahead on `splits` in `job` (what [`run`] checks first), so
    /// that a caller can refuse it before it builds replicas: a batch that fits the data, a
    /// valid averaging, delays that name existing workers (ranks, across processes), and
    /// across processes an algorithm that runs there, with one replica per process but for
    /// LASGD and no stop at the target accuracy.
    pub fn check(&self, splits: &Splits, job: &Job) -> Result<(), TrainError> {
        self.validate(splits, job, self.workers)
    }

    fn validate(&self, splits: &Splits, job: &Job, replicas: usize) -> Result<(), TrainError> {
        if replicas == 0 {
            return Err(EngineError::InvalidArgument("a run needs at least one replica".into()).into());
        }
        let batch = self.config.batch;
        if batch == 0 {
            return Err(EngineError::InvalidArgument("the batch size must be at least 1".into()).into());
        }
        let (samples, world) = (splits.train.len(), job.world());
        if samples / batch / world == 0 {
            return Err(TrainError::BatchTooLarge { batch, samples, world });
        }
        if world == 1 {
            self.delays.check_workers(replicas)?;
            return Ok(());
        }
        let kind = self.algorithm.kind();
        if job.is_elastic() && !matches!(kind, AlgorithmKind::LocalSgd | AlgorithmKind::Dasgd | AlgorithmKind::Lasgd) {
            return Err(TrainError::NotElastic { algorithm: kind });
        }
        if self.config.stop_at_target {
            return Err(TrainError::StopAtTargetAcrossProcesses);
        }
        if replicas > 1 && kind != AlgorithmKind::Lasgd {
            return Err(TrainError::ReplicasAcrossProcesses { algorithm: kind, replicas });
        }
        if !kind.runs_across_processes() {
            return Err(TrainError::OneProcessOnly { algorithm: kind });
        }
        self.delays.check_workers(world)?;
        match self.algorithm {
            Algorithm::LocalSgd { period } => crate::Averaging { period, delay: 0 }.check(),
            Algorithm::Dasgd(averaging) | Algorithm::Lasgd { averaging, .. } => averaging.check(),
            _ => Ok(()),
        }
    }

    /// One model and optimiser per worker, all initialised from `seed` so that all start
    /// equal, on `dev` or (separate lanes) on devices of their own opened from its adapter.
    /// The optimiser is the run's (`optim`).
    pub fn build_replicas(
        &self,
        dev: &Device,
        model: &ModelConfig,
        splits: &Splits,
        seed: u64,
    ) -> Result<Vec<Replica>, TrainError> {
        (0..self.workers)
            .map(|w| {
                let d = if w == 0 || self.lanes == Lanes::Shared { dev.clone() } else { dev.open_sibling()? };
                Replica::build(&d, model, splits, seed, self.optim)
            })
            .collect()
    }
}

/// A model and its optimiser: one worker's copy of what is trained.
pub struct Replica {
    /// The model, on the worker's device.
    pub model: Model,
    /// Its optimiser and the optimiser's state.
    pub optim: Box<dyn Optimizer>,
}

impl Replica {
    /// `model` for `splits`' input shape and classes, initialised from `seed`.
    pub fn build(
        dev: &Device,
        model: &ModelConfig,
        splits: &Splits,
        seed: u64,
        optim: OptimConfig,
    ) -> Result<Self, TrainError> {
        let model = model.build(dev, splits.train.shape, splits.train.classes, seed)?;
        let optim = optim.build(&model);
        Ok(Self { model, optim })
    }

    /// Loads a checkpoint's parameters and optimiser state into this replica.
    pub fn restore(&self, ck: &Checkpoint) -> Result<(), TrainError> {
        ck.restore_model(&self.model)?;
        ck.restore_optimizer(&self.model, self.optim.as_ref())?;
        Ok(())
    }
}

/// Trains `replicas` (as [`RunSpec::build_replicas`] made them) on `splits` with
/// `spec.algorithm`, in this process or across `job`'s processes, reporting to `observer`.
///
/// Across processes the ranks first compare the settings that must agree (algorithm and
/// averaging, model, data, batch, seed, optimiser, length, start) and all fail with
/// [`TrainError::SettingsDiffer`] when one rank's differ from rank 0's. Every rank trains its
/// share of the data (step `s` of rank `r` trains batch `s * world + r` of the shared seeded
/// order), only rank 0 evaluates and writes the checkpoint, and every algorithm ends with the
/// same model on every rank.
pub fn run(
    spec: &RunSpec,
    replicas: &[Replica],
    splits: &Splits,
    job: &Job,
    observer: &mut Observer,
) -> Result<Summary, TrainError> {
    let params = replicas.first().map_or(0, |r| r.model.num_params());
    let settings = crate::settings::Settings::of(spec, params, splits);
    if let Some(comm) = job.communicator().filter(|_| job.is_distributed()) {
        // Before anything else, so that a rank whose settings differ fails every rank alike.
        crate::settings::agree(comm, &settings)?;
    }
    spec.validate(splits, job, replicas.len())?;
    let mut cfg = spec.config.clone();
    // The optimiser's rate is the schedule's base: one source for it.
    cfg.lr = spec.optim.lr();
    cfg.shard = job.shard();
    if job.rank() != 0 {
        cfg.evaluate = false;
        cfg.checkpoint = None;
    }
    let refs: Vec<(&Model, &dyn Optimizer)> = replicas.iter().map(|r| (&r.model, r.optim.as_ref())).collect();
    if let Some(comm_cfg) = job.elastic_config() {
        return run_elastic(spec, &refs, splits, cfg, comm_cfg, &settings, observer);
    }
    if let Some(comm) = job.communicator().filter(|_| job.is_distributed()) {
        return run_averaged(spec, &refs, splits, &cfg, comm.into(), Some(comm), observer);
    }
    let (model, sgd) = refs[0];
    let start = spec.start;
    let delays = spec.delays.clone();
    let decoupled = |d: Decoupling, lanes: &crate::AsyncSettings, obs: &mut Observer| {
        train_decoupled(&refs, splits, &cfg, &lanes.config(d, delays.clone()), start, obs)
    };
    Ok(match &spec.algorithm {
        Algorithm::Sync if refs.len() == 1 && delays.is_empty() => {
            train_sync(model, sgd, splits, &cfg, start, observer)?
        }
        Algorithm::Sync => train_data_parallel(&refs, splits, &cfg, &delays, start, observer)?,
        Algorithm::Pdasgd(lanes) => decoupled(Decoupling::LayerWise, lanes, observer)?,
        Algorithm::Hogwild(lanes) => decoupled(Decoupling::WholeModel, lanes, observer)?,
        // LASGD in a single process is its local part: PD-ASGD lanes.
        Algorithm::Lasgd { lanes, .. } => decoupled(Decoupling::LayerWise, lanes, observer)?,
        // With one process there is nothing to average with: plain SGD.
        Algorithm::LocalSgd { .. } | Algorithm::Dasgd(_) => train_sync(model, sgd, splits, &cfg, start, observer)?,
    })
}

/// An elastic job: the ranks meet now, checked against rank 0's settings and model; a rank
/// let in mid-run starts from the job's current average and step.
fn run_elastic(
    spec: &RunSpec,
    refs: &[(&Model, &dyn Optimizer)],
    splits: &Splits,
    mut cfg: TrainConfig,
    comm_cfg: &asgd_comm::CommConfig,
    settings: &crate::settings::Settings,
    obs: &mut Observer,
) -> Result<Summary, TrainError> {
    let model_len = refs[0].0.averaged().iter().map(|(_, t)| t.numel()).sum();
    let agreement =
        asgd_comm::Agreement { settings: settings.to_values()?, model_len, describe: crate::settings::describe };
    let (elastic, joined) = asgd_comm::Elastic::connect(comm_cfg, agreement).map_err(|e| match e {
        asgd_comm::CommError::SettingsDiffer { rank, rank0, theirs } => crate::settings::differ(&rank0, &theirs, rank),
        other => other.into(),
    })?;
    let membership = elastic.membership();
    let position = membership.position(comm_cfg.rank).unwrap_or(comm_cfg.rank);
    let live = asgd_engine::train::LiveShard::new(position, membership.ranks.len());
    cfg.shard.live = Some(live.clone());
    let mut start = spec.start;
    if let Some(j) = &joined {
        // Where the others are: their average, and the step they reached. The optimiser's
        // state starts afresh (momentum is local to each rank in these algorithms).
        for (m, _) in refs {
            m.write_flat(&j.model)?;
        }
        start = Position::after(j.step, cfg.steps_per_epoch(splits.train.len()));
    }
    let averager = crate::distributed::Averager::Elastic { elastic: &elastic, shard: &live };
    let spec = RunSpec { start, ..spec.clone() };
    run_averaged(&spec, refs, splits, &cfg, averager, None, obs)
}

/// The loops across processes: `averager` carries the model averages, `comm` (a fail-stop
/// job's) also the gradients of DDP and the barrier before measuring a base step time.
fn run_averaged(
    spec: &RunSpec,
    refs: &[(&Model, &dyn Optimizer)],
    splits: &Splits,
    cfg: &TrainConfig,
    averager: crate::distributed::Averager<'_>,
    comm: Option<&asgd_comm::Communicator>,
    obs: &mut Observer,
) -> Result<Summary, TrainError> {
    let (rank, start) = (cfg.shard.rank, spec.start);
    let (model, sgd) = refs[0];
    let delays = spec.delays.for_rank(rank);
    // A factor scales the step time measured with every rank computing at once, after a
    // barrier, so that it does not depend on what the other ranks happen to be doing
    // (loading, or waiting in their first collective: measured alone, rank 1's base came out
    // several times smaller under sync than under localsgd). An elastic job has no barrier:
    // its ranks measure on their own.
    let base = if spec.delays.needs_base_step() {
        if let Some(comm) = comm {
            comm.barrier()?;
        }
        let t = undelayed_step_time(model, &model.plan(cfg.batch, true)?)?;
        if delays.needs_base_step() {
            t
        } else {
            Duration::ZERO
        }
    } else {
        Duration::ZERO
    };
    let sampler = delays.sampler(rank, cfg.seed, base);
    let steps = |algo: &mut dyn StepAlgorithm, obs: &mut dyn FnMut(&Event) -> asgd_engine::Result<()>| {
        let mut delayed = Delayed { inner: algo, sampler };
        train_steps(model, sgd, splits, cfg, start, &mut delayed, obs)
    };
    Ok(match &spec.algorithm {
        Algorithm::Sync => match comm {
            Some(comm) => steps(&mut DdpStep::new(comm), obs)?,
            None => return Err(TrainError::NotElastic { algorithm: AlgorithmKind::Sync }),
        },
        Algorithm::LocalSgd { period } => steps(&mut AveragingStep::new(averager, model, *period, 0)?, obs)?,
        Algorithm::Dasgd(avg) => steps(&mut AveragingStep::new(averager, model, avg.period, avg.delay)?, obs)?,
        Algorithm::Lasgd { lanes, averaging } => {
            let acfg = lanes.config(Decoupling::LayerWise, delays);
            let models: Vec<&Model> = refs.iter().map(|(m, _)| *m).collect();
            let mut avg = LasgdAveraging::new(averager, models, averaging.period, averaging.delay, start.step)?;
            train_decoupled_with(refs, splits, cfg, &acfg, start, Some(&mut avg), obs)?
        }
        Algorithm::Pdasgd(_) | Algorithm::Hogwild(_) => {
            unreachable!("refused by validate: they run inside one process")
        }
    })
}

//! `asgd train`: train a model on a dataset with one of the algorithms.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use asgd::engine::io::atomic;
use asgd::engine::io::metrics::MetricsWriter;
use asgd::engine::optim::OptimConfig;
use asgd::engine::train::{DelaySpec, StaleLr, Summary, Weights};
use asgd::{
    load_checkpoint, Algorithm, AlgorithmKind, AsyncSettings, Averaging, CheckpointMeta, Event, Job, Lanes,
    ModelConfig, NetEmulation, Position, RunSpec, Schedule, TrainConfig,
};
use clap::builder::PossibleValue;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::common::{accuracy, positive, secs, sizes, DataArgs, DeviceArgs, Sizes};
use super::optim::OptimArgs;
use super::resume;

/// `--algo`: one of the library's algorithms, under the library's name (see the README for
/// what each does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Algo(pub AlgorithmKind);

impl clap::ValueEnum for Algo {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [Algo; 6] = {
            let k = AlgorithmKind::ALL;
            [Algo(k[0]), Algo(k[1]), Algo(k[2]), Algo(k[3]), Algo(k[4]), Algo(k[5])]
        };
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self.0 {
            AlgorithmKind::Sync => "Synchronous SGD (with --workers N: lock-step data parallel, gradients averaged every step)",
            AlgorithmKind::Pdasgd => "Partial decoupled ASGD: forward and backward threads, layer-wise asynchronous updates",
            AlgorithmKind::Hogwild => {
                "Asynchronous SGD with whole-model updates after the full backward pass (PD-ASGD's ablation)"
            }
            AlgorithmKind::LocalSgd => "Across processes: local SGD steps, models averaged (blocking) every --avg-period steps",
            AlgorithmKind::Dasgd => "Across processes: local SGD with delayed averaging, applied --avg-delay steps later",
            AlgorithmKind::Lasgd => {
                "Across processes: asynchronous lanes in each process, models averaged by all-reduce every --avg-period steps, overlapped with training"
            }
        };
        Some(PossibleValue::new(self.0.name()).help(help))
    }
}

/// `--lanes`: how lanes map to devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanesArg(pub Lanes);

impl clap::ValueEnum for LanesArg {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [LanesArg; 2] = [LanesArg(Lanes::ALL[0]), LanesArg(Lanes::ALL[1])];
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self.0 {
            Lanes::Shared => "Every lane of every worker submits to one device (one queue)",
            Lanes::Separate => "Each worker's lanes run on a device of its own, opened from the same adapter",
        };
        Some(PossibleValue::new(self.0.name()).help(help))
    }
}

/// A positive count of at most `max`; `why` says what each one costs.
fn at_most(s: &str, max: usize, why: &str) -> Result<usize, String> {
    match positive(s)? {
        v if v > max => Err(format!("{v} is more than {max}; {why}")),
        v => Ok(v),
    }
}

fn lane_threads(s: &str) -> Result<usize, String> {
    at_most(s, 64, "each thread runs a lane with its own activations on the device")
}

/// Workers, lanes and delays: shared by `train` and `bench async`. The defaults are the
/// library's for the algorithm ([`AsyncSettings::for_kind`]).
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Workers (replicas), each with its own lanes [at most 256: each holds a model].
    #[arg(long, default_value = "1", value_parser = |s: &str| at_most(s, 256, "each worker holds a copy of the model"))]
    pub workers: usize,
    /// Forward threads per worker (pdasgd, hogwild, lasgd) [default: 1; at most 64].
    #[arg(long, value_parser = lane_threads)]
    pub fwd_threads: Option<usize>,
    /// Backward threads per worker (pdasgd, hogwild, lasgd); a backward costs about two
    /// forwards [default: 2; lasgd 1; at most 64].
    #[arg(long, value_parser = lane_threads)]
    pub bwd_threads: Option<usize>,
    /// Batches that may wait between a worker's forward and backward threads (0: a forward
    /// pass waits for a free backward thread; with one of each, staleness is at most 1)
    /// [default: 1; lasgd 0; at most 64, since each waiting batch holds its activations on the GPU].
    #[arg(long, value_parser = queue_depth)]
    pub queue: Option<usize>,
    /// Map lanes to one shared device or to a device per worker.
    #[arg(long, value_enum, default_value = "shared")]
    pub lanes: LanesArg,
    /// Emulate slow devices, e.g. worker=1:factor=4 or all:exp=20ms (see the README).
    #[arg(long, value_parser = |s: &str| DelaySpec::parse(s).map_err(|e| e.to_string()))]
    pub inject_delay: Option<DelaySpec>,
    /// How an update's staleness s scales its learning rate (pdasgd, hogwild, lasgd):
    /// constant, or inverse (lr / max(1, s)).
    #[arg(long, default_value = "constant", value_parser = |s: &str| StaleLr::parse(s).map_err(|e| e.to_string()))]
    pub staleness_lr: StaleLr,
    /// Parameters a batch's passes read (pdasgd, hogwild, lasgd): live (the published
    /// method), stash (the backward reads the forward's copy) or predict (the copy moved
    /// ahead along the optimiser's direction by the expected staleness) [default: predict].
    #[arg(long, value_parser = |s: &str| Weights::parse(s).map_err(|e| e.to_string()))]
    pub weights: Option<Weights>,
}

impl WorkerArgs {
    /// The delay spec (empty without --inject-delay), checked against the `workers` it may
    /// name (the ranks, across processes).
    pub fn delays(&self, workers: usize) -> Result<DelaySpec> {
        let d = self.inject_delay.clone().unwrap_or_default();
        d.check_workers(workers).context("--inject-delay")?;
        Ok(d)
    }

    /// The lanes of each worker of asynchronous algorithm `kind`: the flags given, the
    /// algorithm's defaults for the rest.
    pub fn async_settings(&self, kind: AlgorithmKind) -> AsyncSettings {
        let d = AsyncSettings::for_kind(kind);
        AsyncSettings {
            fwd_threads: self.fwd_threads.unwrap_or(d.fwd_threads),
            bwd_threads: self.bwd_threads.unwrap_or(d.bwd_threads),
            queue: self.queue.unwrap_or(d.queue),
            weights: self.weights.unwrap_or(d.weights),
            stale_lr: self.staleness_lr,
        }
    }

    /// A run of `algorithm` with these workers and `delays`.
    pub fn spec(
        &self,
        algorithm: Algorithm,
        optim: OptimConfig,
        delays: DelaySpec,
        config: TrainConfig,
        start: Position,
    ) -> RunSpec {
        RunSpec { algorithm, optim, workers: self.workers, lanes: self.lanes.0, delays, config, start }
    }
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub arch: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Training algorithm.
    #[arg(long, value_enum, default_value = "sync")]
    pub algo: Algo,
    #[command(flatten)]
    pub workers: WorkerArgs,
    /// Steps between model averages (localsgd, dasgd, lasgd).
    #[arg(long, default_value_t = Averaging::default().period as usize, value_parser = positive)]
    pub avg_period: usize,
    /// Steps between the start of an average and its use (dasgd; for lasgd the latest use,
    /// sooner when it is back; smaller than --avg-period).
    #[arg(long, default_value_t = Averaging::default().delay as usize)]
    pub avg_delay: usize,
    /// Emulated network delay in milliseconds added to every message between processes.
    #[arg(long)]
    pub net_delay: Option<f64>,
    /// Emulated network rate in MB/s between processes.
    #[arg(long)]
    pub net_rate: Option<f64>,
    /// Across processes, keep training when a rank dies or hangs (it is dropped at the next
    /// average, and the others divide its data), and let a rank started again with the same
    /// RANK and flags back in mid-run. Averages go through rank 0, which must stay up.
    /// localsgd, dasgd and lasgd only.
    #[arg(long)]
    pub elastic: bool,
    /// Epochs in total [default: 20 on digits, 3 otherwise].
    #[arg(long, value_parser = positive)]
    pub epochs: Option<usize>,
    /// Samples per step [default: 32 on digits, 128 otherwise].
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// Learning-rate schedule: constant, or cosine decay to zero at the last step.
    #[arg(long, default_value = "cosine", value_parser = |s: &str| Schedule::parse(s).map_err(|e| e.to_string()))]
    pub schedule: Schedule,
    /// Steps over which the learning rate rises linearly from lr/N to lr (0: none)
    /// [default: 400 for pdasgd and hogwild, else 0].
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Seed of the initialisation and the epoch order [default: 0, or the checkpoint's with --resume].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Report `time_to_target_s` when test accuracy first reaches this (0.97 or 97).
    #[arg(long, allow_negative_numbers = true, value_parser = accuracy)]
    pub target_acc: Option<f64>,
    /// Stop as soon as --target-acc is reached.
    #[arg(long, requires = "target_acc")]
    pub stop_at_target: bool,
    /// Evaluate on the test set every this many steps (besides each epoch's end).
    #[arg(long, value_parser = positive)]
    pub eval_every: Option<usize>,
    /// Steps between read-backs of the training loss.
    #[arg(long, default_value = "50", value_parser = positive)]
    pub log_every: usize,
    /// Stop after this many steps in total.
    #[arg(long, value_parser = positive)]
    pub max_steps: Option<usize>,
    /// Use only the first N training samples (quick runs).
    #[arg(long, value_parser = positive)]
    pub train_samples: Option<usize>,
    /// Write JSON Lines metrics here (appended to when resuming).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Write a safetensors checkpoint here after every epoch (atomically).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also checkpoint every this many steps.
    #[arg(long, value_parser = positive, requires = "checkpoint")]
    pub checkpoint_every: Option<usize>,
    /// Continue from this checkpoint (model, optimiser state and position in the data), with
    /// its batch size, seed and dataset; flags that name others are refused.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Resume even though --batch, --seed or the dataset differ from the checkpoint's.
    #[arg(long, requires = "resume")]
    pub force_resume: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The model flags of `train` and `bench async`.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: mlp, lenet, resnet (He et al.'s CIFAR ResNet; also resnet8, resnet56...) or
    /// resnet18 (torchvision's, with a 3x3 stem).
    #[arg(long, default_value = "mlp")]
    pub model: String,
    /// Hidden layer sizes of the MLP, comma-separated.
    #[arg(long, value_parser = sizes)]
    pub hidden: Option<Sizes>,
    /// Layers of --model resnet, 6n+2 [default: 20].
    #[arg(long, value_parser = positive)]
    pub depth: Option<usize>,
}

impl ModelArgs {
    /// Whether --model or --hidden asks for something other than the default model.
    pub fn given(&self) -> bool {
        self.hidden.is_some() || self.depth.is_some() || self.model != "mlp"
    }

    /// The model flags as a config, checked against a checkpoint's when resuming.
    pub fn config(&self) -> Result<ModelConfig> {
        model_config(&self.model, &self.hidden, self.depth)
    }
}

fn model_config(model: &str, hidden: &Option<Sizes>, depth: Option<usize>) -> Result<ModelConfig> {
    let mut cfg = ModelConfig::parse(model)?;
    if let Some(h) = hidden {
        match &mut cfg {
            ModelConfig::Mlp { hidden } => *hidden = h.0.clone(),
            _ => bail!("--hidden applies to --model mlp only"),
        }
    }
    if let Some(d) = depth {
        match cfg {
            ModelConfig::Resnet { .. } => cfg = ModelConfig::resnet(d).context("--depth")?,
            _ => bail!("--depth applies to --model resnet only"),
        }
    }
    Ok(cfg)
}

impl TrainArgs {
    /// The algorithm `--algo` names, with the settings its flags give.
    pub fn algorithm(&self) -> Algorithm {
        let averaging = Averaging { period: self.avg_period as u64, delay: self.avg_delay as u64 };
        Algorithm::new(self.algo.0, self.workers.async_settings(self.algo.0), averaging)
    }
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let mut model_cfg = args.arch.config()?;
    if let Some(path) = &args.checkpoint {
        // Refused now rather than at the first checkpoint, after an epoch of training.
        let target = atomic::resolve_target(path, "a checkpoint")?;
        atomic::require_parent(&target, "a checkpoint")?;
        atomic::remove_stale_temps(&target);
    }
    let mut splits = args.data.load()?;
    if let Some(n) = args.train_samples {
        splits.train.truncate(n);
    }
    let digits = args.data.data == asgd::data::DataKind::Digits;
    let target_acc = args.target_acc;
    let algorithm = args.algorithm();

    let resume = match &args.resume {
        Some(path) => Some(load_checkpoint(path)?),
        None => None,
    };
    if let Some(ck) = &resume {
        let saved = ModelConfig::from_description(&ck.meta.model)?;
        let given_explicitly = args.arch.given();
        if given_explicitly && saved != model_cfg {
            bail!(
                "checkpoint {} was written for model {}, not {}; drop --model/--hidden or pass matching ones",
                args.resume.as_ref().unwrap().display(),
                saved.description(),
                model_cfg.description()
            );
        }
        model_cfg = saved;
    }
    // With --resume, the checkpoint's batch size and seed unless the flags name others.
    let (batch_flag, seed) = match (&resume, &args.resume) {
        (Some(ck), Some(path)) => resume::settings(
            path,
            &ck.meta,
            args.batch,
            args.seed,
            &args.data.data.name(),
            &splits.train,
            args.force_resume,
        )?,
        _ => (args.batch, args.seed.unwrap_or(0)),
    };

    if let Err(e) = model_cfg.check_size(splits.train.shape, splits.train.classes) {
        match (&model_cfg, args.resume.as_ref()) {
            (_, Some(path)) => bail!("checkpoint {}: {e}", path.display()),
            (ModelConfig::Mlp { .. }, None) => bail!("{e} (--hidden)"),
            _ => return Err(e.into()),
        }
    }

    let optim = args.optim.config(algorithm.kind().default_sgd_lr(&model_cfg), algorithm.default_momentum())?;

    if args.net_delay.is_some_and(|d| !(d >= 0.0 && d.is_finite()))
        || args.net_rate.is_some_and(|r| !(r > 0.0 && r.is_finite()))
    {
        bail!("--net-delay must be zero or more milliseconds and --net-rate a positive number of MB/s");
    }
    let net =
        NetEmulation { delay: args.net_delay.map(|ms| Duration::from_secs_f64(ms / 1e3)), rate_mbps: args.net_rate };
    let job = if args.elastic { Job::elastic_from_env(net)? } else { Job::from_env(net)? };
    let (rank, world) = (job.rank(), job.world());
    // Across processes, --inject-delay worker=N names rank N.
    let delays = args.workers.delays(if world > 1 { world } else { args.workers.workers })?;
    let start = resume.as_ref().map_or_else(Position::default, |ck| ck.meta.position);

    let epochs = args.epochs.unwrap_or(if digits { 20 } else { 3 });
    // Every rank writes its own metrics; only rank 0 evaluates and writes the checkpoint
    // (the library sees to that).
    let metrics_path = args.metrics.as_ref().map(|p| rank_path(p, rank));
    let batch = batch_flag.unwrap_or(if digits { 32 } else { 128 });
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("algo".to_string(), algorithm.name().to_string());
    extra.insert("workers".to_string(), args.workers.workers.to_string());
    if let Some(d) = &args.workers.inject_delay {
        extra.insert("inject_delay".to_string(), d.describe());
    }
    if world > 1 {
        extra.insert("world_size".to_string(), world.to_string());
    }
    extra.insert("batch".to_string(), batch.to_string());
    resume::record_data(&mut extra, &splits.train);
    extra.insert("lr".to_string(), optim.lr().to_string());
    let cfg = TrainConfig {
        epochs,
        batch,
        schedule: args.schedule,
        warmup: args.warmup.unwrap_or(algorithm.kind().default_warmup()),
        seed,
        log_every: args.log_every as u64,
        eval_every: args.eval_every.map(|n| n as u64),
        eval_batch: 1000,
        target_acc,
        stop_at_target: args.stop_at_target,
        max_steps: args.max_steps.map(|n| n as u64),
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every.map(|n| n as u64),
        checkpoint_meta: CheckpointMeta {
            model: model_cfg.description(),
            data: args.data.data.name().to_string(),
            input_shape: splits.train.shape.to_vec(),
            classes: splits.train.classes,
            extra,
            ..Default::default()
        },
        // A resumed run's clock goes on from its checkpoint's.
        elapsed: resume.as_ref().map(|ck| ck.meta.elapsed).unwrap_or_default(),
        ..TrainConfig::default()
    };
    let spec = args.workers.spec(algorithm, optim, delays, cfg, start);
    spec.check(&splits, &job)?;
    let dev = args.device.open()?;
    // The initialisation is seeded with --seed; a resumed run then loads its checkpoint.
    let replicas = spec.build_replicas(&dev, &model_cfg, &splits, seed)?;
    if let Some(ck) = &resume {
        for r in &replicas {
            r.restore(ck)?;
        }
    }
    let model = &replicas[0].model;
    // A batch the device cannot hold is reported now, before anything is printed or a
    // metrics file truncated; the buffers go back to the pool for the run to reuse.
    drop(model.plan(batch, true)?);

    let mut metrics = match &metrics_path {
        Some(p) if args.resume.is_some() => Some(MetricsWriter::append(p)?),
        Some(p) => Some(MetricsWriter::create(p)?),
        None => None,
    };
    eprintln!(
        "training {} ({} parameters) on {} ({} train / {} test samples) with {} x{} on {} ({}, {} lanes)",
        model_cfg.description(),
        model.num_params(),
        args.data.data.name(),
        splits.train.len(),
        splits.test.len(),
        algorithm.name(),
        args.workers.workers,
        dev.info().name,
        dev.info().backend,
        args.workers.lanes.0.name(),
    );
    let mut progress = Progress::new(args.quiet, epochs);
    let counted = dev.counters().values();
    let mut observer = |e: &Event| -> asgd::engine::Result<()> {
        if let (Some(m), Some(mut json)) = (metrics.as_mut(), e.to_json()) {
            if let Event::Done(s) = e {
                // The kernel each product shape ran with, so that a run can be repeated exactly.
                json["kernels"] = serde_json::json!(dev.tuner().choices());
                // The GPU work around the kernels, per step (evaluation and checkpoints included).
                let c = dev.counters().values() - counted;
                let per = |v: u64| v as f64 / s.steps.max(1) as f64;
                json["per_step"] = serde_json::json!({
                    "dispatches": per(c.dispatches), "submissions": per(c.submissions),
                    "readbacks": per(c.readbacks), "bind_groups": per(c.bind_groups),
                });
            }
            m.write(&json)?;
        }
        progress.on(e);
        Ok(())
    };
    let summary = asgd::run(&spec, &replicas, &splits, &job, &mut observer)?;
    progress.finish();
    print_staleness(&summary);
    let target = match (target_acc, summary.time_to_target_s) {
        (Some(a), Some(t)) => format!(", reached {:.2}% after {}", 100.0 * a, secs(t)),
        (Some(a), None) => format!(", never reached {:.2}%", 100.0 * a),
        _ => String::new(),
    };
    let result = if summary.test_acc.is_nan() {
        "rank 0 evaluates".to_string()
    } else {
        format!("test accuracy {:.2}% (loss {:.4})", 100.0 * summary.test_acc, summary.test_loss)
    };
    println!(
        "done: {result} after {} steps in {} ({} training, {:.0} samples/s){target}",
        summary.steps,
        secs(summary.wall_s),
        secs(summary.train_s),
        summary.samples_per_s
    );
    if world > 1 {
        println!("model checksum: {}", summary.model_checksum);
    }
    if let Some(p) = &args.checkpoint {
        println!("checkpoint: {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `path` for rank 0; for rank r, `.rank<r>` before the extension (`m.jsonl` -> `m.rank2.jsonl`).
pub fn rank_path(path: &Path, rank: usize) -> PathBuf {
    if rank == 0 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map_or("metrics".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.rank{rank}.{}", ext.to_string_lossy()),
        None => format!("{stem}.rank{rank}"),
    };
    path.with_file_name(name)
}

pub fn print_staleness(summary: &Summary) {
    if let Some(s) = &summary.staleness {
        println!(
            "staleness over {} updates: mean {:.2}, median {}, p90 {}, max {}",
            s.total(),
            s.mean(),
            s.quantile(0.5),
            s.quantile(0.9),
            s.max()
        );
    }
}

/// A progress bar on a terminal, and one line per epoch on stdout.
struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    last_loss: Option<f64>,
}

impl Progress {
    fn new(quiet: bool, epochs: usize) -> Self {
        let bar = (!quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed} < {eta}] {msg}")
                    .expect("valid template"),
            );
            bar
        });
        Self { bar, epochs, last_loss: None }
    }

    fn on(&mut self, e: &Event) {
        match e {
            Event::Start { total_steps, start_step, .. } => {
                if let Some(b) = &self.bar {
                    b.set_length(*total_steps);
                    b.set_position(*start_step);
                }
            }
            Event::Tick { step, .. } => {
                if let Some(b) = &self.bar {
                    b.set_position(*step);
                }
            }
            Event::Log { epoch, train_loss, samples_per_s, .. } => {
                self.last_loss = Some(*train_loss);
                if let Some(b) = &self.bar {
                    b.set_message(format!("epoch {epoch} loss {train_loss:.4} {samples_per_s:.0} samples/s"));
                }
            }
            Event::Epoch { epoch, train_loss, test_acc, test_loss, samples_per_s, wall_s, .. } => {
                let test = if test_acc.is_nan() {
                    String::new()
                } else {
                    format!(", test loss {test_loss:.4}, test accuracy {:.2}%", 100.0 * test_acc)
                };
                let line = format!(
                    "epoch {epoch}/{}: train loss {train_loss:.4}{test}, {:.0} samples/s, {}",
                    self.epochs,
                    samples_per_s,
                    secs(*wall_s)
                );
                match &self.bar {
                    Some(b) => b.suspend(|| println!("{line}")),
                    None => println!("{line}"),
                }
            }
            Event::Eval { step, test_acc, .. } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("step {step}: test accuracy {:.2}%", 100.0 * test_acc));
                }
            }
            Event::Checkpoint { .. } | Event::Done(_) => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Used by `eval` and `grads` to build the model a checkpoint was written for, refusing a
/// `--model` that says otherwise.
pub fn model_for_checkpoint(given: Option<&str>, meta: &CheckpointMeta, path: &Path) -> Result<ModelConfig> {
    let saved = ModelConfig::from_description(&meta.model)
        .with_context(|| format!("checkpoint {} names an unknown model", path.display()))?;
    if let Some(given) = given {
        if ModelConfig::parse(given)?.kind() != saved.kind() {
            bail!(
                "checkpoint {} holds model {}, not {given}; pass --model {} or another checkpoint",
                path.display(),
                saved.description(),
                saved.kind()
            );
        }
    }
    Ok(saved)
}

/// `--queue`: a depth up to [`asgd::engine::train::MAX_QUEUE`].
fn queue_depth(s: &str) -> Result<usize, String> {
    let max = asgd::engine::train::MAX_QUEUE;
    match s.parse::<usize>() {
        Ok(v) if v <= max => Ok(v),
        Ok(v) => Err(format!(
            "{v} batches is more than the {max} allowed; each waiting batch holds a full set of activations on the GPU, so a deeper queue only costs memory and adds staleness"
        )),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

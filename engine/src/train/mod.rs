//! Training loops and what they share: configuration, progress events, evaluation,
//! checkpoints.
//!
//! A loop reports through an observer callback ([`Event`]); the CLI turns events into a
//! progress bar and JSON Lines metrics, a library user into whatever it likes.

mod barrier;
mod books;
mod checkpoint;
mod coordinator;
mod data_parallel;
mod decoupled;
pub mod delay;
mod eval;
mod feed;
pub mod staleness;
mod sync;

use std::path::PathBuf;
use std::time::Instant;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint, CheckpointMeta};
pub use coordinator::{Pauser, Periodic};
pub use data_parallel::train_data_parallel;
pub use decoupled::{train_decoupled, train_decoupled_with, AsyncConfig, Decoupling, StaleLr, Weights, MAX_QUEUE};
pub use delay::DelaySpec;
pub use eval::{evaluate, Evaluator};
pub use staleness::Staleness;
pub use sync::{train_steps, train_sync, PlainStep, StepAlgorithm, StepContext};

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// The same rate throughout (PyTorch's default).
    Constant,
    /// Cosine decay from the base rate at step 0 to zero at the last step:
    /// `lr_t = lr * (1 + cos(pi * t / T)) / 2`. The default: with a constant rate LeNet-5
    /// ended 3 MNIST epochs at 98.02%, with this one at 99.02%.
    #[default]
    Cosine,
}

impl Schedule {
    /// Parses `constant` or `cosine`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "constant" => Ok(Self::Constant),
            "cosine" => Ok(Self::Cosine),
            other => Err(crate::EngineError::InvalidArgument(format!(
                "unknown learning-rate schedule '{other}'; use constant or cosine"
            ))),
        }
    }

    /// The rate at `step` of `total` for base rate `lr`.
    pub fn lr_at(self, lr: f32, step: u64, total: u64) -> f32 {
        match self {
            Self::Constant => lr,
            Self::Cosine => {
                let t = (step as f64 / total.max(1) as f64).min(1.0);
                (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}

/// What a training run does. Sizes are in samples, times in seconds.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Epochs to train in total (a resumed run continues up to this many).
    pub epochs: usize,
    /// Samples per step. A final partial batch of an epoch is dropped, so every step has the
    /// same size (and the same compiled plan).
    pub batch: usize,
    /// The base learning rate of the schedule (the optimiser's rate is set from the schedule
    /// at every step).
    pub lr: f32,
    /// How the learning rate changes over the run.
    pub schedule: Schedule,
    /// Seeds the epoch order (the model's initialisation is seeded where it is built).
    pub seed: u64,
    /// Steps over which the learning rate rises linearly to its scheduled value (0: none).
    /// Stale gradients make the first steps the least stable; a warm-up carries asynchronous
    /// runs through them.
    pub warmup: u64,
    /// Steps between read-backs of the training loss (each read-back waits for the GPU).
    pub log_every: u64,
    /// Also read the loss back when this many seconds passed since the last read-back, so
    /// that slow devices show progress and a diverging run (NaN arithmetic is slow on CPU
    /// drivers) stops within seconds rather than `log_every` slow steps.
    pub log_seconds: f64,
    /// Also evaluate on the test set every this many steps (besides each epoch's end).
    pub eval_every: Option<u64>,
    /// Samples per evaluation batch.
    pub eval_batch: usize,
    /// Test accuracy (0..1) whose first crossing is reported as `time_to_target_s`.
    pub target_acc: Option<f64>,
    /// Stop as soon as `target_acc` is reached.
    pub stop_at_target: bool,
    /// Stop after this many steps in total (for quick runs and examples).
    pub max_steps: Option<u64>,
    /// Write a checkpoint here at the end of each epoch and of the run.
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every this many steps.
    pub checkpoint_every: Option<u64>,
    /// What checkpoints record about the run (model description, data...); the position and
    /// seed are filled in when each is written.
    pub checkpoint_meta: CheckpointMeta,
    /// This process's part of the data when several train together (see [`train_steps`]).
    pub shard: Shard,
    /// Evaluate on the test set (off on all but one of several processes).
    pub evaluate: bool,
    /// Time the run had already spent before this process took it up: a resumed run's
    /// [`CheckpointMeta::elapsed`]. Its clock continues from there, so the times of its events,
    /// of its checkpoints and of its target read as one run's.
    pub elapsed: Elapsed,
}

/// Time spent by a run: `wall_s` all of it, `train_s` without evaluations and checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Elapsed {
    pub wall_s: f64,
    pub train_s: f64,
}

/// Process `rank` of `world` processes training together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    /// The processes the run starts with, which fix its steps per epoch.
    pub world: usize,
    /// Where the share stands now, when it changes during the run (an elastic job dividing
    /// the data again as processes leave and join); `None` keeps `rank` of `world`.
    pub live: Option<LiveShard>,
}

impl Default for Shard {
    fn default() -> Self {
        Self { rank: 0, world: 1, live: None }
    }
}

impl Shard {
    /// `(position, processes)` for the step about to be taken: step `s` of an epoch trains
    /// batch `s * processes + position` of the epoch's order. Processes never exceed `world`,
    /// so the batches stay within the epoch.
    pub fn current(&self) -> (usize, usize) {
        let fixed = (self.rank, self.world.max(1));
        match &self.live {
            Some(live) => {
                let (position, processes) = live.get();
                if processes == 0 || processes > fixed.1 || position >= processes {
                    fixed
                } else {
                    (position, processes)
                }
            }
            None => fixed,
        }
    }
}

/// A share of the data that another thread may move while training runs: the position among
/// the processes and their number, set together.
#[derive(Clone, Debug)]
pub struct LiveShard(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl LiveShard {
    /// Starts at `position` of `processes`.
    pub fn new(position: usize, processes: usize) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(Self::pack(position, processes))))
    }

    fn pack(position: usize, processes: usize) -> u64 {
        ((position as u64) << 32) | (processes as u64 & 0xffff_ffff)
    }

    /// Moves the share; the steps after this call use it.
    pub fn set(&self, position: usize, processes: usize) {
        self.0.store(Self::pack(position, processes), std::sync::atomic::Ordering::Release);
    }

    /// `(position, processes)`.
    pub fn get(&self) -> (usize, usize) {
        let v = self.0.load(std::sync::atomic::Ordering::Acquire);
        ((v >> 32) as usize, (v & 0xffff_ffff) as usize)
    }
}

impl PartialEq for LiveShard {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LiveShard {}

impl TrainConfig {
    /// Steps this process takes per epoch of `train_samples`: its share of the full batches
    /// (as many processes as the run starts with share them). 0 when not one batch fits.
    pub fn steps_per_epoch(&self, train_samples: usize) -> u64 {
        crate::data::num_batches(train_samples, self.batch, true) as u64 / self.shard.world.max(1) as u64
    }

    /// The learning rate of `step` (from 0) of a run of `total` steps: the schedule, scaled
    /// linearly from `1 / warmup` up to 1 over the first `warmup` steps.
    pub fn lr_at(&self, step: u64, total: u64) -> f32 {
        let lr = self.schedule.lr_at(self.lr, step, total);
        if step < self.warmup {
            lr * (step + 1) as f32 / self.warmup as f32
        } else {
            lr
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch: 128,
            lr: 0.05,
            schedule: Schedule::Cosine,
            seed: 0,
            warmup: 0,
            log_every: 50,
            log_seconds: 5.0,
            eval_every: None,
            eval_batch: 1000,
            target_acc: None,
            stop_at_target: false,
            max_steps: None,
            checkpoint: None,
            checkpoint_every: None,
            checkpoint_meta: CheckpointMeta::default(),
            shard: Shard::default(),
            evaluate: true,
            elapsed: Elapsed::default(),
        }
    }
}

/// Where a run starts: zero for a fresh run, or where a checkpoint left off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Epoch index (0-based) of the next step.
    pub epoch: usize,
    /// Batch index within that epoch of the next step.
    pub batch_in_epoch: usize,
    /// Steps taken so far in the whole run.
    pub step: u64,
}

impl Position {
    /// Where a run of `steps_per_epoch` steps an epoch stands after `step` steps.
    pub fn after(step: u64, steps_per_epoch: u64) -> Self {
        let spe = steps_per_epoch.max(1);
        Position { epoch: (step / spe) as usize, batch_in_epoch: (step % spe) as usize, step }
    }
}

/// Progress of a run. Epochs are reported 1-based (`epoch: 1` is the first).
#[derive(Clone, Debug)]
pub enum Event {
    /// Before the first step. A resumed run starts at `start_step` and at the `wall_s` its
    /// checkpoint recorded: events of an earlier process of the run past `start_step` are
    /// superseded by this one's.
    Start { steps_per_epoch: u64, total_steps: u64, start_step: u64, params: usize, wall_s: f64 },
    /// After every step (for progress bars; not written to metrics).
    Tick { epoch: usize, step: u64 },
    /// Every `log_every` steps: the mean training loss and accuracy over the window.
    Log { epoch: usize, step: u64, train_loss: f64, train_acc: f64, samples_per_s: f64, wall_s: f64 },
    /// After an evaluation on the test set.
    ///
    /// `samples` counts the training samples of the whole job up to `step`: this process's,
    /// times the processes it started with.
    Eval { epoch: usize, step: u64, samples: u64, test_loss: f64, test_acc: f64, wall_s: f64, train_s: f64 },
    /// At the end of an epoch, after its evaluation.
    Epoch { epoch: usize, step: u64, train_loss: f64, test_loss: f64, test_acc: f64, samples_per_s: f64, wall_s: f64 },
    /// A checkpoint was written.
    Checkpoint { path: PathBuf, step: u64, wall_s: f64 },
    /// The end of the run.
    Done(Summary),
}

/// What a run achieved. `wall_s` includes evaluations; `train_s` excludes them. Both count the
/// whole run, a resumed run's earlier processes included ([`TrainConfig::elapsed`]); `steps`,
/// `samples` and `samples_per_s` are this process's.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub steps: u64,
    pub samples: u64,
    pub test_acc: f64,
    pub test_loss: f64,
    pub wall_s: f64,
    pub train_s: f64,
    /// Training samples per second of `train_s`.
    pub samples_per_s: f64,
    /// Training time (`train_s`) at the first evaluation reaching the target accuracy.
    pub time_to_target_s: Option<f64>,
    /// Asynchronous algorithms: the staleness of every update.
    pub staleness: Option<Staleness>,
    /// Asynchronous algorithms: how many updates each replica made, sent and applied.
    pub updates: Option<UpdateCounts>,
    /// Whatever else the algorithm reports (communication waits, ...), merged into `done`.
    pub extra: Option<serde_json::Value>,
    /// [`crate::Model::checksum`] of the final model (of the first replica).
    pub model_checksum: String,
}

/// Update bookkeeping of an asynchronous run with `n` replicas. Every update is applied
/// exactly once on every replica when `local[r] == steps(r) * layers_with_params` and
/// `applied[to][from] == sent[from][to]` for every pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateCounts {
    /// Layer updates each replica made from its own gradients (and applied to itself).
    pub local: Vec<u64>,
    /// `sent[from][to]`: deltas replica `from` sent to replica `to`.
    pub sent: Vec<Vec<u64>>,
    /// `applied[to][from]`: deltas from `from` that replica `to` applied.
    pub applied: Vec<Vec<u64>>,
    /// Layers with parameters (updates per step in each replica).
    pub layers_with_params: u64,
}

/// Time of one undelayed training step of `model` on `plan` (forward, loss, backward; no
/// update), the mean of three after a warm-up, waiting for the GPU each time. Delay factors
/// and ideal speedups are relative to it. The model comes out unchanged: its buffers (batch
/// norm's running statistics and counts, which a training-mode forward pass updates) are put
/// back as they were. Before, a run with a delay factor trained a ResNet from statistics moved
/// four times by whatever the plan's input held, unlike the same run without delays.
pub fn undelayed_step_time(model: &crate::Model, plan: &crate::Plan) -> crate::Result<std::time::Duration> {
    let saved: Vec<(&crate::Tensor, Vec<f32>)> =
        model.buffers().into_iter().map(|(_, t, _)| Ok((t, t.to_vec_f32()?))).collect::<crate::Result<_>>()?;
    let took = time_steps(plan)?;
    for (t, values) in saved {
        t.write_f32(&values)?;
    }
    Ok(took)
}

fn time_steps(plan: &crate::Plan) -> crate::Result<std::time::Duration> {
    let dev = plan.input.device();
    let run = || {
        let mut enc = dev.wgpu().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            plan.record_gradients(&mut pass);
        }
        dev.submit([enc.finish()]);
        dev.wait_idle()
    };
    run()?;
    let t0 = Instant::now();
    for _ in 0..3 {
        run()?;
    }
    plan.take_totals()?;
    Ok(t0.elapsed() / 3)
}

impl Event {
    /// The JSON Lines form of the event, per the CLI contract: `event`, `wall_s`, and where they
    /// apply `epoch`, `step`, `train_loss`, `test_acc`, `samples_per_s`. `None` for [`Event::Tick`].
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        Some(match self {
            Event::Tick { .. } => return None,
            Event::Start { steps_per_epoch, total_steps, start_step, params, wall_s } => json!({
                "event": "start", "wall_s": wall_s, "steps_per_epoch": steps_per_epoch,
                "total_steps": total_steps, "start_step": start_step, "params": params,
            }),
            Event::Log { epoch, step, train_loss, train_acc, samples_per_s, wall_s } => json!({
                "event": "log", "epoch": epoch, "step": step, "train_loss": train_loss,
                "train_acc": train_acc, "samples_per_s": samples_per_s, "wall_s": wall_s,
            }),
            Event::Eval { epoch, step, samples, test_loss, test_acc, wall_s, train_s } => json!({
                "event": "eval", "epoch": epoch, "step": step, "samples": samples, "test_loss": test_loss,
                "test_acc": test_acc, "wall_s": wall_s, "train_s": train_s,
            }),
            Event::Epoch { epoch, step, train_loss, test_loss, test_acc, samples_per_s, wall_s } => json!({
                "event": "epoch", "epoch": epoch, "step": step, "train_loss": train_loss,
                "test_loss": test_loss, "test_acc": test_acc, "samples_per_s": samples_per_s,
                "wall_s": wall_s,
            }),
            Event::Checkpoint { path, step, wall_s } => json!({
                "event": "checkpoint", "path": path.display().to_string(), "step": step, "wall_s": wall_s,
            }),
            Event::Done(s) => {
                let mut v = json!({
                    "event": "done", "test_acc": s.test_acc, "test_loss": s.test_loss, "wall_s": s.wall_s,
                    "train_s": s.train_s, "steps": s.steps, "samples": s.samples,
                    "samples_per_s": s.samples_per_s, "time_to_target_s": s.time_to_target_s,
                    "model_checksum": s.model_checksum,
                });
                if let Some(st) = &s.staleness {
                    v["staleness"] = st.to_json();
                }
                if let Some(u) = &s.updates {
                    v["updates"] = json!({"local": u.local, "sent": u.sent, "applied": u.applied});
                }
                if let Some(serde_json::Value::Object(extra)) = &s.extra {
                    for (k, x) in extra {
                        v[k] = x.clone();
                    }
                }
                v
            }
        })
    }
}

/// The observer a loop reports to; an error from it stops the run.
pub type Observer<'a> = dyn FnMut(&Event) -> crate::Result<()> + 'a;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_linearly_to_the_schedule_then_follows_it() {
        let cfg = TrainConfig { lr: 0.2, schedule: Schedule::Constant, warmup: 4, ..TrainConfig::default() };
        for (s, want) in [0.05f32, 0.1, 0.15, 0.2, 0.2, 0.2].into_iter().enumerate() {
            assert!((cfg.lr_at(s as u64, 100) - want).abs() < 1e-7, "step {s}: {}", cfg.lr_at(s as u64, 100));
        }
        let cosine = TrainConfig { schedule: Schedule::Cosine, ..cfg.clone() };
        assert!((cosine.lr_at(1, 10) - Schedule::Cosine.lr_at(0.2, 1, 10) * 0.5).abs() < 1e-7);
        assert_eq!(cosine.lr_at(7, 10), Schedule::Cosine.lr_at(0.2, 7, 10));
        let none = TrainConfig { warmup: 0, ..cfg };
        assert_eq!(none.lr_at(0, 100), 0.2);
    }
}

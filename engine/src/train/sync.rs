//! The single-threaded step loop: synchronous SGD on one worker (the reference every other
//! algorithm is measured against), and the loop that algorithms spanning processes plug a
//! [`StepAlgorithm`] into.
//!
//! Each step uploads a batch and lets the algorithm record it; [`PlainStep`] records forward,
//! loss, and for each layer from the last to the first its backward and its update into one
//! command encoder. The loss is read back every `log_every` steps, not every step, so the CPU
//! prepares the next batches while the GPU works.

use super::books::{report_done, save_at, test_metrics, Books, Ledger};
use super::{Elapsed, Evaluator, Observer, Position, Summary, TrainConfig};
use crate::data::{epoch_order, Dataset, Splits};
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::optim::{Optimizer, Updates};
use crate::plan::Plan;

/// What a step algorithm works on.
pub struct StepContext<'a> {
    pub model: &'a Model,
    pub optim: &'a dyn Optimizer,
    /// The plan holding this step's batch (already uploaded).
    pub plan: &'a Plan,
    /// Updates reading `plan`'s gradients.
    pub updates: &'a Updates,
    /// This process's step, counted from the start of the run.
    pub step: u64,
    /// The scheduled learning rate of this step.
    pub lr: f32,
}

/// One step of the loop; the loop handles data, logging, evaluation and checkpoints.
pub trait StepAlgorithm {
    /// Records and submits the step on `ctx.plan`'s batch: at least its forward pass and loss
    /// (the loop reads the loss totals the loss dispatch keeps).
    fn step(&mut self, ctx: &StepContext) -> Result<()>;

    /// Called once after the last step, before the final evaluation (to finish work in flight).
    fn finish(&mut self, _ctx: &StepContext) -> Result<()> {
        Ok(())
    }

    /// Extra fields for the `done` event.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Plain SGD: forward, loss, then per layer (last first) backward and update, one encoder.
pub struct PlainStep;

impl PlainStep {
    /// Records forward, loss and every layer's backward (last first), each followed by the
    /// layer's update.
    pub fn record(ctx: &StepContext, pass: &mut wgpu::ComputePass<'_>) {
        ctx.plan.record_forward(pass);
        ctx.plan.record_loss(pass);
        for i in (0..ctx.plan.num_layers()).rev() {
            ctx.plan.record_backward(i, pass);
            ctx.updates.record(i, pass);
        }
    }
}

impl StepAlgorithm for PlainStep {
    fn step(&mut self, ctx: &StepContext) -> Result<()> {
        let dev = ctx.model.device();
        let mut enc = dev.wgpu().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            Self::record(ctx, &mut pass);
        }
        dev.submit([enc.finish()]);
        Ok(())
    }
}

/// Trains `model` with `optim` on `data.train` from `start`, evaluating on `data.test`.
pub fn train_sync(
    model: &Model,
    optim: &dyn Optimizer,
    data: &Splits,
    cfg: &TrainConfig,
    start: Position,
    obs: &mut Observer,
) -> Result<Summary> {
    train_steps(model, optim, data, cfg, start, &mut PlainStep, obs)
}

/// The step loop with `algo` doing each step. With `cfg.shard` of `world` processes, step `s`
/// of this process trains on batch `s * world + rank` of the shared seeded order, so the
/// processes together see each sample once per epoch.
pub fn train_steps(
    model: &Model,
    optim: &dyn Optimizer,
    data: &Splits,
    cfg: &TrainConfig,
    start: Position,
    algo: &mut dyn StepAlgorithm,
    obs: &mut Observer,
) -> Result<Summary> {
    let train = &data.train;
    let world = cfg.shard.world.max(1) as u64;
    let steps_per_epoch = cfg.steps_per_epoch(train.len());
    if steps_per_epoch == 0 {
        return Err(EngineError::InvalidArgument(format!(
            "the batch size {} is larger than the {} training samples{}; use a smaller batch",
            cfg.batch,
            train.len(),
            if world > 1 { format!(" shared by {world} processes") } else { String::new() }
        )));
    }
    // The schedule spans all epochs, whatever max_steps says, so that a run stopped early and
    // resumed follows the same rates as one that never stopped.
    let horizon = steps_per_epoch * cfg.epochs as u64;
    let total_steps = cfg.max_steps.map_or(horizon, |m| m.min(horizon));
    let plan = model.plan(cfg.batch, true)?;
    let updates = optim.updates(model, &plan)?;
    let mut ledger = StepLedger {
        cfg,
        model,
        optim,
        plan: &plan,
        evaluator: Evaluator::new(model, cfg.eval_batch),
        test: &data.test,
    };

    let mut books = Books::start(cfg, steps_per_epoch, total_steps, start.step, model.num_params(), obs)?;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut step = start.step;
    let mut written: Option<f32> = None;
    'epochs: for epoch in start.epoch..cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch as u64);
        let skip = if epoch == start.epoch { start.batch_in_epoch } else { 0 };
        for bi in skip..steps_per_epoch as usize {
            if step >= total_steps {
                break 'epochs;
            }
            let (position, processes) = cfg.shard.current();
            let b = bi * processes + position;
            train.gather_batch(&order, cfg.batch, b, cfg.seed, epoch as u64, &mut images, &mut labels);
            plan.upload(&images, &labels)?;
            // Written at the first step and whenever the rate changes after it, by the schedule
            // or by the warm-up (which also applies to a constant schedule).
            let lr = cfg.lr_at(step, horizon);
            if written != Some(lr) {
                updates.set_lr(lr);
                written = Some(lr);
            }
            algo.step(&StepContext { model, optim, plan: &plan, updates: &updates, step, lr })?;
            step += 1;
            books.tick(step, obs)?;
            let due = books.due(step, step == total_steps);
            if due.any() {
                books.record(step, due, &mut ledger, obs)?;
                if books.should_stop() {
                    break 'epochs;
                }
            }
        }
    }
    algo.finish(&StepContext { model, optim, plan: &plan, updates: &updates, step, lr: written.unwrap_or(cfg.lr) })?;
    // A run cut short by max_steps or the target mid-epoch still ends with an evaluation and,
    // if asked, a checkpoint of where it stopped.
    let mut summary = books.finish(step, &mut ledger, obs)?;
    summary.extra = algo.report();
    summary.model_checksum = model.checksum()?;
    report_done(summary, obs)
}

/// What the books read from the step loop.
struct StepLedger<'a> {
    cfg: &'a TrainConfig,
    model: &'a Model,
    optim: &'a dyn Optimizer,
    plan: &'a Plan,
    evaluator: Evaluator<'a>,
    test: &'a Dataset,
}

impl Ledger for StepLedger<'_> {
    fn take_totals(&mut self) -> Result<(f64, f64, f64)> {
        self.plan.take_totals()
    }

    fn evaluate(&mut self) -> Result<(f64, f64)> {
        test_metrics(self.cfg, &mut self.evaluator, self.test)
    }

    fn save(&mut self, pos: Position, elapsed: Elapsed) -> Result<Option<std::path::PathBuf>> {
        save_at(self.cfg, self.model, self.optim, pos, elapsed)
    }
}

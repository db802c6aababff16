//! The single-threaded step loop: synchronous SGD on one worker (the reference every other
//! algorithm is measured against), and the loop that algorithms spanning processes plug a
//! [`StepAlgorithm`] into.
//!
//! Each step uploads a batch and lets the algorithm record it; [`PlainStep`] records forward,
//! loss, and for each layer from the last to the first its backward and its update into one
//! command encoder. The loss is read back every `log_every` steps, not every step, so the CPU
//! prepares the next batches while the GPU works.

use super::{Clock, Evaluator, Event, Observer, Position, Summary, TrainConfig};
use crate::data::{epoch_order, num_batches, Splits};
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
        dev.queue().submit([enc.finish()]);
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
    let rank = cfg.shard.rank as u64;
    let batches_per_epoch = num_batches(train.len(), cfg.batch, true) as u64;
    let steps_per_epoch = batches_per_epoch / world;
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
    let mut evaluator = Evaluator::new(model, cfg.eval_batch);
    let log_every = cfg.log_every.max(1);

    obs(&Event::Start { steps_per_epoch, total_steps, start_step: start.step, params: model.num_params() })?;
    let mut clock = Clock::start();
    let mut summary = Summary::default();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut step = start.step;
    let mut window = (0u64, clock.train()); // samples and train time at the last log
    let (mut epoch_loss, mut epoch_samples) = (0.0, 0.0);
    let mut last_eval = None;

    let evaluate = |clock: &mut Clock,
                    evaluator: &mut Evaluator,
                    epoch: usize,
                    step: u64,
                    summary: &mut Summary|
     -> Result<(f64, f64, Event)> {
        let (loss, acc) = clock.paused(|| super::test_metrics(cfg, evaluator, &data.test))?;
        if let (Some(target), None) = (cfg.target_acc, summary.time_to_target_s) {
            if acc >= target {
                summary.time_to_target_s = Some(clock.train());
            }
        }
        let e = Event::Eval {
            epoch: epoch + 1,
            step,
            test_loss: loss,
            test_acc: acc,
            wall_s: clock.wall(),
            train_s: clock.train(),
        };
        Ok((loss, acc, e))
    };
    let save = |clock: &mut Clock, pos: Position| -> Result<Option<Event>> {
        let saved = clock.paused(|| super::save_at(cfg, model, optim, pos))?;
        Ok(saved.map(|path| Event::Checkpoint { path, step: pos.step, wall_s: clock.wall() }))
    };

    let mut written: Option<f32> = None;
    'epochs: for epoch in start.epoch..cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch as u64);
        let skip = if epoch == start.epoch { start.batch_in_epoch } else { 0 };
        for bi in skip..steps_per_epoch as usize {
            if step >= total_steps {
                break 'epochs;
            }
            let b = bi * world as usize + rank as usize;
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
            summary.samples += cfg.batch as u64;
            obs(&Event::Tick { epoch: epoch + 1, step })?;

            let end_of_epoch = bi + 1 == steps_per_epoch as usize;
            let overdue = clock.train() - window.1 >= cfg.log_seconds;
            if step.is_multiple_of(log_every) || end_of_epoch || step == total_steps || overdue {
                let (loss, correct, count) = plan.take_totals()?;
                let t = clock.train();
                let rate = (summary.samples - window.0) as f64 / (t - window.1).max(1e-9);
                window = (summary.samples, t);
                epoch_loss += loss;
                epoch_samples += count;
                super::check_loss(loss, count, step)?;
                obs(&Event::Log {
                    epoch: epoch + 1,
                    step,
                    train_loss: loss / count,
                    train_acc: correct / count,
                    samples_per_s: rate,
                    wall_s: clock.wall(),
                })?;
            }
            if cfg.eval_every.is_some_and(|n| step.is_multiple_of(n)) && !end_of_epoch {
                let (l, a, e) = evaluate(&mut clock, &mut evaluator, epoch, step, &mut summary)?;
                last_eval = Some((l, a));
                obs(&e)?;
                if cfg.stop_at_target && summary.time_to_target_s.is_some() {
                    break 'epochs;
                }
            }
            if cfg.checkpoint_every.is_some_and(|n| step.is_multiple_of(n)) && !end_of_epoch {
                let pos = Position { epoch, batch_in_epoch: bi + 1, step };
                if let Some(e) = save(&mut clock, pos)? {
                    obs(&e)?;
                }
            }
        }
        let (l, a, e) = evaluate(&mut clock, &mut evaluator, epoch, step, &mut summary)?;
        last_eval = Some((l, a));
        obs(&e)?;
        let t = clock.train();
        obs(&Event::Epoch {
            epoch: epoch + 1,
            step,
            train_loss: epoch_loss / epoch_samples.max(1.0),
            test_loss: l,
            test_acc: a,
            samples_per_s: summary.samples as f64 / t.max(1e-9),
            wall_s: clock.wall(),
        })?;
        (epoch_loss, epoch_samples) = (0.0, 0.0);
        if let Some(e) = save(&mut clock, Position { epoch: epoch + 1, batch_in_epoch: 0, step })? {
            obs(&e)?;
        }
        if cfg.stop_at_target && summary.time_to_target_s.is_some() {
            break;
        }
    }
    algo.finish(&StepContext { model, optim, plan: &plan, updates: &updates, step, lr: written.unwrap_or(cfg.lr) })?;
    // A run cut short by max_steps or the target mid-epoch still ends with an evaluation and,
    // if asked, a checkpoint of where it stopped.
    let (test_loss, test_acc) = match last_eval {
        Some(r) if step.is_multiple_of(steps_per_epoch) || cfg.stop_at_target => r,
        _ => {
            let epoch = (step / steps_per_epoch) as usize;
            let (l, a, e) = evaluate(&mut clock, &mut evaluator, epoch, step, &mut summary)?;
            obs(&e)?;
            let pos = Position { epoch, batch_in_epoch: (step % steps_per_epoch) as usize, step };
            if let Some(e) = save(&mut clock, pos)? {
                obs(&e)?;
            }
            (l, a)
        }
    };
    summary.steps = step - start.step;
    summary.test_loss = test_loss;
    summary.test_acc = test_acc;
    summary.wall_s = clock.wall();
    summary.train_s = clock.train();
    summary.samples_per_s = summary.samples as f64 / summary.train_s.max(1e-9);
    summary.extra = algo.report();
    summary.model_checksum = model.checksum()?;
    obs(&Event::Done(summary.clone()))?;
    Ok(summary)
}

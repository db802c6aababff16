//! Synchronous SGD on one worker: the reference every other algorithm is measured against.
//!
//! Each step uploads a batch and records forward, loss, and for each layer from the last to
//! the first its backward and its update into one command encoder. The loss is read back
//! every `log_every` steps, not every step, so the CPU prepares the next batches while the
//! GPU works.

use super::{Clock, Event, Evaluator, Observer, Position, Summary, TrainConfig};
use crate::data::{epoch_order, num_batches, Batches, Splits};
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::ops::sgd::SgdParams;
use crate::optim::Sgd;

/// Trains `model` with `sgd` on `data.train` from `start`, evaluating on `data.test`.
pub fn train_sync(
    model: &Model,
    sgd: &Sgd,
    data: &Splits,
    cfg: &TrainConfig,
    start: Position,
    obs: &mut Observer,
) -> Result<Summary> {
    let train = &data.train;
    let steps_per_epoch = num_batches(train.len(), cfg.batch, true) as u64;
    if steps_per_epoch == 0 {
        return Err(EngineError::InvalidArgument(format!(
            "the batch size {} is larger than the {} training samples; use a smaller --batch",
            cfg.batch,
            train.len()
        )));
    }
    // The schedule spans all epochs, whatever max_steps says, so that a run stopped early and
    // resumed follows the same rates as one that never stopped.
    let horizon = steps_per_epoch * cfg.epochs as u64;
    let total_steps = cfg.max_steps.map_or(horizon, |m| m.min(horizon));
    let plan = model.plan(cfg.batch, true)?;
    let updates = sgd.updates(model, &plan)?;
    let mut evaluator = Evaluator::new(model, cfg.eval_batch);
    let dev = model.device();
    let log_every = cfg.log_every.max(1);

    obs(&Event::Start { steps_per_epoch, total_steps, start_step: start.step, params: model.num_params() })?;
    let mut clock = Clock::start();
    let mut summary = Summary::default();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut step = start.step;
    let mut window = (0u64, clock.train()); // samples and train time at the last log
    let (mut epoch_loss, mut epoch_samples) = (0.0, 0.0);
    let mut last_eval = None;

    let evaluate = |clock: &mut Clock, evaluator: &mut Evaluator, epoch: usize, step: u64, summary: &mut Summary| -> Result<(f64, f64, Event)> {
        let (loss, acc) = clock.paused(|| evaluator.run(&data.test))?;
        if let (Some(target), None) = (cfg.target_acc, summary.time_to_target_s) {
            if acc >= target {
                summary.time_to_target_s = Some(clock.train());
            }
        }
        let e = Event::Eval { epoch: epoch + 1, step, test_loss: loss, test_acc: acc, wall_s: clock.wall(), train_s: clock.train() };
        Ok((loss, acc, e))
    };
    let save = |clock: &mut Clock, pos: Position| -> Result<Option<Event>> {
        let saved = clock.paused(|| super::save_at(cfg, model, sgd, pos))?;
        Ok(saved.map(|path| Event::Checkpoint { path, step: pos.step, wall_s: clock.wall() }))
    };

    'epochs: for epoch in start.epoch..cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch as u64);
        let skip = if epoch == start.epoch { start.batch_in_epoch } else { 0 };
        for (bi, idx) in Batches::new(&order, cfg.batch, true)?.enumerate().skip(skip) {
            if step >= total_steps {
                break 'epochs;
            }
            train.gather(idx, &mut images, &mut labels);
            plan.upload(&images, &labels)?;
            if cfg.schedule != super::Schedule::Constant {
                let lr = cfg.schedule.lr_at(cfg.sgd.lr, step, horizon);
                updates.set_hyper(model, SgdParams { lr, ..cfg.sgd });
            }
            let mut enc = dev.wgpu().create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                plan.record_forward(&mut pass);
                plan.record_loss(&mut pass);
                for i in (0..plan.num_layers()).rev() {
                    plan.record_backward(i, &mut pass);
                    updates.record(i, &mut pass);
                }
            }
            dev.queue().submit([enc.finish()]);
            step += 1;
            summary.samples += cfg.batch as u64;
            obs(&Event::Tick { epoch: epoch + 1, step })?;

            let end_of_epoch = bi + 1 == steps_per_epoch as usize;
            if step.is_multiple_of(log_every) || end_of_epoch || step == total_steps {
                let (loss, correct, count) = plan.take_totals()?;
                let t = clock.train();
                let rate = (summary.samples - window.0) as f64 / (t - window.1).max(1e-9);
                window = (summary.samples, t);
                epoch_loss += loss;
                epoch_samples += count;
                if !(loss / count).is_finite() {
                    return Err(EngineError::InvalidArgument(format!(
                        "the training loss became {} at step {step}; lower the learning rate (--lr)",
                        loss / count
                    )));
                }
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
    obs(&Event::Done(summary.clone()))?;
    Ok(summary)
}

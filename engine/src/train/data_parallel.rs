//! Synchronous data parallelism on one machine (sync with several workers): the baseline the
//! asynchronous algorithms are measured against. Each worker, a thread with its own replica
//! and lane, computes the gradients of its own batch; all wait at a barrier for the slowest;
//! the gradients are averaged and every replica applies the same update, so all stay equal.
//!
//! One step takes N batches; progress is counted in batches, so epochs, samples and
//! `log_every` mean what they mean for one worker. On a shared device the average is taken on
//! the GPU; across devices through the host, always in worker order so runs are reproducible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::barrier::Barrier;
use super::books::{report_done, save_at, Books};
use super::coordinator::{coordinate, Hooks, Shared};
use super::delay::DelaySpec;
use super::feed::Feed;
use super::{Elapsed, Evaluator, Observer, Position, Summary, TrainConfig};
use crate::data::{num_batches, Splits};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::{run_all, Dispatch};
use crate::model::Model;
use crate::ops::elementwise::scale_add;
use crate::optim::{Optimizer, Updates};
use crate::plan::Plan;
use crate::tensor::Tensor;

struct Worker<'m> {
    model: &'m Model,
    plan: Plan,
    /// The averaged gradients this replica's update reads.
    avg: Vec<Vec<Tensor>>,
    updates: Updates,
}

/// Trains `replicas` (built alike) in lock step; `delays` emulates slow workers.
pub fn train_data_parallel(
    replicas: &[(&Model, &dyn Optimizer)],
    data: &Splits,
    cfg: &TrainConfig,
    delays: &DelaySpec,
    start: Position,
    obs: &mut Observer,
) -> Result<Summary> {
    let n = replicas.len();
    if n == 0 {
        return Err(EngineError::InvalidArgument("data parallel training needs at least one worker".into()));
    }
    delays.check_workers(n)?;
    let spe = num_batches(data.train.len(), cfg.batch, true) as u64;
    if spe < n as u64 {
        return Err(EngineError::InvalidArgument(format!(
            "{n} workers with batches of {} need at least {} training samples; there are {}",
            cfg.batch,
            n * cfg.batch,
            data.train.len()
        )));
    }
    let horizon = spe * cfg.epochs as u64;
    // Whole steps of N batches only.
    let total = cfg.max_steps.map_or(horizon, |m| m.min(horizon)) / n as u64 * n as u64;
    let first = start.step / n as u64 * n as u64;
    let shared_device = replicas.iter().all(|(m, _)| m.device().same_as(replicas[0].0.device()));

    let mut workers = Vec::new();
    for &(model, optim) in replicas {
        let plan = model.plan(cfg.batch, true)?;
        let avg: Vec<Vec<Tensor>> = if shared_device && !workers.is_empty() {
            // One set of averaged gradients serves every replica on the device.
            let w0: &Worker = &workers[0];
            w0.avg.clone()
        } else {
            plan.grads.iter().map(|g| g.iter().map(Tensor::empty_like).collect()).collect()
        };
        let updates = optim.updates_from(model, &avg)?;
        workers.push(Worker { model, plan, avg, updates });
    }
    // On a shared device: avg = (1/N) sum of the workers' gradients, in worker order.
    let mut averaging: Vec<Dispatch> = Vec::new();
    if shared_device {
        let dev = replicas[0].0.device();
        for (w, worker) in workers.iter().enumerate() {
            for (avg_layer, g_layer) in workers[0].avg.iter().zip(&worker.plan.grads) {
                for (a, g) in avg_layer.iter().zip(g_layer) {
                    averaging.push(scale_add(dev, a, g, 1.0 / n as f32, if w == 0 { 0.0 } else { 1.0 })?);
                }
            }
        }
    }
    let base = if delays.needs_base_step() {
        super::undelayed_step_time(workers[0].model, &workers[0].plan)?
    } else {
        Duration::ZERO
    };
    let samplers: Vec<Mutex<_>> = (0..n).map(|w| Mutex::new(delays.sampler(w, cfg.seed, base))).collect();
    let host_grads: Vec<Mutex<Vec<Vec<f32>>>> = (0..n).map(|_| Mutex::new(Vec::new())).collect();

    let books = Books::start(cfg, spe, total, first, replicas[0].0.num_params(), obs)?;
    let shared = Shared::new(Feed::new(&data.train, cfg.batch, cfg.seed, spe, first, total), first);
    let barrier = Barrier::new(n);
    let halt = AtomicBool::new(false);
    let mut devices: Vec<Device> = Vec::new();
    for (m, _) in replicas {
        if !devices.iter().any(|d| d.same_as(m.device())) {
            devices.push(m.device().clone());
        }
    }
    let mut evaluator = Evaluator::new(replicas[0].0, cfg.eval_batch);
    let (workers, averaging, samplers, host_grads, shared, barrier, halt) =
        (&workers, &averaging, &samplers, &host_grads, &shared, &barrier, &halt);
    let mut summary = std::thread::scope(|scope| -> Result<Summary> {
        for w in 0..n {
            shared.running.fetch_add(1, Ordering::AcqRel);
            scope.spawn(move || {
                shared.worker(|| {
                    let r = worker_loop(
                        w, workers, averaging, samplers, host_grads, shared, barrier, halt, cfg, horizon, first,
                    );
                    if r.is_err() {
                        barrier.break_all();
                    }
                    r
                })
            });
        }
        let mut take_totals = || -> Result<(f64, f64, f64)> {
            let mut sum = (0.0, 0.0, 0.0);
            for w in workers {
                let (l, c, k) = w.plan.take_totals()?;
                sum = (sum.0 + l, sum.1 + c, sum.2 + k);
            }
            Ok(sum)
        };
        let mut save = |pos: Position, elapsed: Elapsed| save_at(cfg, replicas[0].0, replicas[0].1, pos, elapsed);
        let mut finish = || Ok(());
        let hooks = Hooks {
            devices: devices.clone(),
            take_totals: &mut take_totals,
            save: &mut save,
            finish: &mut finish,
            periodic: None,
        };
        coordinate(shared, cfg, &data.test, &mut evaluator, hooks, books, obs)
    })?;
    summary.steps /= n as u64;
    summary.model_checksum = replicas[0].0.checksum()?;
    report_done(summary, obs)
}

fn record(dev: &Device, f: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        f(&mut pass);
    }
    dev.submit([enc.finish()]);
}

#[allow(clippy::too_many_arguments)]
fn worker_loop(
    w: usize,
    workers: &[Worker],
    averaging: &[Dispatch],
    samplers: &[Mutex<super::delay::DelaySampler>],
    host_grads: &[Mutex<Vec<Vec<f32>>>],
    shared: &Shared,
    barrier: &Barrier,
    halt: &AtomicBool,
    cfg: &TrainConfig,
    horizon: u64,
    first: u64,
) -> Result<()> {
    let n = workers.len() as u64;
    let me = &workers[w];
    let dev = me.model.device();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut step = first;
    loop {
        // Steps advance in whole multiples of N up to a total that is one, so every worker
        // runs out at the same step.
        if !shared.feed.gather_step(step + w as u64, &mut images, &mut labels) {
            return Ok(());
        }
        samplers[w].lock().expect("delay lock poisoned").sleep();
        me.plan.upload(&images, &labels)?;
        {
            let _gate = shared.gate.read().expect("gate poisoned");
            record(dev, |pass| {
                me.plan.record_forward(pass);
                me.plan.record_loss(pass);
                for i in (0..me.plan.num_layers()).rev() {
                    me.plan.record_backward(i, pass);
                }
            });
        }
        if averaging.is_empty() {
            // Across devices: read the gradients back for the host average.
            let g: Result<Vec<Vec<f32>>> = me.plan.grads.iter().flatten().map(|t| t.to_vec_f32()).collect();
            *host_grads[w].lock().expect("grads lock poisoned") = g?;
        }
        if !barrier.wait() {
            return Ok(());
        }
        let lr = cfg.lr_at(step, horizon);
        if averaging.is_empty() {
            let mut avg: Vec<Vec<f32>> = host_grads[0].lock().expect("grads lock poisoned").clone();
            for other in &host_grads[1..] {
                for (a, g) in avg.iter_mut().zip(other.lock().expect("grads lock poisoned").iter()) {
                    a.iter_mut().zip(g).for_each(|(a, g)| *a += g);
                }
            }
            let _gate = shared.gate.read().expect("gate poisoned");
            for (t, v) in me.avg.iter().flatten().zip(&avg) {
                let scaled: Vec<f32> = v.iter().map(|x| x / n as f32).collect();
                t.write_f32(&scaled)?;
            }
            me.updates.set_lr(lr);
            record(dev, |pass| (0..me.plan.num_layers()).for_each(|i| me.updates.record(i, pass)));
        } else if w == 0 {
            let _gate = shared.gate.read().expect("gate poisoned");
            for other in workers {
                other.updates.set_lr(lr);
            }
            let mut all: Vec<&Dispatch> = averaging.iter().collect();
            for other in workers {
                all.extend(other.updates.dispatches());
            }
            run_all(dev, &all);
        }
        step += n;
        if w == 0 {
            shared.done.store(step.min(shared.feed.total), Ordering::Release);
            // Decided by one worker between the barriers and read by all after the second, so
            // that all stop at the same step.
            halt.store(shared.feed.stopped(), Ordering::Release);
        }
        // Nobody starts the next forward pass before every update is submitted.
        if !barrier.wait() || halt.load(Ordering::Acquire) {
            return Ok(());
        }
    }
}

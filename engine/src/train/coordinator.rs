//! The thread that watches a multi-threaded run: it hands out nothing itself, but every
//! `log_every` steps it pauses the workers (a write lock on the gate they hold while
//! submitting), reads the loss totals, evaluates when due, writes checkpoints at epoch ends,
//! and stops the feed when the run is over. Paused time is not training time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::feed::Feed;
use super::{Clock, Evaluator, Event, Observer, Position, Summary, TrainConfig};
use crate::data::Dataset;
use crate::device::Device;
use crate::error::{EngineError, Result};

/// State shared between the workers and the coordinator.
pub(crate) struct Shared<'a> {
    pub feed: Feed<'a>,
    /// Workers hold a read guard while they submit GPU work; the coordinator pauses them all
    /// by taking the write guard. Never held across a blocking channel operation.
    pub gate: RwLock<()>,
    /// Steps whose update has been submitted.
    pub done: AtomicU64,
    /// Worker threads still running.
    pub running: AtomicUsize,
    error: Mutex<Option<EngineError>>,
}

impl<'a> Shared<'a> {
    pub fn new(feed: Feed<'a>, start_step: u64) -> Self {
        Self {
            feed,
            gate: RwLock::new(()),
            done: AtomicU64::new(start_step),
            running: AtomicUsize::new(0),
            error: Mutex::new(None),
        }
    }

    /// Records the first error of any worker and stops the run.
    pub fn fail(&self, e: EngineError) {
        let mut slot = self.error.lock().expect("error lock poisoned");
        if slot.is_none() {
            *slot = Some(e);
        }
        self.feed.stop();
    }

    fn take_error(&self) -> Option<EngineError> {
        self.error.lock().expect("error lock poisoned").take()
    }

    /// Runs a worker body, recording its error and counting it as running meanwhile.
    pub fn worker(&self, body: impl FnOnce() -> Result<()>) {
        if let Err(e) = body() {
            self.fail(e);
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lets a [`Periodic`] hook run something while every worker is paused, or hold the workers
/// back at a step.
pub struct Pauser<'a> {
    gate: &'a RwLock<()>,
    devices: &'a [Device],
    feed: &'a Feed<'a>,
}

impl Pauser<'_> {
    /// Runs `f` with the workers paused and every device idle. Unlike evaluation, this time
    /// counts as training time: it is part of the algorithm.
    pub fn paused<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _pause = self.gate.write().expect("gate poisoned");
        self.devices.iter().try_for_each(|d| d.wait_idle())?;
        f()
    }

    /// Steps handed to the workers so far (started; `tick` is given those finished).
    pub fn started(&self) -> u64 {
        self.feed.started()
    }

    /// No forward pass starts a step numbered `step` or later until [`Pauser::unfence`];
    /// steps already started run to the end.
    pub fn fence(&mut self, step: u64) {
        self.feed.fence(step);
    }

    pub fn unfence(&mut self) {
        self.feed.unfence();
    }
}

/// Work a multi-threaded run does on the side, driven by the coordinator (LASGD's averaging
/// across processes).
pub trait Periodic {
    /// Called on every poll (every few milliseconds) with the steps done so far.
    fn tick(&mut self, step: u64, pauser: &mut Pauser) -> Result<()>;
    /// Called once when every worker has stopped.
    fn finish(&mut self, step: u64, pauser: &mut Pauser) -> Result<()>;
    /// Extra fields for the `done` event.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// What the coordinator needs from the algorithm.
pub(crate) struct Hooks<'h> {
    /// Devices to wait for before reading anything back.
    pub devices: Vec<Device>,
    /// Reads and resets the loss totals of every plan: `(sum loss, sum correct, samples)`.
    pub take_totals: &'h mut dyn FnMut() -> Result<(f64, f64, f64)>,
    /// Writes a checkpoint of where the run stands (called while paused); returns its path,
    /// or `None` when the run writes no checkpoints.
    pub save: &'h mut dyn FnMut(Position) -> Result<Option<std::path::PathBuf>>,
    /// Called once when every worker has stopped, before the final evaluation (to apply
    /// updates still in flight between workers).
    pub finish: &'h mut dyn FnMut() -> Result<()>,
    /// Side work, if any.
    pub periodic: Option<&'h mut dyn Periodic>,
}

/// Watches the run until every worker has stopped; returns the summary.
pub(crate) fn coordinate(
    shared: &Shared,
    cfg: &TrainConfig,
    test: &Dataset,
    evaluator: &mut Evaluator,
    mut hooks: Hooks,
    start: Position,
    obs: &mut Observer,
) -> Result<Summary> {
    let spe = shared.feed.steps_per_epoch;
    let log_every = cfg.log_every.max(1);
    let mut clock = Clock::start();
    let mut summary = Summary::default();
    let mut last_step = start.step;
    let mut next_log = (start.step / log_every + 1) * log_every;
    let mut next_eval = cfg.eval_every.map(|n| (start.step / n + 1) * n);
    let mut next_epoch = (start.step / spe + 1) * spe;
    let mut window = (start.step, 0.0);
    let (mut epoch_loss, mut epoch_samples) = (0.0, 0.0);
    let mut last_eval: Option<(u64, f64, f64)> = None;

    let wait_all = |devices: &[Device]| devices.iter().try_for_each(|d| d.wait_idle());
    let mut finish_called = false;
    loop {
        let finished = shared.running.load(Ordering::Acquire) == 0;
        let step = shared.done.load(Ordering::Acquire);
        if finished && !finish_called {
            finish_called = true;
            if shared.error.lock().expect("error lock poisoned").is_none() {
                (hooks.finish)()?;
                if let Some(p) = hooks.periodic.as_deref_mut() {
                    let mut pauser = Pauser { gate: &shared.gate, devices: &hooks.devices, feed: &shared.feed };
                    p.finish(step, &mut pauser)?;
                }
            }
        } else if !finished {
            if let Some(p) = hooks.periodic.as_deref_mut() {
                let mut pauser = Pauser { gate: &shared.gate, devices: &hooks.devices, feed: &shared.feed };
                if let Err(e) = p.tick(step, &mut pauser) {
                    shared.fail(e);
                }
            }
        }
        if step != last_step {
            obs(&Event::Tick { epoch: (step / spe) as usize + 1, step })?;
            last_step = step;
        }
        let overdue = clock.train() - window.1 >= cfg.log_seconds && step > window.0;
        let log_due = step >= next_log || overdue || (finished && step > window.0);
        let eval_due = next_eval.is_some_and(|n| step >= n);
        let epoch_due = step >= next_epoch;
        if log_due || eval_due || epoch_due {
            // Pause: no worker submits while the guard is held.
            let _pause = shared.gate.write().expect("gate poisoned");
            let t = clock.train();
            let paused_at = Instant::now();
            let result = (|| -> Result<()> {
                wait_all(&hooks.devices)?;
                let (loss, correct, count) = (hooks.take_totals)()?;
                let epoch = (step.saturating_sub(1) / spe) as usize + 1;
                if count > 0.0 {
                    super::check_loss(loss, count, step)?;
                    epoch_loss += loss;
                    epoch_samples += count;
                    let rate = ((step - window.0) * cfg.batch as u64) as f64 / (t - window.1).max(1e-9);
                    obs(&Event::Log {
                        epoch,
                        step,
                        train_loss: loss / count,
                        train_acc: correct / count,
                        samples_per_s: rate,
                        wall_s: clock.wall(),
                    })?;
                }
                window = (step, t);
                next_log = (step / log_every + 1) * log_every;
                if eval_due || epoch_due {
                    let (l, a) = super::test_metrics(cfg, evaluator, test)?;
                    if let (Some(target), None) = (cfg.target_acc, summary.time_to_target_s) {
                        if a >= target {
                            summary.time_to_target_s = Some(t);
                            if cfg.stop_at_target {
                                shared.feed.stop();
                            }
                        }
                    }
                    obs(&Event::Eval { epoch, step, test_loss: l, test_acc: a, wall_s: clock.wall(), train_s: t })?;
                    last_eval = Some((step, l, a));
                    if let Some(n) = cfg.eval_every {
                        next_eval = Some((step / n + 1) * n);
                    }
                    if epoch_due {
                        let samples = (step - start.step) * cfg.batch as u64;
                        // The boundary is noticed a few steps late; name the epoch it closed.
                        obs(&Event::Epoch {
                            epoch: (next_epoch / spe) as usize,
                            step,
                            train_loss: epoch_loss / epoch_samples.max(1.0),
                            test_loss: l,
                            test_acc: a,
                            samples_per_s: samples as f64 / t.max(1e-9),
                            wall_s: clock.wall(),
                        })?;
                        (epoch_loss, epoch_samples) = (0.0, 0.0);
                        next_epoch = (step / spe + 1) * spe;
                        let pos =
                            Position { epoch: (step / spe) as usize, batch_in_epoch: (step % spe) as usize, step };
                        if let Some(path) = (hooks.save)(pos)? {
                            obs(&Event::Checkpoint { path, step, wall_s: clock.wall() })?;
                        }
                    }
                }
                Ok(())
            })();
            clock.add_pause(paused_at.elapsed());
            result?;
            continue;
        }
        if finished {
            break;
        }
        if let Some(e) = shared.take_error() {
            // Workers stop on their own once the feed is stopped; wait for them.
            while shared.running.load(Ordering::Acquire) > 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(e) = shared.take_error() {
        return Err(e);
    }
    let step = shared.done.load(Ordering::Acquire);
    let t = clock.train();
    let (test_loss, test_acc) = match last_eval {
        Some((s, l, a)) if s == step => (l, a),
        _ => {
            let paused_at = Instant::now();
            wait_all(&hooks.devices)?;
            let (l, a) = super::test_metrics(cfg, evaluator, test)?;
            let epoch = (step.saturating_sub(1) / spe) as usize + 1;
            obs(&Event::Eval { epoch, step, test_loss: l, test_acc: a, wall_s: clock.wall(), train_s: t })?;
            if let (Some(target), None) = (cfg.target_acc, summary.time_to_target_s) {
                if a >= target {
                    summary.time_to_target_s = Some(t);
                }
            }
            let pos = Position { epoch: (step / spe) as usize, batch_in_epoch: (step % spe) as usize, step };
            let saved = (hooks.save)(pos)?;
            clock.add_pause(paused_at.elapsed());
            if let Some(path) = saved {
                obs(&Event::Checkpoint { path, step, wall_s: clock.wall() })?;
            }
            (l, a)
        }
    };
    summary.steps = step - start.step;
    summary.samples = summary.steps * cfg.batch as u64;
    summary.test_loss = test_loss;
    summary.test_acc = test_acc;
    summary.wall_s = clock.wall();
    summary.train_s = clock.train();
    summary.samples_per_s = summary.samples as f64 / summary.train_s.max(1e-9);
    summary.extra = hooks.periodic.as_deref().and_then(|p| p.report());
    Ok(summary)
}

//! The thread that watches a multi-threaded run: it hands out nothing itself, but every
//! `log_every` steps it pauses the workers (a write lock on the gate they hold while
//! submitting) and keeps the run's [`Books`]: reads the loss totals, evaluates and writes
//! checkpoints when due, and stops the feed when the run reaches its target.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use super::books::{test_metrics, Books, Ledger};
use super::feed::Feed;
use super::{Elapsed, Evaluator, Observer, Position, Summary, TrainConfig};
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
    pub save: &'h mut dyn FnMut(Position, Elapsed) -> Result<Option<std::path::PathBuf>>,
    /// Called once when every worker has stopped, before the final evaluation (to apply
    /// updates still in flight between workers).
    pub finish: &'h mut dyn FnMut() -> Result<()>,
    /// Side work, if any.
    pub periodic: Option<&'h mut dyn Periodic>,
}

/// Watches the run until every worker has stopped, keeping its `books` (opened when the run
/// started); returns the summary, whose `Done` the caller reports once it has added what only
/// it knows.
pub(crate) fn coordinate(
    shared: &Shared,
    cfg: &TrainConfig,
    test: &Dataset,
    evaluator: &mut Evaluator,
    hooks: Hooks,
    books: Books,
    obs: &mut Observer,
) -> Result<Summary> {
    let out = watch(shared, cfg, test, evaluator, hooks, books, obs);
    if out.is_err() {
        // The books or the observer failed (a diverged loss, a metrics file that cannot be
        // written): the workers stop at their next step rather than run the rest of the run.
        shared.feed.stop();
    }
    out
}

fn watch(
    shared: &Shared,
    cfg: &TrainConfig,
    test: &Dataset,
    evaluator: &mut Evaluator,
    mut hooks: Hooks,
    mut books: Books,
    obs: &mut Observer,
) -> Result<Summary> {
    let mut last_step = books.start_step();
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
            books.tick(step, obs)?;
            last_step = step;
        }
        let due = books.due(step, finished);
        if due.any() {
            // Pause: no worker submits while the guard is held.
            let _pause = shared.gate.write().expect("gate poisoned");
            books.record(step, due, &mut HookLedger { hooks: &mut hooks, cfg, evaluator, test }, obs)?;
            if books.should_stop() {
                shared.feed.stop();
            }
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
    let mut summary = books.finish(step, &mut HookLedger { hooks: &mut hooks, cfg, evaluator, test }, obs)?;
    summary.extra = hooks.periodic.as_deref().and_then(|p| p.report());
    Ok(summary)
}

/// What the books read from a multi-threaded run, while its workers are paused (or stopped):
/// each read waits for every device first.
struct HookLedger<'x, 'h, 'e> {
    hooks: &'x mut Hooks<'h>,
    cfg: &'x TrainConfig,
    evaluator: &'x mut Evaluator<'e>,
    test: &'x Dataset,
}

impl HookLedger<'_, '_, '_> {
    fn wait_all(&self) -> Result<()> {
        self.hooks.devices.iter().try_for_each(|d| d.wait_idle())
    }
}

impl Ledger for HookLedger<'_, '_, '_> {
    fn take_totals(&mut self) -> Result<(f64, f64, f64)> {
        self.wait_all()?;
        (self.hooks.take_totals)()
    }

    fn evaluate(&mut self) -> Result<(f64, f64)> {
        self.wait_all()?;
        test_metrics(self.cfg, self.evaluator, self.test)
    }

    fn save(&mut self, pos: Position, elapsed: Elapsed) -> Result<Option<std::path::PathBuf>> {
        self.wait_all()?;
        (self.hooks.save)(pos, elapsed)
    }
}

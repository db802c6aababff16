//! The books of a run, kept alike by every training loop: steps and samples, the training
//! loss read back every `log_every` steps (or `log_seconds`), evaluations every `eval_every`
//! steps and at each epoch's end, epoch events, checkpoints at each epoch's end and every
//! `checkpoint_every` steps, the first time the target accuracy is reached, and at the end an
//! evaluation and a checkpoint of where the run stopped, unless it has them already.
//!
//! A loop calls [`Books::tick`] as steps finish, [`Books::due`] to learn whether anything is
//! due (a multi-threaded loop pauses its workers only then), [`Books::record`] to do it, and
//! [`Books::finish`] once the last step is done. A loop that polls may see steps late:
//! whatever fell due at or before the step it sees is done once, at that step.
//!
//! Evaluating and writing checkpoints is not training time; reading the loss back, which
//! waits for the training work in flight, is.

use std::path::PathBuf;
use std::time::Instant;

use super::{save_checkpoint, Elapsed, Evaluator, Event, Observer, Position, Summary, TrainConfig};
use crate::data::Dataset;
use crate::error::{EngineError, Result};

/// What the books need from a training loop.
pub(crate) trait Ledger {
    /// Reads and resets the loss totals of the steps since the last call:
    /// `(sum of losses, correct predictions, samples)`.
    fn take_totals(&mut self) -> Result<(f64, f64, f64)>;
    /// The test loss and accuracy of the model as it stands (NaNs where this process does not
    /// evaluate, see [`test_metrics`]).
    fn evaluate(&mut self) -> Result<(f64, f64)>;
    /// Writes a checkpoint of the run at `pos`, `elapsed` into it (see [`save_at`]); its path,
    /// or `None` when the run writes none.
    fn save(&mut self, pos: Position, elapsed: Elapsed) -> Result<Option<PathBuf>>;
}

/// What falls due at a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Read the training loss back and log it.
    pub log: bool,
    /// Evaluate on the test set (`eval_every`).
    pub eval: bool,
    /// An epoch ended: evaluate, report the epoch, write the checkpoint.
    pub epoch: bool,
    /// Write the checkpoint (`checkpoint_every`).
    pub checkpoint: bool,
}

impl Due {
    pub fn any(self) -> bool {
        self.log || self.eval || self.epoch || self.checkpoint
    }
}

/// The first multiple of `n` after `step`.
fn after(step: u64, n: u64) -> u64 {
    (step / n + 1) * n
}

/// The books of one run; see the module doc.
pub(crate) struct Books<'c> {
    cfg: &'c TrainConfig,
    steps_per_epoch: u64,
    start_step: u64,
    clock: Clock,
    next_log: u64,
    next_eval: Option<u64>,
    next_epoch: u64,
    next_checkpoint: Option<u64>,
    /// Step and training time of the last loss read-back.
    window: (u64, f64),
    /// Loss and samples summed over the epoch's read-backs.
    epoch_loss: (f64, f64),
    /// Step, test loss and accuracy of the last evaluation.
    last_eval: Option<(u64, f64, f64)>,
    /// Step of the last checkpoint.
    last_checkpoint: Option<u64>,
    time_to_target: Option<f64>,
}

impl<'c> Books<'c> {
    /// Opens the books of a run starting at `start_step` of `total_steps` (steps of this
    /// process, `steps_per_epoch` of them an epoch): reports [`Event::Start`] and starts the
    /// clock.
    pub fn start(
        cfg: &'c TrainConfig,
        steps_per_epoch: u64,
        total_steps: u64,
        start_step: u64,
        params: usize,
        obs: &mut Observer,
    ) -> Result<Self> {
        obs(&Event::Start { steps_per_epoch, total_steps, start_step, params, wall_s: cfg.elapsed.wall_s })?;
        let every = |n: Option<u64>| n.filter(|&n| n > 0).map(|n| after(start_step, n));
        Ok(Self {
            cfg,
            steps_per_epoch: steps_per_epoch.max(1),
            start_step,
            clock: Clock::start(cfg.elapsed),
            next_log: after(start_step, cfg.log_every.max(1)),
            next_eval: every(cfg.eval_every),
            next_epoch: after(start_step, steps_per_epoch.max(1)),
            next_checkpoint: every(cfg.checkpoint.as_ref().and(cfg.checkpoint_every)),
            window: (start_step, cfg.elapsed.train_s),
            epoch_loss: (0.0, 0.0),
            last_eval: None,
            last_checkpoint: None,
            time_to_target: None,
        })
    }

    /// The step the run started at.
    pub fn start_step(&self) -> u64 {
        self.start_step
    }

    /// The 1-based epoch of the batch of step `step` (counted from 1: the steps done).
    fn epoch_of(&self, step: u64) -> usize {
        (step.saturating_sub(1) / self.steps_per_epoch) as usize + 1
    }

    /// Where the run stands after `step` steps.
    fn position(&self, step: u64) -> Position {
        Position::after(step, self.steps_per_epoch)
    }

    /// Reports that `step` steps are done (for progress bars).
    pub fn tick(&self, step: u64, obs: &mut Observer) -> Result<()> {
        obs(&Event::Tick { epoch: self.epoch_of(step), step })
    }

    /// What is due now that `step` steps are done; `last` when no more will be.
    pub fn due(&self, step: u64, last: bool) -> Due {
        let epoch = step >= self.next_epoch;
        let overdue = self.clock.train() - self.window.1 >= self.cfg.log_seconds;
        Due {
            log: step > self.window.0 && (step >= self.next_log || overdue || last || epoch),
            eval: self.next_eval.is_some_and(|n| step >= n),
            epoch,
            checkpoint: self.next_checkpoint.is_some_and(|n| step >= n),
        }
    }

    /// Does what `due` says at `step`, in this order: read the loss back and log it;
    /// evaluate; report the epoch; write the checkpoint.
    pub fn record(&mut self, step: u64, due: Due, run: &mut dyn Ledger, obs: &mut Observer) -> Result<()> {
        if due.log {
            self.log(step, run, obs)?;
        }
        if due.eval || due.epoch {
            let (test_loss, test_acc) = self.evaluate(step, run, obs)?;
            if due.epoch {
                let t = self.clock.own_train();
                let samples = (step - self.start_step) * self.cfg.batch as u64;
                let (loss, count) = std::mem::take(&mut self.epoch_loss);
                // A polling loop sees the boundary a few steps late; name the epoch it closed.
                obs(&Event::Epoch {
                    epoch: (self.next_epoch / self.steps_per_epoch) as usize,
                    step,
                    train_loss: loss / count.max(1.0),
                    test_loss,
                    test_acc,
                    samples_per_s: samples as f64 / t.max(1e-9),
                    wall_s: self.clock.wall(),
                })?;
                self.next_epoch = after(step, self.steps_per_epoch);
            }
        }
        if due.checkpoint || due.epoch {
            self.save(step, run, obs)?;
        }
        Ok(())
    }

    fn log(&mut self, step: u64, run: &mut dyn Ledger, obs: &mut Observer) -> Result<()> {
        let (loss, correct, count) = run.take_totals()?;
        let t = self.clock.train();
        if count > 0.0 {
            check_loss(loss, count, step)?;
            self.epoch_loss.0 += loss;
            self.epoch_loss.1 += count;
            let samples = (step - self.window.0) * self.cfg.batch as u64;
            obs(&Event::Log {
                epoch: self.epoch_of(step),
                step,
                train_loss: loss / count,
                train_acc: correct / count,
                samples_per_s: samples as f64 / (t - self.window.1).max(1e-9),
                wall_s: self.clock.wall(),
            })?;
        }
        self.window = (step, t);
        self.next_log = after(step, self.cfg.log_every.max(1));
        Ok(())
    }

    fn evaluate(&mut self, step: u64, run: &mut dyn Ledger, obs: &mut Observer) -> Result<(f64, f64)> {
        let t = self.clock.train();
        let (test_loss, test_acc) = self.clock.paused(|| run.evaluate())?;
        if let (Some(target), None) = (self.cfg.target_acc, self.time_to_target) {
            if test_acc >= target {
                self.time_to_target = Some(t);
            }
        }
        obs(&Event::Eval {
            epoch: self.epoch_of(step),
            step,
            samples: step * self.cfg.batch as u64 * self.cfg.shard.world.max(1) as u64,
            test_loss,
            test_acc,
            wall_s: self.clock.wall(),
            train_s: t,
        })?;
        self.last_eval = Some((step, test_loss, test_acc));
        if let Some(n) = self.cfg.eval_every.filter(|&n| n > 0) {
            self.next_eval = Some(after(step, n));
        }
        Ok((test_loss, test_acc))
    }

    fn save(&mut self, step: u64, run: &mut dyn Ledger, obs: &mut Observer) -> Result<()> {
        let pos = self.position(step);
        let elapsed = Elapsed { wall_s: self.clock.wall(), train_s: self.clock.train() };
        if let Some(path) = self.clock.paused(|| run.save(pos, elapsed))? {
            obs(&Event::Checkpoint { path, step, wall_s: self.clock.wall() })?;
        }
        self.last_checkpoint = Some(step);
        if let Some(n) = self.cfg.checkpoint_every.filter(|&n| n > 0) {
            self.next_checkpoint = self.next_checkpoint.map(|_| after(step, n));
        }
        Ok(())
    }

    /// True once the target accuracy is reached on a run that stops there.
    pub fn should_stop(&self) -> bool {
        self.cfg.stop_at_target && self.time_to_target.is_some()
    }

    /// Closes the books after `step` steps: logs the loss of steps not read back yet, and
    /// unless the last evaluation and checkpoint are of this step, evaluates and writes the
    /// checkpoint. The summary lacks what only the loop knows (`extra`, `staleness`,
    /// `updates`, `model_checksum`); report it with [`report_done`].
    pub fn finish(mut self, step: u64, run: &mut dyn Ledger, obs: &mut Observer) -> Result<Summary> {
        if step > self.window.0 {
            self.log(step, run, obs)?;
        }
        let (test_loss, test_acc) = match self.last_eval {
            Some((s, l, a)) if s == step => (l, a),
            _ => self.evaluate(step, run, obs)?,
        };
        if self.last_checkpoint != Some(step) {
            self.save(step, run, obs)?;
        }
        let steps = step - self.start_step;
        let samples = steps * self.cfg.batch as u64;
        Ok(Summary {
            steps,
            samples,
            test_acc,
            test_loss,
            wall_s: self.clock.wall(),
            train_s: self.clock.train(),
            samples_per_s: samples as f64 / self.clock.own_train().max(1e-9),
            time_to_target_s: self.time_to_target,
            ..Summary::default()
        })
    }
}

/// Reports the end of the run with `summary` complete.
pub(crate) fn report_done(summary: Summary, obs: &mut Observer) -> Result<Summary> {
    obs(&Event::Done(summary.clone()))?;
    Ok(summary)
}

/// Fails the run if the mean training loss of the last read-back (`loss` summed over `count`
/// samples) is not finite: the error every training loop stops with when it diverges.
fn check_loss(loss: f64, count: f64, step: u64) -> Result<()> {
    let mean = loss / count;
    if mean.is_finite() {
        Ok(())
    } else {
        Err(EngineError::Diverged { step, loss: mean })
    }
}

/// The test loss and accuracy, or NaNs on a process that does not evaluate
/// ([`TrainConfig::evaluate`] false: every rank but 0).
pub(crate) fn test_metrics(cfg: &TrainConfig, evaluator: &mut Evaluator, test: &Dataset) -> Result<(f64, f64)> {
    if cfg.evaluate {
        evaluator.run(test)
    } else {
        Ok((f64::NAN, f64::NAN))
    }
}

/// Writes the run's checkpoint, if it has one, at `pos` (atomically, see
/// [`save_checkpoint`]); returns its path.
pub(crate) fn save_at(
    cfg: &TrainConfig,
    model: &crate::Model,
    optim: &dyn crate::optim::Optimizer,
    pos: Position,
    elapsed: Elapsed,
) -> Result<Option<PathBuf>> {
    let Some(path) = &cfg.checkpoint else { return Ok(None) };
    let mut meta = cfg.checkpoint_meta.clone();
    meta.position = pos;
    meta.elapsed = elapsed;
    meta.seed = cfg.seed;
    save_checkpoint(path, model, Some(optim), &meta)?;
    Ok(Some(path.clone()))
}

/// Wall time since the start, and training time that excludes paused spans (evaluations).
struct Clock {
    start: Instant,
    paused: f64,
    /// The run's time before this process took it up.
    before: Elapsed,
}

impl Clock {
    fn start(before: Elapsed) -> Self {
        Self { start: Instant::now(), paused: 0.0, before }
    }

    /// The run's wall time, earlier processes included.
    fn wall(&self) -> f64 {
        self.before.wall_s + self.start.elapsed().as_secs_f64()
    }

    /// The run's training time, earlier processes included.
    fn train(&self) -> f64 {
        self.before.train_s + self.own_train()
    }

    /// This process's training time (for its rates).
    fn own_train(&self) -> f64 {
        self.start.elapsed().as_secs_f64() - self.paused
    }

    /// Runs `f` without counting it as training time.
    fn paused<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        self.paused += t0.elapsed().as_secs_f64();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop whose `n`-th loss read-back sums loss `n` over one sample and whose `n`-th
    /// evaluation has accuracy `n / 10`; it records where checkpoints were written.
    #[derive(Default)]
    struct Fake {
        reads: u32,
        evals: u32,
        saved: Vec<Position>,
    }

    impl Ledger for Fake {
        fn take_totals(&mut self) -> Result<(f64, f64, f64)> {
            self.reads += 1;
            Ok((self.reads as f64, 0.5, 1.0))
        }
        fn evaluate(&mut self) -> Result<(f64, f64)> {
            self.evals += 1;
            Ok((1.0, self.evals as f64 / 10.0))
        }
        fn save(&mut self, pos: Position, _elapsed: Elapsed) -> Result<Option<PathBuf>> {
            self.saved.push(pos);
            Ok(Some(PathBuf::from("ck.safetensors")))
        }
    }

    /// 4 steps an epoch; log, evaluate every 3 steps; checkpoint every 5.
    fn config() -> TrainConfig {
        TrainConfig {
            batch: 2,
            log_every: 3,
            log_seconds: f64::INFINITY,
            eval_every: Some(3),
            checkpoint: Some(PathBuf::from("ck.safetensors")),
            checkpoint_every: Some(5),
            ..TrainConfig::default()
        }
    }

    /// Events but ticks, in words.
    fn words(e: &Event) -> Option<String> {
        Some(match e {
            Event::Tick { .. } | Event::Start { .. } => return None,
            Event::Log { epoch, step, train_loss, .. } => format!("log {step} e{epoch} {train_loss}"),
            Event::Eval { epoch, step, test_acc, .. } => format!("eval {step} e{epoch} {test_acc}"),
            Event::Epoch { epoch, step, train_loss, test_acc, .. } => {
                format!("epoch {epoch} at {step} {train_loss} {test_acc}")
            }
            Event::Checkpoint { step, .. } => format!("checkpoint {step}"),
            Event::Done(_) => "done".into(),
        })
    }

    /// Runs books over the steps `seen` (as a loop sees them, the last one last) from
    /// `start`; returns the events in words, the fake and the summary.
    fn run(cfg: &TrainConfig, start: u64, seen: &[u64]) -> (Vec<String>, Fake, Summary, bool) {
        let mut events = Vec::new();
        let mut obs = |e: &Event| {
            events.extend(words(e));
            Ok(())
        };
        let mut fake = Fake::default();
        let mut books = Books::start(cfg, 4, 10, start, 0, &mut obs).unwrap();
        let mut end = *seen.last().unwrap();
        let mut stopped = false;
        for (i, &step) in seen.iter().enumerate() {
            let due = books.due(step, i + 1 == seen.len());
            if due.any() {
                books.record(step, due, &mut fake, &mut obs).unwrap();
            }
            if books.should_stop() {
                (end, stopped) = (step, true);
                break;
            }
        }
        let summary = books.finish(end, &mut fake, &mut obs).unwrap();
        (events, fake, summary, stopped)
    }

    fn pos(epoch: usize, batch_in_epoch: usize, step: u64) -> Position {
        Position { epoch, batch_in_epoch, step }
    }

    #[test]
    fn a_loop_that_reports_every_step_logs_evaluates_and_checkpoints_on_cadence() {
        let (events, fake, summary, _) = run(&config(), 0, &(1..=10).collect::<Vec<_>>());
        assert_eq!(
            events,
            [
                "log 3 e1 1",
                "eval 3 e1 0.1",
                // The epoch's end reads the loss back and evaluates off cadence.
                "log 4 e1 2",
                "eval 4 e1 0.2",
                "epoch 1 at 4 1.5 0.2",
                "checkpoint 4",
                "checkpoint 5",
                "log 6 e2 3",
                "eval 6 e2 0.3",
                "log 8 e2 4",
                "eval 8 e2 0.4",
                "epoch 2 at 8 3.5 0.4",
                "checkpoint 8",
                "log 9 e3 5",
                "eval 9 e3 0.5",
                // The last step is read back and checkpointed; the evaluation comes in finish.
                "log 10 e3 6",
                "checkpoint 10",
                "eval 10 e3 0.6",
            ]
        );
        assert_eq!(fake.saved, [pos(1, 0, 4), pos(1, 1, 5), pos(2, 0, 8), pos(2, 2, 10)]);
        assert_eq!((summary.steps, summary.samples, summary.test_acc), (10, 20, 0.6));
        assert_eq!(summary.time_to_target_s, None);
    }

    #[test]
    fn a_loop_that_sees_steps_late_does_what_fell_due_once_and_names_the_closed_epoch() {
        let (events, fake, _, _) = run(&config(), 0, &[0, 2, 5, 9, 10]);
        assert_eq!(
            events,
            [
                "log 5 e2 1",
                "eval 5 e2 0.1",
                "epoch 1 at 5 1 0.1",
                "checkpoint 5",
                "log 9 e3 2",
                "eval 9 e3 0.2",
                "epoch 2 at 9 2 0.2",
                "checkpoint 9",
                "log 10 e3 3",
                "checkpoint 10",
                "eval 10 e3 0.3",
            ]
        );
        assert_eq!(fake.saved, [pos(1, 1, 5), pos(2, 1, 9), pos(2, 2, 10)]);
    }

    #[test]
    fn a_resumed_run_keeps_the_cadence_of_the_whole_run_and_counts_its_own_steps() {
        // From step 6: the next multiples of 3 (log, eval), 4 (epoch) and 5 (checkpoint).
        let (events, _, summary, _) = run(&config(), 6, &[7, 8, 9, 10]);
        assert_eq!(
            events,
            [
                "log 8 e2 1",
                "eval 8 e2 0.1",
                "epoch 2 at 8 1 0.1",
                "checkpoint 8",
                "log 9 e3 2",
                "eval 9 e3 0.2",
                "log 10 e3 3",
                "checkpoint 10",
                "eval 10 e3 0.3",
            ]
        );
        assert_eq!((summary.steps, summary.samples), (4, 8));
    }

    #[test]
    fn a_run_that_stops_at_its_target_ends_with_the_loss_and_a_checkpoint_of_that_step() {
        let cfg = TrainConfig { target_acc: Some(0.3), stop_at_target: true, checkpoint_every: None, ..config() };
        let (events, fake, summary, stopped) = run(&cfg, 0, &(1..=10).collect::<Vec<_>>());
        assert!(stopped);
        assert_eq!(
            events,
            [
                "log 3 e1 1",
                "eval 3 e1 0.1",
                "log 4 e1 2",
                "eval 4 e1 0.2",
                "epoch 1 at 4 1.5 0.2",
                "checkpoint 4",
                "log 6 e2 3",
                "eval 6 e2 0.3",
                // finish: no second evaluation of step 6, but the checkpoint where it stopped.
                "checkpoint 6",
            ]
        );
        assert_eq!(fake.saved.last(), Some(&pos(1, 2, 6)));
        assert_eq!((summary.steps, summary.test_acc), (6, 0.3));
        assert!(summary.time_to_target_s.is_some());
    }

    #[test]
    fn without_a_checkpoint_path_no_step_is_due_for_one() {
        let quiet = TrainConfig { log_every: 100, eval_every: None, ..config() };
        let due_at_5 = |cfg: &TrainConfig| Books::start(cfg, 100, 100, 0, 0, &mut |_| Ok(())).unwrap().due(5, false);
        assert_eq!(due_at_5(&quiet), Due { checkpoint: true, ..Due::default() });
        assert_eq!(due_at_5(&TrainConfig { checkpoint: None, ..quiet }), Due::default());
    }
}

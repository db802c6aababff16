//! Local SGD and DaSGD (Zhou et al., arXiv 2006.00441): every process takes plain SGD steps
//! on its share of the data; every `period` steps it snapshots its weights and averages the
//! snapshots across processes. Local SGD waits for the average and sets `w <- avg`. DaSGD
//! starts the all-reduce without waiting and applies it `delay` steps later as
//! `w <- avg + (w - snapshot)`, keeping the progress made meanwhile; training waits only when
//! the average is still not back by then. With `delay = 0` the two are the same algorithm.
//!
//! Momentum stays local. After the last step every process waits for any average in flight
//! and then averages once more, blocking, so that all end with the same model.

use std::time::Instant;

use asgd_engine::train::{PlainStep, StepAlgorithm, StepContext};
use asgd_engine::{Model, Result};

use super::{check_period, comm_err, AddToParams, Averager, AveragingStats, InFlight};

/// Periodic model averaging as a step algorithm.
pub struct AveragingStep<'c> {
    comm: Averager<'c>,
    period: u64,
    delay: u64,
    add: AddToParams,
    /// The average in flight; it is applied `delay` steps after its snapshot.
    in_flight: Option<InFlight>,
    stats: AveragingStats,
}

impl<'c> AveragingStep<'c> {
    /// Averages every `period` steps and applies each average `delay` steps after it started
    /// (`delay < period`; 0 is local SGD).
    pub fn new(comm: impl Into<Averager<'c>>, model: &Model, period: u64, delay: u64) -> Result<Self> {
        check_period(period, delay)?;
        Ok(Self {
            comm: comm.into(),
            period,
            delay,
            add: AddToParams::new(model)?,
            in_flight: None,
            stats: AveragingStats::default(),
        })
    }

    /// Waits for the average in flight and applies `w <- avg + (w - snapshot)` after `step` steps.
    fn apply(&mut self, model: &Model, step: u64) -> Result<()> {
        let Some(flight) = self.in_flight.take() else { return Ok(()) };
        let delta = flight.finish(self.comm, &mut self.stats, step)?;
        let t1 = Instant::now();
        self.add.apply(model, &delta)?;
        self.stats.sync_s += t1.elapsed().as_secs_f64();
        self.stats.rounds += 1;
        Ok(())
    }
}

impl StepAlgorithm for AveragingStep<'_> {
    fn step(&mut self, ctx: &StepContext) -> Result<()> {
        PlainStep.step(ctx)?;
        let done = ctx.step + 1;
        if self.in_flight.as_ref().is_some_and(|f| f.at + self.delay == done) {
            self.apply(ctx.model, done)?;
        }
        if done.is_multiple_of(self.period) {
            let t0 = Instant::now();
            let snapshot = ctx.model.read_flat()?;
            self.stats.sync_s += t0.elapsed().as_secs_f64();
            self.in_flight = Some(InFlight::start(self.comm, snapshot, done));
            if self.delay == 0 {
                self.apply(ctx.model, done)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &StepContext) -> Result<()> {
        self.apply(ctx.model, ctx.step)?;
        // All processes end with the same model: one last blocking average.
        let mut w = ctx.model.read_flat()?;
        self.comm.average(&mut w, ctx.step).map_err(comm_err)?;
        ctx.model.write_flat(&w)
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(self.stats.report(self.comm))
    }
}

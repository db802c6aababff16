//! LASGD (Avidor et al., arXiv 2203.13085): inside a process, workers train asynchronously
//! (the PD-ASGD lanes, no lock step); across processes the model is averaged by all-reduce
//! every `period` process steps, overlapped with training: the snapshot is taken while the
//! lanes are paused, the all-reduce runs while they train on, and the average is applied as
//! `w <- avg + (w - snapshot)` (on every local replica) as soon as it is back, and at the
//! latest `delay` steps after it started: no forward pass starts a later step until it is
//! applied (training waits for it then, as in DaSGD).
//!
//! The bound matters. Without it, a process whose average was held up (by rank 0 evaluating,
//! or a slow peer) trained on while it waited, applied the average many steps late and took
//! its next snapshots late: on MNIST with 4 processes the ranks that waited for rank 0
//! averaged far less often than every period (0.2 points of test accuracy in two runs).
//!
//! Every process makes the same number of rounds (one per `period` of its steps); after the
//! last step it finishes the one in flight and averages once more, blocking, so that all end
//! with the same model.

use std::time::Instant;

use asgd_engine::train::{Pauser, Periodic};
use asgd_engine::{Model, Result};

use super::{check_period, comm_err, AddToParams, Averager, AveragingStats, InFlight};

/// Periodic overlapped averaging of the process's replicas across processes.
pub struct LasgdAveraging<'a> {
    comm: Averager<'a>,
    replicas: Vec<&'a Model>,
    adds: Vec<AddToParams>,
    period: u64,
    delay: u64,
    next: u64,
    /// The average in flight; it must be applied by step `at + delay`.
    in_flight: Option<InFlight>,
    stats: AveragingStats,
}

impl<'a> LasgdAveraging<'a> {
    /// Averages the replicas' model (replica 0's snapshot) every `period` steps from `start`,
    /// each average applied at most `delay` steps after it started (`delay < period`; 0
    /// waits for every average at once).
    pub fn new(
        comm: impl Into<Averager<'a>>,
        replicas: Vec<&'a Model>,
        period: u64,
        delay: u64,
        start: u64,
    ) -> Result<Self> {
        check_period(period, delay)?;
        let adds = replicas.iter().map(|m| AddToParams::new(m)).collect::<Result<_>>()?;
        Ok(Self {
            comm: comm.into(),
            replicas,
            adds,
            period,
            delay,
            next: (start / period + 1) * period,
            in_flight: None,
            stats: AveragingStats::default(),
        })
    }

    /// Waits for the average in flight and applies it.
    fn apply(&mut self, pauser: &mut Pauser) -> Result<()> {
        let Some(flight) = self.in_flight.take() else { return Ok(()) };
        let delta = flight.finish(self.comm, &mut self.stats, pauser.started())?;
        let t1 = Instant::now();
        pauser.paused(|| self.replicas.iter().zip(&self.adds).try_for_each(|(m, add)| add.apply(m, &delta)))?;
        pauser.unfence();
        self.stats.sync_s += t1.elapsed().as_secs_f64();
        self.stats.rounds += 1;
        Ok(())
    }

    /// Snapshots and starts an average; with no delay, waits for it. The fence goes up
    /// first, so that at most `delay` steps start between the snapshot and the average's use
    /// (steps are counted as they start: those already running when the snapshot is taken
    /// finish after it, as in any pipeline).
    fn start(&mut self, pauser: &mut Pauser) -> Result<()> {
        // Counted from here, a step or two before the snapshot: the recorded lag errs long.
        let at = pauser.started();
        pauser.fence(at + self.delay);
        let t0 = Instant::now();
        let snapshot = pauser.paused(|| self.replicas[0].read_flat())?;
        self.stats.sync_s += t0.elapsed().as_secs_f64();
        self.in_flight = Some(InFlight::start(self.comm, snapshot, at));
        if self.delay == 0 {
            self.apply(pauser)?;
        }
        Ok(())
    }
}

impl Periodic for LasgdAveraging<'_> {
    fn tick(&mut self, step: u64, pauser: &mut Pauser) -> Result<()> {
        if self.in_flight.as_ref().is_some_and(|f| f.is_done() || step >= f.at + self.delay) {
            self.apply(pauser)?;
        }
        if step >= self.next {
            // The previous round must be applied before the next snapshot.
            self.apply(pauser)?;
            self.start(pauser)?;
            self.next += self.period;
        }
        Ok(())
    }

    fn finish(&mut self, step: u64, pauser: &mut Pauser) -> Result<()> {
        // Every process makes one round per period of its steps, whatever its polling saw.
        while self.next <= step {
            self.apply(pauser)?;
            self.start(pauser)?;
            self.next += self.period;
        }
        self.apply(pauser)?;
        let comm = self.comm;
        let replicas = &self.replicas;
        pauser.paused(|| {
            let mut w = replicas[0].read_flat()?;
            comm.average(&mut w, step).map_err(comm_err)?;
            replicas.iter().try_for_each(|m| m.write_flat(&w))
        })
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(self.stats.report(self.comm))
    }
}

//! LASGD (Avidor et al., arXiv 2203.13085): inside a process, workers train asynchronously
//! (the PD-ASGD lanes, no lock step); across processes the model is averaged by all-reduce
//! every `period` process steps, overlapped with training: the snapshot is taken while the
//! lanes are paused, the all-reduce runs while they train on, and the average is applied as
//! `w <- avg + (w - snapshot)` (on every local replica) as soon as it is back.
//!
//! Every process makes the same number of rounds (one per `period` of its steps); after the
//! last step it finishes the one in flight and averages once more, blocking, so that all end
//! with the same model.

use std::time::Instant;

use asgd_comm::Communicator;
use asgd_engine::train::{Pauser, Periodic};
use asgd_engine::{EngineError, Model, Result};

use super::{comm_err, AddToParams, AveragingStats, InFlight};

/// Periodic overlapped averaging of the process's replicas across processes.
pub struct LasgdAveraging<'a> {
    comm: &'a Communicator,
    replicas: Vec<&'a Model>,
    adds: Vec<AddToParams>,
    period: u64,
    next: u64,
    in_flight: Option<InFlight>,
    stats: AveragingStats,
}

impl<'a> LasgdAveraging<'a> {
    /// Averages the replicas' model (replica 0's snapshot) every `period` steps from `start`.
    pub fn new(comm: &'a Communicator, replicas: Vec<&'a Model>, period: u64, start: u64) -> Result<Self> {
        if period == 0 {
            return Err(EngineError::InvalidArgument("--avg-period must be at least 1".into()));
        }
        let adds = replicas.iter().map(|m| AddToParams::new(m)).collect::<Result<_>>()?;
        Ok(Self { comm, replicas, adds, period, next: (start / period + 1) * period, in_flight: None, stats: AveragingStats::default() })
    }

    fn apply(&mut self, pauser: &mut Pauser) -> Result<()> {
        let Some(flight) = self.in_flight.take() else { return Ok(()) };
        let delta = flight.finish(&mut self.stats)?;
        let t1 = Instant::now();
        pauser.paused(|| self.replicas.iter().zip(&self.adds).try_for_each(|(m, add)| add.apply(m, &delta)))?;
        self.stats.sync_s += t1.elapsed().as_secs_f64();
        self.stats.rounds += 1;
        Ok(())
    }

    fn start(&mut self, pauser: &mut Pauser) -> Result<()> {
        let t0 = Instant::now();
        let snapshot = pauser.paused(|| self.replicas[0].read_flat())?;
        self.stats.sync_s += t0.elapsed().as_secs_f64();
        self.in_flight = Some(InFlight::start(self.comm, snapshot));
        Ok(())
    }
}

impl Periodic for LasgdAveraging<'_> {
    fn tick(&mut self, step: u64, pauser: &mut Pauser) -> Result<()> {
        if self.in_flight.as_ref().is_some_and(|f| f.is_done()) {
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
            comm.average(&mut w).map_err(comm_err)?;
            replicas.iter().try_for_each(|m| m.write_flat(&w))
        })
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(self.stats.to_json())
    }
}

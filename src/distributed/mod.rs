//! Training across processes: the glue between the engine's step loops and the comm module's
//! collectives. Sync data parallel (gradient all-reduce every step), local SGD and DaSGD
//! (periodic model averaging, blocking or delayed) are step algorithms for the engine's
//! single-threaded loop; LASGD is a periodic hook on the multi-threaded PD-ASGD loop.

pub mod averaging;
pub mod ddp;
pub mod lasgd;

use std::time::Instant;

use asgd_comm::{CommError, Communicator, Elastic, Handle};
use asgd_engine::kernel::{run_all, Dispatch};
use asgd_engine::ops::elementwise::scale_add;
use asgd_engine::train::LiveShard;
use asgd_engine::{Model, Result as EngineResult, Tensor};

pub use averaging::AveragingStep;
pub use ddp::DdpStep;
pub use lasgd::LasgdAveraging;

pub(crate) use crate::error::comm_err;

/// Checks that an average started every `period` steps is applied `delay` steps later,
/// before the next one starts.
pub(crate) fn check_period(period: u64, delay: u64) -> EngineResult<()> {
    crate::Averaging { period, delay }.check().map_err(|e| asgd_engine::EngineError::InvalidArgument(e.to_string()))
}

/// Adds a host vector to every averaged tensor of a model (in [`Model::averaged`] order, as
/// [`Model::read_flat`]): one upload and one kernel per tensor, with the kernels built once.
pub(crate) struct AddToParams {
    deltas: Vec<Tensor>,
    adds: Vec<Dispatch>,
}

impl AddToParams {
    pub fn new(model: &Model) -> EngineResult<Self> {
        let mut deltas = Vec::new();
        let mut adds = Vec::new();
        for (_, p) in model.averaged() {
            let d = Tensor::zeros_like(p);
            adds.push(scale_add(model.device(), p, &d, 1.0, 1.0)?);
            deltas.push(d);
        }
        Ok(Self { deltas, adds })
    }

    /// `w += delta` for the concatenated `delta`.
    pub fn apply(&self, model: &Model, delta: &[f32]) -> EngineResult<()> {
        let mut offset = 0;
        for d in &self.deltas {
            d.write_f32(&delta[offset..offset + d.numel()])?;
            offset += d.numel();
        }
        run_all(model.device(), &self.adds.iter().collect::<Vec<_>>());
        Ok(())
    }
}

/// Where a process's model averages go: the ring of a fail-stop job, or rank 0 of an elastic
/// one, whose membership also moves this process's share of the data.
#[derive(Clone, Copy)]
pub enum Averager<'a> {
    /// Every rank of the job, all-reduced over the ring.
    Ring(&'a Communicator),
    /// The ranks still in an elastic job; after each round this process takes its place among
    /// them in `shard`.
    Elastic {
        /// The job.
        elastic: &'a Elastic,
        /// The share the step loop reads.
        shard: &'a LiveShard,
    },
}

impl<'a> From<&'a Communicator> for Averager<'a> {
    fn from(comm: &'a Communicator) -> Self {
        Averager::Ring(comm)
    }
}

impl Averager<'_> {
    /// Starts averaging `snapshot`, taken after `step` steps.
    pub fn start_average(&self, snapshot: Vec<f32>, step: u64) -> Handle<Vec<f32>> {
        match self {
            Averager::Ring(comm) => comm.start_average(snapshot),
            Averager::Elastic { elastic, .. } => elastic.start_average(snapshot, step),
        }
    }

    /// Replaces `buf` with its average, blocking; then takes the new share of the data.
    pub fn average(&self, buf: &mut Vec<f32>, step: u64) -> Result<(), CommError> {
        match self {
            Averager::Ring(comm) => comm.average(buf),
            Averager::Elastic { elastic, .. } => {
                elastic.average(buf, step)?;
                self.after_round();
                Ok(())
            }
        }
    }

    /// After a round: an elastic job's members divide the data among themselves.
    pub fn after_round(&self) {
        if let Averager::Elastic { elastic, shard } = self {
            let m = elastic.membership();
            if let Some(position) = m.position(elastic.rank()) {
                shard.set(position, m.ranks.len());
            }
        }
    }

    /// The membership changes for the `done` event (an elastic job's rank 0 records them).
    pub fn report(&self) -> Option<serde_json::Value> {
        let Averager::Elastic { elastic, .. } = self else { return None };
        let m = elastic.membership();
        let changes: Vec<serde_json::Value> = elastic
            .changes()
            .iter()
            .map(|c| {
                serde_json::json!({"round": c.round, "rank": c.rank, "joined": c.joined, "detail": c.detail, "at_s": c.at_s})
            })
            .collect();
        Some(serde_json::json!({"ranks": m.ranks, "generation": m.generation, "changes": changes}))
    }
}

/// A model average in flight: started from `snapshot`, finished by a waiter thread that
/// records when the collective completed, so the time communication took is known exactly
/// and not only when someone looked.
pub(crate) struct InFlight {
    pub snapshot: Vec<f32>,
    pub started: Instant,
    /// The step the snapshot was taken at (LASGD: the steps started just before it), from
    /// which its lag is counted.
    pub at: u64,
    result: flume::Receiver<(Result<Vec<f32>, CommError>, Instant)>,
}

impl InFlight {
    pub fn start(averager: Averager<'_>, snapshot: Vec<f32>, at: u64) -> Self {
        let handle: Handle<Vec<f32>> = averager.start_average(snapshot.clone(), at);
        let (tx, rx) = flume::bounded(1);
        std::thread::spawn(move || {
            let r = handle.wait();
            let _ = tx.send((r, Instant::now()));
        });
        Self { snapshot, started: Instant::now(), at, result: rx }
    }

    pub fn is_done(&self) -> bool {
        !self.result.is_empty()
    }

    /// Waits for the average and returns `avg - snapshot`, the change to add to the model at
    /// `step`; counts in `stats` whether training had to wait, for how long, how long the
    /// collective took and how many steps late the average is.
    pub fn finish(self, averager: Averager<'_>, stats: &mut AveragingStats, step: u64) -> EngineResult<Vec<f32>> {
        if !self.is_done() {
            stats.waits += 1;
        }
        let t0 = Instant::now();
        let (r, done) = self
            .result
            .recv()
            .map_err(|_| asgd_engine::EngineError::Device("the averaging thread stopped unexpectedly".into()))?;
        stats.wait_s += t0.elapsed().as_secs_f64();
        stats.comm_s += done.saturating_duration_since(self.started).as_secs_f64();
        stats.max_lag = stats.max_lag.max(step.saturating_sub(self.at));
        let avg = r.map_err(comm_err)?;
        averager.after_round();
        Ok(avg.iter().zip(&self.snapshot).map(|(a, s)| a - s).collect())
    }
}

/// Counters of model averaging, reported in the `done` event.
#[derive(Clone, Debug, Default)]
pub struct AveragingStats {
    /// Averaging rounds completed.
    pub rounds: u64,
    /// Rounds whose result was not back when it was due (training waited).
    pub waits: u64,
    /// Time training spent waiting for averages.
    pub wait_s: f64,
    /// Time the averages took from start to completion, summed.
    pub comm_s: f64,
    /// Time spent taking snapshots and applying averages (GPU read-back and upload).
    pub sync_s: f64,
    /// The most steps between a snapshot and the use of its average.
    pub max_lag: u64,
}

impl AveragingStats {
    /// These counters, and an elastic job's membership, for the `done` event.
    pub fn report(&self, averager: Averager<'_>) -> serde_json::Value {
        let mut v = self.to_json();
        if let Some(elastic) = averager.report() {
            v["elastic"] = elastic;
        }
        v
    }

    pub fn to_json(&self) -> serde_json::Value {
        let hidden = if self.comm_s > 0.0 { (1.0 - self.wait_s / self.comm_s).clamp(0.0, 1.0) } else { 1.0 };
        serde_json::json!({"averaging": {
            "rounds": self.rounds, "waits": self.waits, "wait_s": self.wait_s, "comm_s": self.comm_s,
            "sync_s": self.sync_s, "hidden_fraction": hidden, "max_lag_steps": self.max_lag,
        }})
    }
}

/// A step algorithm slowed by an injected delay before every step (a straggler process).
pub struct Delayed<'a> {
    pub inner: &'a mut dyn asgd_engine::train::StepAlgorithm,
    pub sampler: asgd_engine::train::delay::DelaySampler,
}

impl asgd_engine::train::StepAlgorithm for Delayed<'_> {
    fn step(&mut self, ctx: &asgd_engine::train::StepContext) -> EngineResult<()> {
        let delay = self.sampler.next_delay();
        if !delay.is_zero() {
            // The delay stands for a slower device, so it must not overlap this rank's own
            // work still running on the device: with DDP, whose step returns once its work is
            // submitted, a 4x straggler slept while the previous step computed and slowed
            // nobody (measured: rank 1 at 150-168 samples/s with worker=1:factor=4, as without).
            ctx.model.device().wait_idle()?;
            std::thread::sleep(delay);
        }
        self.inner.step(ctx)
    }

    fn finish(&mut self, ctx: &asgd_engine::train::StepContext) -> EngineResult<()> {
        self.inner.finish(ctx)
    }

    fn report(&self) -> Option<serde_json::Value> {
        self.inner.report()
    }
}

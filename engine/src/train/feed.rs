//! A batch feed shared by many threads: global steps are handed out in order, each mapped to
//! its epoch's seeded order, so any thread may take the next batch and the samples a run sees
//! are those of a single-worker run with the same seed. A training set's augmentation is keyed
//! by the sample's place in its epoch's order, so it too is that of a single-worker run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::data::{epoch_order, Dataset};

/// Hands out the steps `start..total` of a run.
pub(crate) struct Feed<'a> {
    data: &'a Dataset,
    batch: usize,
    seed: u64,
    /// This process's part: step `s` of an epoch is batch `s * world + rank` of its order.
    shard: super::Shard,
    pub steps_per_epoch: u64,
    pub total: u64,
    next: AtomicU64,
    /// Steps from this one on wait in [`Feed::take`] until it is raised ([`u64::MAX`]: none).
    fence: AtomicU64,
    order: Mutex<(u64, Arc<Vec<usize>>)>,
    stop: AtomicBool,
}

impl<'a> Feed<'a> {
    pub fn new(data: &'a Dataset, batch: usize, seed: u64, steps_per_epoch: u64, start: u64, total: u64) -> Self {
        Self::sharded(data, batch, seed, steps_per_epoch, start, total, super::Shard::default())
    }

    /// A feed of this process's share; `steps_per_epoch` counts this process's steps.
    pub fn sharded(
        data: &'a Dataset,
        batch: usize,
        seed: u64,
        steps_per_epoch: u64,
        start: u64,
        total: u64,
        shard: super::Shard,
    ) -> Self {
        Self {
            data,
            batch,
            seed,
            shard,
            steps_per_epoch,
            total,
            next: AtomicU64::new(start),
            fence: AtomicU64::new(u64::MAX),
            order: Mutex::new((u64::MAX, Arc::new(Vec::new()))),
            stop: AtomicBool::new(false),
        }
    }

    /// The next step's batch into `images` and `labels`, or `None` when the run is over.
    /// Waits while the next step is at or past the fence.
    pub fn take(&self, images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Option<u64> {
        let step = loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let step = self.next.load(Ordering::Acquire);
            if step >= self.fence.load(Ordering::Acquire) && step < self.total {
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            if self.next.compare_exchange(step, step + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                break step;
            }
        };
        self.gather_step(step, images, labels).then_some(step)
    }

    /// Steps handed out so far (counted from 0, as the steps themselves).
    pub fn started(&self) -> u64 {
        self.next.load(Ordering::Acquire).min(self.total)
    }

    /// Holds back every step from `step` on until [`Feed::unfence`].
    pub fn fence(&self, step: u64) {
        self.fence.store(step, Ordering::Release);
    }

    pub fn unfence(&self) {
        self.fence.store(u64::MAX, Ordering::Release);
    }

    /// The batch of a given step (not handed out: for lock-step workers that compute their
    /// own step numbers). `false` when the step is past the end of the run.
    pub fn gather_step(&self, step: u64, images: &mut Vec<f32>, labels: &mut Vec<u32>) -> bool {
        if step >= self.total {
            return false;
        }
        let epoch = step / self.steps_per_epoch;
        let (position, processes) = self.shard.current();
        let b = (step % self.steps_per_epoch) as usize * processes + position;
        let order = {
            let mut cached = self.order.lock().expect("feed lock poisoned");
            if cached.0 != epoch {
                *cached = (epoch, Arc::new(epoch_order(self.data.len(), self.seed, epoch)));
            }
            cached.1.clone()
        };
        self.data.gather_batch(&order, self.batch, b, self.seed, epoch, images, labels);
        true
    }

    /// No more steps are handed out after this.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

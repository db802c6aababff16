//! Evaluation on a dataset: forward-only plans, loss and accuracy summed on the GPU.

use std::collections::HashMap;

use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::plan::Plan;

/// Mean cross-entropy and accuracy of `model` over `data`, in batches of `batch` (or smaller
/// ones, when a batch of `batch` does not fit the device: the result is the same up to the
/// order of the float sums).
pub fn evaluate(model: &Model, data: &Dataset, batch: usize) -> Result<(f64, f64)> {
    Evaluator::new(model, batch).run(data)
}

/// Keeps the forward-only plans (one for full batches, one for the remainder) between
/// evaluations, so that evaluating every epoch compiles and allocates nothing new.
pub struct Evaluator<'m> {
    model: &'m Model,
    batch: usize,
    plans: HashMap<usize, Plan>,
}

impl<'m> Evaluator<'m> {
    pub fn new(model: &'m Model, batch: usize) -> Self {
        Self { model, batch: batch.max(1), plans: HashMap::new() }
    }

    /// The batch size evaluations use: the one asked for, or the largest half of it, half of
    /// that... whose plan fits the device.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Builds the plan for batches of `n` (at most [`Evaluator::batch`]); when its buffers do
    /// not fit the device, halves the batch size until they do, and evaluates in those
    /// smaller batches from then on.
    fn plan_for(&mut self, n: usize) -> Result<usize> {
        let mut n = n.min(self.batch);
        loop {
            if self.plans.contains_key(&n) {
                return Ok(n);
            }
            match self.model.plan(n, false) {
                Ok(plan) => {
                    self.plans.insert(n, plan);
                    return Ok(n);
                }
                Err(EngineError::TooLarge { .. }) if n > 1 => {
                    n = n.div_ceil(2);
                    self.batch = n;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `(mean loss, accuracy)` over every sample of `data`.
    pub fn run(&mut self, data: &Dataset) -> Result<(f64, f64)> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        // Settle the batch size first (a full batch is the largest plan), so that every chunk
        // below is at most a batch that fits.
        self.plan_for(data.len().max(1))?;
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut used = Vec::new();
        for chunk in idx.chunks(self.batch) {
            let n = chunk.len();
            if self.plan_for(n)? != n {
                // Smaller than a batch that fits, so it fits too; a driver that says otherwise
                // is reported rather than evaluated in part.
                return Err(EngineError::Device(format!(
                    "a batch of {n} does not fit the device although a batch of {} did",
                    self.batch
                )));
            }
            let plan = &self.plans[&n];
            data.gather(chunk, &mut images, &mut labels);
            plan.upload(&images, &labels)?;
            let dev = self.model.device();
            let mut enc = dev.wgpu().create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                plan.record_forward(&mut pass);
                plan.record_loss(&mut pass);
            }
            dev.submit([enc.finish()]);
            if !used.contains(&n) {
                used.push(n);
            }
        }
        let (mut loss, mut correct, mut count) = (0.0, 0.0, 0.0);
        for n in used {
            let (l, c, k) = self.plans[&n].take_totals()?;
            loss += l;
            correct += c;
            count += k;
        }
        if count == 0.0 {
            return Ok((f64::NAN, f64::NAN));
        }
        Ok((loss / count, correct / count))
    }
}

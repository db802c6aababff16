//! Evaluation on a dataset: forward-only plans, loss and accuracy summed on the GPU.

use std::collections::HashMap;

use crate::data::Dataset;
use crate::error::Result;
use crate::model::Model;
use crate::plan::Plan;

/// Mean cross-entropy and accuracy of `model` over `data`, in batches of `batch`.
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

    /// `(mean loss, accuracy)` over every sample of `data`.
    pub fn run(&mut self, data: &Dataset) -> Result<(f64, f64)> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut used = Vec::new();
        for chunk in idx.chunks(self.batch) {
            let n = chunk.len();
            if !self.plans.contains_key(&n) {
                self.plans.insert(n, self.model.plan(n, false)?);
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
            dev.queue().submit([enc.finish()]);
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

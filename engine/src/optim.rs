//! Optimisers as update kernels. [`Sgd`] holds the velocity of every parameter; its update
//! dispatches are bound per plan (each plan has its own gradient buffers), one list per layer
//! so that a layer can be updated as soon as its gradients exist.

use crate::error::Result;
use crate::kernel::Dispatch;
use crate::model::Model;
use crate::ops::sgd::{sgd_momentum, Params, SgdParams};
use crate::plan::Plan;
use crate::tensor::Tensor;

/// SGD with momentum and weight decay (PyTorch semantics) over one model's parameters.
pub struct Sgd {
    hyper: SgdParams,
    /// `velocity[i][j]`: momentum buffer of parameter `j` of layer `i`.
    pub velocity: Vec<Vec<Tensor>>,
}

/// The update dispatches of one plan: `layers[i]` updates layer `i`'s parameters.
pub struct SgdUpdates {
    pub layers: Vec<Vec<Dispatch>>,
}

impl Sgd {
    /// Zero velocity for every parameter of `model`.
    pub fn new(model: &Model, hyper: SgdParams) -> Self {
        let velocity = model
            .layers()
            .iter()
            .map(|l| l.params().iter().map(|p| Tensor::zeros(model.device(), p.value.shape())).collect())
            .collect();
        Self { hyper, velocity }
    }

    pub fn hyper(&self) -> SgdParams {
        self.hyper
    }

    /// Update dispatches reading `plan`'s gradients.
    pub fn updates(&self, model: &Model, plan: &Plan) -> Result<SgdUpdates> {
        self.updates_from(model, &plan.grads)
    }

    /// Update dispatches reading `grads[i][j]` for parameter `j` of layer `i`.
    pub fn updates_from(&self, model: &Model, grads: &[Vec<Tensor>]) -> Result<SgdUpdates> {
        let mut layers = Vec::new();
        for (i, layer) in model.layers().iter().enumerate() {
            let mut d = Vec::new();
            for (j, p) in layer.params().iter().enumerate() {
                d.push(sgd_momentum(model.device(), &p.value, &self.velocity[i][j], &grads[i][j], self.hyper)?);
            }
            layers.push(d);
        }
        Ok(SgdUpdates { layers })
    }

    /// Names and tensors of the optimiser state, as saved in checkpoints
    /// (`optim.momentum.<param name>`).
    pub fn state(&self, model: &Model) -> Vec<(String, &Tensor)> {
        let names = model.params().into_iter().map(|(n, _)| n);
        names.zip(self.velocity.iter().flatten()).map(|(n, t)| (format!("optim.momentum.{n}"), t)).collect()
    }
}

impl SgdUpdates {
    /// Records the updates of layer `i`.
    pub fn record(&self, i: usize, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.layers[i] {
            d.record(pass);
        }
    }

    /// Changes the hyper-parameters of layer `i`'s later updates.
    pub fn set_layer_hyper(&self, model: &Model, i: usize, hyper: SgdParams) {
        for (p, d) in model.layers()[i].params().iter().zip(&self.layers[i]) {
            d.write_params(model.device(), &Params::new(p.value.numel() as u32, hyper));
        }
    }

    /// Changes the learning rate (and the other hyper-parameters) of every later update.
    pub fn set_hyper(&self, model: &Model, hyper: SgdParams) {
        for (layer, dispatches) in model.layers().iter().zip(&self.layers) {
            for (p, d) in layer.params().iter().zip(dispatches) {
                d.write_params(model.device(), &Params::new(p.value.numel() as u32, hyper));
            }
        }
    }
}

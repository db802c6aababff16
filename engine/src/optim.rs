//! Optimisers as update kernels behind one trait. An optimiser holds its state (SGD's
//! momentum, Adam's moments) for every parameter of one model; its update dispatches are bound
//! per plan (each plan has its own gradient buffers), one list per layer, so that a layer can
//! be updated the moment its gradients exist (PD-ASGD).
//!
//! What the training loops need beyond the update itself:
//! - the learning rate of each later update ([`Updates::set_layer_lr`]), for schedules and
//!   staleness-scaled rates;
//! - the state to checkpoint, under `optim.<state>.<param>` ([`Optimizer::state`]);
//! - a tensor along which the next change is expected ([`Optimizer::direction`]), for weight
//!   prediction;
//! - whether an update's change is exactly `-lr * direction` ([`Optimizer::change_is_direction`]),
//!   so that other replicas can replay it from that tensor, or must be sent the difference.

use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::Dispatch;
use crate::model::Model;
use crate::ops::adam::{self, AdamParams};
use crate::ops::sgd::{self, SgdParams};
use crate::plan::Plan;
use crate::tensor::Tensor;

/// The hyper-parameters of an optimiser: which one, and its settings (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimConfig {
    Sgd(SgdParams),
    Adam(AdamParams),
}

impl OptimConfig {
    /// The user-facing name: `sgd`, `adam` or `adamw`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(h) if h.decoupled => "adamw",
            Self::Adam(_) => "adam",
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Self::Sgd(h) => h.lr,
            Self::Adam(h) => h.lr,
        }
    }

    /// The optimiser with zero state for every parameter of `model`.
    pub fn build(&self, model: &Model) -> Box<dyn Optimizer> {
        match *self {
            Self::Sgd(h) => Box::new(Sgd::new(model, h)),
            Self::Adam(h) => Box::new(Adam::new(model, h)),
        }
    }
}

/// An optimiser over one model's parameters; see the module documentation.
pub trait Optimizer: Send + Sync {
    /// Its hyper-parameters.
    fn config(&self) -> OptimConfig;

    /// Update dispatches reading `grads[i][j]` for parameter `j` of layer `i`.
    fn updates_from(&self, model: &Model, grads: &[Vec<Tensor>]) -> Result<Updates>;

    /// Update dispatches reading `plan`'s gradients.
    fn updates(&self, model: &Model, plan: &Plan) -> Result<Updates> {
        self.updates_from(model, &plan.grads)
    }

    /// Names and tensors of the state, as saved in checkpoints (`optim.<state>.<param name>`).
    fn state<'a>(&'a self, model: &Model) -> Vec<(String, &'a Tensor)>;

    /// Per parameter of layer `layer`, a tensor `d` such that the next update is expected to
    /// change the parameter by about `-lr * d`: SGD's momentum buffer, Adam's last step
    /// `m_hat / (sqrt(v_hat) + eps)`.
    fn direction(&self, layer: usize) -> &[Tensor];

    /// True when an update changes each parameter by exactly `-lr * direction` (SGD without
    /// Nesterov), read right after the update.
    fn change_is_direction(&self) -> bool;
}

/// Writes the uniforms of an update dispatch for a learning rate.
type SetLr = Box<dyn Fn(&Device, &Dispatch, f32) + Send + Sync>;

/// One parameter's update: its dispatches, and how to rewrite the learning rate of the
/// dispatch that carries it.
struct ParamUpdate {
    dispatches: Vec<Dispatch>,
    /// Writes the uniforms of `dispatches[0]` for a learning rate.
    set_lr: SetLr,
}

/// The update dispatches of one plan: `layers[i]` updates layer `i`'s parameters.
pub struct Updates {
    dev: Device,
    layers: Vec<Vec<ParamUpdate>>,
}

impl Updates {
    /// Records the updates of layer `i`.
    pub fn record(&self, i: usize, pass: &mut wgpu::ComputePass<'_>) {
        for p in &self.layers[i] {
            for d in &p.dispatches {
                d.record(pass);
            }
        }
    }

    /// Sets the learning rate of layer `i`'s later updates.
    pub fn set_layer_lr(&self, i: usize, lr: f32) {
        for p in &self.layers[i] {
            (p.set_lr)(&self.dev, &p.dispatches[0], lr);
        }
    }

    /// Every dispatch, layer by layer.
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.layers.iter().flatten().flat_map(|p| &p.dispatches)
    }

    /// Sets the learning rate of every later update.
    pub fn set_lr(&self, lr: f32) {
        for i in 0..self.layers.len() {
            self.set_layer_lr(i, lr);
        }
    }
}

/// `f(p)` for every parameter of `model`, layer by layer.
fn per_param<T>(model: &Model, mut f: impl FnMut(&Tensor) -> T) -> Vec<Vec<T>> {
    model.layers().iter().map(|l| l.params().iter().map(|p| f(&p.value)).collect()).collect()
}

/// `optim.<state>.<param>` for each state tensor in `tensors` (layer by layer, as the params).
fn named<'a>(model: &Model, state: &str, tensors: &'a [Vec<Tensor>]) -> Vec<(String, &'a Tensor)> {
    let names = model.params().into_iter().map(|(n, _)| n);
    names.zip(tensors.iter().flatten()).map(|(n, t)| (format!("optim.{state}.{n}"), t)).collect()
}

/// The updates of every parameter of `model`: `update(i, j, w, numel)` gives the dispatches of
/// parameter `j` of layer `i` (value `w`) and the writer of their rate.
fn updates_of(
    model: &Model,
    grads: &[Vec<Tensor>],
    mut update: impl FnMut(usize, usize, &Tensor, u32) -> Result<(Vec<Dispatch>, SetLr)>,
) -> Result<Updates> {
    check_grads(model, grads)?;
    let mut layers = Vec::new();
    for (i, layer) in model.layers().iter().enumerate() {
        let mut d = Vec::new();
        for (j, p) in layer.params().iter().enumerate() {
            let (dispatches, set_lr) = update(i, j, &p.value, p.value.numel() as u32)?;
            d.push(ParamUpdate { dispatches, set_lr });
        }
        layers.push(d);
    }
    Ok(Updates { dev: model.device().clone(), layers })
}

fn check_grads(model: &Model, grads: &[Vec<Tensor>]) -> Result<()> {
    let ok = grads.len() == model.layers().len()
        && model.layers().iter().zip(grads).all(|(l, g)| g.len() == l.params().len());
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidArgument("the gradients given do not match the model's parameters".into()))
    }
}

/// SGD with momentum, Nesterov and weight decay (PyTorch semantics).
pub struct Sgd {
    hyper: SgdParams,
    /// `velocity[i][j]`: momentum buffer of parameter `j` of layer `i`.
    pub velocity: Vec<Vec<Tensor>>,
}

impl Sgd {
    /// Zero velocity for every parameter of `model`.
    pub fn new(model: &Model, hyper: SgdParams) -> Self {
        Self { hyper, velocity: per_param(model, Tensor::zeros_like) }
    }

    pub fn hyper(&self) -> SgdParams {
        self.hyper
    }
}

impl Optimizer for Sgd {
    fn config(&self) -> OptimConfig {
        OptimConfig::Sgd(self.hyper)
    }

    fn updates_from(&self, model: &Model, grads: &[Vec<Tensor>]) -> Result<Updates> {
        let hyper = self.hyper;
        updates_of(model, grads, |i, j, w, n| {
            let d = sgd::sgd_momentum(model.device(), w, &self.velocity[i][j], &grads[i][j], hyper)?;
            let set_lr: SetLr =
                Box::new(move |dev, d, lr| d.write_params(dev, &sgd::Params::new(n, SgdParams { lr, ..hyper })));
            Ok((vec![d], set_lr))
        })
    }

    fn state<'a>(&'a self, model: &Model) -> Vec<(String, &'a Tensor)> {
        named(model, "momentum", &self.velocity)
    }

    fn direction(&self, layer: usize) -> &[Tensor] {
        &self.velocity[layer]
    }

    fn change_is_direction(&self) -> bool {
        !self.hyper.nesterov
    }
}

/// Adam, or AdamW with decoupled weight decay (PyTorch's formulas, bias-corrected; each
/// parameter counts its own steps, so layer-wise updates correct each layer by its own count).
pub struct Adam {
    hyper: AdamParams,
    /// First and second moments, step counts (f32, shape `[]`) and the last step direction
    /// `m_hat / (sqrt(v_hat) + eps)`, per parameter of each layer.
    exp_avg: Vec<Vec<Tensor>>,
    exp_avg_sq: Vec<Vec<Tensor>>,
    step: Vec<Vec<Tensor>>,
    direction: Vec<Vec<Tensor>>,
}

impl Adam {
    /// Zero moments and counts for every parameter of `model`.
    pub fn new(model: &Model, hyper: AdamParams) -> Self {
        // A count of 4 bytes fits every device.
        let count = || Tensor::zeros(model.device(), &[]).expect("a scalar fits");
        Self {
            hyper,
            exp_avg: per_param(model, Tensor::zeros_like),
            exp_avg_sq: per_param(model, Tensor::zeros_like),
            step: per_param(model, |_| count()),
            direction: per_param(model, Tensor::zeros_like),
        }
    }
}

impl Optimizer for Adam {
    fn config(&self) -> OptimConfig {
        OptimConfig::Adam(self.hyper)
    }

    fn updates_from(&self, model: &Model, grads: &[Vec<Tensor>]) -> Result<Updates> {
        let hyper = self.hyper;
        updates_of(model, grads, |i, j, w, n| {
            #[rustfmt::skip]
            let d = adam::adam(
                model.device(), w, &self.exp_avg[i][j], &self.exp_avg_sq[i][j], &self.step[i][j],
                &self.direction[i][j], &grads[i][j], hyper,
            )?;
            let set_lr: SetLr =
                Box::new(move |dev, d, lr| d.write_params(dev, &adam::Params::new(n, AdamParams { lr, ..hyper })));
            Ok((d, set_lr))
        })
    }

    fn state<'a>(&'a self, model: &Model) -> Vec<(String, &'a Tensor)> {
        let mut s = named(model, "exp_avg", &self.exp_avg);
        s.extend(named(model, "exp_avg_sq", &self.exp_avg_sq));
        s.extend(named(model, "step", &self.step));
        s
    }

    fn direction(&self, layer: usize) -> &[Tensor] {
        &self.direction[layer]
    }

    fn change_is_direction(&self) -> bool {
        false
    }
}

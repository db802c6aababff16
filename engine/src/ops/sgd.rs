//! SGD with momentum and weight decay as an update kernel.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

/// Hyper-parameters of [`sgd_momentum`], PyTorch's `torch.optim.SGD` semantics (dampening 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Nesterov momentum: step along `g + momentum v` instead of `v`.
    pub nesterov: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: u32,
}

impl Params {
    pub(crate) fn new(n: u32, h: SgdParams) -> Self {
        Self { n, lr: h.lr, momentum: h.momentum, weight_decay: h.weight_decay, nesterov: h.nesterov as u32 }
    }
}

/// `g = grad + wd w; v = momentum v + g; w -= lr v` (Nesterov: `w -= lr (g + momentum v)`), in
/// place on `w` and `v`.
// w, v and grad are (N).
pub fn sgd_momentum(dev: &Device, w: &Tensor, v: &Tensor, grad: &Tensor, h: SgdParams) -> Result<Dispatch> {
    let n = w.numel();
    expect(v, "momentum buffer", n, DType::F32)?;
    expect(grad, "gradient", n, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::SGD, "sgd_momentum", &[]);
    Dispatch::new(dev, k, &Params::new(u32_of(n, "elements")?, h), &[w, v, grad], grid_1d(n, 256))
}

/// CPU reference in f64.
pub mod cpu {
    use super::SgdParams;

    /// One update of `w` and `v` from `grad`.
    pub fn sgd_momentum(w: &mut [f64], v: &mut [f64], grad: &[f64], h: SgdParams) {
        for i in 0..w.len() {
            let g = grad[i] + h.weight_decay as f64 * w[i];
            v[i] = h.momentum as f64 * v[i] + g;
            let step = if h.nesterov { g + h.momentum as f64 * v[i] } else { v[i] };
            w[i] -= h.lr as f64 * step;
        }
    }
}

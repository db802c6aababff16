//! Adam and AdamW as update kernels, `torch.optim.Adam` / `torch.optim.AdamW` semantics
//! (no amsgrad, no maximize).

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

/// Hyper-parameters of [`adam`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: `w *= 1 - lr wd` before the step; Adam: `g += wd w`.
    pub decoupled: bool,
}

impl AdamParams {
    /// `torch.optim.Adam`'s defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }

    /// `torch.optim.AdamW`'s defaults: as [`AdamParams::adam`] with decoupled weight decay 1e-2.
    pub fn adamw() -> Self {
        Self { weight_decay: 1e-2, decoupled: true, ..Self::adam() }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: u32,
}

impl Params {
    pub(crate) fn new(n: u32, h: AdamParams) -> Self {
        Self {
            n,
            lr: h.lr,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            decoupled: h.decoupled as u32,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CountParams {
    amount: f32,
}

/// One step on `w`, `m` and `v` in place; `step` counts the updates done so far (0 before the
/// first) and is read on the GPU, so a recorded plan replays correctly:
/// `t = step + 1`; `g = grad (+ wd w for Adam)`; `w *= 1 - lr wd` (AdamW);
/// `m = b1 m + (1 - b1) g`; `v = b2 v + (1 - b2) g^2`;
/// `w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
///
/// Also writes the step direction `m_hat / (sqrt(v_hat) + eps)` to `dir` (weight prediction
/// moves along it).
///
/// Returns two dispatches, to be recorded in order: `[0]` is the update, whose uniform
/// parameters (`Params`, rewritten with `Dispatch::write_params` to change the rate) carry
/// `lr`; `[1]` adds 1 to `step`. Tensors that share one step counter must record the `[1]` of
/// only one of them, after all their updates.
// w, m, v, grad and dir are (N); step is (1).
#[allow(clippy::too_many_arguments)]
pub fn adam(
    dev: &Device,
    w: &Tensor,
    m: &Tensor,
    v: &Tensor,
    step: &Tensor,
    dir: &Tensor,
    grad: &Tensor,
    h: AdamParams,
) -> Result<Vec<Dispatch>> {
    let n = w.numel();
    expect(w, "Adam weights", n, DType::F32)?;
    expect(m, "Adam first moment", n, DType::F32)?;
    expect(v, "Adam second moment", n, DType::F32)?;
    expect(step, "Adam step count", 1, DType::F32)?;
    expect(grad, "gradient", n, DType::F32)?;
    expect(dir, "Adam step direction", n, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::ADAM, "adam", &[]);
    let update =
        Dispatch::new(dev, k, &Params::new(u32_of(n, "elements")?, h), &[w, m, v, step, grad, dir], grid_1d(n, 256))?;
    let k = Kernel::get(dev, &asgd_shaders::COUNTER, "count_add", &[]);
    let count = Dispatch::new(dev, k, &CountParams { amount: 1.0 }, &[step], [1, 1, 1])?;
    Ok(vec![update, count])
}

/// CPU reference in f64.
pub mod cpu {
    use super::AdamParams;

    /// One step of `w`, `m`, `v` from `grad`; `step` is the count of updates before this one
    /// and is incremented; `dir` gets the step direction `m_hat / (sqrt(v_hat) + eps)`.
    pub fn adam(
        w: &mut [f64],
        m: &mut [f64],
        v: &mut [f64],
        step: &mut f64,
        dir: &mut [f64],
        grad: &[f64],
        h: AdamParams,
    ) {
        let (lr, b1, b2, eps, wd) = (h.lr as f64, h.beta1 as f64, h.beta2 as f64, h.eps as f64, h.weight_decay as f64);
        let t = *step + 1.0;
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        for i in 0..w.len() {
            let mut g = grad[i];
            if h.decoupled {
                w[i] *= 1.0 - lr * wd;
            } else {
                g += wd * w[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let mhat = m[i] / bc1;
            let vhat = v[i] / bc2;
            dir[i] = mhat / (vhat.sqrt() + eps);
            w[i] -= lr * dir[i];
        }
        *step = t;
    }
}

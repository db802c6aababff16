//! `y = alpha * x + beta * y`: gradient and model averaging; `y = max(x + y, 0)`: a residual
//! block's sum and ReLU.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

impl Params {
    fn new(n: usize, alpha: f32, beta: f32) -> Result<Self> {
        Ok(Self { n: u32_of(n, "elements")?, alpha, beta, _pad: 0 })
    }
}

/// `y = alpha * x + beta * y` (with `beta == 0`, `y` is not read).
// y and x are (N).
pub fn scale_add(dev: &Device, y: &Tensor, x: &Tensor, alpha: f32, beta: f32) -> Result<Dispatch> {
    let n = x.numel();
    expect(y, "scale_add output", n, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::ELEMENTWISE, "scale_add", &[]);
    Dispatch::new(dev, k, &Params::new(n, alpha, beta)?, &[y, x], grid_1d(n, 256))
}

/// `y = max(x + y, 0)` in place: a residual block's sum of its two paths and the ReLU after
/// it in one pass.
// y and x are (N).
pub fn add_relu(dev: &Device, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    let n = x.numel();
    expect(y, "add_relu output", n, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::ELEMENTWISE, "scale_add", &[("RELU", 1.0)]);
    Dispatch::new(dev, k, &Params::new(n, 1.0, 1.0)?, &[y, x], grid_1d(n, 256))
}

/// Changes `alpha` and `beta` of a [`scale_add`] dispatch over `n` elements, for its runs in
/// submissions after this call.
pub fn set_scale_add(dev: &Device, d: &Dispatch, n: usize, alpha: f32, beta: f32) -> Result<()> {
    d.write_params(dev, &Params::new(n, alpha, beta)?);
    Ok(())
}

/// CPU reference in f64.
pub mod cpu {
    /// `y = alpha * x + beta * y`.
    pub fn scale_add(y: &mut [f64], x: &[f64], alpha: f64, beta: f64) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = alpha * x + if beta != 0.0 { beta * *y } else { 0.0 };
        }
    }

    /// `y = max(x + y, 0)`.
    pub fn add_relu(y: &mut [f64], x: &[f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x + *y).max(0.0);
        }
    }
}

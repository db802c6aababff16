//! ReLU forward and backward.

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
}

/// `y = max(x, 0)`.
// y and x are (N) (any shape with N elements).
pub fn relu_forward(dev: &Device, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    let n = x.numel();
    expect(y, "relu output", n, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::RELU, "relu_forward", &[]);
    Dispatch::new(dev, k, &Params { n: u32_of(n, "elements")? }, &[y, x], grid_1d(n, 256))
}

/// `dx = dy * [x > 0]`, with `x` the forward input.
// dx, dy and x are (N).
pub fn relu_backward(dev: &Device, dx: &Tensor, dy: &Tensor, x: &Tensor) -> Result<Dispatch> {
    let n = x.numel();
    expect(dx, "relu input gradient", n, DType::F32)?;
    expect(dy, "relu output gradient", n, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::RELU, "relu_backward", &[]);
    Dispatch::new(dev, k, &Params { n: u32_of(n, "elements")? }, &[dx, dy, x], grid_1d(n, 256))
}

/// CPU references in f64.
pub mod cpu {
    /// `y = max(x, 0)`.
    pub fn relu_forward(y: &mut [f64], x: &[f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x.max(0.0);
        }
    }

    /// `dx = dy * [x > 0]`.
    pub fn relu_backward(dx: &mut [f64], dy: &[f64], x: &[f64]) {
        for i in 0..dx.len() {
            dx[i] = if x[i] > 0.0 { dy[i] } else { 0.0 };
        }
    }
}

//! Global average pooling: each (batch, channel) plane of H*W values becomes its mean.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    planes: u32,
    hw: u32,
    n: u32,
}

fn params(batch: usize, channels: usize, hw: usize, n: usize) -> Result<Params> {
    if hw == 0 {
        return Err(EngineError::Shape("global average pooling of planes with no positions (H*W = 0)".into()));
    }
    Ok(Params { planes: u32_of(batch * channels, "planes")?, hw: u32_of(hw, "positions")?, n: u32_of(n, "elements")? })
}

/// `y[b, c] = sum over i of x[b, c, i] / HW`.
// y is (B, C); x is (B, C, HW).
pub fn global_avg_pool(
    dev: &Device,
    y: &Tensor,
    x: &Tensor,
    batch: usize,
    channels: usize,
    hw: usize,
) -> Result<Dispatch> {
    let planes = batch * channels;
    expect(y, "average pool output", planes, DType::F32)?;
    expect(x, "average pool input", planes * hw, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::AVGPOOL, "global_avg_pool", &[]);
    Dispatch::new(dev, k, &params(batch, channels, hw, planes)?, &[y, x], grid_1d(planes, 256))
}

/// `dx[b, c, i] = dy[b, c] / HW`, overwriting `dx`.
// dx is (B, C, HW); dy is (B, C).
pub fn global_avg_pool_backward(
    dev: &Device,
    dx: &Tensor,
    dy: &Tensor,
    batch: usize,
    channels: usize,
    hw: usize,
) -> Result<Dispatch> {
    let n = batch * channels * hw;
    expect(dx, "average pool input gradient", n, DType::F32)?;
    expect(dy, "average pool output gradient", batch * channels, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::AVGPOOL, "global_avg_pool_backward", &[]);
    Dispatch::new(dev, k, &params(batch, channels, hw, n)?, &[dx, dy], grid_1d(n, 256))
}

/// CPU references in f64.
pub mod cpu {
    /// `y[b, c] = mean of x[b, c, :]`.
    pub fn global_avg_pool(y: &mut [f64], x: &[f64], batch: usize, channels: usize, hw: usize) {
        for (plane, y) in y.iter_mut().enumerate().take(batch * channels) {
            *y = x[plane * hw..(plane + 1) * hw].iter().sum::<f64>() / hw as f64;
        }
    }

    /// `dx[b, c, i] = dy[b, c] / HW`.
    pub fn global_avg_pool_backward(dx: &mut [f64], dy: &[f64], batch: usize, channels: usize, hw: usize) {
        for (i, dx) in dx.iter_mut().enumerate().take(batch * channels * hw) {
            *dx = dy[i / hw] / hw as f64;
        }
    }
}

//! Bias over a channel axis and its gradient. A tensor is viewed as (outer, C, inner): a
//! linear layer's (B, C) has inner 1, a convolution's (B, C, H, W) has inner H*W.

use bytemuck::{Pod, Zeroable};

use super::matmul::{split_sum, MatmulSpec};
use super::{expect, flag, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{grid_1d, Dispatch, Kernel, MAX_GROUPS_PER_DIM};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    outer: u32,
    channels: u32,
    inner: u32,
    n: u32,
}

fn params(outer: usize, channels: usize, inner: usize) -> Result<Params> {
    Ok(Params {
        outer: u32_of(outer, "outer size")?,
        channels: u32_of(channels, "channels")?,
        inner: u32_of(inner, "inner size")?,
        n: u32_of(outer * channels * inner, "elements")?,
    })
}

/// `y[o, c, i] += bias[c]`, in place; with `relu`, then `y = max(y, 0)` in the same pass.
// y is (outer, C, inner), bias is (C).
pub fn bias_add(dev: &Device, y: &Tensor, bias: &Tensor, outer: usize, inner: usize, relu: bool) -> Result<Dispatch> {
    let c = bias.numel();
    expect(y, "bias_add tensor", outer * c * inner, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::BIAS, "bias_add", &[("RELU", flag(relu))]);
    let p = params(outer, c, inner)?;
    Dispatch::new(dev, k, &p, &[y, bias], grid_1d(outer * c * inner, 256))
}

/// Grid of one workgroup per item, folded into two dimensions past 65535.
pub(crate) fn grid_per_item(items: usize) -> [u32; 3] {
    let max = MAX_GROUPS_PER_DIM as usize;
    [items.min(max) as u32, items.div_ceil(max) as u32, 1]
}

/// `db[c] = sum over o, i of dy[o, c, i]`: the gradient of a bias.
// db is (C), dy is (outer, C, inner).
pub fn channel_sum(dev: &Device, db: &Tensor, dy: &Tensor, outer: usize, inner: usize) -> Result<Dispatch> {
    let c = db.numel();
    expect(dy, "channel_sum input", outer * c * inner, DType::F32)?;
    let p = params(outer, c, inner)?;
    if inner == 1 && outer <= COLUMN_SUM_MAX_ROWS {
        // (outer, C) is a (C x 1) product split into `outer` parts: one thread per column adds
        // its rows in order (deterministic), with no barrier.
        return split_sum(dev, db, dy, MatmulSpec::new(c, 1, 0));
    }
    let k = Kernel::get(dev, &asgd_shaders::BIAS, "channel_sum", &[]);
    Dispatch::new(dev, k, &p, &[db, dy], grid_per_item(c))
}

/// Rows up to which a (rows, C) bias gradient is one thread per column rather than one
/// workgroup per column: a linear layer's at batch 128 took 11.7 ms in the workgroup form (512
/// workgroups of 256 threads, each adding at most one value, then 8 barriers) on a CPU driver.
const COLUMN_SUM_MAX_ROWS: usize = 1024;

/// CPU references in f64.
pub mod cpu {
    /// `y[o, c, i] += bias[c]`.
    pub fn bias_add(y: &mut [f64], bias: &[f64], outer: usize, inner: usize) {
        let c = bias.len();
        for (idx, v) in y.iter_mut().enumerate().take(outer * c * inner) {
            *v += bias[(idx / inner) % c];
        }
    }

    /// `db[c] = sum over o, i of dy[o, c, i]`.
    pub fn channel_sum(db: &mut [f64], dy: &[f64], outer: usize, inner: usize) {
        let c = db.len();
        db.fill(0.0);
        for (idx, &v) in dy.iter().enumerate().take(outer * c * inner) {
            db[(idx / inner) % c] += v;
        }
    }
}

//! Swapping the two outer axes of a 3-D tensor.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    d0: u32,
    d1: u32,
    inner: u32,
    n: u32,
}

/// `dst[j, i, r] = src[i, j, r]`.
// src is (d0, d1, inner), dst is (d1, d0, inner).
pub fn swap_outer(dev: &Device, dst: &Tensor, src: &Tensor, d0: usize, d1: usize, inner: usize) -> Result<Dispatch> {
    let n = d0 * d1 * inner;
    expect(src, "swap_outer input", n, DType::F32)?;
    expect(dst, "swap_outer output", n, DType::F32)?;
    let p = Params {
        d0: u32_of(d0, "d0")?,
        d1: u32_of(d1, "d1")?,
        inner: u32_of(inner, "inner")?,
        n: u32_of(n, "elements")?,
    };
    let k = Kernel::get(dev, &asgd_shaders::PERMUTE, "swap_outer", &[]);
    Dispatch::new(dev, k, &p, &[dst, src], grid_1d(n, 256))
}

/// CPU reference.
pub mod cpu {
    /// `dst[j, i, r] = src[i, j, r]`.
    pub fn swap_outer(dst: &mut [f64], src: &[f64], d0: usize, d1: usize, inner: usize) {
        for i in 0..d0 {
            for j in 0..d1 {
                for r in 0..inner {
                    dst[(j * d0 + i) * inner + r] = src[(i * d1 + j) * inner + r];
                }
            }
        }
    }
}

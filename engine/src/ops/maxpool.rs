//! Max-pooling with a k x k window and stride k (non-overlapping, no padding, floor).

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    n: u32,
}

/// The geometry of a pooling over a batch: `planes = B * C` planes of `h` x `w`, window `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl PoolShape {
    /// Output height and width, `(h / k, w / k)`.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        pooled_hw(self.h, self.w, self.k)
    }
}

/// Output height and width of pooling an `h` x `w` plane by `k`: `(h / k, w / k)`.
pub fn pooled_hw(h: usize, w: usize, k: usize) -> Result<(usize, usize)> {
    if k == 0 || k > h || k > w {
        return Err(EngineError::Shape(format!("a {k}x{k} pooling window does not fit a {h}x{w} input")));
    }
    Ok((h / k, w / k))
}

fn params(h: usize, w: usize, k: usize, n: usize) -> Result<Params> {
    let (oh, ow) = pooled_hw(h, w, k)?;
    Ok(Params {
        h: u32_of(h, "height")?,
        w: u32_of(w, "width")?,
        oh: u32_of(oh, "output height")?,
        ow: u32_of(ow, "output width")?,
        k: u32_of(k, "window")?,
        n: u32_of(n, "elements")?,
    })
}

/// `y = maxpool(x)`, recording in `argmax` the flat index into `x` of each maximum.
// y and argmax (u32) are (B, C, OH, OW); x is (B, C, H, W).
pub fn maxpool_forward(dev: &Device, y: &Tensor, argmax: &Tensor, x: &Tensor, s: PoolShape) -> Result<Dispatch> {
    let PoolShape { planes, h, w, k } = s;
    let (oh, ow) = pooled_hw(h, w, k)?;
    let ny = planes * oh * ow;
    expect(y, "maxpool output", ny, DType::F32)?;
    expect(argmax, "maxpool argmax", ny, DType::U32)?;
    expect(x, "maxpool input", planes * h * w, DType::F32)?;
    let kern = Kernel::get(dev, &asgd_shaders::MAXPOOL, "maxpool_forward", &[]);
    Dispatch::new(dev, kern, &params(h, w, k, ny)?, &[y, argmax, x], grid_1d(ny, 256))
}

/// `dx`: each element gets `dy` of its window if it was that window's maximum, else 0.
// dx is (B, C, H, W); dy and argmax are (B, C, OH, OW).
pub fn maxpool_backward(dev: &Device, dx: &Tensor, dy: &Tensor, argmax: &Tensor, s: PoolShape) -> Result<Dispatch> {
    let PoolShape { planes, h, w, k } = s;
    let (oh, ow) = pooled_hw(h, w, k)?;
    let nx = planes * h * w;
    expect(dx, "maxpool input gradient", nx, DType::F32)?;
    expect(dy, "maxpool output gradient", planes * oh * ow, DType::F32)?;
    expect(argmax, "maxpool argmax", planes * oh * ow, DType::U32)?;
    let kern = Kernel::get(dev, &asgd_shaders::MAXPOOL_BACKWARD, "maxpool_backward", &[]);
    Dispatch::new(dev, kern, &params(h, w, k, nx)?, &[dx, dy, argmax], grid_1d(nx, 256))
}

/// CPU references in f64.
pub mod cpu {
    /// Forward; returns the flat index of each maximum (first in row-major window order).
    pub fn maxpool_forward(y: &mut [f64], x: &[f64], planes: usize, h: usize, w: usize, k: usize) -> Vec<usize> {
        let (oh, ow) = (h / k, w / k);
        let mut arg = vec![0; planes * oh * ow];
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (p * oh + oy) * ow + ox;
                    let mut best = (f64::NEG_INFINITY, 0);
                    for dy in 0..k {
                        for dx in 0..k {
                            let i = (p * h + oy * k + dy) * w + ox * k + dx;
                            if x[i] > best.0 {
                                best = (x[i], i);
                            }
                        }
                    }
                    y[o] = best.0;
                    arg[o] = best.1;
                }
            }
        }
        arg
    }

    /// Backward from the arg-max of the forward pass.
    pub fn maxpool_backward(dx: &mut [f64], dy: &[f64], argmax: &[usize]) {
        dx.fill(0.0);
        for (o, &i) in argmax.iter().enumerate() {
            dx[i] += dy[o];
        }
    }
}

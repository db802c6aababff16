//! 2-D convolution (PyTorch's Conv2d without bias; the bias is [`super::bias`]): forward,
//! input gradient and weight gradient.

use bytemuck::{Pod, Zeroable};

use super::bias::grid_per_item;
use super::{expect, u32_of};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

/// The geometry of a convolution over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    /// Output height and width, `(H + 2 pad - KH) / stride + 1`; an error when the kernel
    /// does not fit in the padded input or the stride is 0.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        if self.stride == 0 {
            return Err(EngineError::InvalidArgument("a convolution stride must be at least 1".into()));
        }
        let (ph, pw) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
        if self.kh == 0 || self.kw == 0 || self.kh > ph || self.kw > pw {
            return Err(EngineError::Shape(format!(
                "a {}x{} kernel does not fit a {}x{} input padded by {}",
                self.kh, self.kw, self.h, self.w, self.pad
            )));
        }
        Ok(((ph - self.kh) / self.stride + 1, (pw - self.kw) / self.stride + 1))
    }

    /// Elements of x, w and y.
    pub fn sizes(&self) -> Result<(usize, usize, usize)> {
        let (oh, ow) = self.out_hw()?;
        Ok((
            self.batch * self.cin * self.h * self.w,
            self.cout * self.cin * self.kh * self.kw,
            self.batch * self.cout * oh * ow,
        ))
    }

    /// Multiply-adds of the forward pass times two.
    pub fn flops(&self) -> f64 {
        let (oh, ow) = self.out_hw().unwrap_or((0, 0));
        2.0 * (self.batch * self.cout * oh * ow * self.cin * self.kh * self.kw) as f64
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    n: u32,
}

fn params(s: &ConvShape, n: usize) -> Result<Params> {
    let (oh, ow) = s.out_hw()?;
    Ok(Params {
        batch: u32_of(s.batch, "batch")?,
        cin: u32_of(s.cin, "input channels")?,
        h: u32_of(s.h, "height")?,
        w: u32_of(s.w, "width")?,
        cout: u32_of(s.cout, "output channels")?,
        kh: u32_of(s.kh, "kernel height")?,
        kw: u32_of(s.kw, "kernel width")?,
        stride: u32_of(s.stride, "stride")?,
        pad: u32_of(s.pad, "padding")?,
        oh: u32_of(oh, "output height")?,
        ow: u32_of(ow, "output width")?,
        n: u32_of(n, "elements")?,
    })
}

/// `y = conv2d(x, w)`.
// y is (B, Cout, OH, OW), x is (B, Cin, H, W), w is (Cout, Cin, KH, KW).
pub fn conv2d_forward(dev: &Device, y: &Tensor, x: &Tensor, w: &Tensor, s: &ConvShape) -> Result<Dispatch> {
    let (nx, nw, ny) = s.sizes()?;
    expect(y, "conv2d output", ny, DType::F32)?;
    expect(x, "conv2d input", nx, DType::F32)?;
    expect(w, "conv2d weight", nw, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::CONV2D, "conv2d_forward", &[]);
    Ok(Dispatch::new(dev, k, &params(s, ny)?, &[y, x, w], grid_1d(ny, 256)))
}

/// `dx`, the gradient of the input.
// dx is (B, Cin, H, W), dy is (B, Cout, OH, OW), w is (Cout, Cin, KH, KW).
pub fn conv2d_backward_input(dev: &Device, dx: &Tensor, dy: &Tensor, w: &Tensor, s: &ConvShape) -> Result<Dispatch> {
    let (nx, nw, ny) = s.sizes()?;
    expect(dx, "conv2d input gradient", nx, DType::F32)?;
    expect(dy, "conv2d output gradient", ny, DType::F32)?;
    expect(w, "conv2d weight", nw, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::CONV2D, "conv2d_backward_input", &[]);
    Ok(Dispatch::new(dev, k, &params(s, nx)?, &[dx, dy, w], grid_1d(nx, 256)))
}

/// `dw`, the gradient of the weight (overwritten).
// dw is (Cout, Cin, KH, KW), dy is (B, Cout, OH, OW), x is (B, Cin, H, W).
pub fn conv2d_backward_weight(dev: &Device, dw: &Tensor, dy: &Tensor, x: &Tensor, s: &ConvShape) -> Result<Dispatch> {
    let (nx, nw, ny) = s.sizes()?;
    expect(dw, "conv2d weight gradient", nw, DType::F32)?;
    expect(dy, "conv2d output gradient", ny, DType::F32)?;
    expect(x, "conv2d input", nx, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::CONV2D, "conv2d_backward_weight", &[]);
    Ok(Dispatch::new(dev, k, &params(s, nw)?, &[dw, dy, x], grid_per_item(nw)))
}

/// CPU references in f64, written as the textbook loops.
pub mod cpu {
    use super::ConvShape;

    /// Calls `f(b, o, c, oy, ox, ky, kx, x_index)` for every multiply-add of the forward pass
    /// whose input tap lies inside the (unpadded) input.
    fn taps(s: &ConvShape, mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize, usize)) {
        let (oh, ow) = s.out_hw().expect("valid shape");
        for b in 0..s.batch {
            for o in 0..s.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for c in 0..s.cin {
                            for ky in 0..s.kh {
                                for kx in 0..s.kw {
                                    let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                        continue;
                                    }
                                    let xi = ((b * s.cin + c) * s.h + iy as usize) * s.w + ix as usize;
                                    f(b, o, c, oy, ox, ky, kx, xi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn yi(s: &ConvShape, b: usize, o: usize, oy: usize, ox: usize) -> usize {
        let (oh, ow) = s.out_hw().expect("valid shape");
        ((b * s.cout + o) * oh + oy) * ow + ox
    }

    fn wi(s: &ConvShape, o: usize, c: usize, ky: usize, kx: usize) -> usize {
        ((o * s.cin + c) * s.kh + ky) * s.kw + kx
    }

    /// `y = conv2d(x, w)`.
    pub fn conv2d_forward(y: &mut [f64], x: &[f64], w: &[f64], s: &ConvShape) {
        y.fill(0.0);
        taps(s, |b, o, c, oy, ox, ky, kx, xi| y[yi(s, b, o, oy, ox)] += x[xi] * w[wi(s, o, c, ky, kx)]);
    }

    /// `dx` from `dy` and `w`.
    pub fn conv2d_backward_input(dx: &mut [f64], dy: &[f64], w: &[f64], s: &ConvShape) {
        dx.fill(0.0);
        taps(s, |b, o, c, oy, ox, ky, kx, xi| dx[xi] += dy[yi(s, b, o, oy, ox)] * w[wi(s, o, c, ky, kx)]);
    }

    /// `dw` from `dy` and `x`.
    pub fn conv2d_backward_weight(dw: &mut [f64], dy: &[f64], x: &[f64], s: &ConvShape) {
        dw.fill(0.0);
        taps(s, |b, o, c, oy, ox, ky, kx, xi| dw[wi(s, o, c, ky, kx)] += dy[yi(s, b, o, oy, ox)] * x[xi]);
    }
}

//! 2-D convolution (PyTorch's Conv2d without bias; the bias is [`super::bias`]): forward,
//! input gradient and weight gradient, as im2col / matrix product / col2im (see
//! `shaders/src/conv2d.wgsl` for the scheme).

use bytemuck::{Pod, Zeroable};

use super::matmul::{matmul, MatmulKernel, MatmulSpec};
use super::permute::swap_outer;
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
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    n: u32,
    _pad0: u32,
}

fn params(s: &ConvShape, n: usize) -> Result<Params> {
    let (oh, ow) = s.out_hw()?;
    Ok(Params {
        batch: u32_of(s.batch, "batch")?,
        cin: u32_of(s.cin, "input channels")?,
        h: u32_of(s.h, "height")?,
        w: u32_of(s.w, "width")?,
        kh: u32_of(s.kh, "kernel height")?,
        kw: u32_of(s.kw, "kernel width")?,
        stride: u32_of(s.stride, "stride")?,
        pad: u32_of(s.pad, "padding")?,
        oh: u32_of(oh, "output height")?,
        ow: u32_of(ow, "output width")?,
        n: u32_of(n, "elements")?,
        _pad0: 0,
    })
}

impl ConvShape {
    /// `(CKK, B*P)`: the shape of the im2col matrix (CKK = Cin*KH*KW, P = OH*OW).
    pub fn cols_shape(&self) -> Result<[usize; 2]> {
        let (oh, ow) = self.out_hw()?;
        Ok([self.cin * self.kh * self.kw, self.batch * oh * ow])
    }
}

/// `cols = im2col(x)`.
// cols is (Cin*KH*KW, B*OH*OW), x is (B, Cin, H, W).
pub fn im2col(dev: &Device, cols: &Tensor, x: &Tensor, s: &ConvShape) -> Result<Dispatch> {
    let (nx, _, _) = s.sizes()?;
    let [r, c] = s.cols_shape()?;
    expect(cols, "im2col output", r * c, DType::F32)?;
    expect(x, "im2col input", nx, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::CONV2D, "im2col", &[]);
    // One thread per row of OW columns.
    let (oh, _) = s.out_hw()?;
    let threads = r * s.batch * oh;
    Dispatch::new(dev, k, &params(s, threads)?, &[cols, x], grid_1d(threads, 64))
}

/// `dx = col2im(dcols)`: each input element sums the column entries of its taps.
// dx is (B, Cin, H, W), dcols is (Cin*KH*KW, B*OH*OW).
pub fn col2im(dev: &Device, dx: &Tensor, dcols: &Tensor, s: &ConvShape) -> Result<Dispatch> {
    let (nx, _, _) = s.sizes()?;
    let [r, c] = s.cols_shape()?;
    expect(dx, "col2im output", nx, DType::F32)?;
    expect(dcols, "col2im input", r * c, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::CONV2D, "col2im", &[]);
    // One thread per input row of W elements.
    let threads = s.batch * s.cin * s.h;
    Dispatch::new(dev, k, &params(s, threads)?, &[dx, dcols], grid_1d(threads, 64))
}

/// Scratch buffers of a convolution for one batch size: the im2col matrix (kept from the
/// forward pass for the weight gradient), the product in (Cout, B, P) order, and its gradient.
pub struct ConvScratch {
    cols: Tensor,
    y_t: Tensor,
    dy_t: Tensor,
    dcols: Tensor,
    w_t: Tensor,
}

impl ConvScratch {
    /// Allocates the scratch of shape `s`; `backward` adds the gradient buffers.
    pub fn new(dev: &Device, s: &ConvShape, backward: bool) -> Result<Self> {
        let [r, c] = s.cols_shape()?;
        let small = |b: bool, n: usize| Tensor::empty(dev, &[if b { n } else { 1 }], DType::F32);
        Ok(Self {
            cols: Tensor::empty(dev, &[r, c], DType::F32)?,
            y_t: Tensor::empty(dev, &[s.cout, c], DType::F32)?,
            dy_t: small(backward, s.cout * c)?,
            dcols: small(backward, r * c)?,
            w_t: small(backward, s.cout * r)?,
        })
    }
}

/// `y = conv2d(x, w)` without bias: im2col, one matrix product, a permute to NCHW.
// y is (B, Cout, OH, OW), x is (B, Cin, H, W), w is (Cout, Cin, KH, KW).
pub fn conv2d_forward(
    dev: &Device,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    scratch: &ConvScratch,
    s: &ConvShape,
    kernel: MatmulKernel,
) -> Result<Vec<Dispatch>> {
    let (_, nw, ny) = s.sizes()?;
    let [ckk, cols_n] = s.cols_shape()?;
    expect(w, "conv2d weight", nw, DType::F32)?;
    expect(y, "conv2d output", ny, DType::F32)?;
    let mut d = vec![im2col(dev, &scratch.cols, x, s)?];
    d.extend(matmul(dev, &scratch.y_t, w, &scratch.cols, MatmulSpec::new(s.cout, cols_n, ckk), kernel)?);
    d.push(swap_outer(dev, y, &scratch.y_t, s.cout, s.batch, cols_n / s.batch)?);
    Ok(d)
}

/// The weight gradient `dw` (overwritten) and, when `dx` is given, the input gradient, from
/// `dy` and the im2col matrix the forward pass left in `scratch`.
// dw is (Cout, Cin, KH, KW), dx is (B, Cin, H, W), dy is (B, Cout, OH, OW).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    dev: &Device,
    dw: &Tensor,
    dx: Option<&Tensor>,
    dy: &Tensor,
    w: &Tensor,
    scratch: &ConvScratch,
    s: &ConvShape,
    kernel: MatmulKernel,
) -> Result<Vec<Dispatch>> {
    let (_, nw, ny) = s.sizes()?;
    let [ckk, cols_n] = s.cols_shape()?;
    expect(dw, "conv2d weight gradient", nw, DType::F32)?;
    expect(dy, "conv2d output gradient", ny, DType::F32)?;
    expect(&scratch.dy_t, "conv2d scratch (built without backward?)", s.cout * cols_n, DType::F32)?;
    let mut d = vec![swap_outer(dev, &scratch.dy_t, dy, s.batch, s.cout, cols_n / s.batch)?];
    // dW = dy' cols^T: (Cout, CKK) from dy' (Cout, B*P) and cols (CKK, B*P).
    let spec = MatmulSpec { trans_b: true, ..MatmulSpec::new(s.cout, ckk, cols_n) };
    d.extend(matmul(dev, dw, &scratch.dy_t, &scratch.cols, spec, kernel)?);
    if let Some(dx) = dx {
        // dcols = W^T dy': (CKK, B*P) from W (Cout, CKK) and dy' (Cout, B*P). W is transposed
        // first, not read transposed: see the linear layer for the lavapipe leak this avoids.
        d.push(swap_outer(dev, &scratch.w_t, w, s.cout, ckk, 1)?);
        d.extend(matmul(
            dev,
            &scratch.dcols,
            &scratch.w_t,
            &scratch.dy_t,
            MatmulSpec::new(ckk, cols_n, s.cout),
            kernel,
        )?);
        d.push(col2im(dev, dx, &scratch.dcols, s)?);
    }
    Ok(d)
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

    /// `cols = im2col(x)`, shape `(Cin*KH*KW, B*OH*OW)`.
    pub fn im2col(x: &[f64], s: &ConvShape) -> Vec<f64> {
        let [r, c] = s.cols_shape().expect("valid shape");
        let (oh, ow) = s.out_hw().expect("valid shape");
        let mut cols = vec![0.0; r * c];
        taps(s, |b, o, ch, oy, ox, ky, kx, xi| {
            if o == 0 {
                cols[((ch * s.kh + ky) * s.kw + kx) * c + (b * oh + oy) * ow + ox] = x[xi];
            }
        });
        cols
    }

    /// `dx = col2im(dcols)`: the adjoint of [`im2col`].
    pub fn col2im(dx: &mut [f64], dcols: &[f64], s: &ConvShape) {
        let [_, c] = s.cols_shape().expect("valid shape");
        let (oh, ow) = s.out_hw().expect("valid shape");
        dx.fill(0.0);
        taps(s, |b, o, ch, oy, ox, ky, kx, xi| {
            if o == 0 {
                dx[xi] += dcols[((ch * s.kh + ky) * s.kw + kx) * c + (b * oh + oy) * ow + ox];
            }
        });
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

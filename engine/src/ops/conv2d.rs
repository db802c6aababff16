//! 2-D convolution (PyTorch's Conv2d): forward, input gradient and weight gradient, two ways.
//!
//! - [`ConvAlgo::Im2col`]: im2col / matrix product / col2im (see `shaders/src/conv2d.wgsl` for
//!   the scheme), without bias (the bias is [`super::bias`]). It reuses the tuned matrix
//!   products, at the price of a column matrix `KH * KW` times the input and the permutes
//!   around it.
//! - [`ConvAlgo::Direct`]: the generated kernels of [`asgd_shaders::conv_direct`], which read
//!   the NCHW tensors in place (with the bias fused into the forward pass), so no column matrix
//!   is allocated.
//!
//! Which one a layer uses is decided per shape by the device's tuner ([`crate::tune`]).

use bytemuck::{Pod, Zeroable};

use asgd_shaders::conv_direct::{CONV_WEIGHT_LAYOUT, CONV_WORKGROUP};
use asgd_shaders::{conv_direct_source, conv_weight_grad_source, ConvPass, DirectConv, DirectWeightGrad};

use super::matmul::{matmul, split_sum, MatmulKernel, MatmulSpec};
use super::permute::swap_outer;
use super::{expect, flag, u32_of};
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

/// How a convolution is computed (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// im2col, matrix products, col2im.
    Im2col,
    /// The direct kernels, no column matrix.
    Direct,
}

impl ConvAlgo {
    /// The choice when nothing was measured: the direct kernels on a CPU driver, where forward
    /// and backward together ran 1.2-3.9x faster than im2col for every ResNet (batch 16) and
    /// LeNet (batch 64) shape measured on lavapipe (every load costs there, and im2col copies
    /// each input value `KH * KW` times); the im2col path elsewhere, whose workgroup-memory
    /// products suit GPUs and whose direct counterparts were not tuned for them.
    pub fn default_for(dev: &Device) -> Self {
        if dev.is_cpu() {
            Self::Direct
        } else {
            Self::Im2col
        }
    }

    /// `im2col` or `direct`, for metrics and the tuning cache.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Im2col => "im2col",
            Self::Direct => "direct",
        }
    }

    /// Parses [`ConvAlgo::name`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "im2col" => Some(Self::Im2col),
            "direct" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// True when the direct kernels handle `s`: strides up to 8 (the input gradient's blocks of
/// rows and pixels are multiples of the stride, at most 8 rows).
pub fn direct_supported(s: &ConvShape) -> bool {
    (1..=8).contains(&s.stride)
}

/// `n` rounded up to a multiple of 4: the padded channel axis of the direct kernels' weights.
fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Pixels per thread along a row of `len`: as close to `max` as possible while splitting the
/// row evenly (28 -> 7, 14 -> 7, 32 -> 8), since a partial last block is wasted work.
fn even_block(len: usize, max: usize) -> usize {
    len.div_ceil(len.div_ceil(max).max(1)).max(1)
}

/// The forward kernel's blocking for `s`: up to 16 output channels by 4 rows by 16 pixels per
/// thread (1024 sums, as many as the largest register-blocked product's). Measured on lavapipe
/// for the ResNet shapes at batch 16, going from 16x1x8 to 16x4x16 took a 16-channel 32x32
/// layer from 42 to 20 ms; 32 channels or 8 rows by 16 pixels ran no faster and compiled for
/// minutes.
pub fn direct_forward_kernel(s: &ConvShape, bias: bool) -> DirectConv {
    let (oh, ow) = s.out_hw().unwrap_or((1, 1));
    let (chans, lines, cols) = (pad4(s.cout).min(16), 4.min(oh), even_block(ow, 16));
    direct_kernel(ConvPass::Forward, s, [chans, lines, cols], bias)
}

/// The kernel of `pass` for the geometry of `s` with `[chans, lines, cols]` per thread.
fn direct_kernel(pass: ConvPass, s: &ConvShape, [chans, lines, cols]: [usize; 3], bias: bool) -> DirectConv {
    DirectConv {
        pass,
        kh: s.kh as u32,
        kw: s.kw as u32,
        stride: s.stride as u32,
        pad: s.pad as u32,
        chans: chans as u32,
        lines: lines as u32,
        cols: cols as u32,
        bias,
    }
}

/// The input-gradient kernel's blocking for `s`: as the forward pass with the channel roles
/// swapped, rows and pixels per thread multiples of the stride.
pub fn direct_input_grad_kernel(s: &ConvShape) -> DirectConv {
    let st = s.stride.max(1);
    let cols = (even_block(s.w, 16).div_ceil(st) * st).min(32 / st * st).max(st);
    let lines = if st == 1 { 4.min(s.h) } else { (4 / st).max(1) * st };
    let (chans, lines) = (pad4(s.cin).min(16), lines.min(8 / st * st).max(st));
    direct_kernel(ConvPass::InputGrad, s, [chans, lines, cols], false)
}

/// Threads the weight gradient aims for: enough to occupy every core of a CPU driver several
/// times over, few enough that the partial sums stay small.
const WEIGHT_GRAD_THREADS: usize = 1024;

/// The weight-gradient kernel for `s` and its number of slices of the batch's rows: up to 16
/// output by 8 input channels per thread (8x4 took the 32- and 64-channel ResNet layers about
/// twice as long on lavapipe).
pub fn direct_weight_grad_kernel(s: &ConvShape) -> (DirectWeightGrad, usize) {
    let (oh, ow) = s.out_hw().unwrap_or((1, 1));
    let vec_dy = ow.is_multiple_of(4);
    let cols = if vec_dy {
        if ow >= 8 {
            8
        } else {
            4
        }
    } else {
        even_block(ow, 8)
    };
    let (rows, chans) = (pad4(s.cout).min(16), s.cin.min(8));
    let k = DirectWeightGrad {
        kh: s.kh as u32,
        kw: s.kw as u32,
        stride: s.stride as u32,
        pad: s.pad as u32,
        rows: rows as u32,
        chans: chans as u32,
        cols: cols as u32,
        vec_dy,
    };
    let blocks = s.cout.div_ceil(k.rows as usize) * s.cin.div_ceil(k.chans as usize) * s.kh;
    let rows = (s.batch * oh).max(1);
    let want = WEIGHT_GRAD_THREADS.div_ceil(blocks).clamp(1, rows);
    let per_slice = rows.div_ceil(want);
    (k, rows.div_ceil(per_slice))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LayoutParams {
    cin: u32,
    cout: u32,
    kk: u32,
    jp: u32,
    n: u32,
    input_grad: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DirectParams {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    cout4: u32,
    oh: u32,
    ow: u32,
    col_blocks: u32,
    row_blocks: u32,
    chan_blocks: u32,
    n: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct WeightGradParams {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    oh: u32,
    ow: u32,
    o_blocks: u32,
    c_blocks: u32,
    blocks: u32,
    rows_per_slice: u32,
    total_rows: u32,
    n: u32,
    nw: u32,
    _pad: [u32; 2],
}

/// Scratch buffers of the direct kernels: the weights laid out for the forward pass and for the
/// input gradient, and the weight gradient's partial sums. All are the size of the weights
/// (times the slices for the partial sums); none depends on the image size.
pub struct DirectScratch {
    w_fwd: Tensor,
    w_dx: Tensor,
    part: Tensor,
}

impl DirectScratch {
    /// Allocates the scratch of shape `s`; `backward` adds the gradient buffers.
    pub fn new(dev: &Device, s: &ConvShape, backward: bool) -> Result<Self> {
        s.out_hw()?;
        let kk = s.kh * s.kw;
        let small = |b: bool, n: usize| Tensor::empty(dev, &[if b { n } else { 1 }], DType::F32);
        let (_, slices) = direct_weight_grad_kernel(s);
        Ok(Self {
            w_fwd: Tensor::empty(dev, &[s.cin * kk * pad4(s.cout)], DType::F32)?,
            w_dx: small(backward, s.cout * kk * pad4(s.cin))?,
            part: small(backward && slices > 1, slices * s.cout * s.cin * kk)?,
        })
    }
}

/// `dst` = the weights `w` laid out for the forward kernel (`input_grad == false`) or the
/// input-gradient kernel (see [`asgd_shaders::conv_direct::CONV_WEIGHT_LAYOUT`]).
fn weight_layout(dev: &Device, dst: &Tensor, w: &Tensor, s: &ConvShape, input_grad: bool) -> Result<Dispatch> {
    let kk = s.kh * s.kw;
    let (outer, jp) = if input_grad { (s.cout, pad4(s.cin)) } else { (s.cin, pad4(s.cout)) };
    let n = outer * kk * jp;
    expect(dst, "conv2d weight layout", n, DType::F32)?;
    let p = LayoutParams {
        cin: u32_of(s.cin, "input channels")?,
        cout: u32_of(s.cout, "output channels")?,
        kk: u32_of(kk, "kernel taps")?,
        jp: u32_of(jp, "channels")?,
        n: u32_of(n, "elements")?,
        input_grad: input_grad as u32,
        _pad: [0; 2],
    };
    let k = Kernel::get_generated(
        dev,
        "conv_weight_layout".into(),
        &|| CONV_WEIGHT_LAYOUT.to_string(),
        "conv_weight_layout",
        &[],
    );
    Dispatch::new(dev, k, &p, &[dst, w], grid_1d(n, 256))
}

/// One forward or input-gradient dispatch: `out` (B, cout, oh, ow) from `src` (B, cin, h, w).
#[allow(clippy::too_many_arguments)]
fn direct_dispatch(
    dev: &Device,
    k: DirectConv,
    out: &Tensor,
    src: &Tensor,
    wt: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    dims: [usize; 7],
) -> Result<Dispatch> {
    let [batch, cin, h, w, cout, oh, ow] = dims;
    let col_blocks = ow.div_ceil(k.cols as usize);
    let row_blocks = oh.div_ceil(k.lines as usize);
    let chan_blocks = cout.div_ceil(k.chans as usize);
    let n = batch * chan_blocks * row_blocks * col_blocks;
    let p = DirectParams {
        batch: u32_of(batch, "batch")?,
        cin: u32_of(cin, "channels")?,
        h: u32_of(h, "height")?,
        w: u32_of(w, "width")?,
        cout: u32_of(cout, "channels")?,
        cout4: u32_of(pad4(cout) / 4, "channels")?,
        oh: u32_of(oh, "height")?,
        ow: u32_of(ow, "width")?,
        col_blocks: u32_of(col_blocks, "column blocks")?,
        row_blocks: u32_of(row_blocks, "row blocks")?,
        chan_blocks: u32_of(chan_blocks, "channel blocks")?,
        n: u32_of(n, "threads")?,
    };
    // Only the forward kernel declares the ReLU's constant.
    let constants: &[(&str, f64)] = match k.pass {
        ConvPass::Forward => &[("RELU", flag(relu))],
        ConvPass::InputGrad => &[],
    };
    let kernel = Kernel::get_generated(dev, k.name(), &|| conv_direct_source(k), "conv", constants);
    let mut tensors = vec![out, src, wt];
    tensors.extend(bias);
    Dispatch::new(dev, kernel, &p, &tensors, grid_1d(n, CONV_WORKGROUP))
}

/// `y = conv2d(x, w) (+ bias)` with the direct kernel, and with `relu` then `y = max(y, 0)` in
/// the same store: a weight layout, then one dispatch.
// y is (B, Cout, OH, OW), x is (B, Cin, H, W), w is (Cout, Cin, KH, KW), bias is (Cout).
#[allow(clippy::too_many_arguments)]
pub fn direct_forward(
    dev: &Device,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    scratch: &DirectScratch,
    s: &ConvShape,
) -> Result<Vec<Dispatch>> {
    let (nx, nw, ny) = s.sizes()?;
    let (oh, ow) = s.out_hw()?;
    expect(x, "conv2d input", nx, DType::F32)?;
    expect(w, "conv2d weight", nw, DType::F32)?;
    expect(y, "conv2d output", ny, DType::F32)?;
    if let Some(b) = bias {
        expect(b, "conv2d bias", s.cout, DType::F32)?;
    }
    let k = direct_forward_kernel(s, bias.is_some());
    Ok(vec![
        weight_layout(dev, &scratch.w_fwd, w, s, false)?,
        direct_dispatch(dev, k, y, x, &scratch.w_fwd, bias, relu, [s.batch, s.cin, s.h, s.w, s.cout, oh, ow])?,
    ])
}

/// The weight gradient `dw` (overwritten) from `dy` and `x`, and when `dx` is given the input
/// gradient from `dy` and `w`, with the direct kernels.
// dw is (Cout, Cin, KH, KW), dx and x are (B, Cin, H, W), dy is (B, Cout, OH, OW).
#[allow(clippy::too_many_arguments)]
pub fn direct_backward(
    dev: &Device,
    dw: &Tensor,
    dx: Option<&Tensor>,
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    scratch: &DirectScratch,
    s: &ConvShape,
) -> Result<Vec<Dispatch>> {
    let (nx, nw, ny) = s.sizes()?;
    let (oh, ow) = s.out_hw()?;
    expect(dw, "conv2d weight gradient", nw, DType::F32)?;
    expect(dy, "conv2d output gradient", ny, DType::F32)?;
    expect(x, "conv2d input", nx, DType::F32)?;
    let (k, slices) = direct_weight_grad_kernel(s);
    let mut d = Vec::new();
    let part = if slices > 1 { &scratch.part } else { dw };
    expect(part, "conv2d scratch (built without backward?)", slices * nw, DType::F32)?;
    let o_blocks = s.cout.div_ceil(k.rows as usize);
    let c_blocks = s.cin.div_ceil(k.chans as usize);
    let blocks = o_blocks * c_blocks * s.kh;
    let total_rows = s.batch * oh;
    let n = blocks * slices;
    let p = WeightGradParams {
        batch: u32_of(s.batch, "batch")?,
        cin: u32_of(s.cin, "input channels")?,
        h: u32_of(s.h, "height")?,
        w: u32_of(s.w, "width")?,
        cout: u32_of(s.cout, "output channels")?,
        oh: u32_of(oh, "output height")?,
        ow: u32_of(ow, "output width")?,
        o_blocks: u32_of(o_blocks, "blocks")?,
        c_blocks: u32_of(c_blocks, "blocks")?,
        blocks: u32_of(blocks, "blocks")?,
        rows_per_slice: u32_of(total_rows.div_ceil(slices), "rows")?,
        total_rows: u32_of(total_rows, "rows")?,
        n: u32_of(n, "threads")?,
        nw: u32_of(nw, "weights")?,
        _pad: [0; 2],
    };
    let kernel = Kernel::get_generated(dev, k.name(), &|| conv_weight_grad_source(k), "conv_dw", &[]);
    d.push(Dispatch::new(dev, kernel, &p, &[part, dy, x], grid_1d(n, CONV_WORKGROUP))?);
    if slices > 1 {
        // The slices' partial sums, added in slice order: the same bits every run.
        // `part` holds exactly `slices` blocks of `nw` (checked above): a (nw x 1) product's split.
        d.push(split_sum(dev, dw, &scratch.part, MatmulSpec::new(nw, 1, 0))?);
    }
    if let Some(dx) = dx {
        expect(dx, "conv2d input gradient", nx, DType::F32)?;
        let k = direct_input_grad_kernel(s);
        d.push(weight_layout(dev, &scratch.w_dx, w, s, true)?);
        d.push(direct_dispatch(
            dev,
            k,
            dx,
            dy,
            &scratch.w_dx,
            None,
            false,
            [s.batch, s.cout, oh, ow, s.cin, s.h, s.w],
        )?);
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

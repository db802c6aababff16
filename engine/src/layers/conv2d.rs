//! 2-D convolution layer (PyTorch's `nn.Conv2d`, square kernel, stride, padding), with or
//! without bias.

use rand::Rng;

use super::{before_relu, uniform_init, Layer, LayerIo, LayerPlan, Mode, Param};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::ops::bias::{bias_add, channel_sum};
use crate::ops::conv2d::{
    conv2d_backward, conv2d_forward, cpu, direct_backward, direct_forward, ConvAlgo, ConvScratch, ConvShape,
    DirectScratch,
};
use crate::ops::matmul::MatmulKernel;
use crate::tensor::Tensor;

/// `y[b,o] = b[o] + sum_c x[b,c] * W[o,c]` (cross-correlation) with `x` `(B, Cin, H, W)`,
/// `W` `[Cout, Cin, K, K]`, `b` `[Cout]` (absent in a convolution without bias),
/// `y` `(B, Cout, OH, OW)`, `OH = (H + 2 pad - K) / stride + 1`.
pub struct Conv2d {
    name: String,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    /// `weight`, then `bias` if the layer has one.
    params: Vec<Param>,
}

impl Conv2d {
    /// A layer with PyTorch's default initialisation drawn from `rng`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dev: &Device,
        name: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        // Before the values are drawn on the host: a size too large is an error, not an abort.
        dev.check_tensor(&format!("parameter {name}.weight"), &[cout, cin, kernel, kernel])?;
        let fan_in = cin * kernel * kernel;
        let w = uniform_init(rng, cout * fan_in, fan_in);
        let b = uniform_init(rng, cout, fan_in);
        Self::with_values(dev, name, [cin, cout, kernel, stride, pad], &w, Some(&b))
    }

    /// A layer with the given weight (`[cout, cin, kernel, kernel]` row-major) and bias.
    /// `dims` is `[cin, cout, kernel, stride, pad]`.
    fn with_values(dev: &Device, name: &str, dims: [usize; 5], w: &[f32], b: Option<&[f32]>) -> Result<Self> {
        let [cin, cout, kernel, stride, pad] = dims;
        let mut params = vec![Param::new("weight", Tensor::from_f32(dev, &[cout, cin, kernel, kernel], w)?)];
        if let Some(b) = b {
            params.push(Param::new("bias", Tensor::from_f32(dev, &[cout], b)?));
        }
        Ok(Self { name: name.to_string(), cin, cout, kernel, stride, pad, params })
    }

    /// A convolution without bias (the ones a batch norm follows), initialised as torchvision
    /// initialises ResNets: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, i.e.
    /// N(0, 2 / (Cout K K)).
    #[allow(clippy::too_many_arguments)]
    pub fn without_bias(
        dev: &Device,
        name: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let std = (2.0 / (cout * kernel * kernel) as f32).sqrt();
        let normal = rand_distr::Normal::new(0.0, std).expect("positive std");
        let w: Vec<f32> = (0..cout * cin * kernel * kernel).map(|_| rng.sample(normal)).collect();
        Self::with_values(dev, name, [cin, cout, kernel, stride, pad], &w, None)
    }

    fn shape(&self, batch: usize, input: &[usize]) -> Result<ConvShape> {
        let &[c, h, w] = input else {
            return Err(EngineError::Shape(format!(
                "{} takes (channels, height, width) images but gets shape {:?}",
                self.name, input
            )));
        };
        if c != self.cin {
            return Err(EngineError::Shape(format!("{} takes {} input channels but gets {c}", self.name, self.cin)));
        }
        let s = ConvShape {
            batch,
            cin: c,
            h,
            w,
            cout: self.cout,
            kh: self.kernel,
            kw: self.kernel,
            stride: self.stride,
            pad: self.pad,
        };
        s.out_hw().map_err(|e| EngineError::Shape(format!("{}: {e}", self.name)))?;
        Ok(s)
    }
}

impl Conv2d {
    fn build_im2col(&self, io: &LayerIo, s: &ConvShape) -> Result<LayerPlan> {
        let (oh, ow) = s.out_hw()?;
        let w = &io.params[0];
        let bias = io.params.get(1);
        let scratch = ConvScratch::new(io.dev, s, io.dy.is_some())?;
        let mut forward = conv2d_forward(io.dev, io.y, io.x, w, &scratch, s, io.matmul)?;
        if let Some(bias) = bias {
            // With the bias, and the ReLU after it where the plan fused one.
            forward.push(bias_add(io.dev, io.y, bias, io.batch, oh * ow, io.relu)?);
        }
        let mut backward = Vec::new();
        if let Some(dy) = io.dy {
            let dy = &before_relu(io, dy, &mut backward)?;
            backward.extend(conv2d_backward(io.dev, &io.grads[0], io.dx, dy, w, &scratch, s, io.matmul)?);
            if bias.is_some() {
                backward.push(channel_sum(io.dev, &io.grads[1], dy, io.batch, oh * ow)?);
            }
        }
        Ok(LayerPlan { forward, backward })
    }

    /// The direct kernels: the bias (and a fused ReLU) are applied in the forward pass's store,
    /// and no column matrix is allocated.
    fn build_direct(&self, io: &LayerIo, s: &ConvShape) -> Result<LayerPlan> {
        let (oh, ow) = s.out_hw()?;
        let w = &io.params[0];
        let bias = io.params.get(1);
        let scratch = DirectScratch::new(io.dev, s, io.dy.is_some())?;
        let forward = direct_forward(io.dev, io.y, io.x, w, bias, io.relu, &scratch, s)?;
        let mut backward = Vec::new();
        if let Some(dy) = io.dy {
            let dy = &before_relu(io, dy, &mut backward)?;
            backward.extend(direct_backward(io.dev, &io.grads[0], io.dx, dy, io.x, w, &scratch, s)?);
            if bias.is_some() {
                backward.push(channel_sum(io.dev, &io.grads[1], dy, io.batch, oh * ow)?);
            }
        }
        Ok(LayerPlan { forward, backward })
    }
}

impl Layer for Conv2d {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (oh, ow) = self.shape(1, input)?.out_hw()?;
        Ok(vec![self.cout, oh, ow])
    }

    fn forward_macs(&self, input: &[usize]) -> usize {
        self.output_shape(input).map_or(0, |out| out.iter().product::<usize>() * self.cin * self.kernel * self.kernel)
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    /// With a bias: both forms apply the ReLU where they add it (the im2col form has no pass
    /// of its own to apply it in without one).
    fn fuses_relu(&self, _dev: &Device) -> bool {
        self.params.len() == 2
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let s = self.shape(io.batch, io.in_shape)?;
        // A plan that names a matrix-product kernel asks for the im2col path, which uses it;
        // otherwise the tuner picks the path for this shape.
        let algo = match io.matmul {
            MatmulKernel::Auto => crate::tune::conv_algo(io.dev, &s, io.dy.is_some()),
            _ => ConvAlgo::Im2col,
        };
        match algo {
            ConvAlgo::Im2col => self.build_im2col(io, &s),
            ConvAlgo::Direct => self.build_direct(io, &s),
        }
    }

    fn reference_forward(
        &self,
        params: &[Vec<f64>],
        _buffers: &[Vec<f64>],
        x: &[f64],
        batch: usize,
        in_shape: &[usize],
        _mode: Mode,
    ) -> Vec<f64> {
        let s = self.shape(batch, in_shape).expect("shape checked when the model was built");
        let (_, _, ny) = s.sizes().expect("valid shape");
        let mut y = vec![0.0; ny];
        cpu::conv2d_forward(&mut y, x, &params[0], &s);
        if let Some(bias) = params.get(1) {
            let per_channel = ny / (batch * self.cout);
            for (i, v) in y.iter_mut().enumerate() {
                *v += bias[(i / per_channel) % self.cout];
            }
        }
        y
    }
}

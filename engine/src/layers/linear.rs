//! Fully connected layer: `y = x W^T + b` (PyTorch's `nn.Linear`).

use rand::Rng;

use super::{before_relu, uniform_init, Layer, LayerIo, LayerPlan, Mode, Param};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::ops::bias::channel_sum;
use crate::ops::matmul::{matmul, matmul_bias, MatmulSpec};
use crate::ops::permute::swap_outer;
use crate::tensor::{DType, Tensor};

/// `y = x W^T + b` with `x` `(B, in)`, `W` `[out, in]`, `b` `[out]`, `y` `(B, out)`.
pub struct Linear {
    name: String,
    inputs: usize,
    outputs: usize,
    params: [Param; 2],
}

impl Linear {
    /// A layer with PyTorch's default initialisation drawn from `rng`.
    pub fn new(dev: &Device, name: &str, inputs: usize, outputs: usize, rng: &mut impl Rng) -> Result<Self> {
        // Before the values are drawn on the host: a size too large is an error, not an abort.
        dev.check_tensor(&format!("parameter {name}.weight"), &[outputs, inputs])?;
        let w = uniform_init(rng, outputs * inputs, inputs);
        let b = uniform_init(rng, outputs, inputs);
        Ok(Self {
            name: name.to_string(),
            inputs,
            outputs,
            params: [
                Param::new("weight", Tensor::from_f32(dev, &[outputs, inputs], &w)?),
                Param::new("bias", Tensor::from_f32(dev, &[outputs], &b)?),
            ],
        })
    }
}

impl Layer for Linear {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input != [self.inputs] {
            return Err(EngineError::Shape(format!(
                "{} takes {} features per sample but gets shape {:?}",
                self.name, self.inputs, input
            )));
        }
        Ok(vec![self.outputs])
    }

    fn forward_macs(&self, _input: &[usize]) -> usize {
        self.inputs * self.outputs
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn fuses_relu(&self, _dev: &Device) -> bool {
        true
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let (b, i, o) = (io.batch, self.inputs, self.outputs);
        let (w, bias) = (&io.params[0], &io.params[1]);
        // The bias, and a ReLU that follows, are applied in the product's store where the kernel
        // can (one dispatch, and y written once instead of written, read and written again).
        let spec = MatmulSpec { trans_b: true, ..MatmulSpec::new(b, o, i) };
        let forward = matmul_bias(io.dev, io.y, io.x, w, bias, io.relu, spec, io.matmul)?;
        let mut backward = Vec::new();
        if let Some(dy) = io.dy {
            // With the fused ReLU, the gradient before it first: three kernels below read it.
            let dy = &before_relu(io, dy, &mut backward)?;
            // dW = dy^T x: (out, in) from dy (B, out) and x (B, in). dy is transposed first
            // rather than read transposed by the product: on lavapipe (Mesa 22.3) some
            // transposed-A products leak driver memory on every dispatch (512x784x32 lost
            // ~0.2 MB each), and the transpose costs B * out copies.
            let dy_t = Tensor::empty(io.dev, &[o, b], DType::F32)?;
            backward.push(swap_outer(io.dev, &dy_t, dy, b, o, 1)?);
            backward.extend(matmul(io.dev, &io.grads[0], &dy_t, io.x, MatmulSpec::new(o, i, b), io.matmul)?);
            backward.push(channel_sum(io.dev, &io.grads[1], dy, b, 1)?);
            if let Some(dx) = io.dx {
                // dx = dy W: (B, in) from dy (B, out) and W (out, in).
                backward.extend(matmul(io.dev, dx, dy, w, MatmulSpec::new(b, i, o), io.matmul)?);
            }
        }
        Ok(LayerPlan { forward, backward })
    }

    fn reference_forward(
        &self,
        params: &[Vec<f64>],
        _buffers: &[Vec<f64>],
        x: &[f64],
        batch: usize,
        _in: &[usize],
        _mode: Mode,
    ) -> Vec<f64> {
        let (w, bias) = (&params[0], &params[1]);
        let mut y = vec![0.0; batch * self.outputs];
        for s in 0..batch {
            for o in 0..self.outputs {
                let row = &w[o * self.inputs..(o + 1) * self.inputs];
                let xs = &x[s * self.inputs..(s + 1) * self.inputs];
                y[s * self.outputs + o] = bias[o] + row.iter().zip(xs).map(|(a, b)| a * b).sum::<f64>();
            }
        }
        y
    }
}

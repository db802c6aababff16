//! Batch normalisation over the channels of images (PyTorch's `nn.BatchNorm2d`, affine, with
//! running statistics).

use super::{Buffer, BufferKind, Layer, LayerIo, LayerPlan, Mode, Param};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::ops::batchnorm::{
    batchnorm_backward, batchnorm_eval_forward, batchnorm_train_forward, cpu, FUSED_RELU_STORAGE_BUFFERS,
};
use crate::tensor::{DType, Tensor};

/// `y = weight (x - mean) / sqrt(var + eps) + bias` per channel of `x` `(B, C, H, W)`.
///
/// In training mode `mean` and `var` are the batch's (over `B H W` values, biased variance),
/// and the running statistics move towards them: `running = (1 - momentum) running +
/// momentum stat`, with the unbiased variance, as PyTorch does. In eval mode the running
/// statistics normalise. Parameters `weight` (init 1), `bias` (init 0); buffers
/// `running_mean` (0), `running_var` (1), `num_batches_tracked` (0).
///
/// Several forward passes in flight at once (PD-ASGD with several forward threads) update the
/// running statistics in the order the GPU runs them; with one forward thread that order is
/// the order of the batches, so a run is as deterministic as its algorithm.
pub struct BatchNorm2d {
    name: String,
    channels: usize,
    momentum: f32,
    eps: f32,
    params: Vec<Param>,
    buffers: Vec<Buffer>,
}

impl BatchNorm2d {
    /// PyTorch's defaults: momentum 0.1, eps 1e-5.
    pub fn new(dev: &Device, name: &str, channels: usize) -> Result<Self> {
        let ones = vec![1.0; channels];
        Ok(Self {
            name: name.to_string(),
            channels,
            momentum: 0.1,
            eps: 1e-5,
            params: vec![
                Param::new("weight", Tensor::from_f32(dev, &[channels], &ones)?),
                Param::new("bias", Tensor::zeros(dev, &[channels])?),
            ],
            buffers: vec![
                Buffer {
                    name: "running_mean".into(),
                    value: Tensor::zeros(dev, &[channels])?,
                    kind: BufferKind::Statistic,
                },
                Buffer {
                    name: "running_var".into(),
                    value: Tensor::from_f32(dev, &[channels], &ones)?,
                    kind: BufferKind::Statistic,
                },
                Buffer {
                    name: "num_batches_tracked".into(),
                    value: Tensor::zeros(dev, &[])?,
                    kind: BufferKind::Counter,
                },
            ],
        })
    }

    /// `(channels, H * W)` of one input sample.
    fn dims(&self, input: &[usize]) -> Result<(usize, usize)> {
        match *input {
            [c, h, w] if c == self.channels => Ok((c, h * w)),
            _ => Err(EngineError::Shape(format!(
                "{} takes images of {} channels, (channels, height, width), but gets shape {input:?}",
                self.name, self.channels
            ))),
        }
    }
}

impl Layer for BatchNorm2d {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.dims(input)?;
        Ok(input.to_vec())
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    fn fuses_relu(&self, dev: &Device) -> bool {
        // The fused backward's input-gradient kernel binds one buffer more (the output).
        dev.limits().max_storage_buffers_per_shader_stage >= FUSED_RELU_STORAGE_BUFFERS
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let (c, hw) = self.dims(io.in_shape)?;
        let (gamma, beta) = (&io.params[0], &io.params[1]);
        let [running_mean, running_var, count] = [0, 1, 2].map(|i| &self.buffers[i].value);
        if io.mode == Mode::Eval {
            let forward = batchnorm_eval_forward(
                io.dev,
                io.y,
                io.x,
                gamma,
                beta,
                running_mean,
                running_var,
                io.batch,
                c,
                hw,
                self.eps,
                io.relu,
            )?;
            return Ok(LayerPlan { forward, backward: Vec::new() });
        }
        if io.batch * hw < 2 {
            return Err(EngineError::InvalidArgument(format!(
                "{} normalises over batch x height x width = {} value per channel in training, which has no \
                 variance; train with batches of at least 2 samples",
                self.name,
                io.batch * hw
            )));
        }
        let mean = Tensor::empty(io.dev, &[c], DType::F32)?;
        let invstd = Tensor::empty(io.dev, &[c], DType::F32)?;
        #[rustfmt::skip]
        let forward = batchnorm_train_forward(
            io.dev, io.y, &mean, &invstd, running_mean, running_var, count, io.x, gamma, beta,
            io.batch, c, hw, self.momentum, self.eps, io.relu,
        )?;
        let backward = match io.dy {
            Some(dy) => batchnorm_backward(
                io.dev,
                &io.grads[0],
                &io.grads[1],
                io.dx,
                dy,
                io.x,
                &mean,
                &invstd,
                gamma,
                io.batch,
                c,
                hw,
                io.relu.then_some(io.y),
            )?,
            None => Vec::new(),
        };
        Ok(LayerPlan { forward, backward })
    }

    fn reference_forward(
        &self,
        params: &[Vec<f64>],
        buffers: &[Vec<f64>],
        x: &[f64],
        batch: usize,
        in_shape: &[usize],
        mode: Mode,
    ) -> Vec<f64> {
        let (c, hw) = self.dims(in_shape).expect("shape checked when the model was built");
        let mut y = vec![0.0; x.len()];
        match mode {
            Mode::Train => {
                let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
                let (mut rm, mut rv, mut n) = (buffers[0].clone(), buffers[1].clone(), buffers[2][0]);
                #[rustfmt::skip]
                cpu::batchnorm_train_forward(
                    &mut y, &mut mean, &mut invstd, &mut rm, &mut rv, &mut n, x, &params[0], &params[1],
                    batch, c, hw, self.momentum as f64, self.eps as f64,
                );
            }
            Mode::Eval => cpu::batchnorm_eval_forward(
                &mut y,
                x,
                &params[0],
                &params[1],
                &buffers[0],
                &buffers[1],
                batch,
                c,
                hw,
                self.eps as f64,
            ),
        }
        y
    }
}

//! Global average pooling: each channel of an image averaged to one value (PyTorch's
//! `nn.AdaptiveAvgPool2d(1)` followed by `torch.flatten(x, 1)`).

use super::{Layer, LayerIo, LayerPlan, Mode};
use crate::error::{EngineError, Result};
use crate::ops::avgpool::{global_avg_pool, global_avg_pool_backward};

/// `y[b, c] = mean over (h, w) of x[b, c, h, w]`; `x` `(B, C, H, W)`, `y` `(B, C)`.
pub struct GlobalAvgPool {
    name: String,
}

impl GlobalAvgPool {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string() }
    }

    /// `(channels, H * W)` of one input sample.
    fn dims(&self, input: &[usize]) -> Result<(usize, usize)> {
        match *input {
            [c, h, w] => Ok((c, h * w)),
            _ => Err(EngineError::Shape(format!(
                "{} takes (channels, height, width) images but gets shape {input:?}",
                self.name
            ))),
        }
    }
}

impl Layer for GlobalAvgPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![self.dims(input)?.0])
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let (c, hw) = self.dims(io.in_shape)?;
        let forward = vec![global_avg_pool(io.dev, io.y, io.x, io.batch, c, hw)?];
        let backward = match (io.dy, io.dx) {
            (Some(dy), Some(dx)) => vec![global_avg_pool_backward(io.dev, dx, dy, io.batch, c, hw)?],
            _ => Vec::new(),
        };
        Ok(LayerPlan { forward, backward })
    }

    fn reference_forward(
        &self,
        _p: &[Vec<f64>],
        _b: &[Vec<f64>],
        x: &[f64],
        _batch: usize,
        in_shape: &[usize],
        _mode: Mode,
    ) -> Vec<f64> {
        let (_, hw) = self.dims(in_shape).expect("shape checked when the model was built");
        x.chunks(hw).map(|plane| plane.iter().sum::<f64>() / hw as f64).collect()
    }
}

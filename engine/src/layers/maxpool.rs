//! Max-pooling layer, window k x k with stride k (PyTorch's `nn.MaxPool2d(k)`).

use super::{Layer, LayerIo, LayerPlan, Mode};
use crate::error::{EngineError, Result};
use crate::ops::maxpool::{cpu, maxpool_backward, maxpool_forward, pooled_hw, PoolShape};
use crate::tensor::{DType, Tensor};

/// `y[b,c,i,j] = max of x[b,c] over the k x k window at (i k, j k)`; `x` `(B, C, H, W)`,
/// `y` `(B, C, H / k, W / k)`.
pub struct MaxPool2d {
    name: String,
    k: usize,
}

impl MaxPool2d {
    pub fn new(name: &str, k: usize) -> Self {
        Self { name: name.to_string(), k }
    }

    fn dims(&self, input: &[usize]) -> Result<(usize, usize, usize)> {
        match input {
            &[c, h, w] => Ok((c, h, w)),
            _ => Err(EngineError::Shape(format!(
                "{} takes (channels, height, width) images but gets shape {:?}",
                self.name, input
            ))),
        }
    }
}

impl Layer for MaxPool2d {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (c, h, w) = self.dims(input)?;
        let (oh, ow) = pooled_hw(h, w, self.k).map_err(|e| EngineError::Shape(format!("{}: {e}", self.name)))?;
        Ok(vec![c, oh, ow])
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let (c, h, w) = self.dims(io.in_shape)?;
        let s = PoolShape { planes: io.batch * c, h, w, k: self.k };
        let argmax = Tensor::empty(io.dev, &[io.y.numel()], DType::U32)?;
        let forward = vec![maxpool_forward(io.dev, io.y, &argmax, io.x, s)?];
        let backward = match (io.dy, io.dx) {
            (Some(dy), Some(dx)) => vec![maxpool_backward(io.dev, dx, dy, &argmax, s)?],
            _ => Vec::new(),
        };
        Ok(LayerPlan { forward, backward })
    }

    fn reference_forward(
        &self,
        _params: &[Vec<f64>],
        _buffers: &[Vec<f64>],
        x: &[f64],
        batch: usize,
        in_shape: &[usize],
        _mode: Mode,
    ) -> Vec<f64> {
        let (c, h, w) = self.dims(in_shape).expect("shape checked when the model was built");
        let mut y = vec![0.0; batch * c * (h / self.k) * (w / self.k)];
        cpu::maxpool_forward(&mut y, x, batch * c, h, w, self.k);
        y
    }
}

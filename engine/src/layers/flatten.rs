//! Flatten: `(B, C, H, W)` viewed as `(B, C*H*W)`. No kernel: the plan shares the buffer.

use super::{Layer, LayerIo, LayerPlan, Mode};
use crate::error::Result;

/// Reinterprets each sample as a vector; row-major NCHW order, as `torch.flatten(x, 1)`.
pub struct Flatten {
    name: String,
}

impl Flatten {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string() }
    }
}

impl Layer for Flatten {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }

    fn is_view(&self) -> bool {
        true
    }

    fn build(&self, _io: &LayerIo) -> Result<LayerPlan> {
        Ok(LayerPlan::default())
    }

    fn reference_forward(
        &self,
        _params: &[Vec<f64>],
        _buffers: &[Vec<f64>],
        x: &[f64],
        _batch: usize,
        _in: &[usize],
        _mode: Mode,
    ) -> Vec<f64> {
        x.to_vec()
    }
}

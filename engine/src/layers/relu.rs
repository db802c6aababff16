//! ReLU activation, `y = max(x, 0)`.

use super::{Layer, LayerIo, LayerPlan, Mode};
use crate::error::Result;
use crate::ops::relu::{relu_backward, relu_forward};

/// `y = max(x, 0)`, any shape.
pub struct Relu {
    name: String,
}

impl Relu {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string() }
    }
}

impl Layer for Relu {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn is_relu(&self) -> bool {
        true
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let forward = vec![relu_forward(io.dev, io.y, io.x)?];
        let backward = match (io.dy, io.dx) {
            (Some(dy), Some(dx)) => vec![relu_backward(io.dev, dx, dy, io.x)?],
            _ => Vec::new(),
        };
        Ok(LayerPlan { forward, backward })
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
        x.iter().map(|v| v.max(0.0)).collect()
    }
}

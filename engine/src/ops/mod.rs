//! The WGSL kernels' launchers, each next to a plain f64 CPU reference (`cpu` submodules) that
//! the kernel tests compare against.
//!
//! Launchers take outputs first, then inputs, then sizes, and return a [`Dispatch`] bound to
//! those tensors. Shapes are written at the top of each function as `// x is (B, C)`.
//!
//! [`Dispatch`]: crate::kernel::Dispatch

pub mod adam;
pub mod avgpool;
pub mod batchnorm;
pub mod bias;
pub mod conv2d;
pub mod elementwise;
pub mod matmul;
pub mod maxpool;
pub mod metrics;
pub mod permute;
pub mod relu;
pub mod sgd;
pub mod softmax_xent;

use crate::error::{EngineError, Result};
use crate::tensor::{DType, Tensor};

/// The value that sets a WGSL `bool` override constant to `on`.
pub(crate) fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// Checks that `t` has exactly `numel` elements of `dtype`; `what` names it in the error.
pub(crate) fn expect(t: &Tensor, what: &str, numel: usize, dtype: DType) -> Result<()> {
    if t.numel() != numel || t.dtype() != dtype {
        return Err(EngineError::Shape(format!(
            "{what} has {} {:?} elements (shape {:?}), expected {numel} {dtype:?}",
            t.numel(),
            t.dtype(),
            t.shape()
        )));
    }
    Ok(())
}

/// Converts a size to the u32 kernels index with, refusing sizes that do not fit.
pub(crate) fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| EngineError::InvalidArgument(format!("{what} = {n} exceeds the 32-bit indices of the kernels")))
}

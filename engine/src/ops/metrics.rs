//! Running loss and accuracy totals kept on the GPU, read back every N steps.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
}

/// `totals += [sum loss, sum correct, B]`.
// totals is (3); loss and correct are (B).
pub fn accumulate(dev: &Device, totals: &Tensor, loss: &Tensor, correct: &Tensor, batch: usize) -> Result<Dispatch> {
    expect(totals, "metric totals", 3, DType::F32)?;
    expect(loss, "per-sample loss", batch, DType::F32)?;
    expect(correct, "per-sample correctness", batch, DType::F32)?;
    let k = Kernel::get(dev, &asgd_shaders::METRICS, "accumulate", &[]);
    Dispatch::new(dev, k, &Params { batch: u32_of(batch, "batch")? }, &[totals, loss, correct], [1, 1, 1])
}

//! Fused softmax + cross-entropy: per-sample loss, the gradient of the scaled loss, and
//! whether the arg-max was right.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    classes: u32,
    scale: f32,
    _pad: u32,
}

/// `loss[b] = logsumexp(z[b]) - z[b, label]`, `dz = scale * (softmax(z) - onehot(label))`,
/// `correct[b] = [argmax z[b] == label]`. With `scale = 1 / B`, `dz` is the gradient of the
/// mean loss.
// dz and z are (B, C); loss, correct are (B); labels (u32) are (B).
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent(
    dev: &Device,
    dz: &Tensor,
    loss: &Tensor,
    correct: &Tensor,
    z: &Tensor,
    labels: &Tensor,
    batch: usize,
    classes: usize,
    scale: f32,
) -> Result<Dispatch> {
    expect(dz, "logit gradient", batch * classes, DType::F32)?;
    expect(z, "logits", batch * classes, DType::F32)?;
    expect(loss, "per-sample loss", batch, DType::F32)?;
    expect(correct, "per-sample correctness", batch, DType::F32)?;
    expect(labels, "labels", batch, DType::U32)?;
    let p = Params { batch: u32_of(batch, "batch")?, classes: u32_of(classes, "classes")?, scale, _pad: 0 };
    let k = Kernel::get(dev, &asgd_shaders::SOFTMAX_XENT, "softmax_xent", &[]);
    Dispatch::new(dev, k, &p, &[dz, loss, correct, z, labels], grid_1d(batch, 64))
}

/// CPU reference in f64.
pub mod cpu {
    /// Fills `dz`, `loss` and `correct` as the kernel does.
    pub fn softmax_xent(
        dz: &mut [f64],
        loss: &mut [f64],
        correct: &mut [f64],
        z: &[f64],
        labels: &[u32],
        classes: usize,
        scale: f64,
    ) {
        for (b, &label) in labels.iter().enumerate() {
            let row = &z[b * classes..(b + 1) * classes];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let arg = (0..classes).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            for j in 0..classes {
                let onehot = if j == label as usize { 1.0 } else { 0.0 };
                dz[b * classes + j] = scale * ((row[j] - m).exp() / s - onehot);
            }
            loss[b] = s.ln() + m - row[label as usize];
            correct[b] = if arg == label as usize { 1.0 } else { 0.0 };
        }
    }
}

//! Batch normalisation over the channels of an NCHW tensor (`torch.nn.BatchNorm2d`'s
//! semantics), viewed as (B, C, HW). Each channel is normalised over its N = B*HW values.

use bytemuck::{Pod, Zeroable};

use super::bias::grid_per_item;
use super::{expect, flag, u32_of};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

/// The uniform block shared by the batch-norm kernels (each reads the fields it needs).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    channels: u32,
    hw: u32,
    n: u32,
    momentum: f32,
    eps: f32,
    from_running: u32,
    /// Values of one row that a thread of the element-wise kernels handles.
    seg: u32,
    /// Segments per row.
    segs: u32,
}

/// Values per thread of the element-wise kernels on `dev`: on a CPU driver a thread divides
/// and loads its channel's statistics once for 16 values (LeNet's and the ResNets' batch norms
/// ran in about half the time measured against one value a thread); on a GPU one value per
/// thread keeps neighbouring threads on neighbouring addresses.
fn values_per_thread(dev: &Device, hw: usize) -> usize {
    if dev.is_cpu() {
        16.min(hw.max(1))
    } else {
        1
    }
}

impl Params {
    /// Threads of the element-wise kernels.
    fn threads(&self) -> usize {
        self.batch as usize * self.channels as usize * self.segs as usize
    }
}

fn params(
    dev: &Device,
    batch: usize,
    channels: usize,
    hw: usize,
    momentum: f32,
    eps: f32,
    from_running: bool,
) -> Result<Params> {
    u32_of(batch * hw, "values per channel")?;
    let seg = values_per_thread(dev, hw);
    Ok(Params {
        seg: seg as u32,
        segs: u32_of(hw.div_ceil(seg), "segments")?,
        batch: u32_of(batch, "batch")?,
        channels: u32_of(channels, "channels")?,
        hw: u32_of(hw, "positions")?,
        n: u32_of(batch * channels * hw, "elements")?,
        momentum,
        eps,
        from_running: from_running as u32,
    })
}

/// Storage buffers that the input-gradient kernel of a batch norm with a fused ReLU binds: one
/// more than WebGPU's default limit of 8 per shader stage, which drivers for desktop GPUs and
/// lavapipe exceed by far. Where a device offers fewer, batch norm leaves the ReLU to itself.
pub const FUSED_RELU_STORAGE_BUFFERS: u32 = 9;

/// Training-mode forward: batch mean and biased variance per channel over N = B*HW values,
/// `y = gamma (x - mean) invstd + beta` with `invstd = 1 / sqrt(var + eps)`; saves `mean` and
/// `invstd` for the backward; updates `running_mean = (1 - momentum) running_mean + momentum
/// mean`, `running_var = (1 - momentum) running_var + momentum var N / (N - 1)` (unbiased), and
/// adds 1 to `num_batches` (f32, shape `[1]`). Fails if N < 2, as PyTorch does ("Expected more
/// than 1 value per channel when training").
///
/// With `relu`, `y = max(y, 0)` in the same pass (the ReLU that follows, fused).
///
/// Returns two dispatches to record in order: the statistics, then the normalisation.
// y and x are (B, C, HW); mean, invstd, running_mean, running_var, gamma, beta are (C);
// num_batches is (1).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_train_forward(
    dev: &Device,
    y: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    num_batches: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    batch: usize,
    channels: usize,
    hw: usize,
    momentum: f32,
    eps: f32,
    relu: bool,
) -> Result<Vec<Dispatch>> {
    if batch * hw < 2 {
        return Err(EngineError::InvalidArgument(format!(
            "batch norm in training mode needs more than 1 value per channel, got batch {batch} x {hw} \
             positions; use a batch of at least 2 or evaluation mode"
        )));
    }
    let n = batch * channels * hw;
    expect(y, "batch norm output", n, DType::F32)?;
    expect(x, "batch norm input", n, DType::F32)?;
    for (t, what) in [
        (mean, "batch norm saved mean"),
        (invstd, "batch norm saved inverse deviation"),
        (running_mean, "batch norm running mean"),
        (running_var, "batch norm running variance"),
        (gamma, "batch norm weight"),
        (beta, "batch norm bias"),
    ] {
        expect(t, what, channels, DType::F32)?;
    }
    expect(num_batches, "batch norm batch count", 1, DType::F32)?;
    let p = params(dev, batch, channels, hw, momentum, eps, false)?;
    let k = Kernel::get(dev, &asgd_shaders::BATCHNORM_STATS, "batchnorm_stats", &[]);
    let stats =
        Dispatch::new(dev, k, &p, &[mean, invstd, running_mean, running_var, num_batches, x], grid_per_item(channels))?;
    let k = Kernel::get(dev, &asgd_shaders::BATCHNORM, "batchnorm_normalize", &[("RELU", flag(relu))]);
    let norm = Dispatch::new(dev, k, &p, &[y, x, mean, invstd, gamma, beta], grid_1d(p.threads(), 256))?;
    Ok(vec![stats, norm])
}

/// Eval-mode forward from the running statistics:
/// `y = gamma (x - running_mean) / sqrt(running_var + eps) + beta`, and with `relu`
/// `y = max(y, 0)` in the same pass. One dispatch.
// y and x are (B, C, HW); gamma, beta, running_mean, running_var are (C).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_eval_forward(
    dev: &Device,
    y: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    batch: usize,
    channels: usize,
    hw: usize,
    eps: f32,
    relu: bool,
) -> Result<Vec<Dispatch>> {
    let n = batch * channels * hw;
    expect(y, "batch norm output", n, DType::F32)?;
    expect(x, "batch norm input", n, DType::F32)?;
    for (t, what) in [
        (gamma, "batch norm weight"),
        (beta, "batch norm bias"),
        (running_mean, "batch norm running mean"),
        (running_var, "batch norm running variance"),
    ] {
        expect(t, what, channels, DType::F32)?;
    }
    let p = params(dev, batch, channels, hw, 0.0, eps, true)?;
    let k = Kernel::get(dev, &asgd_shaders::BATCHNORM, "batchnorm_normalize", &[("RELU", flag(relu))]);
    let grid = grid_1d(p.threads(), 256);
    Ok(vec![Dispatch::new(dev, k, &p, &[y, x, running_mean, running_var, gamma, beta], grid)?])
}

/// Backward of the training-mode forward (batch statistics): with `xhat = (x - mean) invstd`,
/// `dgamma = sum dy xhat` and `dbeta = sum dy` (both overwritten, shape `[C]`); if `dx` is
/// given, `dx = gamma invstd / N (N dy - sum dy - xhat sum(dy xhat))` (overwritten).
///
/// With `relu_out`, the forward applied a fused ReLU and wrote `relu_out`: `dy` is the gradient
/// after the ReLU and counts only where `relu_out > 0` (in every formula above).
///
/// Returns the per-channel sums, then (with `dx`) the input gradient that reads them.
// dx, dy, x and relu_out are (B, C, HW); dgamma, dbeta, mean, invstd and gamma are (C).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    dev: &Device,
    dgamma: &Tensor,
    dbeta: &Tensor,
    dx: Option<&Tensor>,
    dy: &Tensor,
    x: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    gamma: &Tensor,
    batch: usize,
    channels: usize,
    hw: usize,
    relu_out: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let n = batch * channels * hw;
    expect(dy, "batch norm output gradient", n, DType::F32)?;
    if let Some(r) = relu_out {
        expect(r, "batch norm output", n, DType::F32)?;
        let offered = dev.limits().max_storage_buffers_per_shader_stage;
        if offered < FUSED_RELU_STORAGE_BUFFERS {
            return Err(EngineError::InvalidArgument(format!(
                "batch norm's backward with a fused ReLU binds {FUSED_RELU_STORAGE_BUFFERS} storage buffers and {} \
                 offers {offered} per shader stage; run the ReLU as its own layer",
                dev.info().name
            )));
        }
    }
    expect(x, "batch norm input", n, DType::F32)?;
    for (t, what) in [
        (dgamma, "batch norm weight gradient"),
        (dbeta, "batch norm bias gradient"),
        (mean, "batch norm saved mean"),
        (invstd, "batch norm saved inverse deviation"),
        (gamma, "batch norm weight"),
    ] {
        expect(t, what, channels, DType::F32)?;
    }
    let p = params(dev, batch, channels, hw, 0.0, 0.0, false)?;
    // Without the ReLU the mask's binding is read by no one: dy stands in for it.
    let mask = relu_out.unwrap_or(dy);
    let constants = [("RELU", flag(relu_out.is_some()))];
    let k = Kernel::get(dev, &asgd_shaders::BATCHNORM_BACKWARD, "batchnorm_backward_reduce", &constants);
    let sums = [dgamma, dbeta, dy, x, mean, invstd, mask];
    let mut out = vec![Dispatch::new(dev, k, &p, &sums, grid_per_item(channels))?];
    if let Some(dx) = dx {
        expect(dx, "batch norm input gradient", n, DType::F32)?;
        let k = Kernel::get(dev, &asgd_shaders::BATCHNORM, "batchnorm_backward_dx", &constants);
        let grid = grid_1d(p.threads(), 256);
        out.push(Dispatch::new(dev, k, &p, &[dx, x, mean, invstd, gamma, dy, dgamma, dbeta, mask], grid)?);
    }
    Ok(out)
}

/// CPU references in f64, with the launchers' arguments.
pub mod cpu {
    /// The values of channel `c`, as indices into a (B, C, HW) buffer.
    fn channel(c: usize, batch: usize, channels: usize, hw: usize) -> impl Iterator<Item = usize> {
        (0..batch).flat_map(move |b| (0..hw).map(move |i| (b * channels + c) * hw + i))
    }

    /// Training-mode forward (see the launcher); `num_batches` is incremented.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm_train_forward(
        y: &mut [f64],
        mean: &mut [f64],
        invstd: &mut [f64],
        running_mean: &mut [f64],
        running_var: &mut [f64],
        num_batches: &mut f64,
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        batch: usize,
        channels: usize,
        hw: usize,
        momentum: f64,
        eps: f64,
    ) {
        let n = (batch * hw) as f64;
        for c in 0..channels {
            let mu = channel(c, batch, channels, hw).map(|i| x[i]).sum::<f64>() / n;
            let var = channel(c, batch, channels, hw).map(|i| (x[i] - mu) * (x[i] - mu)).sum::<f64>() / n;
            let s = 1.0 / (var + eps).sqrt();
            for i in channel(c, batch, channels, hw) {
                y[i] = gamma[c] * (x[i] - mu) * s + beta[c];
            }
            mean[c] = mu;
            invstd[c] = s;
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mu;
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var * n / (n - 1.0);
        }
        *num_batches += 1.0;
    }

    /// Eval-mode forward from the running statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm_eval_forward(
        y: &mut [f64],
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        running_mean: &[f64],
        running_var: &[f64],
        batch: usize,
        channels: usize,
        hw: usize,
        eps: f64,
    ) {
        for c in 0..channels {
            for i in channel(c, batch, channels, hw) {
                y[i] = gamma[c] * (x[i] - running_mean[c]) / (running_var[c] + eps).sqrt() + beta[c];
            }
        }
    }

    /// Backward of the training-mode forward; `dgamma`, `dbeta` and `dx` are overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm_backward(
        dgamma: &mut [f64],
        dbeta: &mut [f64],
        mut dx: Option<&mut [f64]>,
        dy: &[f64],
        x: &[f64],
        mean: &[f64],
        invstd: &[f64],
        gamma: &[f64],
        batch: usize,
        channels: usize,
        hw: usize,
    ) {
        let n = (batch * hw) as f64;
        for c in 0..channels {
            let xhat = |i: usize| (x[i] - mean[c]) * invstd[c];
            dgamma[c] = channel(c, batch, channels, hw).map(|i| dy[i] * xhat(i)).sum();
            dbeta[c] = channel(c, batch, channels, hw).map(|i| dy[i]).sum();
            if let Some(dx) = dx.as_deref_mut() {
                for i in channel(c, batch, channels, hw) {
                    dx[i] = gamma[c] * invstd[c] / n * (n * dy[i] - dbeta[c] - xhat(i) * dgamma[c]);
                }
            }
        }
    }
}

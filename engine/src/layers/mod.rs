//! Layers: a forward pass that saves what the backward needs, and a backward pass that writes
//! the input gradient and the parameter gradients. Each layer's backward is its own list of
//! dispatches, so a scheduler can update layer m the moment its gradients exist (PD-ASGD).
//!
//! A layer also has a plain f64 CPU forward ([`Layer::reference_forward`]) so that whole-model
//! gradients can be checked against finite differences.
//!
//! Models are chains of layers. A network that is not a chain (a ResNet) is still a chain of
//! blocks: [`Residual`] is one layer built of layers, whose input feeds two paths and whose
//! input gradient is the sum of both. Keeping the chain keeps the plan simple and keeps
//! layer-wise updates: a block's parameters are updated together, as soon as its backward ran.

mod avgpool;
mod batchnorm;
mod conv2d;
mod flatten;
mod linear;
mod maxpool;
mod relu;
mod residual;

pub use avgpool::GlobalAvgPool;
pub use batchnorm::BatchNorm2d;
pub use conv2d::Conv2d;
pub use flatten::Flatten;
pub use linear::Linear;
pub use maxpool::MaxPool2d;
pub use relu::Relu;
pub use residual::Residual;

use rand::Rng;

use crate::device::Device;
use crate::error::Result;
use crate::kernel::Dispatch;
use crate::ops::matmul::MatmulKernel;
use crate::tensor::Tensor;

/// A trainable tensor of a layer, with its PyTorch name within the layer (`weight`, `bias`,
/// or `conv1.weight` inside a block) and PyTorch's layout (`Linear.weight` is `[out, in]`,
/// `Conv2d.weight` `[out, in, kh, kw]`).
pub struct Param {
    pub name: String,
    pub value: Tensor,
}

impl Param {
    pub fn new(name: &str, value: Tensor) -> Self {
        Self { name: name.to_string(), value }
    }
}

/// What a non-trainable tensor holds, which says how it travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// A running statistic (batch norm's `running_mean`, `running_var`): averaged wherever
    /// models are averaged, like the parameters.
    Statistic,
    /// A count (batch norm's `num_batches_tracked`): each replica keeps its own; saved as
    /// int64 as PyTorch does.
    Counter,
}

/// A non-trainable tensor of a layer (PyTorch's registered buffers): checkpointed under its
/// PyTorch name, written by the forward pass in training mode, never touched by an optimiser.
pub struct Buffer {
    pub name: String,
    pub value: Tensor,
    pub kind: BufferKind,
}

/// Whether a plan trains (batch statistics, running statistics updated, a backward pass) or
/// evaluates (running statistics, forward only): PyTorch's `model.train()` / `model.eval()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// The buffers one layer reads and writes in a plan for one batch size.
pub struct LayerIo<'a> {
    pub dev: &'a Device,
    /// Samples in the batch.
    pub batch: usize,
    /// Shape of one input sample (e.g. `[1, 28, 28]` or `[784]`).
    pub in_shape: &'a [usize],
    /// Input activations `(B, in_shape...)`.
    pub x: &'a Tensor,
    /// Output activations `(B, out_shape...)`.
    pub y: &'a Tensor,
    /// Gradient of the loss with respect to `y`; `None` in forward-only plans.
    pub dy: Option<&'a Tensor>,
    /// Where to write the gradient with respect to `x`; `None` for the first layer (nothing
    /// consumes it) and in forward-only plans.
    pub dx: Option<&'a Tensor>,
    /// Where to write the gradient of each of [`Layer::params`], same shapes; empty in
    /// forward-only plans.
    pub grads: &'a [Tensor],
    /// The values of [`Layer::params`] that the kernels read: the layer's own, or a copy
    /// (asynchronous training's weight stashing).
    pub params: &'a [Tensor],
    /// The matrix-product kernel to use.
    pub matmul: MatmulKernel,
    /// Training (batch statistics, `dy` given) or evaluation.
    pub mode: Mode,
    /// The layer applies the ReLU that follows it in its own kernels (only for a layer whose
    /// [`Layer::fuses_relu`] is true): `y` receives `max(output, 0)`, `dy` is the gradient with
    /// respect to that, and the backward counts it only where `y > 0`.
    pub relu: bool,
}

impl LayerIo<'_> {
    /// The same plan context for other buffers (a block's inner layers).
    #[allow(clippy::too_many_arguments)]
    pub fn inner<'b>(
        &'b self,
        in_shape: &'b [usize],
        x: &'b Tensor,
        y: &'b Tensor,
        dy: Option<&'b Tensor>,
        dx: Option<&'b Tensor>,
        grads: &'b [Tensor],
        params: &'b [Tensor],
    ) -> LayerIo<'b> {
        LayerIo {
            dev: self.dev,
            batch: self.batch,
            in_shape,
            x,
            y,
            dy,
            dx,
            grads,
            params,
            matmul: self.matmul,
            mode: self.mode,
            relu: false,
        }
    }
}

/// The dispatches of one layer for one batch size.
#[derive(Default)]
pub struct LayerPlan {
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
}

/// One layer of a sequential model.
pub trait Layer: Send + Sync {
    /// Prefix of this layer's parameter names (`fc1`, `conv2`); also names it in messages.
    fn name(&self) -> &str;

    /// Shape of one output sample for one input sample, or an error when the input does not fit.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Trainable parameters in PyTorch's `state_dict` order (weight, then bias).
    fn params(&self) -> &[Param] {
        &[]
    }

    /// Non-trainable buffers in PyTorch's `state_dict` order (after the parameters).
    fn buffers(&self) -> &[Buffer] {
        &[]
    }

    /// Multiply-adds of the forward pass for one sample of `input` shape in the layer's matrix
    /// products (convolutions, linear layers); element-wise work is left out. A benchmark's
    /// floor: a training step costs about three times the forward's.
    fn forward_macs(&self, _input: &[usize]) -> usize {
        0
    }

    /// True when the output is the input reinterpreted (flatten): the plan shares buffers and
    /// runs no kernel.
    fn is_view(&self) -> bool {
        false
    }

    /// True for a ReLU, `y = max(x, 0)`: a plan hands it to the layer before it where that
    /// layer [`fuses_relu`](Layer::fuses_relu), and the ReLU then runs no kernel of its own.
    fn is_relu(&self) -> bool {
        false
    }

    /// True when the layer can apply a following ReLU in its own kernels ([`LayerIo::relu`])
    /// on `dev`: its output is then written once, already rectified, instead of written, read
    /// and written again, and its backward masks `dy` where it reads it.
    fn fuses_relu(&self, _dev: &Device) -> bool {
        false
    }

    /// Builds the forward and backward dispatches over `io`'s buffers.
    fn build(&self, io: &LayerIo) -> Result<LayerPlan>;

    /// The forward pass in f64 on the CPU: `x` is `(B, in_shape...)`, `params` holds the
    /// values of [`Layer::params`] in order, `buffers` those of [`Layer::buffers`] (read in
    /// eval mode; the reference does not update them). Returns `(B, out_shape...)`.
    fn reference_forward(
        &self,
        params: &[Vec<f64>],
        buffers: &[Vec<f64>],
        x: &[f64],
        batch: usize,
        in_shape: &[usize],
        mode: Mode,
    ) -> Vec<f64>;
}

/// The gradient before a fused ReLU ([`LayerIo::relu`]) from `dy`, the one after it: a
/// masking pass (`dy` where `y > 0`) into a buffer of its own, pushed onto `backward`, for a
/// layer whose backward reads `dy` in several kernels (masking once is cheaper than in each).
/// Without the ReLU, `dy` itself.
pub(crate) fn before_relu(io: &LayerIo, dy: &Tensor, backward: &mut Vec<Dispatch>) -> Result<Tensor> {
    if !io.relu {
        return Ok(dy.clone());
    }
    let masked = Tensor::empty_like(dy);
    backward.push(crate::ops::relu::relu_backward(io.dev, &masked, dy, io.y)?);
    Ok(masked)
}

/// Whether layer `i` of `chain` applies the ReLU that follows it (which then runs nothing).
pub(crate) fn absorbs_relu(chain: &[Box<dyn Layer>], i: usize, dev: &Device) -> bool {
    chain[i].fuses_relu(dev) && chain.get(i + 1).is_some_and(|next| next.is_relu())
}

/// Per-sample shapes through the chain `layers` from `input`, input first.
pub(crate) fn chain_shapes(layers: &[Box<dyn Layer>], input: &[usize]) -> Result<Vec<Vec<usize>>> {
    let mut shapes = vec![input.to_vec()];
    for layer in layers {
        let next = layer.output_shape(shapes.last().expect("not empty"))?;
        shapes.push(next);
    }
    Ok(shapes)
}

/// The f64 forward of the chain `layers` over `x`, each layer's input of shape `shapes[i]`;
/// `params` and `buffers` hold the chain's values in order, layer by layer.
pub(crate) fn reference_chain(
    layers: &[Box<dyn Layer>],
    shapes: &[Vec<usize>],
    params: &[Vec<f64>],
    buffers: &[Vec<f64>],
    x: &[f64],
    batch: usize,
    mode: Mode,
) -> Vec<f64> {
    let (mut p, mut b) = (0, 0);
    let mut a = x.to_vec();
    for (layer, shape) in layers.iter().zip(shapes) {
        let (np, nb) = (layer.params().len(), layer.buffers().len());
        a = layer.reference_forward(&params[p..p + np], &buffers[b..b + nb], &a, batch, shape, mode);
        p += np;
        b += nb;
    }
    a
}

/// PyTorch's default initialisation of Linear and Conv2d weights and biases:
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5) gives the same bound).
pub(crate) fn uniform_init(rng: &mut impl Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

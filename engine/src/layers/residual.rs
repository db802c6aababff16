//! A residual block built of layers: `y = relu(main(x) + shortcut(x))`, where `main` is a
//! chain of layers and `shortcut` the identity or another chain (a strided 1x1 convolution
//! and a batch norm). ResNet's BasicBlock is `main = conv3x3, bn, relu, conv3x3, bn`.
//!
//! The block is one layer of the model's chain: it allocates its inner activations and
//! gradients when its plan is built, runs its inner layers' kernels in order, and sums the
//! two input gradients (`x` feeds both paths, so its gradient adds). Its parameters are its
//! inner layers', named `<inner>.<param>` (`conv1.weight`, `downsample.0.weight`), so the
//! model's names are PyTorch's (`layer1.0.conv1.weight`). Layer-wise updates treat the
//! block as one unit: its parameters are updated together once its backward has run.

use super::{absorbs_relu, chain_shapes, reference_chain, Buffer, Layer, LayerIo, LayerPlan, Mode, Param};
use crate::error::{EngineError, Result};
use crate::ops::elementwise::{add_relu, scale_add};
use crate::ops::relu::relu_backward;
use crate::tensor::{DType, Tensor};

/// `y = relu(main(x) + shortcut(x))`, the shortcut being the identity when it has no layers.
pub struct Residual {
    name: String,
    main: Vec<Box<dyn Layer>>,
    shortcut: Vec<Box<dyn Layer>>,
    /// The inner layers' parameters under their block-relative names (the tensors are
    /// shared with the inner layers): main path first, then the shortcut.
    params: Vec<Param>,
    buffers: Vec<Buffer>,
}

/// The activations and kernels of one inner chain in a plan.
struct ChainPlan {
    forward: Vec<crate::kernel::Dispatch>,
    /// Backward dispatches, last layer first.
    backward: Vec<crate::kernel::Dispatch>,
}

impl Residual {
    /// `main` and `shortcut` are chains; inner layer names must be unique within the block.
    pub fn new(name: &str, main: Vec<Box<dyn Layer>>, shortcut: Vec<Box<dyn Layer>>) -> Result<Self> {
        if main.is_empty() {
            return Err(EngineError::InvalidArgument(format!("residual block {name} needs at least one layer")));
        }
        if let Some(view) = main.iter().chain(&shortcut).find(|l| l.is_view()) {
            return Err(EngineError::InvalidArgument(format!(
                "residual block {name}: {} only reinterprets its input, which a block cannot hold; put it outside the block",
                view.name()
            )));
        }
        let mut params = Vec::new();
        let mut buffers = Vec::new();
        for layer in main.iter().chain(&shortcut) {
            for p in layer.params() {
                params.push(Param::new(&format!("{}.{}", layer.name(), p.name), p.value.clone()));
            }
            for b in layer.buffers() {
                buffers.push(Buffer {
                    name: format!("{}.{}", layer.name(), b.name),
                    value: b.value.clone(),
                    kind: b.kind,
                });
            }
        }
        Ok(Self { name: name.to_string(), main, shortcut, params, buffers })
    }

    /// Builds `chain` from `x` into `y` (its last output) over `io`'s parameters and
    /// gradients starting at index `first`; with `dy`, the backward writes `dx` (if given).
    #[allow(clippy::too_many_arguments)]
    fn build_chain(
        io: &LayerIo,
        chain: &[Box<dyn Layer>],
        first: usize,
        x: &Tensor,
        y: &Tensor,
        dy: Option<&Tensor>,
        dx: Option<&Tensor>,
    ) -> Result<ChainPlan> {
        let shapes = chain_shapes(chain, io.in_shape)?;
        let with_batch = |s: &[usize]| [&[io.batch][..], s].concat();
        let n = chain.len();
        // acts[i] is layer i's input; the last layer writes y. A ReLU that the layer before it
        // applies shares that layer's output (and its gradient).
        let fused = |i: usize| i > 0 && absorbs_relu(chain, i - 1, io.dev);
        let mut acts = vec![x.clone()];
        let mut grads = vec![dx.cloned()];
        for (i, shape) in shapes.iter().enumerate().take(n).skip(1) {
            if fused(i - 1) {
                acts.push(acts[i - 1].clone());
                grads.push(grads[i - 1].clone());
            } else if i == n - 1 && fused(i) {
                // The chain ends in a ReLU applied by the layer before: that layer writes y.
                acts.push(y.clone());
                grads.push(dy.cloned());
            } else {
                acts.push(Tensor::empty(io.dev, &with_batch(shape), DType::F32)?);
                grads.push(dy.map(|_| Tensor::empty(io.dev, &with_batch(&shapes[i]), DType::F32)).transpose()?);
            }
        }
        acts.push(y.clone());
        grads.push(dy.cloned());
        let mut plan = ChainPlan { forward: Vec::new(), backward: Vec::new() };
        let mut backward = Vec::new();
        let mut next = first;
        for (i, layer) in chain.iter().enumerate() {
            if fused(i) {
                continue;
            }
            let k = layer.params().len();
            let none: [Tensor; 0] = [];
            let g = if dy.is_some() { &io.grads[next..next + k] } else { &none[..] };
            let mut inner = io.inner(
                &shapes[i],
                &acts[i],
                &acts[i + 1],
                grads[i + 1].as_ref(),
                grads[i].as_ref(),
                g,
                &io.params[next..next + k],
            );
            inner.relu = absorbs_relu(chain, i, io.dev);
            let built = layer.build(&inner)?;
            plan.forward.extend(built.forward);
            backward.push(built.backward);
            next += k;
        }
        plan.backward = backward.into_iter().rev().flatten().collect();
        Ok(plan)
    }
}

impl Layer for Residual {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let main = chain_shapes(&self.main, input)?.pop().expect("not empty");
        let short = chain_shapes(&self.shortcut, input)?.pop().expect("not empty");
        if main != short {
            return Err(EngineError::Shape(format!(
                "residual block {}: its main path gives shape {main:?} but its shortcut {short:?}; \
                 a block that changes the shape needs a projection shortcut",
                self.name
            )));
        }
        Ok(main)
    }

    fn forward_macs(&self, input: &[usize]) -> usize {
        let chain = |layers: &[Box<dyn Layer>]| {
            let shapes = chain_shapes(layers, input).unwrap_or_default();
            layers.iter().zip(&shapes).map(|(l, s)| l.forward_macs(s)).sum::<usize>()
        };
        chain(&self.main) + chain(&self.shortcut)
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    fn build(&self, io: &LayerIo) -> Result<LayerPlan> {
        let out = [&[io.batch][..], &self.output_shape(io.in_shape)?].concat();
        // y = relu(main(x) + shortcut(x)): the main path's last layer writes main(x) into y,
        // and one pass adds the shortcut and applies the ReLU in place. The ReLU's gradient
        // reads y, which is positive exactly where the sum is. That is safe because the last
        // layer does not read its own output in its backward pass; the one kind that does, a
        // layer applying a fused ReLU (a main path ending in batch norm and ReLU), writes a
        // buffer of its own, copied into y.
        let last = self.main.len() - 1;
        let in_place = !(last > 0 && absorbs_relu(&self.main, last - 1, io.dev));
        let main_out = if in_place { io.y.clone() } else { Tensor::empty(io.dev, &out, DType::F32)? };
        let dsum = io.dy.map(|_| Tensor::empty(io.dev, &out, DType::F32)).transpose()?;
        let main = Self::build_chain(io, &self.main, 0, io.x, &main_out, dsum.as_ref(), io.dx)?;
        let main_params: usize = self.main.iter().map(|l| l.params().len()).sum();
        let mut forward = main.forward;
        if !in_place {
            forward.push(scale_add(io.dev, io.y, &main_out, 1.0, 0.0)?);
        }
        let mut backward = Vec::new();
        if let (Some(dy), Some(dsum)) = (io.dy, &dsum) {
            backward.push(relu_backward(io.dev, dsum, dy, io.y)?);
        }
        backward.extend(main.backward);
        let short = if self.shortcut.is_empty() {
            if let (Some(dx), Some(dsum)) = (io.dx, &dsum) {
                backward.push(scale_add(io.dev, dx, dsum, 1.0, 1.0)?);
            }
            io.x.clone()
        } else {
            let short = Tensor::empty(io.dev, &out, DType::F32)?;
            let dx_short = io.dx.map(Tensor::empty_like);
            let s = Self::build_chain(io, &self.shortcut, main_params, io.x, &short, dsum.as_ref(), dx_short.as_ref())?;
            forward.extend(s.forward);
            backward.extend(s.backward);
            if let (Some(dx), Some(dx_short)) = (io.dx, &dx_short) {
                backward.push(scale_add(io.dev, dx, dx_short, 1.0, 1.0)?);
            }
            short
        };
        forward.push(add_relu(io.dev, io.y, &short)?);
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
        let count = |chain: &[Box<dyn Layer>]| {
            (chain.iter().map(|l| l.params().len()).sum::<usize>(), chain.iter().map(|l| l.buffers().len()).sum())
        };
        let (np, nb) = count(&self.main);
        let run = |chain: &[Box<dyn Layer>], params: &[Vec<f64>], buffers: &[Vec<f64>]| {
            let shapes = chain_shapes(chain, in_shape).expect("shape checked when the model was built");
            reference_chain(chain, &shapes, params, buffers, x, batch, mode)
        };
        let main = run(&self.main, &params[..np], &buffers[..nb]);
        let short = run(&self.shortcut, &params[np..], &buffers[nb..]);
        main.iter().zip(&short).map(|(m, s)| (m + s).max(0.0)).collect()
    }
}

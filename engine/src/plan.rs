//! A plan: a model bound to activation and gradient buffers for one batch size, with every
//! dispatch of the forward pass, the loss and each layer's backward built in advance. A step
//! only uploads the batch and records these dispatches into one encoder.
//!
//! Plans share the model's parameters; each has its own activations and gradients, so several
//! batches can be in flight at once (PD-ASGD's forward and backward threads each hold one).

use crate::error::{EngineError, Result};
use crate::kernel::Dispatch;
use crate::layers::{absorbs_relu, LayerIo, LayerPlan, Mode};
use crate::model::Model;
use crate::ops::matmul::MatmulKernel;
use crate::ops::metrics::accumulate;
use crate::ops::softmax_xent::softmax_xent;
use crate::tensor::{DType, Tensor};

/// Buffers and dispatches of one model for one batch size.
pub struct Plan {
    batch: usize,
    /// Input images `(B, input_shape...)`; write a batch here before recording.
    pub input: Tensor,
    /// Labels `(B)`, u32.
    pub labels: Tensor,
    /// Logits `(B, classes)`.
    pub logits: Tensor,
    /// Per-sample loss `(B)`, valid after the loss dispatch ran.
    pub loss: Tensor,
    /// Running `[sum loss, sum correct, samples]` since the last [`Plan::take_totals`].
    pub totals: Tensor,
    /// `grads[i][j]`: gradient of parameter `j` of layer `i` (empty for forward-only plans).
    pub grads: Vec<Vec<Tensor>>,
    layers: Vec<LayerPlan>,
    loss_dispatches: Vec<Dispatch>,
}

impl Plan {
    /// A plan whose kernels read `values[i][j]` as parameter `j` of layer `i` (shapes as the
    /// model's), or the model's own parameters with `None`.
    ///
    /// Errors: [`EngineError::TooLarge`] naming the layer and the batch when a buffer the
    /// batch needs does not fit the device (checked before it is allocated), or a wgpu
    /// error caught while building.
    pub(crate) fn new(model: &Model, batch: usize, training: bool, values: Option<&[Vec<Tensor>]>) -> Result<Self> {
        if batch == 0 {
            return Err(EngineError::InvalidArgument("the batch size must be at least 1".into()));
        }
        let dev = model.device();
        let what = format!("the buffers of a batch of {batch}");
        let plan = dev.scoped(&what, || Self::build(model, batch, training, values));
        if plan.is_err() {
            // What was allocated before the failure went back to the pool: release it.
            dev.pool().clear();
        }
        plan
    }

    fn build(model: &Model, batch: usize, training: bool, values: Option<&[Vec<Tensor>]>) -> Result<Self> {
        let dev = model.device();
        let sized = |what: String| move |e: EngineError| e.sized_for(&what, Some(batch));
        let shapes = model.activation_shapes();
        let with_batch = |s: &[usize]| [&[batch][..], s].concat();
        let matmul = MatmulKernel::Auto;

        // Activations: a view layer (flatten) shares its input's buffer, and so does a ReLU
        // that the layer before it applies (its input is already its output).
        let chain = model.layers();
        let mut acts: Vec<Tensor> =
            vec![Tensor::empty(dev, &with_batch(&shapes[0]), DType::F32).map_err(sized("the input".into()))?];
        let mut dacts: Vec<Option<Tensor>> = vec![None];
        for (i, layer) in chain.iter().enumerate() {
            let shape = with_batch(&shapes[i + 1]);
            let output = || sized(format!("the output of layer {}", layer.name()));
            if i > 0 && absorbs_relu(chain, i - 1, dev) {
                acts.push(acts[i].clone());
                dacts.push(dacts[i].clone());
            } else if layer.is_view() {
                acts.push(acts[i].reshape(&shape)?);
                let d = match &dacts[i] {
                    Some(d) => Some(d.reshape(&shape)?),
                    None if training => Some(Tensor::empty(dev, &shape, DType::F32).map_err(output())?),
                    None => None,
                };
                dacts.push(d);
            } else {
                acts.push(Tensor::empty(dev, &shape, DType::F32).map_err(output())?);
                dacts.push(training.then(|| Tensor::empty(dev, &shape, DType::F32)).transpose().map_err(output())?);
            }
        }
        // The first layers need no input gradient; a view that shares the input's gradient
        // buffer must not make the input look like it needs one either.
        let first_param_layer = model.layers().iter().position(|l| !l.params().is_empty()).unwrap_or(0);

        let mut grads = Vec::new();
        let mut layers = Vec::new();
        for (i, layer) in chain.iter().enumerate() {
            if i > 0 && absorbs_relu(chain, i - 1, dev) {
                // Applied by layer i - 1's kernels.
                layers.push(LayerPlan::default());
                grads.push(Vec::new());
                continue;
            }
            let g: Vec<Tensor> = if training {
                layer.params().iter().map(|p| Tensor::empty_like(&p.value)).collect()
            } else {
                Vec::new()
            };
            let own: Vec<Tensor> = layer.params().iter().map(|p| p.value.clone()).collect();
            let params = match values {
                Some(v) => {
                    let ok = v.get(i).is_some_and(|v| {
                        v.len() == own.len() && v.iter().zip(&own).all(|(a, b)| a.shape() == b.shape())
                    });
                    if !ok {
                        return Err(EngineError::InvalidArgument(format!(
                            "the parameter values given for layer {} do not match its parameters",
                            layer.name()
                        )));
                    }
                    &v[i]
                }
                None => &own,
            };
            let io = LayerIo {
                params,
                dev,
                batch,
                in_shape: &shapes[i],
                x: &acts[i],
                y: &acts[i + 1],
                dy: dacts[i + 1].as_ref(),
                dx: if i > first_param_layer { dacts[i].as_ref() } else { None },
                grads: &g,
                matmul,
                mode: if training { Mode::Train } else { Mode::Eval },
                relu: absorbs_relu(chain, i, dev),
            };
            layers.push(layer.build(&io).map_err(sized(format!("layer {}", layer.name())))?);
            grads.push(g);
        }

        let classes = model.classes();
        let logits = acts.last().expect("not empty").clone();
        // Forward-only plans still run the loss kernel for loss and accuracy; its gradient
        // goes to a scratch buffer.
        let dlogits = match dacts.last().expect("not empty") {
            Some(d) => d.clone(),
            None => Tensor::empty(dev, &[batch, classes], DType::F32).map_err(sized("the loss".into()))?,
        };
        let labels = Tensor::empty(dev, &[batch], DType::U32)?;
        let loss = Tensor::empty(dev, &[batch], DType::F32)?;
        let correct = Tensor::empty(dev, &[batch], DType::F32)?;
        let totals = Tensor::zeros(dev, &[3])?;
        let loss_dispatches = vec![
            softmax_xent(dev, &dlogits, &loss, &correct, &logits, &labels, batch, classes, 1.0 / batch as f32)?,
            accumulate(dev, &totals, &loss, &correct, batch)?,
        ];
        Ok(Self { batch, input: acts[0].clone(), labels, logits, loss, totals, grads, layers, loss_dispatches })
    }

    /// Samples per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of layers (as in the model).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Uploads a batch: `images` `(B, input_shape...)` flat, `labels` `(B)`.
    pub fn upload(&self, images: &[f32], labels: &[u32]) -> Result<()> {
        self.input.write_f32(images)?;
        self.labels.write_u32(labels)
    }

    /// Records the forward pass of every layer.
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>) {
        for l in &self.layers {
            for d in &l.forward {
                d.record(pass);
            }
        }
    }

    /// The forward and backward dispatches of layer `i`, in order (for per-kernel timing).
    pub fn layer_dispatches(&self, i: usize) -> (&[Dispatch], &[Dispatch]) {
        (&self.layers[i].forward, &self.layers[i].backward)
    }

    /// Records the forward pass of layer `i` alone (for per-layer timing).
    pub fn record_forward_layer(&self, i: usize, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.layers[i].forward {
            d.record(pass);
        }
    }

    /// Records the loss, its gradient with respect to the logits, and the running totals.
    pub fn record_loss(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.loss_dispatches {
            d.record(pass);
        }
    }

    /// Records the backward pass of layer `i` (its input gradient and parameter gradients).
    pub fn record_backward(&self, i: usize, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.layers[i].backward {
            d.record(pass);
        }
    }

    /// Records the forward pass, the loss and the whole backward pass (last layer first), so
    /// that every parameter gradient holds this batch's; no update.
    pub fn record_gradients(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_forward(pass);
        self.record_loss(pass);
        for i in (0..self.num_layers()).rev() {
            self.record_backward(i, pass);
        }
    }

    /// Reads and resets the running totals: `(sum of losses, number correct, samples)`.
    /// Waits for the GPU; call it every N steps, not every step.
    pub fn take_totals(&self) -> Result<(f64, f64, f64)> {
        let t = self.totals.to_vec_f32()?;
        self.totals.fill_zero();
        Ok((t[0] as f64, t[1] as f64, t[2] as f64))
    }
}

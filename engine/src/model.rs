//! A sequential model: an ordered list of layers over a fixed per-sample input shape, ending
//! in `classes` logits. Its parameters live on one device; [`Plan`]s bind them to activation
//! buffers for a batch size.

use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::io::checkpoint::NamedTensor;
use crate::layers::{BufferKind, Layer, Mode};
use crate::plan::Plan;
use crate::tensor::Tensor;

/// A classifier built from layers; see the `asgd-models` crate for MLP and LeNet-5.
pub struct Model {
    kind: String,
    dev: Device,
    layers: Vec<Box<dyn Layer>>,
    /// Per-sample shape of every activation: `shapes[0]` is the input, `shapes[i + 1]` the
    /// output of layer `i`.
    shapes: Vec<Vec<usize>>,
}

impl Model {
    /// Checks that the layers chain from `input_shape` (per sample) to a vector of logits.
    /// `kind` names the architecture (`mlp`, `lenet`) in checkpoints and messages.
    pub fn new(dev: &Device, kind: &str, input_shape: &[usize], layers: Vec<Box<dyn Layer>>) -> Result<Self> {
        let shapes = crate::layers::chain_shapes(&layers, input_shape)?;
        let out = shapes.last().expect("not empty");
        if out.len() != 1 || out[0] < 1 {
            return Err(EngineError::Shape(format!(
                "model {kind} must end in a vector of class logits, but ends in shape {out:?}"
            )));
        }
        Ok(Self { kind: kind.to_string(), dev: dev.clone(), layers, shapes })
    }

    /// The architecture's name (`mlp`, `lenet`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn device(&self) -> &Device {
        &self.dev
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Shape of one input sample.
    pub fn input_shape(&self) -> &[usize] {
        &self.shapes[0]
    }

    /// Per-sample activation shapes, input first.
    pub fn activation_shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Number of output logits.
    pub fn classes(&self) -> usize {
        self.shapes.last().expect("not empty")[0]
    }

    /// Every parameter with its PyTorch name (`fc1.weight`), in `state_dict` order.
    pub fn params(&self) -> Vec<(String, &Tensor)> {
        self.layers
            .iter()
            .flat_map(|l| l.params().iter().map(move |p| (format!("{}.{}", l.name(), p.name), &p.value)))
            .collect()
    }

    /// Every non-trainable buffer with its PyTorch name (`bn1.running_mean`), in
    /// `state_dict` order, with what it holds.
    pub fn buffers(&self) -> Vec<(String, &Tensor, BufferKind)> {
        self.layers
            .iter()
            .flat_map(|l| l.buffers().iter().map(move |b| (format!("{}.{}", l.name(), b.name), &b.value, b.kind)))
            .collect()
    }

    /// What averaging a model averages: every parameter, then every running statistic (not
    /// the counters). [`Model::read_flat`] and [`Model::write_flat`] use this order.
    pub fn averaged(&self) -> Vec<(String, &Tensor)> {
        let stats = self.buffers().into_iter().filter(|(_, _, k)| *k == BufferKind::Statistic);
        self.params().into_iter().chain(stats.map(|(n, t, _)| (n, t))).collect()
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Every parameter and buffer with its PyTorch name, in `state_dict` order.
    fn state(&self) -> Vec<(String, &Tensor)> {
        self.params().into_iter().chain(self.buffers().into_iter().map(|(n, t, _)| (n, t))).collect()
    }

    /// Reads every parameter and buffer back to the host, named and shaped as in PyTorch.
    pub fn state_dict(&self) -> Result<Vec<NamedTensor>> {
        self.state()
            .into_iter()
            .map(|(name, t)| Ok(NamedTensor { name, shape: t.shape().to_vec(), data: t.to_vec_f32()? }))
            .collect()
    }

    /// Overwrites the parameters and buffers from `tensors`; `source` names where they came
    /// from in errors. Every one must be present with its exact shape; tensors whose names
    /// start with `optim.` (optimiser state) are ignored here, any other extra tensor is an
    /// error.
    pub fn load_state_dict(&self, tensors: &[NamedTensor], source: &str) -> Result<()> {
        let params = self.state();
        for t in tensors {
            if !t.name.starts_with("optim.") && !params.iter().any(|(n, _)| *n == t.name) {
                return Err(EngineError::Checkpoint(format!(
                    "{source} holds tensor '{}', which model {} does not have: it was written for another model",
                    t.name, self.kind
                )));
            }
        }
        for (name, value) in &params {
            let t = tensors.iter().find(|t| t.name == *name).ok_or_else(|| {
                EngineError::Checkpoint(format!(
                    "{source} has no tensor '{name}' that model {} needs: it was written for another model",
                    self.kind
                ))
            })?;
            if t.shape != value.shape() {
                return Err(EngineError::Checkpoint(format!(
                    "{source}: tensor '{name}' has shape {:?} but model {} needs {:?}; \
                     was it written with other layer sizes?",
                    t.shape,
                    self.kind,
                    value.shape()
                )));
            }
            value.write_f32(&t.data)?;
        }
        Ok(())
    }

    /// The layers with parameters, last first, each with the layers whose backward runs with
    /// it: from the layer itself up to (not including) the next parameter layer above, top
    /// first. Running the groups in order is the whole backward pass; a group's parameter
    /// gradients are complete when it has run (what layer-wise updates and DDP build on).
    pub fn param_groups(&self) -> Vec<(usize, Vec<usize>)> {
        let params: Vec<usize> = (0..self.layers.len()).filter(|&i| !self.layers[i].params().is_empty()).collect();
        let mut groups = Vec::new();
        for (g, &p) in params.iter().enumerate().rev() {
            let upper = params.get(g + 1).copied().unwrap_or(self.layers.len());
            groups.push((p, (p..upper).rev().collect()));
        }
        groups
    }

    /// Every averaged tensor ([`Model::averaged`]) concatenated, read back in one copy.
    pub fn read_flat(&self) -> Result<Vec<f32>> {
        let params = self.averaged();
        let tensors: Vec<&Tensor> = params.iter().map(|(_, t)| *t).collect();
        let mut enc = self.dev.wgpu().create_command_encoder(&Default::default());
        let mut rb = crate::tensor::ReadBack::record(&self.dev, &mut enc, &tensors);
        rb.submitted(self.dev.submit([enc.finish()]));
        rb.wait(&self.dev)
    }

    /// SHA-256 of the bytes of every averaged tensor (little-endian f32, [`Model::averaged`]
    /// order), as hex: equal models, bit for bit, have equal checksums.
    pub fn checksum(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let flat = self.read_flat()?;
        let digest = Sha256::digest(bytemuck::cast_slice::<f32, u8>(&flat));
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Overwrites every averaged tensor from `flat` (in [`Model::averaged`] order).
    pub fn write_flat(&self, flat: &[f32]) -> Result<()> {
        let averaged = self.averaged();
        let total: usize = averaged.iter().map(|(_, t)| t.numel()).sum();
        if flat.len() != total {
            return Err(EngineError::Shape(format!(
                "{} values given for a model of {total} averaged values",
                flat.len()
            )));
        }
        let mut offset = 0;
        for (_, t) in averaged {
            t.write_f32(&flat[offset..offset + t.numel()])?;
            offset += t.numel();
        }
        Ok(())
    }

    /// Builds the buffers and dispatches for batches of `batch` samples. `training` is
    /// PyTorch's train mode ([`Mode::Train`]: batch statistics, running statistics updated,
    /// and the backward pass); without it the plan evaluates ([`Mode::Eval`], forward only).
    pub fn plan(&self, batch: usize, training: bool) -> Result<Plan> {
        Plan::new(self, batch, training, None)
    }

    /// A plan like [`Model::plan`] whose kernels read `values[i][j]` instead of parameter `j`
    /// of layer `i` (same shapes): a copy of the parameters, so that a backward pass can use
    /// the values its forward pass used while the model's own change.
    pub fn plan_reading(&self, batch: usize, training: bool, values: &[Vec<Tensor>]) -> Result<Plan> {
        Plan::new(self, batch, training, Some(values))
    }

    /// The mean cross-entropy of the model in f64 on the CPU, with parameter values `params`
    /// (in [`Model::params`] order, row-major) and buffer values `buffers` (in
    /// [`Model::buffers`] order), in `mode`. For gradient checks. `images` is
    /// `(B, input_shape...)`.
    pub fn reference_loss(
        &self,
        params: &[Vec<f64>],
        buffers: &[Vec<f64>],
        images: &[f64],
        labels: &[u32],
        mode: Mode,
    ) -> f64 {
        let batch = labels.len();
        let x = crate::layers::reference_chain(&self.layers, &self.shapes, params, buffers, images, batch, mode);
        let c = self.classes();
        let mut total = 0.0;
        for (b, &label) in labels.iter().enumerate() {
            let row = &x[b * c..(b + 1) * c];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += lse - row[label as usize];
        }
        total / batch as f64
    }
}

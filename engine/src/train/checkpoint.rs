//! Checkpoints: the model's parameters and buffers under PyTorch's names and layouts, the
//! optimiser's state under `optim.<state>.<name>` (SGD's `momentum`, Adam's `exp_avg`,
//! `exp_avg_sq` and `step`), which optimiser wrote it (metadata `optim`), and where the run
//! stood, in one safetensors file written atomically.
//!
//! PyTorch loads the parameters with
//! `model.load_state_dict({k: v for k, v in safetensors.torch.load_file(f).items() if not k.startswith("optim.")})`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Elapsed, Position};
use crate::error::{EngineError, Result};
use crate::io::checkpoint::{check_finite, load_safetensors, save_safetensors, NamedTensor};
use crate::model::Model;
use crate::optim::Optimizer;

/// The metadata asgd writes into a checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckpointMeta {
    /// Architecture description, e.g. `mlp:512,512` or `lenet`.
    pub model: String,
    /// Dataset name (`mnist`, `digits`, ...).
    pub data: String,
    /// Shape of one input sample, e.g. `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    pub classes: usize,
    /// Where the run stood after the last step included.
    pub position: Position,
    /// Seed of the run (the epoch order depends on it).
    pub seed: u64,
    /// Anything else worth recording (algorithm, batch, learning rate...).
    pub extra: BTreeMap<String, String>,
    /// Time the run had spent when the checkpoint was written (0 in checkpoints that predate
    /// the record): a resumed run's clock continues from it ([`super::TrainConfig::elapsed`]).
    pub elapsed: Elapsed,
}

const FORMAT: &str = "asgd-checkpoint-1";

impl CheckpointMeta {
    fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = self.extra.clone();
        let shape: Vec<String> = self.input_shape.iter().map(|d| d.to_string()).collect();
        m.insert("format".into(), FORMAT.into());
        m.insert("model".into(), self.model.clone());
        m.insert("data".into(), self.data.clone());
        m.insert("input_shape".into(), shape.join(","));
        m.insert("classes".into(), self.classes.to_string());
        m.insert("epoch".into(), self.position.epoch.to_string());
        m.insert("batch_in_epoch".into(), self.position.batch_in_epoch.to_string());
        m.insert("step".into(), self.position.step.to_string());
        m.insert("seed".into(), self.seed.to_string());
        m.insert("wall_s".into(), self.elapsed.wall_s.to_string());
        m.insert("train_s".into(), self.elapsed.train_s.to_string());
        m
    }

    fn from_map(path: &Path, mut m: BTreeMap<String, String>) -> Result<Self> {
        let bad = |what: &str| {
            EngineError::Checkpoint(format!(
                "{} is not an asgd checkpoint: its metadata lacks a valid '{what}'",
                path.display()
            ))
        };
        if m.remove("format").as_deref() != Some(FORMAT) {
            return Err(bad("format"));
        }
        let mut take = |k: &str| m.remove(k).ok_or_else(|| bad(k));
        let model = take("model")?;
        let data = take("data")?;
        let input_shape = take("input_shape")?
            .split(',')
            .map(|d| d.parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| bad("input_shape"))?;
        let classes = take("classes")?.parse().map_err(|_| bad("classes"))?;
        let epoch = take("epoch")?.parse().map_err(|_| bad("epoch"))?;
        let batch_in_epoch = take("batch_in_epoch")?.parse().map_err(|_| bad("batch_in_epoch"))?;
        let step = take("step")?.parse().map_err(|_| bad("step"))?;
        let seed = take("seed")?.parse().map_err(|_| bad("seed"))?;
        let mut time = |k: &str| match m.remove(k) {
            None => Ok(0.0),
            Some(v) => v.parse::<f64>().ok().filter(|t| t.is_finite() && *t >= 0.0).ok_or_else(|| bad(k)),
        };
        let elapsed = Elapsed { wall_s: time("wall_s")?, train_s: time("train_s")? };
        Ok(Self {
            model,
            data,
            input_shape,
            classes,
            position: Position { epoch, batch_in_epoch, step },
            seed,
            extra: m,
            elapsed,
        })
    }
}

/// A checkpoint read from disk.
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub tensors: Vec<NamedTensor>,
    source: String,
}

impl Checkpoint {
    /// Loads the parameters into `model` (which must have been built from `meta.model`).
    pub fn restore_model(&self, model: &Model) -> Result<()> {
        model.load_state_dict(&self.tensors, &self.source)
    }

    /// Loads the optimiser state into `optim`; a checkpoint without optimiser state leaves it
    /// at zero. A checkpoint written by another optimiser is refused: its state would not
    /// mean the same.
    pub fn restore_optimizer(&self, model: &Model, optim: &dyn Optimizer) -> Result<()> {
        let name = optim.config().name();
        if let Some(saved) = self.meta.extra.get("optim").filter(|s| s.as_str() != name) {
            return Err(EngineError::Checkpoint(format!(
                "{} holds the state of optimiser {saved}, not {name}; resume it with {saved}, \
                 or start a new run",
                self.source
            )));
        }
        for (name, t) in optim.state(model) {
            if let Some(saved) = self.tensors.iter().find(|s| s.name == name) {
                if saved.shape != t.shape() {
                    return Err(EngineError::Checkpoint(format!(
                        "{}: optimiser tensor '{name}' has shape {:?}, expected {:?}",
                        self.source,
                        saved.shape,
                        t.shape()
                    )));
                }
                t.write_f32(&saved.data)?;
            }
        }
        Ok(())
    }
}

/// Reads a checkpoint written by [`save_checkpoint`]. Refused: a file that is not one, and
/// one holding a non-finite value in any tensor (parameters, buffers, optimiser state).
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let (tensors, meta) = load_safetensors(path)?;
    let meta = CheckpointMeta::from_map(path, meta)?;
    check_finite(path, &tensors)?;
    Ok(Checkpoint { meta, tensors, source: path.display().to_string() })
}

/// Writes `model`'s parameters and buffers (and `optim`'s state, if given) with `meta`,
/// atomically.
pub fn save_checkpoint(path: &Path, model: &Model, optim: Option<&dyn Optimizer>, meta: &CheckpointMeta) -> Result<()> {
    let mut tensors = model.state_dict()?;
    let mut map = meta.to_map();
    if let Some(optim) = optim {
        map.insert("optim".into(), optim.config().name().into());
        for (name, t) in optim.state(model) {
            tensors.push(NamedTensor { name, shape: t.shape().to_vec(), data: t.to_vec_f32()? });
        }
    }
    save_safetensors(path, &tensors, &map)
}

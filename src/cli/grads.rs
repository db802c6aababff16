//! `asgd grads`: the gradients of the mean cross-entropy of one batch, written for comparison
//! with another framework.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use asgd::engine::io::checkpoint::{load_batch, save_safetensors, NamedTensor};
use asgd::load_checkpoint;

use super::common::DeviceArgs;
use super::train::model_for_checkpoint;

#[derive(clap::Args)]
pub struct GradsArgs {
    /// Model the checkpoint should hold (checked; taken from the checkpoint when omitted).
    #[arg(long)]
    pub model: Option<String>,
    /// Parameters to differentiate at.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// safetensors file with `images` (f32, [B, C, H, W] or [B, features]) and `labels` (int64, [B]).
    #[arg(long)]
    pub batch: PathBuf,
    /// Output: one tensor per parameter, named as in the checkpoint, plus `loss`.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: GradsArgs) -> Result<ExitCode> {
    let ck = load_checkpoint(&args.checkpoint)?;
    let cfg = model_for_checkpoint(args.model.as_deref(), &ck.meta, &args.checkpoint)?;
    let (shape, images, labels) = load_batch(&args.batch)?;
    let per_sample: usize = ck.meta.input_shape.iter().product();
    let b = labels.len();
    if b == 0 {
        bail!("{} holds an empty batch", args.batch.display());
    }
    if shape.iter().skip(1).product::<usize>() != per_sample {
        bail!(
            "{}: images of shape {:?} do not fit model {}, which takes samples of shape {:?} ({} values)",
            args.batch.display(),
            shape,
            cfg.description(),
            ck.meta.input_shape,
            per_sample
        );
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= ck.meta.classes) {
        bail!("{}: label {bad} is out of range for {} classes", args.batch.display(), ck.meta.classes);
    }
    let input: [usize; 3] = ck.meta.input_shape.clone().try_into().map_err(|_| {
        anyhow::anyhow!(
            "checkpoint {} has input shape {:?}, expected 3 dimensions",
            args.checkpoint.display(),
            ck.meta.input_shape
        )
    })?;
    let dev = args.device.open()?;
    let model = cfg.build(&dev, input, ck.meta.classes, 0)?;
    ck.restore_model(&model)?;
    let plan = model.plan(b, true)?;
    plan.upload(&images, &labels)?;
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        plan.record_gradients(&mut pass);
    }
    dev.submit([enc.finish()]);
    let mut out = Vec::new();
    for ((name, _), g) in model.params().into_iter().zip(plan.grads.iter().flatten()) {
        out.push(NamedTensor { name, shape: g.shape().to_vec(), data: g.to_vec_f32()? });
    }
    let losses = plan.loss.to_vec_f32()?;
    let loss = (losses.iter().map(|&v| v as f64).sum::<f64>() / b as f64) as f32;
    out.push(NamedTensor { name: "loss".into(), shape: vec![], data: vec![loss] });
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("model".to_string(), cfg.description());
    meta.insert("reduction".to_string(), "mean".to_string());
    save_safetensors(&args.out, &out, &meta)?;
    println!("loss {loss:.6} over {b} samples; {} gradients written to {}", out.len() - 1, args.out.display());
    Ok(ExitCode::SUCCESS)
}

//! `asgd eval`: test loss and accuracy of a checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use asgd::load_checkpoint;

use super::common::{positive, DataArgs, DeviceArgs};
use super::train::model_for_checkpoint;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Model the checkpoint should hold (checked; taken from the checkpoint when omitted).
    #[arg(long)]
    pub model: Option<String>,
    /// Checkpoint to evaluate.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Samples per evaluation batch.
    #[arg(long, default_value = "1000", value_parser = positive)]
    pub batch: usize,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let ck = load_checkpoint(&args.checkpoint)?;
    let cfg = model_for_checkpoint(args.model.as_deref(), &ck.meta, &args.checkpoint)?;
    let splits = args.data.load()?;
    if splits.test.shape.to_vec() != ck.meta.input_shape {
        bail!(
            "checkpoint {} takes inputs of shape {:?} ({}), but {} images have shape {:?}; pass --data {}",
            args.checkpoint.display(),
            ck.meta.input_shape,
            ck.meta.data,
            args.data.data.name(),
            splits.test.shape,
            ck.meta.data
        );
    }
    let dev = args.device.open()?;
    let model = cfg.build(&dev, splits.test.shape, ck.meta.classes, 0)?;
    ck.restore_model(&model)?;
    let (loss, acc) = asgd::evaluate(&model, &splits.test, args.batch)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "eval", "test_loss": loss, "test_acc": acc, "samples": splits.test.len(),
                               "model": cfg.description(), "data": args.data.data.name()})
        );
    } else {
        println!(
            "{} on {} test ({} samples): accuracy {:.2}%, loss {:.4}",
            cfg.description(),
            args.data.data.name(),
            splits.test.len(),
            100.0 * acc,
            loss
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `train --resume`: the settings that make a resumed run the same run (batch size, seed,
//! dataset) are read from the checkpoint; a flag that says otherwise is refused unless
//! `--force-resume` is given.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use asgd::data::Dataset;
use asgd::CheckpointMeta;

/// Metadata keys of what a resumed run must share with the run that wrote the checkpoint
/// (besides `batch`, `seed` and `data`, written already).
pub const TRAIN_SAMPLES: &str = "train_samples";
pub const TRAIN_LABELS_DIGEST: &str = "train_labels_fnv1a64";

/// Records what identifies the training set in `extra`: its size and a digest of its labels
/// (cheap, and different for any other dataset, subset or order).
pub fn record_data(extra: &mut BTreeMap<String, String>, train: &Dataset) {
    extra.insert(TRAIN_SAMPLES.into(), train.len().to_string());
    extra.insert(TRAIN_LABELS_DIGEST.into(), labels_digest(train));
}

/// FNV-1a (64 bits) of the labels in order, as hex: not a cryptographic digest, a cheap
/// fingerprint that tells training sets apart.
fn labels_digest(train: &Dataset) -> String {
    let h =
        train.labels.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &l| (h ^ u64::from(l)).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}

/// One setting of a resumed run: the flag, the value the checkpoint holds, the value given.
struct Setting {
    flag: &'static str,
    saved: String,
    given: String,
}

/// The batch size and seed of a resumed run: the checkpoint's, unless the flags name others,
/// which is refused (naming the setting and both values) unless `force`. The dataset (name,
/// size, labels) must match as well.
pub fn settings(
    path: &Path,
    meta: &CheckpointMeta,
    batch: Option<usize>,
    seed: Option<u64>,
    data_name: &str,
    train: &Dataset,
    force: bool,
) -> Result<(Option<usize>, u64)> {
    let saved_batch = meta.extra.get("batch").and_then(|b| b.parse::<usize>().ok());
    let mut differ = Vec::new();
    if let (Some(given), Some(saved)) = (batch, saved_batch) {
        if given != saved {
            differ.push(Setting { flag: "--batch", saved: saved.to_string(), given: given.to_string() });
        }
    }
    if let Some(given) = seed.filter(|&s| s != meta.seed) {
        differ.push(Setting { flag: "--seed", saved: meta.seed.to_string(), given: given.to_string() });
    }
    if meta.data != data_name {
        differ.push(Setting { flag: "--data", saved: meta.data.clone(), given: data_name.to_string() });
    } else if let Some(saved) = meta.extra.get(TRAIN_SAMPLES).filter(|&n| *n != train.len().to_string()) {
        differ.push(Setting {
            flag: "--train-samples or --data-dir",
            saved: format!("{saved} training samples"),
            given: format!("{} training samples", train.len()),
        });
    } else if meta.extra.get(TRAIN_LABELS_DIGEST).is_some_and(|d| *d != labels_digest(train)) {
        differ.push(Setting {
            flag: "--data-dir",
            saved: format!("the training set of {}", meta.data),
            given: "another one of the same size".into(),
        });
    }
    if let (Some(d), false) = (differ.first(), force) {
        bail!(
            "checkpoint {} was written with {} {}, not {}; drop {} to continue the same run, or pass --force-resume \
             to resume with another setting",
            path.display(),
            d.flag,
            d.saved,
            d.given,
            d.flag
        );
    }
    Ok((batch.or(saved_batch), seed.unwrap_or(meta.seed)))
}

//! A dataset of the user's own in a safetensors file: `images` (f32, `[N, C, H, W]`, already
//! normalised as the user wants it) and `labels` (int64, `[N]`; int32 and uint8 are accepted
//! too), every label 0 or more. The number of classes is the largest label plus one, over the
//! training and the test set.
//!
//! The test set is a second file of the same layout, or the last rows of the file
//! ([`TestSplit::Fraction`]): a fixed split that every run and `asgd eval` see alike, whatever
//! the seed, so a file sorted by class must be shuffled before it is saved.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use super::{Dataset, Splits};
use crate::error::{EngineError, Result};

/// Where the test set of a safetensors dataset comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TestSplit {
    /// Another file of the same layout.
    File(PathBuf),
    /// The last `round(f * N)` rows of the training file (at least one, and at least one row
    /// left to train on), for `0 < f < 1`.
    Fraction(f64),
}

fn data_err(path: &Path, problem: impl std::fmt::Display) -> EngineError {
    EngineError::Data(format!("{}: {problem}", path.display()))
}

/// The contents of one file: `images` `[n, shape]` row-major, `labels` `[n]`.
struct Loaded {
    shape: [usize; 3],
    images: Vec<f32>,
    labels: Vec<u32>,
}

/// Reads and checks one dataset file.
fn read_file(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => data_err(path, "the file does not exist; check the path"),
        _ => EngineError::io(path, e),
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        data_err(
            path,
            format!(
                "the file is not a safetensors file ({e}); write it with safetensors' save_file, holding \
                 `images` (float32, [N, C, H, W]) and `labels` (int64, [N])"
            ),
        )
    })?;
    let tensor = |name: &str| {
        st.tensor(name).map_err(|_| {
            let mut have = st.names();
            have.sort_unstable();
            data_err(
                path,
                format!(
                    "the file has no tensor named `{name}` (it has: {}); a dataset file holds `images` \
                     (float32, [N, C, H, W]) and `labels` (int64, [N])",
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ),
            )
        })
    };
    let (images, labels) = (tensor("images")?, tensor("labels")?);
    let dims = images.shape().to_vec();
    let &[n, c, h, w] = dims.as_slice() else {
        return Err(data_err(
            path,
            format!(
                "`images` has shape {dims:?}, but it must have four dimensions [N, C, H, W] \
                 (add the missing ones of size 1, e.g. `x.reshape(N, 1, 1, F)` for flat features)"
            ),
        ));
    };
    if images.dtype() != Dtype::F32 {
        return Err(data_err(
            path,
            format!(
                "`images` is {:?}, but it must be float32; convert it (in PyTorch: `images.float()`) and save again",
                images.dtype()
            ),
        ));
    }
    if n == 0 || c * h * w == 0 {
        return Err(data_err(
            path,
            format!("`images` has shape {dims:?}: no samples; the file must hold at least one image"),
        ));
    }
    if labels.shape() != [n] {
        return Err(data_err(
            path,
            format!(
                "`labels` has shape {:?} but `images` holds {n} samples; labels must have shape [{n}], one per image",
                labels.shape()
            ),
        ));
    }
    let raw: Vec<i64> = match labels.dtype() {
        Dtype::I64 => labels.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect(),
        Dtype::I32 => labels.data().chunks_exact(4).map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes")))).collect(),
        Dtype::U8 => labels.data().iter().map(|&v| i64::from(v)).collect(),
        other => {
            return Err(data_err(
                path,
                format!("`labels` is {other:?}, but it must be int64 (int32 and uint8 are accepted too); in PyTorch: `labels.long()`"),
            ))
        }
    };
    let labels = raw
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u32::try_from(l).map_err(|_| {
                data_err(path, format!("label {l} at index {i} is not a class index; labels must be 0, 1, 2, ..."))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let images = images.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    Ok(Loaded { shape: [c, h, w], images, labels })
}

/// Loads a dataset of one's own: the training set from `train` (see the module doc for the
/// layout) and the test set as `test` says. Names are `<file name>/train` and `/test`; nothing
/// is normalised (the values are used as stored) and padding for augmentation adds 0.
pub fn load_safetensors_splits(train: &Path, test: &TestSplit) -> Result<Splits> {
    let all = read_file(train)?;
    let (train_part, test_part) = match test {
        TestSplit::File(path) => {
            let t = read_file(path)?;
            if t.shape != all.shape {
                return Err(data_err(
                    path,
                    format!(
                        "the test images are {:?} (C, H, W) but the training images in {} are {:?}; \
                         both files must hold images of one shape",
                        t.shape,
                        train.display(),
                        all.shape
                    ),
                ));
            }
            (all, t)
        }
        TestSplit::Fraction(f) => split_last(all, *f, train)?,
    };
    let classes = train_part.labels.iter().chain(&test_part.labels).max().map_or(0, |&m| m as usize + 1);
    let name =
        train.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| train.display().to_string());
    let dataset = |part: Loaded, split: &str| Dataset {
        name: format!("{name}/{split}"),
        images: part.images,
        labels: part.labels,
        shape: part.shape,
        classes,
        zero: vec![0.0; part.shape[0]],
        augment: None,
    };
    Ok(Splits { train: dataset(train_part, "train"), test: dataset(test_part, "test") })
}

/// Splits off the last `round(f * n)` rows (at least one, leaving at least one).
fn split_last(mut all: Loaded, f: f64, path: &Path) -> Result<(Loaded, Loaded)> {
    if !(f > 0.0 && f < 1.0) {
        return Err(EngineError::InvalidArgument(format!(
            "the test split {f} is not a fraction between 0 and 1; pass e.g. 0.1 to hold out the last tenth"
        )));
    }
    let n = all.labels.len();
    if n < 2 {
        return Err(data_err(
            path,
            format!("the file holds {n} sample, too few to hold out a test set; give a separate test file"),
        ));
    }
    let n_test = ((f * n as f64).round() as usize).clamp(1, n - 1);
    let s: usize = all.shape.iter().product();
    let keep = n - n_test;
    let test = Loaded { shape: all.shape, images: all.images.split_off(keep * s), labels: all.labels.split_off(keep) };
    Ok((all, test))
}

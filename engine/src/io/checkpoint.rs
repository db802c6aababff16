//! safetensors files on host tensors: checkpoints (f32 tensors plus string metadata) and the
//! batch files of `asgd grads` (`images` f32 `[B, ...]`, `labels` int64 `[B]`).
//!
//! Values are stored little-endian as the format requires, whatever the host.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::atomic::{kind_of, write_atomic};
use crate::error::{EngineError, Result};

/// A host tensor with its name: `data` is row-major with `shape` (`data.len()` is the product of
/// `shape`; a scalar has shape `[]` and one value).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Name, e.g. `fc1.weight`.
    pub name: String,
    /// Dimensions, outermost first (PyTorch order, e.g. `[out, in]`).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

fn ckpt_err(path: &Path, problem: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!("{}: {problem}", path.display()))
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Serialises `entries` with `metadata` and writes the file atomically.
fn write_entries(path: &Path, entries: &[Entry], metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut seen = HashSet::new();
    let mut views = Vec::with_capacity(entries.len());
    for e in entries {
        if !seen.insert(e.name.as_str()) {
            return Err(EngineError::InvalidArgument(format!(
                "cannot write {}: the tensor name `{}` appears twice; names must be unique",
                path.display(),
                e.name
            )));
        }
        let view = TensorView::new(e.dtype, e.shape.clone(), &e.bytes).map_err(|_| {
            EngineError::InvalidArgument(format!(
                "cannot write {}: tensor `{}` has shape {:?} but {} bytes of {:?} data",
                path.display(),
                e.name,
                e.shape,
                e.bytes.len(),
                e.dtype
            ))
        })?;
        views.push((e.name.as_str(), view));
    }
    let info: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let bytes = safetensors::serialize(views, info)
        .map_err(|e| EngineError::InvalidArgument(format!("cannot write {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

fn f32_entry(path: &Path, name: &str, shape: &[usize], data: &[f32]) -> Result<Entry> {
    if numel(shape) != Some(data.len()) {
        return Err(EngineError::InvalidArgument(format!(
            "cannot write {}: tensor `{name}` has shape {shape:?} but {} values",
            path.display(),
            data.len()
        )));
    }
    let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(Entry { name: name.to_string(), dtype: Dtype::F32, shape: shape.to_vec(), bytes })
}

/// Whether a tensor is a count that PyTorch keeps as int64 (batch norm's
/// `num_batches_tracked`, which the engine counts in f32: exact up to 2^24 batches): it is
/// written as I64 so that `load_state_dict` finds the dtype it made.
fn is_int64_count(name: &str) -> bool {
    name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")
}

/// Writes `tensors` and the string `metadata` to `path` as safetensors: f32, except counts
/// that PyTorch keeps as int64 (batch norm's `num_batches_tracked`), written as int64.
///
/// Writes atomically: to a temporary file in the same directory, fsync, rename; a failure leaves
/// any previous file intact. The directory must exist.
pub fn save_safetensors(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let entries = tensors
        .iter()
        .map(|t| {
            if is_int64_count(&t.name) {
                let bytes = t.data.iter().flat_map(|&v| (v.round() as i64).to_le_bytes()).collect();
                Ok(Entry { name: t.name.clone(), dtype: Dtype::I64, shape: t.shape.clone(), bytes })
            } else {
                f32_entry(path, &t.name, &t.shape, &t.data)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    write_entries(path, &entries, metadata)
}

/// The file's bytes; a path that is not a regular file (reading a FIFO would block) is refused.
fn read(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if !meta.is_file() {
        return Err(ckpt_err(
            path,
            format!("it is {}, not a file; pass the path of a safetensors file", kind_of(&meta)),
        ));
    }
    std::fs::read(path).map_err(|e| EngineError::io(path, e))
}

fn not_safetensors(path: &Path, e: safetensors::SafeTensorError) -> EngineError {
    ckpt_err(path, format!("the file is not a valid safetensors file ({e}); check the path, or write it again"))
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(path, e))
}

fn f32_values(view: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<f32>> {
    if view.dtype() == Dtype::I64 && is_int64_count(name) {
        let counts = view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32);
        return Ok(counts.collect());
    }
    if view.dtype() != Dtype::F32 {
        return Err(ckpt_err(
            path,
            format!(
                "tensor `{name}` is {:?}, but asgd reads only F32 here; convert it to float32 \
                 (in PyTorch: `.float()`) before saving",
                view.dtype()
            ),
        ));
    }
    Ok(view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Reads every tensor (f32, or int64 for counts) and the string metadata from a safetensors file.
/// Tensors come back in the order their data is laid out in the file.
pub fn load_safetensors(path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bytes = read(path)?;
    let st = parse(&bytes, path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(path, e))?;
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let tensors = header
        .offset_keys()
        .into_iter()
        .map(|name| {
            let view = st.tensor(&name).map_err(|e| ckpt_err(path, e))?;
            let data = f32_values(&view, &name, path)?;
            Ok(NamedTensor { shape: view.shape().to_vec(), name, data })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((tensors, metadata))
}

/// Refuses tensors holding NaN or an infinity, naming the first such tensor: weights of a run
/// that diverged evaluate to chance and train into more NaN, silently.
pub fn check_finite(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    for t in tensors {
        let bad = t.data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            let first = t.data.iter().position(|v| !v.is_finite()).expect("counted");
            return Err(ckpt_err(
                path,
                format!(
                    "tensor `{}` holds {bad} non-finite value(s) of {} (the first, {}, at index {first}); \
                     the run that wrote it diverged: use an earlier checkpoint or start a new run",
                    t.name,
                    t.data.len(),
                    t.data[first]
                ),
            ));
        }
    }
    Ok(())
}

fn tensor<'a>(st: &SafeTensors<'a>, name: &str, path: &Path) -> Result<TensorView<'a>> {
    st.tensor(name).map_err(|_| {
        let mut have: Vec<&str> = st.names();
        have.sort_unstable();
        ckpt_err(
            path,
            format!(
                "the file has no tensor named `{name}` (it has: {}); a batch file needs `images` and `labels`",
                have.join(", ")
            ),
        )
    })
}

/// Reads a batch file of `asgd grads`: `images` (f32, `[B, ...]`, e.g. `[B, C, H, W]` or
/// `[B, features]`) and `labels` (int64, `[B]`; int32 and uint8 are accepted too), every label
/// non-negative. Returns the images' shape (batch first), the images row-major, and the labels.
pub fn load_batch(path: &Path) -> Result<(Vec<usize>, Vec<f32>, Vec<u32>)> {
    let bytes = read(path)?;
    let st = parse(&bytes, path)?;
    let images = tensor(&st, "images", path)?;
    let labels = tensor(&st, "labels", path)?;
    let shape = images.shape().to_vec();
    if shape.len() < 2 {
        return Err(ckpt_err(
            path,
            format!("`images` has shape {shape:?}, but it must be [B, ...] with at least two dimensions (batch first)"),
        ));
    }
    let b = shape[0];
    if labels.shape() != [b] {
        return Err(ckpt_err(
            path,
            format!(
                "`labels` has shape {:?} but `images` holds a batch of {b}; labels must have shape [{b}]",
                labels.shape()
            ),
        ));
    }
    let image_data = f32_values(&images, "images", path)?;
    let raw: Vec<i64> = match labels.dtype() {
        Dtype::I64 => labels
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::I32 => {
            labels.data().chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        Dtype::U8 => labels.data().iter().map(|&v| i64::from(v)).collect(),
        other => {
            return Err(ckpt_err(
                path,
                format!("`labels` is {other:?}; it must be int64 (int32 and uint8 are accepted too), e.g. `labels.long()` in PyTorch"),
            ))
        }
    };
    let label_data = raw
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u32::try_from(l).map_err(|_| {
                EngineError::Data(format!(
                    "{}: label {l} at index {i} is not a valid class index; labels must be 0 or more",
                    path.display()
                ))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok((shape, image_data, label_data))
}

/// Writes a batch file in the format [`load_batch`] reads: `images` f32 with `shape` (batch
/// first) and `labels` int64 `[B]`. Atomic like [`save_safetensors`].
pub fn save_batch(path: &Path, shape: &[usize], images: &[f32], labels: &[u32]) -> Result<()> {
    if shape.first() != Some(&labels.len()) {
        return Err(EngineError::InvalidArgument(format!(
            "cannot write {}: images have shape {shape:?} but there are {} labels; the first dimension is the batch",
            path.display(),
            labels.len()
        )));
    }
    let labels = Entry {
        name: "labels".to_string(),
        dtype: Dtype::I64,
        shape: vec![labels.len()],
        bytes: labels.iter().flat_map(|&l| i64::from(l).to_le_bytes()).collect(),
    };
    write_entries(path, &[f32_entry(path, "images", shape, images)?, labels], &BTreeMap::new())
}

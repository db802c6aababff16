//! safetensors checkpoints and batch files: round trips, atomic replacement, and clear errors.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use asgd_engine::io::{load_batch, load_safetensors, save_batch, save_safetensors, write_atomic, NamedTensor};
use safetensors::tensor::{Dtype, TensorView};
use support::{files_in, fresh_dir};

fn tensor(name: &str, shape: &[usize], first: f32) -> NamedTensor {
    let n = shape.iter().product::<usize>();
    NamedTensor { name: name.into(), shape: shape.to_vec(), data: (0..n).map(|i| first + i as f32 * 0.5).collect() }
}

#[test]
fn checkpoint_round_trip_keeps_names_shapes_values_and_metadata() {
    let dir = fresh_dir("io_checkpoint", "round_trip");
    let path = dir.join("model.safetensors");
    let tensors =
        vec![tensor("fc1.bias", &[3], -1.0), tensor("fc1.weight", &[3, 2], 0.25), tensor("step_scale", &[], 7.0)];
    let meta = BTreeMap::from([("model".to_string(), "mlp".to_string()), ("epoch".to_string(), "3".to_string())]);
    save_safetensors(&path, &tensors, &meta).unwrap();
    let (back, back_meta) = load_safetensors(&path).unwrap();
    assert_eq!(back, tensors);
    assert_eq!(back_meta, meta);
    // Readable by the reference implementation, as PyTorch would read it.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let w = st.tensor("fc1.weight").unwrap();
    assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[3usize, 2][..]));
    assert_eq!(&w.data()[..4], &0.25f32.to_le_bytes());
    assert_eq!(files_in(&dir), ["model.safetensors"]);
}

#[test]
fn saving_replaces_atomically_and_a_failure_keeps_the_old_file() {
    let dir = fresh_dir("io_checkpoint", "atomic");
    let path = dir.join("ckpt.safetensors");
    save_safetensors(&path, &[tensor("a", &[2], 1.0)], &BTreeMap::new()).unwrap();
    save_safetensors(&path, &[tensor("a", &[2], 5.0)], &BTreeMap::new()).unwrap();
    assert_eq!(load_safetensors(&path).unwrap().0[0].data, [5.0, 5.5]);

    let bad = NamedTensor { name: "a".into(), shape: vec![3], data: vec![1.0] };
    let msg = save_safetensors(&path, &[bad], &BTreeMap::new()).unwrap_err().to_string();
    assert!(msg.contains("tensor `a` has shape [3] but 1 values"), "{msg}");
    let dup = [tensor("a", &[1], 0.0), tensor("a", &[1], 0.0)];
    let msg = save_safetensors(&path, &dup, &BTreeMap::new()).unwrap_err().to_string();
    assert!(msg.contains("`a` appears twice"), "{msg}");
    assert_eq!(load_safetensors(&path).unwrap().0[0].data, [5.0, 5.5]);
    assert_eq!(files_in(&dir), ["ckpt.safetensors"], "no temporary file is left behind");

    let missing = dir.join("no_such_folder").join("x.safetensors");
    let msg = save_safetensors(&missing, &[], &BTreeMap::new()).unwrap_err().to_string();
    assert!(msg.contains("no_such_folder does not exist; create it first"), "{msg}");
}

#[test]
fn write_atomic_replaces_content() {
    let dir = fresh_dir("io_checkpoint", "write_atomic");
    let path = dir.join("notes.txt");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(files_in(&dir), ["notes.txt"]);
}

#[test]
fn a_file_that_is_not_safetensors_is_named() {
    let dir = fresh_dir("io_checkpoint", "garbage");
    let path = dir.join("weights.safetensors");
    std::fs::write(&path, b"this is a text file, not tensors").unwrap();
    let msg = load_safetensors(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&path.display().to_string()) && msg.contains("not a valid safetensors file"), "{msg}");
    std::fs::write(&path, b"").unwrap();
    assert!(load_batch(&path).unwrap_err().to_string().contains("not a valid safetensors file"));
    let msg = load_safetensors(&dir.join("absent.safetensors")).unwrap_err().to_string();
    assert!(msg.contains("absent.safetensors"), "{msg}");
}

#[test]
fn a_checkpoint_with_other_dtypes_is_refused() {
    let dir = fresh_dir("io_checkpoint", "dtype");
    let path = dir.join("batch.safetensors");
    save_batch(&path, &[1, 2], &[0.5, 1.5], &[4]).unwrap();
    let msg = load_safetensors(&path).unwrap_err().to_string();
    assert!(msg.contains("tensor `labels` is I64, but asgd reads only F32"), "{msg}");
}

#[test]
fn batch_round_trip() {
    let dir = fresh_dir("io_checkpoint", "batch");
    let path = dir.join("batch.safetensors");
    let images: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32).collect();
    save_batch(&path, &[2, 1, 3, 3], &images, &[7, 0]).unwrap();
    let (shape, back, labels) = load_batch(&path).unwrap();
    assert_eq!((shape, back, labels), (vec![2, 1, 3, 3], images, vec![7, 0]));
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("labels").unwrap().dtype(), Dtype::I64);
    let msg = save_batch(&path, &[3, 3], &[0.0; 9], &[1]).unwrap_err().to_string();
    assert!(msg.contains("there are 1 labels"), "{msg}");
}

/// Writes a batch file by hand with the given images and labels tensors.
fn raw_batch(path: &Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| (*name, TensorView::new(*dtype, shape.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn batch_accepts_int32_and_uint8_labels() {
    let dir = fresh_dir("io_checkpoint", "label_types");
    let path = dir.join("b.safetensors");
    let images = ("images", Dtype::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0]));
    let i32_labels = [3i32, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    raw_batch(&path, vec![images.clone(), ("labels", Dtype::I32, vec![2], i32_labels)]);
    assert_eq!(load_batch(&path).unwrap().2, [3, 9]);
    raw_batch(&path, vec![images, ("labels", Dtype::U8, vec![2], vec![5, 1])]);
    assert_eq!(load_batch(&path).unwrap(), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0], vec![5, 1]));
}

#[test]
fn batch_errors_name_the_file_and_problem() {
    let dir = fresh_dir("io_checkpoint", "batch_errors");
    let path = dir.join("b.safetensors");
    let images = ("images", Dtype::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0]));
    let i64_labels = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let err = |tensors| {
        raw_batch(&path, tensors);
        let msg = load_batch(&path).unwrap_err().to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        msg
    };

    let msg = err(vec![images.clone()]);
    assert!(msg.contains("no tensor named `labels` (it has: images)"), "{msg}");
    let msg = err(vec![images.clone(), ("labels", Dtype::I64, vec![3], i64_labels(&[1, 2, 3]))]);
    assert!(msg.contains("`labels` has shape [3] but `images` holds a batch of 2"), "{msg}");
    let msg = err(vec![images.clone(), ("labels", Dtype::I64, vec![2], i64_labels(&[1, -4]))]);
    assert!(msg.contains("label -4 at index 1"), "{msg}");
    let msg = err(vec![images.clone(), ("labels", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0]))]);
    assert!(msg.contains("`labels` is F32; it must be int64"), "{msg}");
    let f64_images = ("images", Dtype::F64, vec![2, 1], [1.0f64, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect());
    let msg = err(vec![f64_images, ("labels", Dtype::I64, vec![2], i64_labels(&[1, 2]))]);
    assert!(msg.contains("tensor `images` is F64"), "{msg}");
    let flat = ("images", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0]));
    let msg = err(vec![flat, ("labels", Dtype::I64, vec![2], i64_labels(&[1, 2]))]);
    assert!(msg.contains("at least two dimensions"), "{msg}");
}

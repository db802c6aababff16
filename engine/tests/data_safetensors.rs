//! A dataset of one's own in a safetensors file: loading, the held-out test split, the number
//! of classes, and one clear sentence for every way the file can be wrong.

mod support;

use std::path::{Path, PathBuf};

use asgd_engine::data::{load_safetensors_splits, TestSplit};
use safetensors::tensor::Dtype;
use support::files::{f32_bytes, float_image, i64_bytes, safetensors_bytes, write_dataset};
use support::fresh_dir;

fn path(name: &str) -> PathBuf {
    fresh_dir("data_safetensors", name).join(format!("{name}.safetensors"))
}

fn err(path: &Path, test: &TestSplit) -> String {
    load_safetensors_splits(path, test).unwrap_err().to_string()
}

#[test]
fn loads_with_a_test_file() {
    let (train, test) = (path("train"), path("test"));
    write_dataset(&train, 6, [2, 3, 4], |i| (i % 3) as i64);
    write_dataset(&test, 2, [2, 3, 4], |i| 4 + i as i64);
    let s = load_safetensors_splits(&train, &TestSplit::File(test)).unwrap();
    assert_eq!((s.train.len(), s.test.len(), s.train.shape, s.test.shape), (6, 2, [2, 3, 4], [2, 3, 4]));
    assert_eq!(s.train.labels, [0, 1, 2, 0, 1, 2]);
    assert_eq!(s.test.labels, [4, 5]);
    assert_eq!((s.train.classes, s.test.classes), (6, 6), "largest label over both files, plus one");
    assert_eq!(s.train.images[..24], float_image(0, 24)[..], "values are used as stored");
    assert_eq!(s.train.images[5 * 24..], float_image(5, 24)[..]);
    assert_eq!(s.test.images[24..], float_image(1, 24)[..]);
    assert_eq!((s.train.name.as_str(), s.test.name.as_str()), ("train.safetensors/train", "train.safetensors/test"));
    assert_eq!(s.train.zero, [0.0, 0.0]);
    assert_eq!((s.train.augment, s.test.augment), (None, None));
}

#[test]
fn a_test_split_holds_out_the_last_rows() {
    let file = path("split");
    write_dataset(&file, 10, [1, 2, 2], |i| i as i64);
    let s = load_safetensors_splits(&file, &TestSplit::Fraction(0.25)).unwrap();
    // round(0.25 * 10) = 3 (2.5 rounds away from zero): the last three rows.
    assert_eq!(s.train.labels, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(s.test.labels, [7, 8, 9]);
    assert_eq!(s.test.images[..4], float_image(7, 4)[..]);
    assert_eq!(s.train.classes, 10);
    // Tiny fractions still hold out one row, large ones leave one to train on.
    assert_eq!(load_safetensors_splits(&file, &TestSplit::Fraction(0.01)).unwrap().test.len(), 1);
    assert_eq!(load_safetensors_splits(&file, &TestSplit::Fraction(0.99)).unwrap().train.len(), 1);
    let msg = err(&file, &TestSplit::Fraction(1.0));
    assert!(msg.contains("the test split 1 is not a fraction between 0 and 1"), "{msg}");
    let one = path("one");
    write_dataset(&one, 1, [1, 2, 2], |_| 0);
    let msg = err(&one, &TestSplit::Fraction(0.5));
    assert!(msg.contains("one.safetensors: the file holds 1 sample, too few to hold out a test set"), "{msg}");
}

/// Writes a file of the given tensors and returns the loader's error.
fn err_of(name: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> String {
    let p = path(name);
    std::fs::write(&p, safetensors_bytes(tensors)).unwrap();
    let msg = err(&p, &TestSplit::Fraction(0.5));
    assert!(msg.starts_with(&p.display().to_string()), "the file is named: {msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

fn images(n: usize) -> (&'static str, Dtype, Vec<usize>, Vec<u8>) {
    ("images", Dtype::F32, vec![n, 1, 2, 2], f32_bytes(&vec![0.5; n * 4]))
}

fn labels(values: &[i64]) -> (&'static str, Dtype, Vec<usize>, Vec<u8>) {
    ("labels", Dtype::I64, vec![values.len()], i64_bytes(values))
}

#[test]
fn every_malformed_file_is_one_clear_sentence() {
    let msg = err_of("no-labels", &[images(2)]);
    assert!(msg.contains("the file has no tensor named `labels` (it has: images)"), "{msg}");
    let msg = err_of("no-images", &[labels(&[0, 1])]);
    assert!(msg.contains("no tensor named `images`"), "{msg}");

    let f64_images = ("images", Dtype::F64, vec![2, 1, 2, 2], vec![0u8; 64]);
    let msg = err_of("f64", &[f64_images, labels(&[0, 1])]);
    assert!(msg.contains("`images` is F64, but it must be float32"), "{msg}");
    let float_labels = ("labels", Dtype::F32, vec![2], f32_bytes(&[0.0, 1.0]));
    let msg = err_of("float-labels", &[images(2), float_labels]);
    assert!(msg.contains("`labels` is F32, but it must be int64"), "{msg}");

    let flat = ("images", Dtype::F32, vec![2, 4], f32_bytes(&[0.0; 8]));
    let msg = err_of("rank", &[flat, labels(&[0, 1])]);
    assert!(msg.contains("`images` has shape [2, 4], but it must have four dimensions [N, C, H, W]"), "{msg}");
    let msg = err_of("rank-labels", &[images(2), ("labels", Dtype::I64, vec![2, 1], i64_bytes(&[0, 1]))]);
    assert!(msg.contains("`labels` has shape [2, 1] but `images` holds 2 samples"), "{msg}");

    let msg = err_of("count", &[images(3), labels(&[0, 1])]);
    assert!(msg.contains("`labels` has shape [2] but `images` holds 3 samples; labels must have shape [3]"), "{msg}");
    let msg = err_of("negative", &[images(3), labels(&[0, -2, 1])]);
    assert!(msg.contains("label -2 at index 1 is not a class index"), "{msg}");
    let msg = err_of("empty", &[("images", Dtype::F32, vec![0, 1, 2, 2], vec![]), labels(&[])]);
    assert!(msg.contains("`images` has shape [0, 1, 2, 2]: no samples"), "{msg}");

    let junk = path("junk");
    std::fs::write(&junk, b"these are not the tensors you are looking for").unwrap();
    let msg = err(&junk, &TestSplit::Fraction(0.5));
    assert!(msg.contains("junk.safetensors: the file is not a safetensors file"), "{msg}");
    let msg = err(&junk.with_file_name("absent.safetensors"), &TestSplit::Fraction(0.5));
    assert!(msg.contains("absent.safetensors: the file does not exist; check the path"), "{msg}");
}

#[test]
fn a_test_file_of_another_shape_is_refused() {
    let (train, test) = (path("shape-train"), path("shape-test"));
    write_dataset(&train, 4, [1, 2, 2], |_| 0);
    write_dataset(&test, 2, [1, 3, 3], |_| 0);
    let msg = err(&train, &TestSplit::File(test.clone()));
    assert!(msg.starts_with(&test.display().to_string()), "{msg}");
    assert!(msg.contains("the test images are [1, 3, 3] (C, H, W) but the training images in"), "{msg}");
}

#[test]
fn int32_and_uint8_labels_are_accepted() {
    let p = path("int32");
    std::fs::write(
        &p,
        safetensors_bytes(&[
            images(2),
            ("labels", Dtype::I32, vec![2], [3i32, 1].iter().flat_map(|v| v.to_le_bytes()).collect()),
        ]),
    )
    .unwrap();
    assert_eq!(load_safetensors_splits(&p, &TestSplit::Fraction(0.5)).unwrap().train.labels, [3]);
    std::fs::write(&p, safetensors_bytes(&[images(2), ("labels", Dtype::U8, vec![2], vec![2, 9])])).unwrap();
    let s = load_safetensors_splits(&p, &TestSplit::Fraction(0.5)).unwrap();
    assert_eq!((s.train.labels[0], s.test.labels[0], s.train.classes), (2, 9, 10));
}

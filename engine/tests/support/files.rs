//! Small data files in the real formats, made up for tests so that none needs a download:
//! MNIST-style idx files, CIFAR-10 binary batches and their tarball, safetensors datasets.
//! Shared by the engine's tests and the binary's (`#[path]`-included there).
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// An idx file: `magic`, the big-endian `dims`, then `body`.
pub fn idx_bytes(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| out.extend(d.to_be_bytes()));
    out.extend(body);
    out
}

/// Pixel `k` of image `i` of a made-up set: every value 0..=255 occurs, and images differ.
pub fn pixel(i: usize, k: usize) -> u8 {
    ((i * 37 + k * 11) % 256) as u8
}

/// The label of image `i` of a made-up set: `(i * 3 + shift) % 10`, so every class occurs.
pub fn label(i: usize, shift: usize) -> u8 {
    ((i * 3 + shift) % 10) as u8
}

/// The four idx files of a made-up MNIST-style set of 28x28 images, uncompressed, in the order
/// train images, train labels, test images, test labels, named without `.gz`. Train labels are
/// [`label`]`(i, 0)`, test labels `label(i, 1)`; pixels [`pixel`] (test images offset by 1000).
pub fn mnist_like(n_train: usize, n_test: usize) -> Vec<(&'static str, Vec<u8>)> {
    let images = |n: usize, offset: usize| {
        let body: Vec<u8> = (0..n).flat_map(|i| (0..784).map(move |k| pixel(i + offset, k))).collect();
        idx_bytes(0x0803, &[n as u32, 28, 28], &body)
    };
    let labels =
        |n: usize, shift: usize| idx_bytes(0x0801, &[n as u32], &(0..n).map(|i| label(i, shift)).collect::<Vec<_>>());
    vec![
        ("train-images-idx3-ubyte", images(n_train, 0)),
        ("train-labels-idx1-ubyte", labels(n_train, 0)),
        ("t10k-images-idx3-ubyte", images(n_test, 1000)),
        ("t10k-labels-idx1-ubyte", labels(n_test, 1)),
    ]
}

/// Writes [`mnist_like`] into `dir` gzipped, as `asgd data fetch` leaves them.
pub fn write_mnist_like(dir: &Path, n_train: usize, n_test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in mnist_like(n_train, n_test) {
        std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
    }
}

/// One CIFAR-10 record: the label byte, then the 3x32x32 pixels (red plane, green, blue).
pub fn cifar_record(label: u8, pixels: &[u8]) -> Vec<u8> {
    assert_eq!(pixels.len(), 3072);
    let mut r = vec![label];
    r.extend_from_slice(pixels);
    r
}

/// A CIFAR-10 binary file of `n` made-up records, the first being image `first` of the set:
/// image `i` has label [`label`]`(i, 0)` and pixels [`pixel`]`(i, k)`.
pub fn cifar_file(first: usize, n: usize) -> Vec<u8> {
    (first..first + n)
        .flat_map(|i| cifar_record(label(i, 0), &(0..3072).map(|k| pixel(i, k)).collect::<Vec<_>>()))
        .collect()
}

/// The six CIFAR-10 files with `per_file` records each, by name: the five training files then
/// the test file; file `f` starts at image `f * per_file`.
pub fn cifar_files(per_file: usize) -> Vec<(String, Vec<u8>)> {
    let names = (1..=5).map(|b| format!("data_batch_{b}.bin")).chain(["test_batch.bin".to_string()]);
    names.enumerate().map(|(f, name)| (name, cifar_file(f * per_file, per_file))).collect()
}

/// Writes [`cifar_files`] into `dir`.
pub fn write_cifar(dir: &Path, per_file: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in cifar_files(per_file) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A gzipped tarball of `entries` (path inside the archive, content), regular files.
pub fn tar_gz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// The made-up CIFAR-10 class names file.
pub const CIFAR_META: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// A tarball laid out as `cifar-10-binary.tar.gz` is: `cifar-10-batches-bin/` holding the six
/// files of [`cifar_files`]`(per_file)`, `batches.meta.txt` and a `readme.html`.
pub fn cifar_tarball(per_file: usize) -> Vec<u8> {
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("cifar-10-batches-bin/batches.meta.txt".into(), CIFAR_META.as_bytes().to_vec()),
        ("cifar-10-batches-bin/readme.html".into(), b"<html></html>".to_vec()),
    ];
    entries.extend(cifar_files(per_file).into_iter().map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b)));
    tar_gz(&entries)
}

/// A safetensors file's bytes holding `tensors` (name, dtype, shape, little-endian bytes).
pub fn safetensors_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

/// f32 values as little-endian bytes.
pub fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// i64 values as little-endian bytes.
pub fn i64_bytes(xs: &[i64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Image `i` of a made-up f32 dataset, `len` values: `i + k / 1000`.
pub fn float_image(i: usize, len: usize) -> Vec<f32> {
    (0..len).map(|k| i as f32 + k as f32 / 1000.0).collect()
}

/// Writes a well-formed dataset file: `n` images of `shape` ([`float_image`]), labels `labels(i)`.
pub fn write_dataset(path: &Path, n: usize, shape: [usize; 3], labels: impl Fn(usize) -> i64) {
    let len: usize = shape.iter().product();
    let images: Vec<f32> = (0..n).flat_map(|i| float_image(i, len)).collect();
    let labels: Vec<i64> = (0..n).map(labels).collect();
    let bytes = safetensors_bytes(&[
        ("images", Dtype::F32, vec![n, shape[0], shape[1], shape[2]], f32_bytes(&images)),
        ("labels", Dtype::I64, vec![n], i64_bytes(&labels)),
    ]);
    std::fs::write(path, bytes).unwrap();
}

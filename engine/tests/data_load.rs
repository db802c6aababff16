//! Loading MNIST and Fashion-MNIST from files of the real layout made up by the test, and every
//! way a data folder can be wrong.

mod support;

use std::path::Path;

use asgd_engine::data::idx::{IMAGES_MAGIC, LABELS_MAGIC};
use asgd_engine::data::{load, DataKind, DataUnavailable, Dataset, Why};
use asgd_engine::EngineError;
use support::{files, fresh_dir, gzip, idx_bytes};

fn min_max(d: &Dataset) -> (f32, f32) {
    d.images.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

#[test]
fn mnist_loads_with_known_counts_labels_and_range() {
    // Files of the real layout (gzipped idx, 28x28), made up: labels (3i) % 10, every pixel
    // value 0..=255 present.
    let dir = fresh_dir("data_load", "mnist");
    files::write_mnist_like(&dir, 65, 20);
    let s = load(DataKind::Mnist, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (65, 20));
    assert_eq!((s.train.shape, s.train.classes, s.train.sample_len()), ([1, 28, 28], 10, 784));
    assert_eq!(s.train.images.len(), 65 * 784);
    assert_eq!(s.test.images.len(), 20 * 784);
    assert_eq!((s.train.labels[0], s.train.labels[1]), (0, 3));
    assert_eq!((s.test.labels[0], s.test.labels[1]), (1, 4));
    assert_eq!(s.train.class_counts(), [7, 6, 7, 7, 6, 6, 7, 6, 6, 7]);
    assert_eq!(s.test.class_counts(), [2; 10]);
    // Pixel 0 maps to (0 - 0.1307) / 0.3081, pixel 255 to (1 - 0.1307) / 0.3081.
    let (lo, hi) = min_max(&s.train);
    assert!((lo + 0.4242).abs() < 1e-3 && (hi - 2.8215).abs() < 1e-3, "{lo} {hi}");
    let norm = |p: u8| (f32::from(p) / 255.0 - 0.1307) / 0.3081;
    for (i, k) in [(0, 0), (0, 783), (64, 400)] {
        assert!((s.train.images[i * 784 + k] - norm(files::pixel(i, k))).abs() < 1e-6, "train image {i} pixel {k}");
    }
    assert!((s.test.images[5 * 784 + 7] - norm(files::pixel(1005, 7))).abs() < 1e-6, "the test images are their own");
    assert_eq!(s.train.zero, [norm(0)]);
    assert_eq!((s.train.name.as_str(), s.test.name.as_str()), ("mnist/train", "mnist/test"));
    assert_eq!((s.train.augment, s.test.augment), (None, None), "loading augments nothing");
}

#[test]
fn fashion_mnist_loads_from_the_parent_folder() {
    // The folder holds `fashion-mnist/`: the dataset's subfolder is found.
    let dir = fresh_dir("data_load", "fashion-parent");
    files::write_mnist_like(&dir.join("fashion-mnist"), 30, 10);
    let s = load(DataKind::FashionMnist, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (30, 10));
    assert_eq!((s.train.labels[0], s.test.labels[0]), (0, 1));
    assert_eq!(s.train.class_counts(), [3; 10]);
    assert_eq!(s.test.class_counts(), [1; 10]);
    // Fashion-MNIST's own statistics, not MNIST's.
    let norm = |p: u8| (f32::from(p) / 255.0 - 0.2860) / 0.3530;
    assert!((s.train.images[100] - norm(files::pixel(0, 100))).abs() < 1e-6);
    let (lo, hi) = min_max(&s.train);
    assert!((lo - norm(0)).abs() < 1e-6 && (hi - norm(255)).abs() < 1e-6, "{lo} {hi}");
}

#[test]
fn gather_and_truncate() {
    let mut d = load(DataKind::Digits, None).unwrap().train;
    let s = d.sample_len();
    let (mut images, mut labels) = (vec![9.0; 3], vec![99]);
    d.gather(&[4, 0, 4], &mut images, &mut labels);
    assert_eq!(labels, [d.labels[4], d.labels[0], d.labels[4]]);
    assert_eq!(images.len(), 3 * s);
    assert_eq!(&images[..s], &d.images[4 * s..5 * s]);
    assert_eq!(&images[s..2 * s], &d.images[..s]);
    let first = d.images[..10 * s].to_vec();
    d.truncate(10);
    assert_eq!((d.len(), d.images.as_slice()), (10, first.as_slice()));
    d.truncate(1000);
    assert_eq!(d.len(), 10);
}

/// A small well-formed MNIST-style folder: `n_train`/`n_test` images of `side`x`side`, written
/// raw (not gzipped) for the train split and gzipped for the test split.
fn write_small_set(dir: &Path, n_train: u32, n_test: u32, side: u32, labels: &[u8]) {
    let px = |n: u32| vec![128u8; (n * side * side) as usize];
    let lb = |n: u32| (0..n as usize).map(|i| labels[i % labels.len()]).collect::<Vec<u8>>();
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx_bytes(IMAGES_MAGIC, &[n_train, side, side], &px(n_train)))
        .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_bytes(LABELS_MAGIC, &[n_train], &lb(n_train))).unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx_bytes(IMAGES_MAGIC, &[n_test, side, side], &px(n_test))),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&idx_bytes(LABELS_MAGIC, &[n_test], &lb(n_test))))
        .unwrap();
}

fn load_err(kind: DataKind, dir: &Path) -> String {
    load(kind, Some(dir)).unwrap_err().to_string()
}

#[test]
fn small_raw_and_gzipped_files_load() {
    let dir = fresh_dir("data_load", "small");
    write_small_set(&dir, 5, 3, 28, &[3, 1]);
    let s = load(DataKind::Mnist, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (5, 3));
    assert_eq!(s.train.labels, [3, 1, 3, 1, 3]);
    let expected = (128.0 / 255.0 - 0.1307) / 0.3081;
    assert!(s.test.images.iter().all(|&x| (x - expected).abs() < 1e-5));
}

#[test]
fn missing_files_name_both_names_and_the_fix() {
    let dir = fresh_dir("data_load", "empty");
    let msg = load_err(DataKind::Mnist, &dir);
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) is missing"), "{msg}");
    let fix = format!("download the files into {} with `data::fetch`, or load mnist from a folder", dir.display());
    assert!(msg.contains(&fix), "{msg}");
    let nowhere = dir.join("nowhere");
    match load(DataKind::FashionMnist, Some(&nowhere)) {
        Err(EngineError::DataUnavailable(d)) => {
            let want =
                DataUnavailable { kind: DataKind::FashionMnist, dir: nowhere, default_dir: false, why: Why::NoFolder };
            assert_eq!(d, want);
            assert!(d.to_string().contains("nowhere: the fashion-mnist folder does not exist; download"), "{d}");
        }
        other => panic!("expected the folder to be missing, got {:?}", other.map(|s| s.train.len())),
    }
    // Only the test labels missing: that file is named.
    write_small_set(&dir, 2, 2, 28, &[1]);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let msg = load_err(DataKind::Mnist, &dir);
    assert!(msg.contains("t10k-labels-idx1-ubyte.gz (or t10k-labels-idx1-ubyte) is missing"), "{msg}");
}

#[test]
fn count_mismatch_between_images_and_labels() {
    let dir = fresh_dir("data_load", "mismatch");
    write_small_set(&dir, 4, 2, 28, &[1]);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_bytes(LABELS_MAGIC, &[3], &[1, 2, 3])).unwrap();
    let msg = load_err(DataKind::Mnist, &dir);
    assert!(msg.contains("train-images-idx3-ubyte: the file holds 4 images but"), "{msg}");
    assert!(msg.contains("train-labels-idx1-ubyte holds 3 labels"), "{msg}");
}

#[test]
fn wrong_image_dims_are_rejected() {
    let dir = fresh_dir("data_load", "dims");
    write_small_set(&dir, 2, 2, 8, &[1]);
    let msg = load_err(DataKind::FashionMnist, &dir);
    assert!(msg.contains("train-images-idx3-ubyte: the images are 8x8 but this dataset has 28x28"), "{msg}");
}

#[test]
fn label_out_of_range_is_rejected() {
    let dir = fresh_dir("data_load", "label");
    write_small_set(&dir, 3, 2, 28, &[0, 1, 200]);
    let msg = load_err(DataKind::Mnist, &dir);
    assert!(msg.contains("train-labels-idx1-ubyte: label 200 at index 2 is outside 0..=9"), "{msg}");
}

#[test]
fn truncated_gzip_on_disk_is_rejected() {
    let dir = fresh_dir("data_load", "truncated");
    write_small_set(&dir, 2, 200, 28, &[1]);
    let path = dir.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(DataKind::Mnist, &dir);
    assert!(msg.contains("t10k-images-idx3-ubyte.gz: the gzip stream is corrupt or cut short"), "{msg}");
}

#[test]
fn unknown_dataset_lists_the_choices() {
    let msg = DataKind::parse("imagenet").unwrap_err().to_string();
    assert!(msg.contains("imagenet") && msg.contains("digits, mnist, fashion-mnist, cifar10"), "{msg}");
    for kind in DataKind::ALL {
        assert_eq!(DataKind::parse(kind.name()).unwrap(), kind);
    }
    assert_eq!(DataKind::parse("cifar-10").unwrap(), DataKind::Cifar10);
}

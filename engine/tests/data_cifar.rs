//! CIFAR-10's binary version on files of the real layout made up by the test: record parsing,
//! per-channel normalisation, the folders it is found in, and every way a file can be wrong.

mod support;

use std::path::Path;

use asgd_engine::data::cifar::{parse_records, Records, RECORD_BYTES};
use asgd_engine::data::{load, DataKind, Why};
use asgd_engine::EngineError;
use support::{files, fresh_dir};

const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

fn norm(c: usize, p: u8) -> f32 {
    (f32::from(p) / 255.0 - MEAN[c]) / STD[c]
}

fn load_err(dir: &Path) -> String {
    load(DataKind::Cifar10, Some(dir)).unwrap_err().to_string()
}

#[test]
fn loads_the_six_files_normalised_per_channel() {
    let dir = fresh_dir("data_cifar", "flat");
    files::write_cifar(&dir, 4);
    let s = load(DataKind::Cifar10, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (20, 4), "five training files of 4, one test file of 4");
    assert_eq!((s.train.shape, s.train.classes, s.train.sample_len()), ([3, 32, 32], 10, 3072));
    assert_eq!((s.train.name.as_str(), s.test.name.as_str()), ("cifar10/train", "cifar10/test"));
    // Training records in file order: data_batch_1's, then data_batch_2's, ...
    let train_labels: Vec<u32> = (0..20).map(|i| u32::from(files::label(i, 0))).collect();
    assert_eq!(s.train.labels, train_labels);
    let test_labels: Vec<u32> = (20..24).map(|i| u32::from(files::label(i, 0))).collect();
    assert_eq!(s.test.labels, test_labels);
    // Byte k of a record's image is channel k / 1024 (red, green, blue), row (k % 1024) / 32.
    for (i, k) in [(0, 0), (0, 1023), (0, 1024), (7, 2048 + 33), (19, 3071)] {
        let c = k / 1024;
        assert!((s.train.images[i * 3072 + k] - norm(c, files::pixel(i, k))).abs() < 1e-6, "image {i} byte {k}");
    }
    assert!((s.test.images[3 * 3072 + 5] - norm(0, files::pixel(23, 5))).abs() < 1e-6);
    assert_eq!(s.train.zero, [norm(0, 0), norm(1, 0), norm(2, 0)], "raw black per channel");
    assert_eq!((s.train.augment, s.test.augment), (None, None));
}

#[test]
fn a_known_record_gives_the_expected_values() {
    // Red plane all 255, green all 0, blue all 128: one value per channel.
    let mut pixels = vec![255u8; 1024];
    pixels.extend([0u8; 1024]);
    pixels.extend([128u8; 1024]);
    let mut out = Records::default();
    parse_records(&files::cifar_record(7, &pixels), Path::new("x.bin"), &mut out).unwrap();
    assert_eq!((out.labels.as_slice(), out.pixels.as_slice()), ([7u8].as_slice(), pixels.as_slice()));

    let dir = fresh_dir("data_cifar", "known");
    files::write_cifar(&dir, 1);
    std::fs::write(dir.join("test_batch.bin"), files::cifar_record(7, &pixels)).unwrap();
    let test = load(DataKind::Cifar10, Some(&dir)).unwrap().test;
    assert_eq!(test.labels, [7]);
    let expected = [(1.0 - MEAN[0]) / STD[0], (0.0 - MEAN[1]) / STD[1], (128.0 / 255.0 - MEAN[2]) / STD[2]];
    for (c, e) in expected.iter().enumerate() {
        assert!(test.images[c * 1024..(c + 1) * 1024].iter().all(|v| (v - e).abs() < 1e-6), "channel {c}");
    }
}

#[test]
fn the_tarball_folder_and_the_dataset_folder_are_found() {
    let dir = fresh_dir("data_cifar", "nested");
    files::write_cifar(&dir.join("cifar-10-batches-bin"), 2);
    assert_eq!(load(DataKind::Cifar10, Some(&dir)).unwrap().train.len(), 10);
    let dir = fresh_dir("data_cifar", "named");
    files::write_cifar(&dir.join("cifar10").join("cifar-10-batches-bin"), 3);
    assert_eq!(load(DataKind::Cifar10, Some(&dir)).unwrap().train.len(), 15);
}

#[test]
fn a_missing_file_is_named_with_the_fix() {
    let dir = fresh_dir("data_cifar", "missing");
    files::write_cifar(&dir, 2);
    std::fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains(&format!("{}: the cifar10 file data_batch_4.bin is missing", dir.display())), "{msg}");
    assert!(msg.contains(&format!("; download the files into {} with `data::fetch`", dir.display())), "{msg}");
    match load(DataKind::Cifar10, Some(&dir.join("nowhere"))) {
        Err(EngineError::DataUnavailable(d)) => {
            assert_eq!((d.kind, d.why.clone(), d.default_dir), (DataKind::Cifar10, Why::NoFolder, false));
            assert!(d.to_string().contains("nowhere: the cifar10 folder does not exist; download"), "{d}");
        }
        other => panic!("expected the folder to be missing, got {:?}", other.map(|s| s.train.len())),
    }
}

#[test]
fn a_file_of_the_wrong_length_is_refused() {
    let dir = fresh_dir("data_cifar", "length");
    files::write_cifar(&dir, 2);
    let path = dir.join("data_batch_2.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let msg = load_err(&dir);
    let len = 2 * RECORD_BYTES - 100;
    assert!(
        msg.contains(&format!(
            "data_batch_2.bin: the file is {len} bytes long, not a whole, non-zero number of 3073-byte records"
        )),
        "{msg}"
    );
    assert!(msg.contains("download it again") && !msg.contains('\n'), "{msg}");
    std::fs::write(&path, b"").unwrap();
    assert!(load_err(&dir).contains("data_batch_2.bin: the file is 0 bytes long"));
}

#[test]
fn a_label_above_9_is_refused() {
    let dir = fresh_dir("data_cifar", "label");
    files::write_cifar(&dir, 3);
    let mut bytes = files::cifar_file(0, 3);
    bytes[2 * RECORD_BYTES] = 37;
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("test_batch.bin: label 37 in record 2 is outside 0..=9"), "{msg}");
    match load(DataKind::Cifar10, Some(&dir)) {
        Err(EngineError::DataUnavailable(d)) => {
            assert!(matches!(&d.why, Why::Corrupt { path, .. } if *path == dir.join("test_batch.bin")), "{d:?}");
            assert!(d.to_string().ends_with("; download it again with `data::fetch`"), "{d}");
        }
        other => panic!("expected a corrupt file, got {:?}", other.map(|s| s.train.len())),
    }
}

//! The idx parser on crafted bytes: each malformed header or body gives its own clear message.

mod support;

use std::path::Path;

use asgd_engine::data::idx::{
    check_pair, gunzip_if_gzip, is_gzip, parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels,
    IdxImages, IMAGES_MAGIC, LABELS_MAGIC,
};
use support::{gzip, idx_bytes};

const IMG: &str = "x/train-images-idx3-ubyte";
const LBL: &str = "x/train-labels-idx1-ubyte";

#[test]
fn parses_images_and_labels() {
    let pixels: Vec<u8> = (0..2 * 3 * 4).collect();
    let images = parse_idx_images(&idx_bytes(IMAGES_MAGIC, &[2, 3, 4], &pixels), Path::new(IMG)).unwrap();
    assert_eq!(images, IdxImages { count: 2, rows: 3, cols: 4, pixels });
    let labels = parse_idx_labels(&idx_bytes(LABELS_MAGIC, &[3], &[7, 0, 9]), Path::new(LBL)).unwrap();
    assert_eq!(labels, vec![7, 0, 9]);
}

#[test]
fn gzip_is_detected_by_magic_not_name() {
    let raw = idx_bytes(LABELS_MAGIC, &[2], &[1, 2]);
    let gz = gzip(&raw);
    assert!(is_gzip(&gz) && !is_gzip(&raw));
    assert_eq!(gunzip_if_gzip(gz, Path::new("labels.bin")).unwrap(), raw);
    assert_eq!(gunzip_if_gzip(raw.clone(), Path::new("labels.gz")).unwrap(), raw);
}

#[test]
fn corrupt_gzip_names_the_file() {
    let mut gz = gzip(&idx_bytes(LABELS_MAGIC, &[1000], &[1; 1000]));
    gz.truncate(gz.len() / 2);
    let msg = gunzip_if_gzip(gz, Path::new(LBL)).unwrap_err().to_string();
    assert!(msg.starts_with(LBL) && msg.contains("corrupt or cut short"), "{msg}");
}

#[test]
fn wrong_magic_says_what_was_expected() {
    // A label file handed to the image parser.
    let msg = parse_idx_images(&idx_bytes(LABELS_MAGIC, &[1], &[3]), Path::new(IMG)).unwrap_err().to_string();
    assert!(msg.starts_with(IMG), "{msg}");
    assert!(msg.contains("0x00000801") && msg.contains("0x00000803") && msg.contains("not an idx image file"), "{msg}");
    let msg = parse_idx_labels(b"PK\x03\x04 a zip file", Path::new(LBL)).unwrap_err().to_string();
    assert!(msg.contains("not an idx label file"), "{msg}");
}

#[test]
fn truncated_header_is_reported() {
    let msg = parse_idx_images(&[0, 0], Path::new(IMG)).unwrap_err().to_string();
    assert!(msg.starts_with(IMG) && msg.contains("too short for an idx header"), "{msg}");
    let full = idx_bytes(IMAGES_MAGIC, &[1, 28, 28], &[]);
    let msg = parse_idx_images(&full[..10], Path::new(IMG)).unwrap_err().to_string();
    assert!(msg.contains("header needs 16 bytes but the file has 10") && msg.contains("truncated"), "{msg}");
}

#[test]
fn truncated_body_is_reported() {
    let bytes = idx_bytes(IMAGES_MAGIC, &[2, 28, 28], &[0; 28 * 28 + 5]);
    let msg = parse_idx_images(&bytes, Path::new(IMG)).unwrap_err().to_string();
    assert!(msg.starts_with(IMG), "{msg}");
    assert!(
        msg.contains("1568 bytes of data") && msg.contains("only 789 bytes follow") && msg.contains("truncated"),
        "{msg}"
    );
    let msg = parse_idx_labels(&idx_bytes(LABELS_MAGIC, &[5], &[1, 2]), Path::new(LBL)).unwrap_err().to_string();
    assert!(msg.contains("only 2 bytes follow"), "{msg}");
}

#[test]
fn trailing_bytes_are_rejected() {
    let msg = parse_idx_labels(&idx_bytes(LABELS_MAGIC, &[2], &[1, 2, 3]), Path::new(LBL)).unwrap_err().to_string();
    assert!(msg.contains("but 3 bytes follow") && msg.contains("not a well-formed idx file"), "{msg}");
}

#[test]
fn absurd_dimensions_do_not_overflow() {
    let bytes = idx_bytes(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
    assert!(parse_idx_images(&bytes, Path::new(IMG)).is_err());
}

fn images(count: usize, rows: usize, cols: usize) -> IdxImages {
    IdxImages { count, rows, cols, pixels: vec![0; count * rows * cols] }
}

#[test]
fn pair_checks_dims_count_and_label_range() {
    let (ip, lp) = (Path::new(IMG), Path::new(LBL));
    assert!(check_pair(&images(3, 28, 28), ip, &[0, 9, 4], lp, 28, 28, 10).is_ok());

    let msg = check_pair(&images(3, 32, 32), ip, &[0, 1, 2], lp, 28, 28, 10).unwrap_err().to_string();
    assert!(msg.starts_with(IMG) && msg.contains("32x32") && msg.contains("28x28"), "{msg}");

    let msg = check_pair(&images(3, 28, 28), ip, &[0, 1], lp, 28, 28, 10).unwrap_err().to_string();
    assert!(msg.contains("3 images") && msg.contains(LBL) && msg.contains("2 labels"), "{msg}");

    let msg = check_pair(&images(3, 28, 28), ip, &[0, 10, 2], lp, 28, 28, 10).unwrap_err().to_string();
    assert!(msg.starts_with(LBL) && msg.contains("label 10 at index 1") && msg.contains("0..=9"), "{msg}");
}

#[test]
fn a_decompression_bomb_is_refused_after_what_its_header_declares() {
    let dir = support::fresh_dir("data_idx", "bomb");
    // 10 images of 28x28 declared, 64 MiB of zeros behind them: about 64 KiB gzipped.
    let mut raw = idx_bytes(IMAGES_MAGIC, &[10, 28, 28], &[]);
    raw.resize(raw.len() + (64 << 20), 0);
    let path = dir.join("train-images-idx3-ubyte.gz");
    std::fs::write(&path, gzip(&raw)).unwrap();
    drop(raw);
    let msg = read_idx_images(&path).unwrap_err().to_string();
    assert!(
        msg.contains("declares [10, 28, 28] (7840 bytes of data) but more follow (the rest was not read)"),
        "{msg}"
    );

    // A header declaring more than any MNIST-style set is refused before reading on.
    let huge = dir.join("huge-idx3-ubyte");
    std::fs::write(&huge, idx_bytes(IMAGES_MAGIC, &[4_000_000, 28, 28], &[0; 16])).unwrap();
    let msg = read_idx_images(&huge).unwrap_err().to_string();
    assert!(msg.contains("more than the 1073741824 bytes"), "{msg}");

    // Well-formed files read the same gzipped or not; short ones are named as truncated.
    let labels = idx_bytes(LABELS_MAGIC, &[3], &[7, 0, 9]);
    std::fs::write(dir.join("l.gz"), gzip(&labels)).unwrap();
    std::fs::write(dir.join("l"), &labels).unwrap();
    assert_eq!(read_idx_labels(&dir.join("l.gz")).unwrap(), [7, 0, 9]);
    assert_eq!(read_idx_labels(&dir.join("l")).unwrap(), [7, 0, 9]);
    std::fs::write(dir.join("short"), &labels[..10]).unwrap();
    let msg = read_idx_labels(&dir.join("short")).unwrap_err().to_string();
    assert!(msg.contains("but only 2 bytes follow"), "{msg}");
    let mut gz = gzip(&idx_bytes(LABELS_MAGIC, &[1000], &[1; 1000]));
    gz.truncate(gz.len() / 2);
    std::fs::write(dir.join("cut.gz"), gz).unwrap();
    let msg = read_idx_labels(&dir.join("cut.gz")).unwrap_err().to_string();
    assert!(msg.contains("corrupt or cut short"), "{msg}");
}

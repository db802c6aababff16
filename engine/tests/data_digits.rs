//! The embedded digits set, its fixed split and standardisation, and CSV errors with line numbers.

mod support;

use std::path::Path;

use asgd_engine::data::digits::{parse_digits_csv, pixel_stats, split_order, train_len, EMBEDDED_CSV_GZ};
use asgd_engine::data::fetch::sha256_hex;
use asgd_engine::data::{load, DataKind};
use support::{fresh_dir, gzip};

#[test]
fn embedded_copy_is_the_published_file() {
    assert_eq!(sha256_hex(EMBEDDED_CSV_GZ), "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a");
}

#[test]
fn embedded_split_is_fixed_and_standardised() {
    let s = load(DataKind::Digits, None).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (1437, 360));
    assert_eq!((s.train.shape, s.train.classes), ([1, 8, 8], 10));
    assert_eq!(s.train.images.len(), 1437 * 64);
    // Every row of the file lands in exactly one split; the test split is a seeded draw,
    // the same at every load, not the file's last rows.
    let text = asgd_engine::data::idx::gunzip_if_gzip(EMBEDDED_CSV_GZ.to_vec(), Path::new("digits")).unwrap();
    let rows = parse_digits_csv(&text, Path::new("digits")).unwrap();
    let mut file_counts = [0usize; 10];
    rows.labels.iter().for_each(|&l| file_counts[l as usize] += 1);
    let mut split_counts = [0usize; 10];
    s.train.labels.iter().chain(&s.test.labels).for_each(|&l| split_counts[l as usize] += 1);
    assert_eq!(split_counts, file_counts);
    let last: Vec<u32> = rows.labels[1437..].iter().map(|&l| u32::from(l)).collect();
    assert_ne!(s.test.labels, last, "the test split must not be the file's last rows");
    let again = load(DataKind::Digits, None).unwrap();
    assert_eq!((&again.test.labels, &again.test.images), (&s.test.labels, &s.test.images));
    // Every class is in the test split.
    assert!(s.test.class_counts().iter().all(|&c| c > 0), "{:?}", s.test.class_counts());
    let n = s.train.images.len() as f64;
    let mean = s.train.images.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = s.train.images.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 1e-4 && (var.sqrt() - 1.0).abs() < 1e-4, "mean {mean} var {var}");
    // Pixel 0 maps to -mean/std of the training rows.
    let train_px: Vec<u8> =
        split_order(1797)[..1437].iter().flat_map(|&r| rows.pixels[r * 64..(r + 1) * 64].iter().copied()).collect();
    let (m, sd) = pixel_stats(&train_px);
    let lo = s.train.images.iter().cloned().fold(f32::MAX, f32::min);
    assert!((lo - (-m / sd)).abs() < 1e-4, "{lo} vs {}", -m / sd);
}

#[test]
fn split_sizes_and_pixel_stats() {
    assert_eq!(train_len(1797), 1437);
    let order = split_order(1797);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1797).collect::<Vec<_>>(), "a permutation of the rows");
    // Population mean and std of pixel / 16.
    let (mean, std) = pixel_stats(&[0, 16, 8, 8]);
    assert!((mean - 0.5).abs() < 1e-7 && (std - 0.125f32.sqrt()).abs() < 1e-6, "{mean} {std}");
}

fn row(pixel: &str, label: &str) -> String {
    let mut fields = vec![pixel; 64];
    fields.push(label);
    fields.join(",")
}

fn csv_err(text: &str) -> String {
    parse_digits_csv(text.as_bytes(), Path::new("my/digits.csv")).unwrap_err().to_string()
}

#[test]
fn bad_rows_name_the_file_and_line() {
    let good = row("3", "1");
    let msg = csv_err(&format!("{good}\n{good}\n1,2,3\n"));
    assert!(msg.starts_with("my/digits.csv line 3: found 3 fields instead of 65"), "{msg}");
    let msg = csv_err(&format!("{good}\n{}\n", row("17", "1")));
    assert!(msg.starts_with("my/digits.csv line 2: pixel value 17 in field 1 is above 16"), "{msg}");
    let msg = csv_err(&format!("{}\n{good}\n", row("2", "10")));
    assert!(msg.starts_with("my/digits.csv line 1: label value 10 in field 65 is above 9"), "{msg}");
    let msg = csv_err(&format!("{good}\n\n{}\n", row("x", "1")));
    assert!(msg.starts_with("my/digits.csv line 3: field 1 is `x`, not a non-negative integer"), "{msg}");
    let msg = csv_err(&row("-1", "1"));
    assert!(msg.contains("field 1 is `-1`"), "{msg}");
    let msg = csv_err(&good);
    assert!(msg.contains("holds 1 samples, too few"), "{msg}");
}

#[test]
fn csv_from_a_folder_plain_or_gzipped() {
    let text: String = (0..10).map(|i| row(&(i % 17).to_string(), &(i % 10).to_string()) + "\r\n").collect();
    let dir = fresh_dir("data_digits", "plain");
    std::fs::write(dir.join("digits.csv"), &text).unwrap();
    let s = load(DataKind::Digits, Some(&dir)).unwrap();
    // ceil(10 / 5) = 2 test rows, drawn by the split order (row i has label i).
    assert_eq!((s.train.len(), s.test.len()), (8, 2));
    let order: Vec<u32> = split_order(10).iter().map(|&r| r as u32).collect();
    assert_eq!(s.test.labels, order[8..]);

    let dir = fresh_dir("data_digits", "gz");
    std::fs::write(dir.join("digits.csv.gz"), gzip(text.as_bytes())).unwrap();
    assert_eq!(load(DataKind::Digits, Some(&dir)).unwrap().train.labels, order[..8]);

    let empty = fresh_dir("data_digits", "empty");
    let msg = load(DataKind::Digits, Some(&empty)).unwrap_err().to_string();
    assert!(msg.contains("found neither digits.csv.gz nor digits.csv"), "{msg}");
}

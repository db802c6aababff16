//! The scikit-learn digits set (UCI optical digits): 1,797 images of 8x8 pixels, values 0..=16.
//!
//! The file is a CSV, `digits.csv.gz`: one sample a line, 65 comma-separated integers, the 64
//! pixels row-major then the label 0..=9. A copy is embedded in the binary so the default run
//! needs no download.

use std::path::Path;

use crate::error::{EngineError, Result};

/// The gzipped CSV embedded in the binary (57 KB; sha256
/// `46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a`).
pub const EMBEDDED_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Names looked for in a data directory, in this order.
pub const FILE_NAMES: [&str; 2] = ["digits.csv.gz", "digits.csv"];

/// Pixels per image (8x8).
pub const PIXELS: usize = 64;
/// Largest pixel value.
pub const MAX_PIXEL: u8 = 16;
/// Number of classes.
pub const CLASSES: usize = 10;

/// Samples of the digits CSV in file order: `pixels` is `[n, 64]` (values 0..=16), `labels` is `[n]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitsRows {
    /// `[n, 8, 8]` row-major pixel values 0..=16.
    pub pixels: Vec<u8>,
    /// `[n]` labels 0..=9.
    pub labels: Vec<u8>,
}

/// How many of `n` rows go to the training split: `ceil(n / 5)` rows are the test split, the
/// rest train. For the standard 1,797-row file that is 1,437 rows for training and 360 for
/// test, drawn by [`split_order`].
pub fn train_len(n: usize) -> usize {
    n - n.div_ceil(5)
}

/// The order rows are split in: a fixed seeded shuffle (the same in every run, so every run
/// sees the same test set), training rows first. Not the file order: the file's last rows
/// come from other writers than the rest, and with them as the test set the same MLP scored
/// 91.9% against 98.9% on a shuffled split, so that test measured the change of writers more
/// than learning.
pub fn split_order(n: usize) -> Vec<usize> {
    super::epoch_order(n, SPLIT_SEED, 0)
}

/// Seed of [`split_order`].
const SPLIT_SEED: u64 = 0x5eed_d161;

/// Parses the CSV text (already decompressed). Blank lines are skipped; every other line must
/// hold 65 integers. `path` only names the file in error messages, with 1-based line numbers.
pub fn parse_digits_csv(text: &[u8], path: &Path) -> Result<DigitsRows> {
    let err = |line: usize, problem: String| {
        EngineError::Data(format!(
            "{} line {line}: {problem}; each line must hold 64 pixel values 0..={MAX_PIXEL} and a label 0..={}, comma-separated",
            path.display(),
            CLASSES - 1
        ))
    };
    let text = std::str::from_utf8(text).map_err(|e| {
        EngineError::Data(format!("{}: the file is not UTF-8 text ({e}); it is not a digits CSV", path.display()))
    })?;
    let mut rows = DigitsRows { pixels: Vec::new(), labels: Vec::new() };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(err(i + 1, format!("found {} fields instead of {}", fields.len(), PIXELS + 1)));
        }
        for (j, field) in fields.iter().enumerate() {
            let field = field.trim();
            let value: u32 = field
                .parse()
                .map_err(|_| err(i + 1, format!("field {} is `{field}`, not a non-negative integer", j + 1)))?;
            let (max, what) = if j < PIXELS { (u32::from(MAX_PIXEL), "pixel") } else { (CLASSES as u32 - 1, "label") };
            if value > max {
                return Err(err(i + 1, format!("{what} value {value} in field {} is above {max}", j + 1)));
            }
            // In range, so it fits in a u8.
            if j < PIXELS {
                rows.pixels.push(value as u8);
            } else {
                rows.labels.push(value as u8);
            }
        }
    }
    if rows.labels.len() < 2 {
        return Err(EngineError::Data(format!(
            "{}: the file holds {} samples, too few to split into train and test; it is not the digits CSV",
            path.display(),
            rows.labels.len()
        )));
    }
    Ok(rows)
}

/// Mean and standard deviation (population) of `pixels / 16`: the standardisation of the
/// digits set uses those of its own training split.
pub fn pixel_stats(pixels: &[u8]) -> (f32, f32) {
    let n = pixels.len().max(1) as f64;
    let scale = 1.0 / f64::from(MAX_PIXEL);
    let mean = pixels.iter().map(|&p| f64::from(p) * scale).sum::<f64>() / n;
    let var = pixels.iter().map(|&p| (f64::from(p) * scale - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

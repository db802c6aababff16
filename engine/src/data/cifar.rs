//! CIFAR-10 in its binary version: each file is a run of 3,073-byte records, one label byte
//! (0..=9) then 3,072 pixel bytes, the 1,024 red values of the 32x32 image row-major, then the
//! green, then the blue. That is `[c, h, w]` already, the layout asgd keeps.
//!
//! Training: `data_batch_1.bin` .. `data_batch_5.bin` (10,000 records each); test:
//! `test_batch.bin`. Parsing ([`parse_records`]) is check-then-parse on bytes, apart from
//! finding and reading the files.

use std::path::{Path, PathBuf};

use super::{unavailable, DataKind, Dataset, Norm, Splits, Why};
use crate::error::{EngineError, Result};

/// Pixels of one image: 3 channels of 32x32.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record: the label, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Number of classes.
pub const CLASSES: usize = 10;
/// The training files, in the order their records are concatenated.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";
/// The six data files: the five training files, then the test file.
pub const DATA_FILES: [&str; 6] =
    [TRAIN_FILES[0], TRAIN_FILES[1], TRAIN_FILES[2], TRAIN_FILES[3], TRAIN_FILES[4], TEST_FILE];
/// The class names, one a line (optional; asgd does not need it).
pub const META_FILE: &str = "batches.meta.txt";
/// The folder the canonical tarball unpacks to.
pub const TARBALL_FOLDER: &str = "cifar-10-batches-bin";

/// The records of one or more files: `pixels` is `[n, 3, 32, 32]`, `labels` `[n]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// `[n, 3, 32, 32]` raw pixel values.
    pub pixels: Vec<u8>,
    /// `[n]` labels 0..=9.
    pub labels: Vec<u8>,
}

/// A file at `path` that is not CIFAR-10's: to be downloaded again.
fn corrupt(path: &Path, problem: String) -> EngineError {
    let dir = path.parent().unwrap_or(Path::new("."));
    unavailable(DataKind::Cifar10, dir, false, Why::Corrupt { path: path.to_path_buf(), problem })
}

/// Parses the bytes of one CIFAR-10 binary file and appends its records to `out`. The file must
/// hold at least one record, a whole number of them, every label in `0..=9`. `path` only names
/// the file in error messages.
pub fn parse_records(bytes: &[u8], path: &Path, out: &mut Records) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(corrupt(
            path,
            format!(
                "the file is {} bytes long, not a whole, non-zero number of {RECORD_BYTES}-byte records \
                 (a label byte and 3x32x32 pixels); it is truncated or not a CIFAR-10 binary file",
                bytes.len()
            ),
        ));
    }
    let records = bytes.chunks_exact(RECORD_BYTES);
    if let Some((i, r)) = records.clone().enumerate().find(|(_, r)| usize::from(r[0]) >= CLASSES) {
        return Err(corrupt(
            path,
            format!(
                "label {} in record {i} is outside 0..=9; the file is corrupt or not CIFAR-10 (CIFAR-100's \
                 files have two label bytes)",
                r[0]
            ),
        ));
    }
    out.pixels.reserve(bytes.len() / RECORD_BYTES * IMAGE_BYTES);
    for r in records {
        out.labels.push(r[0]);
        out.pixels.extend_from_slice(&r[1..]);
    }
    Ok(())
}

/// The folder under `dir` that holds the files: `dir` itself, else `dir/cifar-10-batches-bin`,
/// `dir/cifar10` or `dir/cifar10/cifar-10-batches-bin`, the first that has `data_batch_1.bin`;
/// `dir` when none has.
pub fn find_folder(dir: &Path) -> PathBuf {
    let named = dir.join(DataKind::Cifar10.name());
    [dir.to_path_buf(), dir.join(TARBALL_FOLDER), named.join(TARBALL_FOLDER), named]
        .into_iter()
        .find(|d| d.join(TRAIN_FILES[0]).is_file())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Loads CIFAR-10 from `given` (see [`find_folder`]), normalised per channel; `default` when
/// `given` is [`super::default_dir`].
pub(super) fn load_cifar10(given: &Path, default: bool) -> Result<Splits> {
    if !given.is_dir() {
        return Err(unavailable(DataKind::Cifar10, given, default, Why::NoFolder));
    }
    let dir = find_folder(given);
    let read = |names: &[&str]| -> Result<Records> {
        let mut out = Records::default();
        for name in names {
            let path = dir.join(name);
            if !path.is_file() {
                let why = Why::NoFile { folder: dir.clone(), file: name.to_string() };
                return Err(unavailable(DataKind::Cifar10, given, default, why));
            }
            let bytes = std::fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
            parse_records(&bytes, &path, &mut out)?;
        }
        Ok(out)
    };
    let (train, test) = (read(&TRAIN_FILES)?, read(&[TEST_FILE])?);
    let shape = DataKind::Cifar10.shape();
    let split = |r: Records, name: &str| {
        let labels = r.labels.into_iter().map(u32::from).collect();
        Dataset::from_channel_pixels(format!("cifar10/{name}"), &r.pixels, labels, shape, &Norm::CIFAR10)
    };
    Ok(Splits { train: split(train, "train"), test: split(test, "test") })
}

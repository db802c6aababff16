//! Arguments and helpers shared by several subcommands.

use std::path::PathBuf;

use anyhow::{bail, Result};
use asgd::data::{self, Augment, DataKind, Splits, TestSplit};
use asgd::engine::tune::TuneMode;
use asgd::{BackendChoice, Device, DeviceOptions};

/// Which adapter to run on.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Graphics API: auto, vulkan, metal, dx12 or gl (auto honours WGPU_BACKEND).
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: BackendChoice,
    /// Adapter index as listed by `asgd devices` (default: the first GPU, else any adapter).
    #[arg(long)]
    pub adapter: Option<usize>,
    /// Choose matrix-product kernels by timing them on this device: on (products of 20 MFLOP
    /// and more), all, or off; choices are cached per adapter and driver [default: ASGD_TUNE,
    /// else on].
    #[arg(long, value_parser = parse_tune)]
    pub tune: Option<TuneMode>,
}

fn parse_tune(s: &str) -> Result<TuneMode, String> {
    TuneMode::parse(s).map_err(|e| e.to_string())
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    BackendChoice::parse(s).map_err(|e| e.to_string())
}

impl DeviceArgs {
    pub fn open(&self) -> Result<Device> {
        Ok(Device::open(&DeviceOptions { backend: self.backend, adapter: self.adapter, tune: self.tune })?)
    }
}

/// A dataset named on the command line: one asgd knows, or a safetensors file of one's own.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSpec {
    /// `digits`, `mnist`, `fashion-mnist`, `cifar10`.
    Named(DataKind),
    /// `FILE.safetensors` holding `images` and `labels`.
    File(PathBuf),
}

impl DataSpec {
    /// The name runs and checkpoints record: the dataset's, or the file's name without its folder.
    pub fn name(&self) -> String {
        match self {
            DataSpec::Named(kind) => kind.name().to_string(),
            DataSpec::File(path) => {
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
            }
        }
    }
}

impl PartialEq<DataKind> for DataSpec {
    fn eq(&self, kind: &DataKind) -> bool {
        matches!(self, DataSpec::Named(k) if k == kind)
    }
}

/// Which dataset to use.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Dataset: digits (embedded, 8x8), mnist or fashion-mnist (28x28), cifar10 (3x32x32), or a
    /// FILE.safetensors of your own holding `images` (float32, [N, C, H, W]) and `labels` (int64, [N]).
    #[arg(long, default_value = "digits", value_parser = parse_data)]
    pub data: DataSpec,
    /// Folder with the dataset's files (default: the folder `asgd data fetch` writes to).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The test set of --data FILE.safetensors: another file of the same layout.
    #[arg(long, conflicts_with = "test_split")]
    pub test_data: Option<PathBuf>,
    /// The test set of --data FILE.safetensors: this fraction (0 < F < 1) of the file, its last rows.
    #[arg(long, value_parser = fraction)]
    pub test_split: Option<f64>,
    /// Random crop (4 pixels of padding) and horizontal flip of the training batches, seeded:
    /// on or off (default: on for cifar10, off otherwise). The test set is never augmented.
    #[arg(long, value_parser = on_off)]
    pub augment: Option<bool>,
}

pub fn parse_data(s: &str) -> Result<DataSpec, String> {
    if s.ends_with(".safetensors") {
        return Ok(DataSpec::File(PathBuf::from(s)));
    }
    DataKind::parse(s).map(DataSpec::Named).map_err(|e| format!("{e}, or a FILE.safetensors"))
}

pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("'{s}' is not a fraction between 0 and 1 (exclusive); pass e.g. 0.1")),
    }
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}

impl DataArgs {
    /// Loads the train and test splits, the training split augmented when --augment says so.
    pub fn load(&self) -> Result<Splits> {
        let splits = match &self.data {
            DataSpec::Named(kind) => {
                if self.test_data.is_some() || self.test_split.is_some() {
                    bail!(
                        "--test-data and --test-split apply to --data FILE.safetensors only; {} has its own test set",
                        kind.name()
                    );
                }
                data::load(*kind, self.data_dir.as_deref())?
            }
            DataSpec::File(path) => {
                if self.data_dir.is_some() {
                    bail!(
                        "--data-dir applies to named datasets, but {} is a file read from its own path; drop --data-dir",
                        path.display()
                    );
                }
                let test = match (&self.test_data, self.test_split) {
                    (Some(file), _) => TestSplit::File(file.clone()),
                    (None, Some(f)) => TestSplit::Fraction(f),
                    (None, None) => bail!(
                        "{} needs a test set; pass --test-data FILE.safetensors or --test-split F \
                         (e.g. 0.1, the last tenth of the file)",
                        path.display()
                    ),
                };
                data::load_safetensors_splits(path, &test)?
            }
        };
        let augment = self.augment.unwrap_or(self.data == DataKind::Cifar10);
        Ok(splits.with_augment(augment.then_some(Augment::CROP_FLIP)))
    }
}

/// Parses a positive integer flag value.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// Comma-separated positive sizes such as `512,512` (a newtype: clap reads a bare `Vec` as
/// a repeated flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes(pub Vec<usize>);

/// Parses [`Sizes`]; an empty string is no sizes.
pub fn sizes(s: &str) -> Result<Sizes, String> {
    if s.trim().is_empty() {
        return Ok(Sizes(Vec::new()));
    }
    s.split(',').map(|v| positive(v.trim()).map_err(|e| format!("'{v}': {e}"))).collect::<Result<_, _>>().map(Sizes)
}

/// Formats a duration in seconds for people.
pub fn secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m{:02.0}s", (s / 60.0).floor(), s % 60.0)
    }
}

/// Parses an accuracy given as a fraction (0.97) or a percentage (97) into a fraction.
pub fn accuracy(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 1.0 && a <= 100.0 => Ok(a / 100.0),
        Ok(a) if (0.0..=1.0).contains(&a) => Ok(a),
        _ => Err(format!("'{s}' is not an accuracy; give a fraction (0.97) or a percentage (97)")),
    }
}

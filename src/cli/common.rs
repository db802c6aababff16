//! Arguments and helpers shared by several subcommands.

use std::path::PathBuf;

use anyhow::Result;
use asgd::data::{self, DataKind, Splits};
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
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    BackendChoice::parse(s).map_err(|e| e.to_string())
}

impl DeviceArgs {
    pub fn open(&self) -> Result<Device> {
        Ok(Device::open(&DeviceOptions { backend: self.backend, adapter: self.adapter })?)
    }
}

/// Which dataset to use.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Dataset: digits (embedded, 8x8), mnist or fashion-mnist (28x28).
    #[arg(long, default_value = "digits", value_parser = parse_data)]
    pub data: DataKind,
    /// Folder with the idx files (default: the folder `asgd data fetch` writes to).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn parse_data(s: &str) -> Result<DataKind, String> {
    DataKind::parse(s).map_err(|e| e.to_string())
}

impl DataArgs {
    pub fn load(&self) -> Result<Splits> {
        Ok(data::load(self.data, self.data_dir.as_deref())?)
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

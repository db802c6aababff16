//! Datasets: loading MNIST, Fashion-MNIST, CIFAR-10, the embedded digits set and the user's own
//! safetensors files into host memory, normalised; seeded epoch order and augmentation;
//! downloading with checksums.

pub mod archive;
pub mod augment;
pub mod cifar;
pub mod digits;
pub mod fetch;
pub mod idx;
pub mod safetensors_data;
pub mod shuffle;
mod unavailable;

use std::path::{Path, PathBuf};

pub use augment::{Augment, Draw};
pub use fetch::{fetch, fetch_pinned, pins, FetchEvent, Pin};
pub use safetensors_data::{load_safetensors_splits, TestSplit};
pub use shuffle::{epoch_order, num_batches, Batches};
pub use unavailable::{DataUnavailable, Why};

use crate::error::{EngineError, Result};

/// A labelled image dataset held in host memory, normalised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// The dataset's name (`mnist`, `cifar10`, a file name, ...) followed by `/train` or `/test`.
    pub name: String,
    /// `[n, c, h, w]` row-major, normalised to roughly zero mean and unit variance.
    pub images: Vec<f32>,
    /// `[n]` class indices, each below `classes`.
    pub labels: Vec<u32>,
    /// `[c, h, w]` of one image.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// `[c]`: the stored value of a raw 0 (black) pixel in each channel, `(0 - mean) / std`;
    /// what augmentation pads with. 0 for data that came normalised (safetensors files).
    pub zero: Vec<f32>,
    /// How [`Dataset::gather_batch`] augments the samples; `None` (the default, and always for
    /// a test set) gathers them as they are.
    pub augment: Option<Augment>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample, `c * h * w`.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Copies the samples at `idx` into `images` (cleared first; `[idx.len(), c, h, w]`) and
    /// `labels` (cleared first; `[idx.len()]`).
    ///
    /// # Panics
    /// If an index is `>= self.len()`: indices come from [`epoch_order`] over this dataset, so
    /// that is a bug in the caller, not bad input.
    pub fn gather(&self, idx: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
        let s = self.sample_len();
        images.clear();
        labels.clear();
        images.reserve(idx.len() * s);
        labels.reserve(idx.len());
        for &i in idx {
            images.extend_from_slice(&self.images[i * s..(i + 1) * s]);
            labels.push(self.labels[i]);
        }
    }

    /// Copies batch `b` of `batch` samples of an epoch order, `order[b * batch..(b + 1) * batch]`,
    /// into `images` and `labels` as [`Dataset::gather`] does, then augments each sample as
    /// [`Dataset::augment`] says: the sample at position `p` of the order gets
    /// [`Augment::draw`]`(seed, epoch, p)`. Without augmentation it is [`Dataset::gather`].
    ///
    /// # Panics
    /// If the batch reaches past the end of `order`, or an index is `>= self.len()`.
    #[allow(clippy::too_many_arguments)]
    pub fn gather_batch(
        &self,
        order: &[usize],
        batch: usize,
        b: usize,
        seed: u64,
        epoch: u64,
        images: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) {
        let first = b * batch;
        let idx = &order[first..first + batch];
        let Some(aug) = self.augment.filter(|a| a.pad > 0 || a.flip) else {
            return self.gather(idx, images, labels);
        };
        let s = self.sample_len();
        images.clear();
        images.resize(idx.len() * s, 0.0);
        labels.clear();
        for (j, (&i, dst)) in idx.iter().zip(images.chunks_exact_mut(s)).enumerate() {
            let draw = aug.draw(seed, epoch, (first + j) as u64);
            aug.apply(draw, self.shape, &self.zero, &self.images[i * s..(i + 1) * s], dst);
            labels.push(self.labels[i]);
        }
    }

    /// Keeps the first `n` samples (for quick runs and tests); no change when `n >= len()`.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.sample_len());
        }
    }

    /// How many samples each class has: `[classes]`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Builds a dataset from raw pixels `[n, c, h, w]`, mapping each value `p` to
    /// `(p * scale - mean) / std`.
    fn from_pixels(name: String, pixels: &[u8], labels: Vec<u32>, shape: [usize; 3], norm: Norm) -> Self {
        Self::from_channel_pixels(name, pixels, labels, shape, &vec![norm; shape[0]])
    }

    /// As [`Dataset::from_pixels`] with one normalisation per channel (`norms[c]`), ten classes.
    fn from_channel_pixels(name: String, pixels: &[u8], labels: Vec<u32>, shape: [usize; 3], norms: &[Norm]) -> Self {
        let luts: Vec<Vec<f32>> = norms.iter().map(|n| (0..=255u8).map(|p| n.apply(p)).collect()).collect();
        let plane = shape[1] * shape[2];
        let images = pixels.iter().enumerate().map(|(k, &p)| luts[(k / plane) % shape[0]][usize::from(p)]).collect();
        let zero = norms.iter().map(|n| n.apply(0)).collect();
        Self { name, images, labels, shape, classes: 10, zero, augment: None }
    }
}

/// The train and test splits of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    /// Training split.
    pub train: Dataset,
    /// Test split.
    pub test: Dataset,
}

impl Splits {
    /// The same splits with `augment` for the training split; the test split stays as it is.
    pub fn with_augment(mut self, augment: Option<Augment>) -> Self {
        self.train.augment = augment;
        self
    }
}

/// The datasets asgd knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// scikit-learn digits, 8x8, embedded in the binary.
    Digits,
    /// MNIST handwritten digits, 28x28.
    Mnist,
    /// Fashion-MNIST clothing images, 28x28.
    FashionMnist,
    /// CIFAR-10 colour images, 3x32x32, from its binary version.
    Cifar10,
}

impl DataKind {
    /// All kinds, in the order the CLI lists them.
    pub const ALL: [DataKind; 4] = [DataKind::Digits, DataKind::Mnist, DataKind::FashionMnist, DataKind::Cifar10];

    /// Parses `digits`, `mnist`, `fashion-mnist` or `cifar10` (also spelt `cifar-10`).
    pub fn parse(s: &str) -> Result<Self> {
        let s = if s == "cifar-10" { "cifar10" } else { s };
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "unknown dataset `{s}`; choose one of digits, mnist, fashion-mnist, cifar10"
            ))
        })
    }

    /// The name used on the command line and as the directory name.
    pub fn name(&self) -> &'static str {
        match self {
            DataKind::Digits => "digits",
            DataKind::Mnist => "mnist",
            DataKind::FashionMnist => "fashion-mnist",
            DataKind::Cifar10 => "cifar10",
        }
    }

    /// `[c, h, w]` of one image.
    pub fn shape(&self) -> [usize; 3] {
        match self {
            DataKind::Digits => [1, 8, 8],
            DataKind::Mnist | DataKind::FashionMnist => [1, 28, 28],
            DataKind::Cifar10 => [3, 32, 32],
        }
    }
}

/// `value = (p * scale - mean) / std` for a raw pixel `p`.
#[derive(Clone, Copy, Debug)]
struct Norm {
    scale: f32,
    mean: f32,
    std: f32,
}

impl Norm {
    /// MNIST: x/255, then the usual (x - 0.1307) / 0.3081 of its training set.
    const MNIST: Norm = Norm { scale: 1.0 / 255.0, mean: 0.1307, std: 0.3081 };
    /// Fashion-MNIST: x/255, then (x - 0.2860) / 0.3530 of its training set.
    const FASHION_MNIST: Norm = Norm { scale: 1.0 / 255.0, mean: 0.2860, std: 0.3530 };
    /// CIFAR-10, per channel (red, green, blue): x/255, then the usual means and standard
    /// deviations of its training set.
    const CIFAR10: [Norm; 3] = [
        Norm { scale: 1.0 / 255.0, mean: 0.4914, std: 0.2470 },
        Norm { scale: 1.0 / 255.0, mean: 0.4822, std: 0.2435 },
        Norm { scale: 1.0 / 255.0, mean: 0.4465, std: 0.2616 },
    ];

    fn apply(&self, p: u8) -> f32 {
        (f32::from(p) * self.scale - self.mean) / self.std
    }
}

/// Where a dataset lives when no directory is given: `$ASGD_DATA_DIR/<name>` if that variable is
/// set, else `$XDG_CACHE_HOME/asgd/<name>`, else `~/.cache/asgd/<name>` (on Windows
/// `%USERPROFILE%\.cache\asgd\<name>`), else `.cache/asgd/<name>` under the working directory.
pub fn default_dir(kind: DataKind) -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var("ASGD_DATA_DIR") {
        return root.join(kind.name());
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").or_else(|| var("USERPROFILE")).map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("asgd").join(kind.name())
}

/// Loads the train and test splits of `kind`, normalised.
///
/// `dir` is the folder holding the files (`train-images-idx3-ubyte[.gz]` and the other three for
/// MNIST and Fashion-MNIST, `data_batch_1.bin`..`data_batch_5.bin` and `test_batch.bin` for
/// CIFAR-10, `digits.csv[.gz]` for digits); a folder that lacks them but has a subfolder named
/// after the dataset (`dir/mnist/`) is accepted too, and for CIFAR-10 the tarball's
/// `cifar-10-batches-bin/`. `None` means [`default_dir`], except for digits: the embedded copy.
///
/// Shapes: MNIST and Fashion-MNIST `[1, 28, 28]` (60,000 train, 10,000 test); CIFAR-10
/// `[3, 32, 32]` (50,000 train, 10,000 test); digits `[1, 8, 8]` (1,437 train, 360 test, see
/// [`digits::train_len`]). Ten classes each. Nothing is augmented (see [`Splits::with_augment`]).
pub fn load(kind: DataKind, dir: Option<&Path>) -> Result<Splits> {
    match (kind, dir) {
        (DataKind::Digits, None) => {
            let path = Path::new("<embedded digits.csv.gz>");
            let text = idx::gunzip_if_gzip(digits::EMBEDDED_CSV_GZ.to_vec(), path)?;
            digits_splits(&text, path)
        }
        (DataKind::Digits, Some(dir)) => {
            let found = [dir.to_path_buf(), dir.join(kind.name())]
                .iter()
                .flat_map(|d| digits::FILE_NAMES.iter().map(move |n| d.join(n)))
                .find(|p| p.is_file());
            let path = found.ok_or_else(|| {
                let file = digits::FILE_NAMES[0].to_string();
                unavailable(kind, dir, false, Why::NoFile { folder: dir.to_path_buf(), file })
            })?;
            let text = idx::read_maybe_gzip(&path)?;
            digits_splits(&text, &path)
        }
        (DataKind::Cifar10, _) => {
            let (dir, default) = folder(kind, dir);
            cifar::load_cifar10(&dir, default)
        }
        _ => {
            let (dir, default) = folder(kind, dir);
            load_idx_splits(kind, &dir, default)
        }
    }
}

/// The folder to load `kind` from: `dir`, else [`default_dir`]; and whether it is the default.
fn folder(kind: DataKind, dir: Option<&Path>) -> (PathBuf, bool) {
    match dir {
        Some(d) => (d.to_path_buf(), false),
        None => (default_dir(kind), true),
    }
}

/// [`EngineError::DataUnavailable`] of `kind` in `dir`.
pub(crate) fn unavailable(kind: DataKind, dir: &Path, default_dir: bool, why: Why) -> EngineError {
    EngineError::DataUnavailable(DataUnavailable { kind, dir: dir.to_path_buf(), default_dir, why })
}

fn digits_splits(text: &[u8], path: &Path) -> Result<Splits> {
    let rows = digits::parse_digits_csv(text, path)?;
    let n = rows.labels.len();
    let order = digits::split_order(n);
    let pixels: Vec<u8> =
        order.iter().flat_map(|&r| rows.pixels[r * digits::PIXELS..(r + 1) * digits::PIXELS].iter().copied()).collect();
    let row_labels: Vec<u8> = order.iter().map(|&r| rows.labels[r]).collect();
    let n_train = digits::train_len(n);
    let (train_px, test_px) = pixels.split_at(n_train * digits::PIXELS);
    let (mean, std) = digits::pixel_stats(train_px);
    // A constant image set (never the real file) would give std 0; keep the values finite.
    let std = if std > 1e-6 { std } else { 1.0 };
    let norm = Norm { scale: 1.0 / f32::from(digits::MAX_PIXEL), mean, std };
    let labels = |ls: &[u8]| ls.iter().map(|&l| u32::from(l)).collect::<Vec<u32>>();
    let shape = DataKind::Digits.shape();
    Ok(Splits {
        train: Dataset::from_pixels("digits/train".into(), train_px, labels(&row_labels[..n_train]), shape, norm),
        test: Dataset::from_pixels("digits/test".into(), test_px, labels(&row_labels[n_train..]), shape, norm),
    })
}

/// Loads the four idx files from `given` (or `given/<name>`); `default` when `given` is
/// [`default_dir`].
fn load_idx_splits(kind: DataKind, given: &Path, default: bool) -> Result<Splits> {
    if !given.is_dir() {
        return Err(unavailable(kind, given, default, Why::NoFolder));
    }
    let sub = given.join(kind.name());
    let dir = if idx::find_idx_file(given, idx::TRAIN_IMAGES).is_none() && sub.is_dir() { &sub } else { given };
    let find = |stem: &str| {
        idx::find_idx_file(dir, stem).ok_or_else(|| {
            unavailable(kind, given, default, Why::NoFile { folder: dir.to_path_buf(), file: format!("{stem}.gz") })
        })
    };
    let norm = match kind {
        DataKind::FashionMnist => Norm::FASHION_MNIST,
        _ => Norm::MNIST,
    };
    let shape = kind.shape();
    let split = |images_stem: &str, labels_stem: &str, split: &str| -> Result<Dataset> {
        let (images_path, labels_path) = (find(images_stem)?, find(labels_stem)?);
        let images = idx::read_idx_images(&images_path)?;
        let labels = idx::read_idx_labels(&labels_path)?;
        idx::check_pair(&images, &images_path, &labels, &labels_path, shape[1], shape[2], 10)?;
        let labels = labels.into_iter().map(u32::from).collect();
        Ok(Dataset::from_pixels(format!("{}/{split}", kind.name()), &images.pixels, labels, shape, norm))
    };
    Ok(Splits {
        train: split(idx::TRAIN_IMAGES, idx::TRAIN_LABELS, "train")?,
        test: split(idx::TEST_IMAGES, idx::TEST_LABELS, "test")?,
    })
}

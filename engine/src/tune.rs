//! Kernels chosen by measurement on the device at hand.
//!
//! When a plan is built, every matrix product whose kernel is [`MatmulKernel::Auto`] asks its
//! device's [`Tuner`], and so does every convolution, for [`ConvAlgo::Direct`] or
//! [`ConvAlgo::Im2col`] ([`Tuner::conv_algo`]). A shape seen before (in this process or in the cache file of this adapter
//! and driver) gets the kernel chosen then; a new shape large enough to matter is timed with each
//! candidate kernel for a few milliseconds and the fastest is kept and written to the cache, so
//! the second run starts at once. Small products and a tuner that is off use
//! [`MatmulKernel::default_for`].
//!
//! The choice changes the order of floating-point additions, never the maths: the same seed,
//! device and cache file give the same run bit for bit. The choices a process used are listed by
//! [`Tuner::choices`] (training writes them into its metrics).
//!
//! Settings: `ASGD_TUNE` = `on` (default: products of at least [`TUNE_MIN_FLOPS`]), `all`
//! (every product) or `off`; `ASGD_CACHE_DIR` moves the cache (default
//! `$XDG_CACHE_HOME/asgd`, else `~/.cache/asgd`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::device::{AdapterSummary, Device};
use crate::error::{EngineError, Result};
use crate::kernel::{time_recorded, Dispatch};
use crate::ops::conv2d::{
    conv2d_backward, conv2d_forward, direct_backward, direct_forward, direct_supported, ConvAlgo, ConvScratch,
    ConvShape, DirectScratch,
};
use crate::ops::matmul::{matmul, register_candidates, subgroup_candidates, use_kdot, MatmulKernel, MatmulSpec};
use crate::tensor::Tensor;

/// Products below this many floating-point operations are not timed: they take microseconds
/// and any kernel does.
pub const TUNE_MIN_FLOPS: f64 = 2e7;

/// Seconds of timed work per candidate and measurement at least.
const MIN_SECONDS: f64 = 0.003;

/// Whether kernels are chosen by measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TuneMode {
    /// Time products of at least [`TUNE_MIN_FLOPS`].
    #[default]
    On,
    /// Time every product, however small (for tests and experiments).
    All,
    /// Never time: defaults, or what the cache file already holds.
    Off,
}

impl TuneMode {
    /// Parses `on|all|off`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => Ok(Self::On),
            "all" => Ok(Self::All),
            "off" | "0" | "false" => Ok(Self::Off),
            other => Err(EngineError::InvalidArgument(format!("unknown tuning mode '{other}'; use on, all or off"))),
        }
    }

    /// `ASGD_TUNE` if set and valid, else [`TuneMode::On`].
    pub fn from_env() -> Result<Self> {
        match std::env::var("ASGD_TUNE") {
            Ok(v) if !v.is_empty() => {
                Self::parse(&v).map_err(|e| EngineError::InvalidArgument(format!("ASGD_TUNE: {e}")))
            }
            _ => Ok(Self::On),
        }
    }
}

/// One device's kernel choices: the cache file's and those made since.
pub struct Tuner {
    mode: TuneMode,
    device_key: String,
    path: Option<PathBuf>,
    known: Mutex<BTreeMap<String, String>>,
    used: Mutex<BTreeMap<String, String>>,
    announced: std::sync::Once,
}

impl std::fmt::Debug for Tuner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tuner({:?}, {:?})", self.mode, self.path)
    }
}

/// The folder of the tuning cache: `ASGD_CACHE_DIR`, else `$XDG_CACHE_HOME/asgd`, else
/// `$HOME/.cache/asgd`; `None` when none is set.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("ASGD_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("asgd")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("asgd")))
}

/// FNV-1a, for a file name that is stable across runs and builds.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The cache key of a product: shape, transposes and accumulation.
pub fn shape_key(spec: &MatmulSpec) -> String {
    let t = |b: bool| if b { 't' } else { 'n' };
    format!(
        "{}x{}x{}{}{}{}",
        spec.m,
        spec.n,
        spec.k,
        t(spec.trans_a),
        t(spec.trans_b),
        if spec.accumulate { "+" } else { "" }
    )
}

impl Tuner {
    /// A tuner for `info`'s adapter whose cache lives in `dir` (none: in memory only).
    pub fn new(mode: TuneMode, info: &AdapterSummary, dir: Option<&Path>) -> Self {
        let mut device_key = format!("{} | {} | {} | {}", info.name, info.backend, info.device_type, info.driver);
        if info.features.fixed_subgroup_size().is_some() {
            // Subgroup kernels join the candidates there: choices timed without them (in a
            // file from before they existed) are timed again, in a file of their own.
            device_key.push_str(&format!(" | {}", info.features.describe()));
        }
        let path = dir.map(|d| d.join(format!("tune-{:016x}.json", fnv(&device_key))));
        let known = path.as_deref().map(|p| read_cache(p, &device_key)).unwrap_or_default();
        Self {
            mode,
            device_key,
            path,
            known: Mutex::new(known),
            used: Mutex::new(BTreeMap::new()),
            announced: std::sync::Once::new(),
        }
    }

    /// The mode it was made with.
    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    /// The cache file, if any.
    pub fn cache_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every product shape this process has built, with the kernel it got.
    pub fn choices(&self) -> BTreeMap<String, String> {
        self.used.lock().expect("tuner poisoned").clone()
    }

    /// The kernel for `spec` on `dev` (whose tuner this is).
    pub fn matmul_kernel(&self, dev: &Device, spec: &MatmulSpec) -> MatmulKernel {
        let key = shape_key(spec);
        let tune = match self.mode {
            TuneMode::Off => false,
            TuneMode::On => spec.flops() >= TUNE_MIN_FLOPS,
            TuneMode::All => true,
        };
        let parse = |s: &String| MatmulKernel::parse(s).filter(|k| *k != MatmulKernel::Auto);
        let mut cached = self.known.lock().expect("tuner poisoned").get(&key).and_then(parse);
        if cached.is_none() && tune {
            // Another process (a test, another rank) may have timed it since this one started:
            // take its choice rather than time it again.
            if let Some(path) = &self.path {
                cached = read_cache(path, &self.device_key).get(&key).and_then(parse);
            }
        }
        let kernel = match cached {
            Some(k) => k,
            None if tune => {
                self.announced.call_once(|| {
                    let cache =
                        self.path.as_ref().map_or("not cached".into(), |p| format!("cached in {}", p.display()));
                    eprintln!("timing matrix-product kernels for {} (once per shape; {cache})", dev.info().name);
                });
                match measure(dev, spec) {
                    Ok(k) => {
                        self.remember(&key, k);
                        k
                    }
                    // A candidate the device cannot run is not the user's problem: fall back.
                    Err(_) => MatmulKernel::default_for(dev, spec),
                }
            }
            None => MatmulKernel::default_for(dev, spec),
        };
        self.used.lock().expect("tuner poisoned").insert(key, kernel.name());
        kernel
    }

    fn remember(&self, key: &str, kernel: MatmulKernel) {
        self.remember_name(key, &kernel.name());
    }
}

fn read_cache(path: &Path, device_key: &str) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return BTreeMap::new() };
    if v.get("device").and_then(|d| d.as_str()) != Some(device_key) {
        return BTreeMap::new();
    }
    let Some(map) = v.get("matmul").and_then(|m| m.as_object()) else { return BTreeMap::new() };
    map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

fn write_cache(path: &Path, device_key: &str, map: &BTreeMap<String, String>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let body = serde_json::json!({ "device": device_key, "matmul": map });
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("tune"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string_pretty(&body).map_err(std::io::Error::other)?.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The candidates timed for `spec` on `dev`.
pub fn candidates(dev: &Device, spec: &MatmulSpec) -> Vec<MatmulKernel> {
    let mut list = Vec::new();
    if use_kdot(spec.m, spec.n, spec.k) {
        list.push(MatmulKernel::Kdot);
    }
    if dev.is_cpu() {
        // The hand-written kernels load too much per multiply-add to win on a CPU driver.
        list.extend(register_candidates(spec).into_iter().take(4).map(MatmulKernel::Register));
        if let Some(lanes) = dev.subgroup_size() {
            list.extend(subgroup_candidates(spec, lanes).into_iter().take(2).map(MatmulKernel::Subgroup));
        }
    } else {
        list.push(MatmulKernel::Tiled);
        list.push(MatmulKernel::Blocked);
        // Small register blocks fit a GPU's registers; large ones spill.
        let small = register_candidates(spec).into_iter().filter(|t| t.rows * t.cols <= 64).take(3);
        list.extend(small.map(MatmulKernel::Register));
        if let Some(lanes) = dev.subgroup_size() {
            // Where lanes loading one address are served by one load anyway, sharing gains
            // little: one small tile, kept only if it measures faster.
            let small = subgroup_candidates(spec, lanes).into_iter().find(|t| t.block.rows * t.block.cols <= 64);
            list.extend(small.map(MatmulKernel::Subgroup));
        }
    }
    list
}

/// Times every candidate for `spec` and returns the fastest.
fn measure(dev: &Device, spec: &MatmulSpec) -> Result<MatmulKernel> {
    let a = Tensor::zeros(dev, &[spec.m * spec.k])?;
    let b = Tensor::zeros(dev, &[spec.k * spec.n])?;
    let c = Tensor::zeros(dev, &[spec.m * spec.n])?;
    let mut best: Option<(f64, MatmulKernel)> = None;
    for kernel in candidates(dev, spec) {
        let d = matmul(dev, &c, &a, &b, *spec, kernel)?;
        if let Some(secs) = time(dev, &d, best.map(|(t, _)| t))? {
            if best.is_none_or(|(t, _)| secs < t) {
                best = Some((secs, kernel));
            }
        }
    }
    Ok(best.map(|(_, k)| k).unwrap_or_else(|| MatmulKernel::default_for(dev, spec)))
}

/// Seconds per run of `d`: one warm-up run (which compiles), then the best of two timings of
/// enough runs to last [`MIN_SECONDS`]. `None` as soon as a run shows it cannot beat `best`
/// (a slow candidate on a CPU driver can take a second a run).
fn time(dev: &Device, d: &[Dispatch], best: Option<f64>) -> Result<Option<f64>> {
    let run = |reps: usize| time_recorded(dev, reps, &|p| d.iter().for_each(|d| d.record(p)));
    let hopeless = |t: f64| best.is_some_and(|b| t > 1.5 * b);
    let warm = run(1)?;
    if best.is_some_and(|b| warm > 4.0 * b) {
        return Ok(None);
    }
    let mut secs = run(1)?;
    if hopeless(secs) {
        return Ok(None);
    }
    let reps = ((MIN_SECONDS / secs.max(1e-7)).ceil() as usize).clamp(1, 200);
    for _ in 0..2 {
        secs = secs.min(run(reps)?);
    }
    Ok(Some(secs))
}

/// The kernel for `spec` on `dev`, as [`Tuner::matmul_kernel`] decides.
pub fn matmul_kernel(dev: &Device, spec: &MatmulSpec) -> MatmulKernel {
    dev.tuner().matmul_kernel(dev, spec)
}

// Convolutions: the direct kernels or im2col with matrix products, per shape.

/// The cache key of a convolution: `conv:` and its geometry, with `+bw` when the plan also runs
/// its backward pass (the two paths' costs differ most there). The prefix keeps these keys
/// apart from the matrix products' in the same table.
pub fn conv_key(s: &ConvShape, backward: bool) -> String {
    format!(
        "conv:{}x{}x{}x{}-{}k{}x{}s{}p{}{}",
        s.batch,
        s.cin,
        s.h,
        s.w,
        s.cout,
        s.kh,
        s.kw,
        s.stride,
        s.pad,
        if backward { "+bw" } else { "" }
    )
}

impl Tuner {
    /// How the convolution `s` runs on `dev`: the cached choice, else (when tuning and the
    /// convolution is large enough to matter) the faster of the two paths timed forward and,
    /// with `backward`, backward together, else [`ConvAlgo::default_for`].
    pub fn conv_algo(&self, dev: &Device, s: &ConvShape, backward: bool) -> ConvAlgo {
        if !direct_supported(s) {
            return ConvAlgo::Im2col;
        }
        let key = conv_key(s, backward);
        let flops = s.flops() * if backward { 3.0 } else { 1.0 };
        let tune = match self.mode {
            TuneMode::Off => false,
            TuneMode::On => flops >= TUNE_MIN_FLOPS,
            TuneMode::All => true,
        };
        let parse = |v: &String| ConvAlgo::parse(v);
        let mut cached = self.known.lock().expect("tuner poisoned").get(&key).and_then(parse);
        if cached.is_none() && tune {
            if let Some(path) = &self.path {
                cached = read_cache(path, &self.device_key).get(&key).and_then(parse);
            }
        }
        let algo = match cached {
            Some(a) => a,
            None if tune => match measure_conv(dev, s, backward) {
                Ok(a) => {
                    self.remember_name(&key, a.name());
                    a
                }
                Err(_) => ConvAlgo::default_for(dev),
            },
            None => ConvAlgo::default_for(dev),
        };
        self.used.lock().expect("tuner poisoned").insert(key, algo.name().to_string());
        algo
    }

    /// Records `value` for `key` in memory and in the cache file.
    fn remember_name(&self, key: &str, value: &str) {
        let mut known = self.known.lock().expect("tuner poisoned");
        known.insert(key.to_string(), value.to_string());
        if let Some(path) = &self.path {
            // Another process may have added shapes meanwhile: merge before writing, and keep
            // what it wrote first, so that every later run agrees on one choice per shape.
            let mut merged = read_cache(path, &self.device_key);
            for (k, v) in known.iter() {
                merged.entry(k.clone()).or_insert_with(|| v.clone());
            }
            if let Err(e) = write_cache(path, &self.device_key, &merged) {
                eprintln!("warning: could not save kernel choices to {}: {e}", path.display());
            }
        }
    }
}

/// Times both paths of `s` (zero data; the matrix products of the im2col path get their own
/// tuned kernels first) and returns the faster.
fn measure_conv(dev: &Device, s: &ConvShape, backward: bool) -> Result<ConvAlgo> {
    let (nx, nw, ny) = s.sizes()?;
    let x = Tensor::zeros(dev, &[nx])?;
    let w = Tensor::zeros(dev, &[nw])?;
    let y = Tensor::zeros(dev, &[ny])?;
    let dw = Tensor::zeros(dev, &[nw])?;
    let (dx, dy) = (Tensor::zeros(dev, &[nx])?, Tensor::zeros(dev, &[ny])?);
    let mut best: Option<(f64, ConvAlgo)> = None;
    for algo in [ConvAlgo::default_for(dev), other_algo(ConvAlgo::default_for(dev))] {
        let d = match algo {
            ConvAlgo::Im2col => {
                let scratch = ConvScratch::new(dev, s, backward)?;
                let mut d = conv2d_forward(dev, &y, &x, &w, &scratch, s, MatmulKernel::Auto)?;
                if backward {
                    d.extend(conv2d_backward(dev, &dw, Some(&dx), &dy, &w, &scratch, s, MatmulKernel::Auto)?);
                }
                d
            }
            ConvAlgo::Direct => {
                let scratch = DirectScratch::new(dev, s, backward)?;
                let mut d = direct_forward(dev, &y, &x, &w, None, false, &scratch, s)?;
                if backward {
                    d.extend(direct_backward(dev, &dw, Some(&dx), &dy, &x, &w, &scratch, s)?);
                }
                d
            }
        };
        if let Some(secs) = time(dev, &d, best.map(|(t, _)| t))? {
            if best.is_none_or(|(t, _)| secs < t) {
                best = Some((secs, algo));
            }
        }
    }
    Ok(best.map(|(_, a)| a).unwrap_or_else(|| ConvAlgo::default_for(dev)))
}

fn other_algo(a: ConvAlgo) -> ConvAlgo {
    match a {
        ConvAlgo::Im2col => ConvAlgo::Direct,
        ConvAlgo::Direct => ConvAlgo::Im2col,
    }
}

/// How the convolution `s` runs on `dev`, as [`Tuner::conv_algo`] decides.
pub fn conv_algo(dev: &Device, s: &ConvShape, backward: bool) -> ConvAlgo {
    dev.tuner().conv_algo(dev, s, backward)
}

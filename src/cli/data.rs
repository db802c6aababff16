//! `asgd data`: download datasets (`fetch`) and check what is on disk (`info`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use asgd_engine::data::{self, DataKind, FetchEvent};

use super::common::{fraction, parse_data, DataArgs, DataSpec};

/// `asgd data` subcommands.
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Download a dataset's files and check each one's sha256.
    ///
    /// The files go into --dir, by default the folder asgd reads by default:
    /// $ASGD_DATA_DIR/NAME, else $XDG_CACHE_HOME/asgd/NAME, else ~/.cache/asgd/NAME.
    Fetch {
        /// mnist, fashion-mnist or cifar10 (digits is built into asgd).
        #[arg(value_parser = parse_kind)]
        dataset: DataKind,
        /// Folder to put the files in.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Folder URL to download from instead of the built-in mirrors (several: comma-separated;
        /// also read from $ASGD_DATA_MIRROR). It must serve the same files under the same names.
        #[arg(long)]
        mirror: Option<String>,
    },
    /// Load a dataset and print its sample counts, image shape and class histogram.
    Info {
        /// digits, mnist, fashion-mnist, cifar10, or a FILE.safetensors of your own.
        #[arg(value_parser = parse_data)]
        dataset: DataSpec,
        /// Folder holding the files (default: where `asgd data fetch` puts them; digits: built in).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The test set of a FILE.safetensors: another file of the same layout.
        #[arg(long, conflicts_with = "test_split")]
        test_data: Option<PathBuf>,
        /// The test set of a FILE.safetensors: this fraction of the file, its last rows.
        #[arg(long, value_parser = fraction)]
        test_split: Option<f64>,
    },
}

fn parse_kind(s: &str) -> Result<DataKind, String> {
    DataKind::parse(s).map_err(|e| e.to_string())
}

/// Runs an `asgd data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Fetch { dataset, dir, mirror } => fetch(dataset, dir, mirror.as_deref()),
        DataCommand::Info { dataset, data_dir, test_data, test_split } => {
            info(DataArgs { data: dataset, data_dir, test_data, test_split, augment: Some(false) })
        }
    }
}

fn fetch(kind: DataKind, dir: Option<PathBuf>, mirror: Option<&str>) -> anyhow::Result<ExitCode> {
    if kind == DataKind::Digits {
        println!("digits is built into asgd; there is nothing to fetch");
        return Ok(ExitCode::SUCCESS);
    }
    let dir = dir.unwrap_or_else(|| data::default_dir(kind));
    let mut progress = Progress { live: std::io::stderr().is_terminal(), shown: 0 };
    let pins = test_pins(kind)?;
    data::fetch_pinned(kind, &dir, mirror, &pins, &mut |event| progress.show(event))?;
    println!("{} is in {}", kind.name(), dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The checksums a download must match: the built-in ones, except in a debug build (what
/// `cargo test` runs) when `ASGD_TEST_FETCH_PINS` is set, so that the binary's tests can serve
/// small made-up files: `FILE=SHA256[:SIZE]`, comma-separated, one per file of `data::pins`.
/// A release build never reads it.
fn test_pins(kind: DataKind) -> anyhow::Result<Vec<data::Pin>> {
    let pins = data::pins(kind);
    let Some(spec) = std::env::var("ASGD_TEST_FETCH_PINS").ok().filter(|_| cfg!(debug_assertions)) else {
        return Ok(pins);
    };
    let parse = |item: &str| -> Option<data::Pin> {
        let (file, rest) = item.trim().split_once('=')?;
        let (sha256, size) = match rest.split_once(':') {
            Some((sum, size)) => (sum, Some(size.parse().ok()?)),
            None => (rest, None),
        };
        Some(data::Pin { file: file.to_string(), sha256: sha256.to_string(), size })
    };
    let given = spec.split(',').map(|item| parse(item).ok_or(item)).collect::<Result<Vec<_>, _>>();
    given.map_err(|item| anyhow::anyhow!("ASGD_TEST_FETCH_PINS: `{item}` is not FILE=SHA256[:SIZE]"))
}

/// Draws one line per file on stderr; on a terminal the line is updated as bytes arrive.
struct Progress {
    live: bool,
    /// Bytes done when the line was last redrawn.
    shown: u64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Progress {
    fn show(&mut self, event: FetchEvent) {
        let mut err = std::io::stderr().lock();
        // Progress output is best effort: a closed stderr must not stop a download.
        let _ = match event {
            FetchEvent::AlreadyPresent { file } => writeln!(err, "{file}: already present and verified"),
            FetchEvent::Started { file, url, total } => {
                self.shown = 0;
                let size = total.map(|t| format!(" ({:.1} MiB)", mib(t))).unwrap_or_default();
                if self.live {
                    write!(err, "{file}: downloading from {url}{size}")
                } else {
                    writeln!(err, "{file}: downloading from {url}{size}")
                }
            }
            FetchEvent::Progress { file, done, total } if self.live && done - self.shown >= 1 << 20 => {
                self.shown = done;
                let pct =
                    total.map(|t| format!(" {:>3.0}%", 100.0 * done as f64 / t.max(1) as f64)).unwrap_or_default();
                write!(err, "\r\x1b[2K{file}:{pct} {:.1} MiB", mib(done))
            }
            FetchEvent::Progress { .. } => Ok(()),
            FetchEvent::MirrorFailed { file, url, reason } => {
                let clear = if self.live { "\r\x1b[2K" } else { "" };
                writeln!(err, "{clear}{file}: {url} failed: {reason}")
            }
            FetchEvent::Done { file, path } => {
                let clear = if self.live { "\r\x1b[2K" } else { "" };
                writeln!(err, "{clear}{file}: verified, saved as {}", path.display())
            }
            FetchEvent::Unpacked { file, files } => {
                let clear = if self.live { "\r\x1b[2K" } else { "" };
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                writeln!(err, "{clear}{file}: verified, unpacked {}", names.join(", "))
            }
        };
    }
}

fn info(args: DataArgs) -> anyhow::Result<ExitCode> {
    let splits = args.load()?;
    let source = match (&args.data, args.data_dir.as_deref()) {
        (DataSpec::File(path), _) => path.display().to_string(),
        (_, Some(d)) => d.display().to_string(),
        (DataSpec::Named(DataKind::Digits), None) => "built into asgd".to_string(),
        (DataSpec::Named(kind), None) => data::default_dir(*kind).display().to_string(),
    };
    let [c, h, w] = splits.train.shape;
    println!("dataset  {} ({source})", args.data.name());
    println!("train    {} samples", splits.train.len());
    println!("test     {} samples", splits.test.len());
    println!("shape    [{c}, {h}, {w}] (channels, height, width)");
    println!("classes  {}", splits.train.classes);
    let (mean, std) = mean_std(&splits.train.images);
    println!("pixels   train mean {mean:.4}, std {std:.4} after normalisation");
    let row = |label: &str, counts: Vec<usize>| {
        let cells: String = counts.iter().map(|n| format!("{n:>7}")).collect();
        println!("{label:<8} {cells}");
    };
    row("class", (0..splits.train.classes).collect());
    row("train", splits.train.class_counts());
    row("test", splits.test.class_counts());
    Ok(ExitCode::SUCCESS)
}

fn mean_std(xs: &[f32]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = xs.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

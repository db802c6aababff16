//! Downloading MNIST, Fashion-MNIST and CIFAR-10 with checksums.
//!
//! Each of the four gzipped idx files of MNIST and Fashion-MNIST is streamed to `NAME.gz.part`
//! in the target folder, its decompressed content checked against the sha256 below, synced to
//! disk and only then renamed to `NAME.gz`, so an interrupted or corrupt download never leaves a
//! file that looks complete.
//!
//! CIFAR-10 comes as one tarball, `cifar-10-binary.tar.gz`: it is streamed to `NAME.part`, its
//! size and sha256 checked, its six `.bin` files (and `batches.meta.txt`) unpacked beside it
//! through temporary files and renamed into place only once all are there and well-formed (see
//! [`super::archive`]); the tarball is then deleted and `cifar-10-binary.tar.gz.sha256`, holding
//! its checksum, records which archive the files came from.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::idx::{self, IDX_FILES};
use super::{archive, cifar, unavailable, DataKind, Why};
use crate::error::{EngineError, Result};
use crate::io::atomic;

/// Mirrors tried in order for MNIST (each a folder URL ending in `/`).
pub const MNIST_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];
/// Mirrors tried in order for Fashion-MNIST.
pub const FASHION_MNIST_MIRRORS: [&str; 1] = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];
/// Mirrors tried in order for CIFAR-10: the dataset authors' own page.
pub const CIFAR10_MIRRORS: [&str; 1] = ["https://www.cs.toronto.edu/~kriz/"];
/// The CIFAR-10 binary tarball's name.
pub const CIFAR10_TARBALL: &str = "cifar-10-binary.tar.gz";

/// sha256 of the decompressed MNIST files, in the order of [`IDX_FILES`].
const MNIST_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];
/// sha256 of the decompressed Fashion-MNIST files, in the order of [`IDX_FILES`].
const FASHION_MNIST_SHA256: [&str; 4] = [
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
];

/// sha256 and size in bytes of the CIFAR-10 binary tarball as the authors serve it (its MD5,
/// the one the authors publish, is `c32a1d4ab5d03f1284b67883e8d87530`).
const CIFAR10_SHA256: &str = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
const CIFAR10_SIZE: u64 = 170_052_171;

/// What one downloaded file must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The file's name on the mirror, e.g. `train-images-idx3-ubyte.gz`.
    pub file: String,
    /// Lowercase hex sha256: of the decompressed content for the gzipped idx files of MNIST and
    /// Fashion-MNIST (so a copy compressed otherwise passes too), of the file as downloaded for
    /// the CIFAR-10 tarball.
    pub sha256: String,
    /// Size in bytes as downloaded, when it is pinned too.
    pub size: Option<u64>,
}

/// The files [`fetch`] downloads for `kind` and what each must match: the four gzipped idx
/// files of MNIST or Fashion-MNIST, the one tarball of CIFAR-10, none for digits.
pub fn pins(kind: DataKind) -> Vec<Pin> {
    let idx = |sums: [&str; 4]| {
        IDX_FILES
            .iter()
            .zip(sums)
            .map(|(stem, sum)| Pin { file: format!("{stem}.gz"), sha256: sum.into(), size: None })
            .collect()
    };
    match kind {
        DataKind::Digits => Vec::new(),
        DataKind::Mnist => idx(MNIST_SHA256),
        DataKind::FashionMnist => idx(FASHION_MNIST_SHA256),
        DataKind::Cifar10 => {
            vec![Pin { file: CIFAR10_TARBALL.into(), sha256: CIFAR10_SHA256.into(), size: Some(CIFAR10_SIZE) }]
        }
    }
}

/// Environment variable that overrides the mirror list (same syntax as the `mirror` argument).
pub const MIRROR_ENV: &str = "ASGD_DATA_MIRROR";

/// What [`fetch`] is doing, for drawing progress. `file` is the name fetched, e.g.
/// `train-images-idx3-ubyte.gz`; byte counts are of the compressed file as sent.
#[derive(Clone, Copy, Debug)]
pub enum FetchEvent<'a> {
    /// The file is already there with the right checksum and is not downloaded again.
    AlreadyPresent {
        /// File name.
        file: &'a str,
    },
    /// A download from `url` begins; `total` is the size in bytes if the server said.
    Started {
        /// File name.
        file: &'a str,
        /// Full URL.
        url: &'a str,
        /// Size in bytes, when known.
        total: Option<u64>,
    },
    /// `done` bytes of `file` have arrived (of `total`, when known).
    Progress {
        /// File name.
        file: &'a str,
        /// Bytes received so far.
        done: u64,
        /// Size in bytes, when known.
        total: Option<u64>,
    },
    /// The download from `url` failed for `reason`; the next mirror, if any, is tried.
    MirrorFailed {
        /// File name.
        file: &'a str,
        /// Full URL.
        url: &'a str,
        /// One sentence.
        reason: &'a str,
    },
    /// The file is downloaded, verified and in place at `path`.
    Done {
        /// File name.
        file: &'a str,
        /// Final location.
        path: &'a Path,
    },
    /// The archive `file` is downloaded and verified, and `files` are unpacked from it into
    /// their final places; the archive itself is deleted.
    Unpacked {
        /// Archive name.
        file: &'a str,
        /// The unpacked files' final locations.
        files: &'a [std::path::PathBuf],
    },
}

/// The folder URLs to try for `kind`: `mirror` if given, else `$ASGD_DATA_MIRROR` if set, else the
/// built-in list. An override may list several URLs separated by commas; a missing trailing `/`
/// is added.
pub fn mirrors(kind: DataKind, mirror: Option<&str>) -> Vec<String> {
    let env = std::env::var(MIRROR_ENV).ok().filter(|s| !s.trim().is_empty());
    let list: Vec<String> = match mirror.map(str::to_string).or(env) {
        Some(m) => m.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        None => match kind {
            DataKind::FashionMnist => FASHION_MNIST_MIRRORS.iter().map(|s| s.to_string()).collect(),
            DataKind::Cifar10 => CIFAR10_MIRRORS.iter().map(|s| s.to_string()).collect(),
            _ => MNIST_MIRRORS.iter().map(|s| s.to_string()).collect(),
        },
    };
    list.into_iter().map(|m| if m.ends_with('/') { m } else { m + "/" }).collect()
}

/// Downloads the files of `kind` into `dir` (created if needed), trying each mirror in turn
/// (see [`mirrors`]) and verifying each file against [`pins`]: the four gzipped idx files of
/// MNIST or Fashion-MNIST, or the CIFAR-10 tarball, which is unpacked. What is already present
/// and verified is skipped. Digits is embedded in the binary: nothing is fetched for it.
///
/// On failure no file with bad content is left behind; the error names every URL tried.
pub fn fetch(kind: DataKind, dir: &Path, mirror: Option<&str>, progress: &mut dyn FnMut(FetchEvent)) -> Result<()> {
    fetch_pinned(kind, dir, mirror, &pins(kind), progress)
}

/// As [`fetch`], but checking the downloads against `pins` instead of the built-in ones (the
/// same files, in the order of [`pins`]): for a mirror that serves other content of the same
/// format, such as a small copy made for a test.
pub fn fetch_pinned(
    kind: DataKind,
    dir: &Path,
    mirror: Option<&str>,
    pins: &[Pin],
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<()> {
    let expected = self::pins(kind).len();
    if pins.len() != expected {
        return Err(EngineError::InvalidArgument(format!(
            "fetching {} takes {expected} pin{}, one per file of `pins`, not {}; pass them in that order",
            kind.name(),
            if expected == 1 { "" } else { "s" },
            pins.len()
        )));
    }
    if kind == DataKind::Digits {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let mirrors = mirrors(kind, mirror);
    if mirrors.is_empty() {
        return Err(unavailable(kind, dir, false, Why::NoMirror));
    }
    let agent = agent();
    if kind == DataKind::Cifar10 {
        return fetch_cifar10(&agent, dir, &mirrors, &pins[0], progress);
    }
    for pin in pins {
        let (file, sum) = (pin.file.as_str(), pin.sha256.as_str());
        let target = dir.join(file);
        if target.is_file() && verify(&target, sum).is_ok() {
            progress(FetchEvent::AlreadyPresent { file });
            continue;
        }
        let part = dir.join(format!("{file}.part"));
        let mut failures = Vec::new();
        for base in &mirrors {
            let url = format!("{base}{file}");
            let outcome = download(&agent, &url, &part, file, progress)
                .and_then(|()| check_size(&part, pin.size))
                .and_then(|()| verify(&part, sum))
                .and_then(|()| atomic::commit(&part, &target).map_err(|e| e.to_string()));
            match outcome {
                Ok(()) => {
                    progress(FetchEvent::Done { file, path: &target });
                    failures.clear();
                    break;
                }
                Err(reason) => {
                    let _ = std::fs::remove_file(&part);
                    progress(FetchEvent::MirrorFailed { file, url: &url, reason: &reason });
                    failures.push(format!("{url}: {reason}"));
                }
            }
        }
        if !failures.is_empty() {
            return Err(unavailable(kind, dir, false, Why::DownloadFailed { file: file.to_string(), failures }));
        }
    }
    Ok(())
}

/// Downloads, verifies and unpacks the CIFAR-10 tarball (see the module doc).
fn fetch_cifar10(
    agent: &ureq::Agent,
    dir: &Path,
    mirrors: &[String],
    pin: &Pin,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<()> {
    let file = pin.file.as_str();
    let stamp = dir.join(format!("{file}.sha256"));
    if cifar10_present(dir, &stamp, &pin.sha256) {
        progress(FetchEvent::AlreadyPresent { file });
        return Ok(());
    }
    let members = archive::Members {
        required: &cifar::DATA_FILES,
        optional: &[cifar::META_FILE],
        folders: &[cifar::TARBALL_FOLDER],
    };
    let check = |name: &str, path: &Path| -> std::result::Result<(), String> {
        if name == cifar::META_FILE {
            return Ok(());
        }
        let len = std::fs::metadata(path).map_err(|e| format!("cannot read {name} ({e})"))?.len();
        if len == 0 || !len.is_multiple_of(cifar::RECORD_BYTES as u64) {
            return Err(format!(
                "{name} in the archive is {len} bytes, not a whole number of {}-byte records; the archive is not CIFAR-10's binary version",
                cifar::RECORD_BYTES
            ));
        }
        Ok(())
    };
    let part = dir.join(format!("{file}.part"));
    let mut failures = Vec::new();
    for base in mirrors {
        let url = format!("{base}{file}");
        let outcome = download(agent, &url, &part, file, progress)
            .and_then(|()| check_size(&part, pin.size))
            .and_then(|()| verify_raw(&part, &pin.sha256))
            .and_then(|()| archive::extract(&part, dir, &members, &check))
            .and_then(|files| {
                atomic::write_atomic(&stamp, format!("{}\n", pin.sha256).as_bytes()).map_err(|e| e.to_string())?;
                Ok(files)
            });
        let _ = std::fs::remove_file(&part);
        match outcome {
            Ok(files) => {
                progress(FetchEvent::Unpacked { file, files: &files });
                return Ok(());
            }
            Err(reason) => {
                progress(FetchEvent::MirrorFailed { file, url: &url, reason: &reason });
                failures.push(format!("{url}: {reason}"));
            }
        }
    }
    Err(unavailable(DataKind::Cifar10, dir, false, Why::DownloadFailed { file: file.to_string(), failures }))
}

/// True when the six data files are in `dir`, each a whole number of records, and `stamp` says
/// they came from the archive with sha256 `sha256`.
fn cifar10_present(dir: &Path, stamp: &Path, sha256: &str) -> bool {
    let stamped = std::fs::read_to_string(stamp).is_ok_and(|s| s.trim() == sha256);
    stamped
        && cifar::DATA_FILES.iter().all(|name| {
            std::fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.len() > 0 && m.len().is_multiple_of(cifar::RECORD_BYTES as u64))
        })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        // The files are gzip already: ask for them as they are, not re-encoded.
        .accept_encoding("")
        .build()
        .into()
}

/// Streams `url` into `part` and syncs it. The reason for a failure is one sentence.
fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    file: &str,
    progress: &mut dyn FnMut(FetchEvent),
) -> std::result::Result<(), String> {
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
        e => format!("the request failed ({e})"),
    })?;
    let body = response.body_mut();
    let total = body.content_length();
    progress(FetchEvent::Started { file, url, total });
    // `with_config()` starts without a size limit, unlike `read_to_vec()` (10 MB).
    let mut reader = body.with_config().reader();
    let mut out = File::create(part).map_err(|e| format!("cannot create {} ({e})", part.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("the download broke off after {done} bytes ({e})"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| format!("cannot write {} ({e})", part.display()))?;
        done += n as u64;
        progress(FetchEvent::Progress { file, done, total });
    }
    if total.is_some_and(|t| t != done) {
        return Err(format!("the server announced {} bytes but sent {done}", total.unwrap_or(0)));
    }
    out.sync_all().map_err(|e| format!("cannot sync {} ({e})", part.display()))
}

/// Checks that `path` is `expected` bytes long, when a size is pinned.
fn check_size(path: &Path, expected: Option<u64>) -> std::result::Result<(), String> {
    let Some(expected) = expected else { return Ok(()) };
    let len = std::fs::metadata(path).map_err(|e| format!("cannot read {} ({e})", path.display()))?.len();
    if len == expected {
        Ok(())
    } else {
        Err(format!(
            "size mismatch: the file is {len} bytes, expected {expected}, so it is cut short or not the \
             canonical one and was deleted"
        ))
    }
}

/// Checks that the bytes of `path` as they are have sha256 `expected` (lowercase hex).
fn verify_raw(path: &Path, expected: &str) -> std::result::Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "checksum mismatch: the file has sha256 {got}, expected {expected}, so it is corrupt or not \
             the canonical one and was deleted"
        ))
    }
}

/// Checks that the decompressed content of `path` has sha256 `expected` (lowercase hex).
fn verify(path: &Path, expected: &str) -> std::result::Result<(), String> {
    let content = idx::read_maybe_gzip(path).map_err(|e| e.to_string())?;
    let got = sha256_hex(&content);
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "checksum mismatch: the decompressed content has sha256 {got}, expected {expected}, \
             so the file is corrupt or not the canonical one and was deleted"
        ))
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

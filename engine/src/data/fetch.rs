//! Downloading MNIST and Fashion-MNIST with checksums.
//!
//! Each of the four gzipped idx files is streamed to `NAME.gz.part` in the target folder, its
//! decompressed content checked against the sha256 below, synced to disk and only then renamed
//! to `NAME.gz`, so an interrupted or corrupt download never leaves a file that looks complete.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::idx::{self, IDX_FILES};
use super::DataKind;
use crate::error::{EngineError, Result};
use crate::io::atomic;

/// Mirrors tried in order for MNIST (each a folder URL ending in `/`).
pub const MNIST_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];
/// Mirrors tried in order for Fashion-MNIST.
pub const FASHION_MNIST_MIRRORS: [&str; 1] = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];

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
            _ => MNIST_MIRRORS.iter().map(|s| s.to_string()).collect(),
        },
    };
    list.into_iter().map(|m| if m.ends_with('/') { m } else { m + "/" }).collect()
}

/// Downloads the four gzipped idx files of `kind` into `dir` (created if needed), trying each
/// mirror in turn (see [`mirrors`]) and verifying each file's decompressed sha256. Files already
/// present and verified are skipped. Digits is embedded in the binary: nothing is fetched for it.
///
/// On failure no `NAME.gz` with bad content is left behind; the error names every URL tried.
pub fn fetch(kind: DataKind, dir: &Path, mirror: Option<&str>, progress: &mut dyn FnMut(FetchEvent)) -> Result<()> {
    let sums = match kind {
        DataKind::Digits => return Ok(()),
        DataKind::Mnist => MNIST_SHA256,
        DataKind::FashionMnist => FASHION_MNIST_SHA256,
    };
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let mirrors = mirrors(kind, mirror);
    if mirrors.is_empty() {
        return Err(EngineError::InvalidArgument(
            "the mirror list is empty; pass --mirror URL of a folder serving the .gz files".to_string(),
        ));
    }
    let agent = agent();
    for (stem, sum) in IDX_FILES.iter().zip(sums) {
        let file = format!("{stem}.gz");
        let target = dir.join(&file);
        if target.is_file() && verify(&target, sum).is_ok() {
            progress(FetchEvent::AlreadyPresent { file: &file });
            continue;
        }
        let part = dir.join(format!("{file}.part"));
        let mut failures = Vec::new();
        for base in &mirrors {
            let url = format!("{base}{file}");
            let outcome = download(&agent, &url, &part, &file, progress)
                .and_then(|()| verify(&part, sum))
                .and_then(|()| atomic::commit(&part, &target).map_err(|e| e.to_string()));
            match outcome {
                Ok(()) => {
                    progress(FetchEvent::Done { file: &file, path: &target });
                    failures.clear();
                    break;
                }
                Err(reason) => {
                    let _ = std::fs::remove_file(&part);
                    progress(FetchEvent::MirrorFailed { file: &file, url: &url, reason: &reason });
                    failures.push(format!("{url}: {reason}"));
                }
            }
        }
        if !failures.is_empty() {
            return Err(EngineError::Data(format!(
                "could not download {file} into {}: {}; check the network connection, or pass \
                 --mirror URL of a folder that serves the {} .gz files",
                dir.display(),
                failures.join("; "),
                kind.name()
            )));
        }
    }
    Ok(())
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

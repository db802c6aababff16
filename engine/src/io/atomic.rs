//! Atomic file replacement: write a temporary file beside the target, sync it, rename it over
//! the target, sync the folder. A crash or error at any point leaves either the old file or the
//! new one, never a mix.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{EngineError, Result};

/// The folder holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A fresh temporary name beside `path`: `.NAME.tmp-PID-N` in the same folder, so the final
/// rename never crosses file systems.
pub fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent_of(path).join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Renames the finished, synced file `tmp` to `path` and syncs the folder so the rename is
/// durable (where the platform can sync a folder; best effort elsewhere).
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| EngineError::io(path, e))?;
    if let Ok(dir) = File::open(parent_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Fails with a clear message when the folder that would hold `path` does not exist; `what`
/// names the content (`metrics`, `a checkpoint`). Folders are not created on purpose, so a
/// mistyped path is reported rather than silently made.
pub fn require_parent(path: &Path, what: &str) -> Result<()> {
    let dir = parent_of(path);
    if dir.is_dir() {
        return Ok(());
    }
    Err(EngineError::InvalidArgument(format!(
        "cannot write {what} to {}: the folder {} does not exist; create it first",
        path.display(),
        dir.display()
    )))
}

/// Writes `bytes` to `path` atomically (see the module doc). The folder must exist; on error the
/// temporary file is removed and any previous `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    require_parent(path, "a file")?;
    let tmp = temp_path_for(path);
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| EngineError::io(&tmp, e))
        .and_then(|()| commit(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

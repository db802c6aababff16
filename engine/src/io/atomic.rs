//! Atomic file replacement: write a temporary file beside the target, sync it, rename it over
//! the target, sync the folder. A crash or error at any point leaves either the old file or the
//! new one, never a mix.
//!
//! The path may be a symbolic link: the file it points to is replaced (the link stays). A path
//! that exists and is not a regular file (a folder, a FIFO, a device) is refused rather than
//! replaced. Temporary files left by a writer that was killed are removed by the next write.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// What a path that exists but is not a regular file is, for messages.
pub(crate) fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// The file that writing `what` (`a checkpoint`, `metrics`) to `path` would replace: `path`
/// itself, or, through symbolic links, the file they point to (which need not exist yet).
///
/// Errors: the path (or what its links point to) exists and is not a regular file, or the
/// links form a loop.
pub fn resolve_target(path: &Path, what: &str) -> Result<PathBuf> {
    let mut target = path.to_path_buf();
    // As many links as Linux follows before giving up with ELOOP.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(target),
            Err(e) => return Err(EngineError::io(&target, e)),
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|e| EngineError::io(&target, e))?;
                target = if link.is_absolute() { link } else { parent_of(&target).join(link) };
            }
            Ok(m) if m.is_file() => return Ok(target),
            Ok(m) => {
                let shown =
                    if target == path { String::new() } else { format!(" (through links, {})", target.display()) };
                return Err(EngineError::InvalidArgument(format!(
                    "cannot write {what} to {}{shown}: it is {}, not a regular file; pass the path of a file",
                    path.display(),
                    kind_of(&m)
                )));
            }
        }
    }
    Err(EngineError::InvalidArgument(format!(
        "cannot write {what} to {}: its symbolic links form a loop; pass the path of a file",
        path.display()
    )))
}

/// How recently a temporary file may have been written and still be removed as stale: a
/// live writer renames its file within seconds, so one untouched this long is not being
/// written (a guard where a writer's process cannot be seen, e.g. another PID namespace).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Whether process `pid` may be running. Where that cannot be told, `true`: keep its file.
fn may_be_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Whether `name` is a temporary file that [`temp_path_for`] made for the file `target_name`,
/// and if so the process that made it.
fn temp_writer(name: &str, target_name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_prefix(target_name)?.strip_prefix(".tmp-")?;
    let (pid, n) = rest.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporary files of `path` ([`temp_path_for`]'s names) that a writer killed
/// mid-write left behind: those of a process no longer running, untouched for a minute (on
/// systems where a process cannot be looked up, untouched for a day). Never this process's
/// own, nor one a live writer may still rename. Best effort: errors are ignored.
pub fn remove_stale_temps(path: &Path) {
    let Some(target_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let Ok(entries) = std::fs::read_dir(parent_of(path)) else { return };
    let quiet_for = if cfg!(target_os = "linux") { STALE_AFTER } else { Duration::from_secs(24 * 3600) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_writer(&name.to_string_lossy(), &target_name) else { continue };
        if pid == std::process::id() || (cfg!(target_os = "linux") && may_be_alive(pid)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let untouched = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
        if meta.is_file() && untouched.is_some_and(|d| d >= quiet_for) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
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

/// Writes `bytes` to `path` atomically (see the module doc), through symbolic links to the file
/// they point to. The folder must exist; on error the temporary file is removed and any
/// previous file is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = resolve_target(path, "a file")?;
    let path = target.as_path();
    require_parent(path, "a file")?;
    remove_stale_temps(path);
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

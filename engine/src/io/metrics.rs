//! JSON Lines metrics: one JSON object a line, flushed as it is written, so a crash loses
//! nothing already reported.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::atomic::{require_parent, resolve_target};
use crate::error::{EngineError, Result};

/// Writes one JSON object a line to a file.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Creates (or truncates) `path`. Its folder must exist: it is not created, so a mistyped
    /// path is reported rather than silently making folders.
    pub fn create(path: &Path) -> Result<Self> {
        Self::open(path, OpenOptions::new().write(true).create(true).truncate(true))
    }

    /// Opens `path` for appending, creating it if missing (for a resumed run).
    pub fn append(path: &Path) -> Result<Self> {
        Self::open(path, OpenOptions::new().append(true).create(true))
    }

    /// A path that exists and is not a regular file (a FIFO would block, a device would be
    /// written to) is refused; a symbolic link is followed to its file.
    fn open(path: &Path, options: &OpenOptions) -> Result<Self> {
        require_parent(&resolve_target(path, "metrics")?, "metrics")?;
        let file = options.open(path).map_err(|e| EngineError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `event` as one line and flushes it to the operating system.
    pub fn write(&mut self, event: &serde_json::Value) -> Result<()> {
        let mut line = event.to_string();
        line.push('\n');
        // One write call a line: a reader never sees half a line from this process.
        self.file.write_all(line.as_bytes()).map_err(|e| EngineError::io(&self.path, e))?;
        self.file.flush().map_err(|e| EngineError::io(&self.path, e))
    }
}

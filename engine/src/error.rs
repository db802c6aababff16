//! The engine's error type: every variant reads as one sentence a user can act on.

/// Errors the engine reports. Messages are complete sentences naming the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No adapter at all; the message says what to install.
    #[error("{0}")]
    NoAdapter(String),
    /// The driver refused something (device creation, a wait).
    #[error("{0}")]
    Device(String),
    /// `DeviceOptions::adapter` names no adapter: there are `count`.
    #[error(
        "adapter index {index} does not exist: there are {count} adapter(s) (indices 0..{}); `list_adapters` lists them",
        count.saturating_sub(1)
    )]
    NoSuchAdapter { index: usize, count: usize },
    /// A value the caller passed is out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Shapes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A dataset's folder or files are missing or corrupt, or could not be downloaded; says
    /// which dataset and folder, so that a caller can word the fix in its own terms.
    #[error("{0}")]
    DataUnavailable(crate::data::DataUnavailable),
    /// A data file is malformed; names the file.
    #[error("{0}")]
    Data(String),
    /// A checkpoint is unreadable or belongs to another model.
    #[error("{0}")]
    Checkpoint(String),
    /// The training loss stopped being a finite number: the run diverged. The caller knows
    /// what to change (a lower learning rate or momentum, a warm-up) and says so.
    #[error("the training loss became {loss} at step {step}")]
    Diverged {
        /// Steps taken when the loss was read back.
        step: u64,
        /// The mean training loss read back (NaN or infinite).
        loss: f64,
    },
    /// An error raised by code plugged into a training loop (a step algorithm, a periodic
    /// hook), such as a communication failure; kept whole so that the caller can downcast it
    /// to its own type.
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// An I/O error about `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().display().to_string(), source }
    }
}

//! Files: atomic writes, safetensors checkpoints and batch files, JSON Lines metrics.

pub mod atomic;
pub mod checkpoint;
pub mod metrics;

pub use atomic::write_atomic;
pub use checkpoint::{load_batch, load_safetensors, save_batch, save_safetensors, NamedTensor};
pub use metrics::MetricsWriter;

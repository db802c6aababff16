//! The asgd engine: devices and lanes, GPU tensors with a buffer pool, a pipeline cache, WGSL
//! layers with forward and backward passes, optimisers, data loading and the training loops.

// rustdoc works out whether each public type is Send and Sync, and for types that hold wgpu
// handles it walks wgpu-core's nested types past the default limit of 128 (error E0275 in
// `cargo doc`). The limit is a compile-time bound only.
#![recursion_limit = "256"]

pub mod data;
pub mod device;
pub mod error;
pub mod io;
pub mod kernel;
pub mod layers;
pub mod model;
pub mod ops;
pub mod optim;
pub mod plan;
pub mod pool;
pub mod tensor;
pub mod train;
pub mod tune;

pub use device::{list_adapters, AdapterSummary, BackendChoice, CounterValues, Device, DeviceOptions, ShaderFeatures};
pub use error::{EngineError, Result};
pub use model::Model;
pub use plan::Plan;
pub use tensor::{DType, ReadBack, Tensor};

//! asgd: train neural networks on any GPU (Vulkan, Metal, DX12, or the CPU through lavapipe)
//! with synchronous and asynchronous SGD. Every layer's forward and backward pass is a WGSL
//! kernel of ours.
//!
//! This crate is the library face; the `asgd` binary is built on it. A run in a few lines
//! (see `examples/train_digits.rs` for the whole program):
//!
//! ```no_run
//! use asgd::{data, Device, DeviceOptions, ModelConfig, Position, Sgd, SgdParams, TrainConfig};
//!
//! let dev = Device::open(&DeviceOptions::default())?;
//! let splits = data::load(data::DataKind::Digits, None)?;
//! let model = ModelConfig::Mlp { hidden: vec![64] }.build(&dev, splits.train.shape, splits.train.classes, 0)?;
//! let sgd = Sgd::new(&model, SgdParams { lr: 0.05, momentum: 0.9, weight_decay: 0.0 });
//! let cfg = TrainConfig { epochs: 10, batch: 32, ..TrainConfig::default() };
//! let summary = asgd::train_sync(&model, &sgd, &splits, &cfg, Position::default(), &mut |_| Ok(()))?;
//! println!("test accuracy {:.2}%", 100.0 * summary.test_acc);
//! # Ok::<(), asgd::EngineError>(())
//! ```

pub use asgd_comm as comm;
pub use asgd_engine as engine;
pub use asgd_models as models;

pub use asgd_engine::data;
pub use asgd_engine::ops::sgd::SgdParams;
pub use asgd_engine::optim::Sgd;
pub use asgd_engine::train::{
    evaluate, load_checkpoint, save_checkpoint, train_sync, Checkpoint, CheckpointMeta, Event, Position, Schedule, Summary,
    TrainConfig,
};
pub use asgd_engine::{list_adapters, BackendChoice, Device, DeviceOptions, EngineError, Model, Tensor};
pub use asgd_models::ModelConfig;
pub mod distributed;

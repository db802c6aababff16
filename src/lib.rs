//! asgd: train neural networks on any GPU (Vulkan, Metal, DX12, or the CPU through lavapipe)
//! with synchronous and asynchronous SGD. Every layer's forward and backward pass is a WGSL
//! kernel of ours.
//!
//! This crate is the library face; the `asgd` binary is built on it. [`run`] trains with any
//! of the six algorithms ([`Algorithm`]), in one process or across the processes of a
//! [`Job`]; this is PD-ASGD with its default lanes (see `examples/train_pdasgd.rs` for the
//! whole program):
//!
//! ```no_run
//! use asgd::{data, Algorithm, AsyncSettings, Device, DeviceOptions, Job, ModelConfig, OptimConfig, RunSpec, SgdParams, TrainConfig};
//!
//! let dev = Device::open(&DeviceOptions::default())?;
//! let splits = data::load(data::DataKind::Digits, None)?;
//! let algorithm = Algorithm::Pdasgd(AsyncSettings::default());
//! let sgd = SgdParams { lr: 0.05, momentum: algorithm.default_momentum(), weight_decay: 0.0, nesterov: false };
//! let spec = RunSpec::new(algorithm, OptimConfig::Sgd(sgd), TrainConfig { epochs: 10, batch: 32, ..TrainConfig::default() });
//! let replicas = spec.build_replicas(&dev, &ModelConfig::Mlp { hidden: vec![64] }, &splits, 0)?;
//! let summary = asgd::run(&spec, &replicas, &splits, &Job::single(), &mut |_event| Ok(()))?;
//! println!("test accuracy {:.2}%", 100.0 * summary.test_acc);
//! # Ok::<(), asgd::TrainError>(())
//! ```
//!
//! Across processes, [`Job::from_env`] joins the job that `asgd launch`, torchrun, Slurm or
//! Open MPI describe, and the same [`run`] call trains with the others. A run's errors are
//! typed ([`TrainError`]): a diverged loss, a communication failure, a setting the algorithm
//! cannot run with. The training loops themselves ([`train_sync`] and those under
//! [`engine::train`]) stay public for callers that want one directly.

pub use asgd_comm as comm;
pub use asgd_engine as engine;
pub use asgd_models as models;

mod algorithm;
pub mod distributed;
mod error;
mod job;
mod run;
mod settings;

pub use algorithm::{Algorithm, AlgorithmKind, AsyncSettings, Averaging};
pub use error::TrainError;
pub use job::{Job, NetEmulation};
pub use run::{run, Lanes, Replica, RunSpec};

pub use asgd_engine::data;
pub use asgd_engine::ops::adam::AdamParams;
pub use asgd_engine::ops::sgd::SgdParams;
pub use asgd_engine::optim::{Adam, OptimConfig, Optimizer, Sgd};
pub use asgd_engine::train::{
    evaluate, load_checkpoint, save_checkpoint, train_sync, Checkpoint, CheckpointMeta, DelaySpec, Elapsed, Event,
    Position, Schedule, StaleLr, Summary, TrainConfig, Weights,
};
pub use asgd_engine::{list_adapters, BackendChoice, Device, DeviceOptions, EngineError, Model, Tensor};
pub use asgd_models::ModelConfig;

//! One module per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod bench_allreduce;
pub mod bench_async;
pub mod common;
pub mod data;
pub mod devices;
pub mod eval;
pub mod grads;
pub mod hints;
pub mod launch;
pub mod optim;
pub mod plot;
pub mod resume;
pub mod train;

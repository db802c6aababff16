//! One module per subcommand: its clap arguments and its `run`.

pub mod bench_allreduce;
pub mod data;
pub mod launch;

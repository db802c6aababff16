//! `asgd bench allreduce`: placeholder until the comm work lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BenchAllreduceArgs {}

pub fn run(_args: BenchAllreduceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("asgd bench allreduce is not built yet")
}

//! `asgd launch`: placeholder until the comm work lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct LaunchArgs {}

pub fn run(_args: LaunchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("asgd launch is not built yet")
}

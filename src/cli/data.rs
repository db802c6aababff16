//! `asgd data`: placeholder.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DataCommand {}

pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}

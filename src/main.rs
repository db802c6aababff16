//! The headless `asgd` binary: see `asgd --help` and the README for the contract.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(name = "asgd", version, about = "Train neural networks on any GPU with asynchronous SGD")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download or inspect datasets.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Start N local processes of an asgd subcommand with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set.
    Launch(cli::launch::LaunchArgs),
    /// Benchmarks that print a table and a machine-readable line.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ring all-reduce latency and bus bandwidth across local processes, against a plain TCP stream.
    Allreduce(cli::bench_allreduce::BenchAllreduceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(cmd) => cli::data::run(cmd),
        Command::Launch(args) => cli::launch::run(args),
        Command::Bench(BenchCommand::Allreduce(args)) => cli::bench_allreduce::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, the whole chain of causes, no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

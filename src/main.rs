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
    /// List GPU adapters: index, name, backend, type, driver.
    Devices(cli::devices::DevicesArgs),
    /// Train a model.
    Train(Box<cli::train::TrainArgs>),
    /// Test loss and accuracy of a checkpoint.
    Eval(cli::eval::EvalArgs),
    /// Gradients of one batch's mean loss, for comparison with other frameworks.
    Grads(cli::grads::GradsArgs),
    /// Test accuracy against time for several metrics files, as an SVG.
    Plot(cli::plot::PlotArgs),
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
    /// Matrix-product GFLOP/s for square sizes and the MLP's layer shapes.
    Matmul(cli::bench::BenchMatmulArgs),
    /// Training samples/s for the MLP (batch 128) and LeNet-5 (batch 64).
    Step(cli::bench::BenchStepArgs),
    /// Time to a target accuracy of sync, hogwild and pdasgd under the same delays.
    Async(Box<cli::bench_async::BenchAsyncArgs>),
    /// Ring all-reduce latency and bus bandwidth across local processes, against a plain TCP stream.
    Allreduce(cli::bench_allreduce::BenchAllreduceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => cli::devices::run(args),
        Command::Train(args) => cli::train::run(*args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Grads(args) => cli::grads::run(args),
        Command::Plot(args) => cli::plot::run(args),
        Command::Bench(BenchCommand::Async(args)) => cli::bench_async::run(*args),
        Command::Bench(BenchCommand::Matmul(args)) => cli::bench::run_matmul(args),
        Command::Bench(BenchCommand::Step(args)) => cli::bench::run_step(args),
        Command::Data(cmd) => cli::data::run(cmd),
        Command::Launch(args) => cli::launch::run(args),
        Command::Bench(BenchCommand::Allreduce(args)) => cli::bench_allreduce::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, the whole chain of causes, no backtrace.
            eprintln!("error: {}", cli::hints::message(&err));
            ExitCode::FAILURE
        }
    }
}

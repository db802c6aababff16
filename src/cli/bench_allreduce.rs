//! `asgd bench allreduce`: ring all-reduce latency and bus bandwidth across local processes,
//! against plain TCP measured in the same run.

use std::process::ExitCode;

use anyhow::Context;
use asgd_comm::bench::{self, BenchOptions, Encryption};

/// Ring all-reduce latency and bus bandwidth for 2, 4 and 8 local ranks, 4 KiB to 256 MiB,
/// with plain TCP throughput as the ceiling. Prints a table, then one JSON line per result.
#[derive(clap::Args)]
pub struct BenchAllreduceArgs {
    /// Exact buffer sizes, comma-separated (e.g. 4KiB,1MiB,64MiB); overrides --min-size/--max-size.
    #[arg(long, value_delimiter = ',', value_parser = bench::parse_size)]
    sizes: Option<Vec<usize>>,
    /// Smallest buffer of the power-of-4 ladder.
    #[arg(long, default_value = "4KiB", value_parser = bench::parse_size)]
    min_size: usize,
    /// Largest buffer of the power-of-4 ladder.
    #[arg(long, default_value = "256MiB", value_parser = bench::parse_size)]
    max_size: usize,
    /// Rank counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    ranks: Vec<usize>,
    /// Timed iterations per size (default: enough to move about 512 MiB).
    #[arg(long)]
    iters: Option<usize>,
    /// Bytes per process for the plain-TCP ceiling runs (default: 4x the largest size, 64 MiB to 1 GiB).
    #[arg(long, value_parser = bench::parse_size)]
    stream_size: Option<usize>,
    /// Memory the plain-TCP runs cycle through (default: one chunk, which stays in cache).
    #[arg(long, value_parser = bench::parse_size)]
    stream_buffer: Option<usize>,
    /// All-reduce runs with frames sealed (on), unsealed (off), or one of each (both), to show
    /// what encryption costs; both use a shared secret.
    #[arg(long, default_value = "both", value_parser = Encryption::parse)]
    encrypt: Encryption,
}

pub fn run(args: BenchAllreduceArgs) -> anyhow::Result<ExitCode> {
    let mut opts = match args.sizes {
        Some(sizes) => BenchOptions::with_sizes(sizes),
        None => BenchOptions::new(args.min_size, args.max_size),
    };
    if args.ranks.iter().any(|&n| n < 2) {
        anyhow::bail!("--ranks values must be at least 2");
    }
    opts.ranks = args.ranks;
    opts.iters = args.iters;
    if let Some(bytes) = args.stream_size {
        opts.stream_bytes = bytes;
    }
    opts.stream_buffer_bytes = args.stream_buffer;
    opts.encryption = args.encrypt;
    let program = std::env::current_exe().context("could not find the asgd executable to start the ranks")?;
    // The ranks re-run this same command line, with a variable that gives each its part.
    let rerun: Vec<_> = std::env::args_os().skip(1).collect();
    bench::run(&opts, &program, &rerun)?;
    Ok(ExitCode::SUCCESS)
}

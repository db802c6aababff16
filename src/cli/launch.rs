//! `asgd launch`: start N local ranks of an asgd subcommand, torchrun style.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use asgd_comm::launch::{self, LaunchError, LaunchSpec};

/// Start N local processes of an asgd subcommand with RANK, WORLD_SIZE, MASTER_ADDR and
/// MASTER_PORT set; every output line is prefixed with `[rank K]`.
#[derive(clap::Args)]
pub struct LaunchArgs {
    /// Number of ranks (processes) to start.
    #[arg(long, value_name = "N")]
    nproc: usize,
    /// Where rank 0 listens, HOST:PORT (IPv6 as [ADDR]:PORT); default: a free port on 127.0.0.1.
    #[arg(long, value_name = "HOST:PORT")]
    master: Option<String>,
    /// The asgd subcommand and its flags, after `--`.
    #[arg(last = true, required = true, value_name = "SUBCOMMAND")]
    command: Vec<OsString>,
}

pub fn run(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    if args.nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    let program = std::env::current_exe().context("could not find the asgd executable to start the ranks")?;
    let mut spec = LaunchSpec::new(args.nproc, program, args.command);
    spec.master = match args.master.as_deref() {
        Some(m) => Some(
            launch::parse_master(m)
                .map_err(|_| anyhow!("--master {m:?} is not HOST:PORT (e.g. 127.0.0.1:29500 or [::1]:29500)"))?,
        ),
        None => None,
    };
    launch::launch(&spec, launch::print_prefixed).map_err(|e| match e {
        LaunchError::NoFreePort(io) => {
            anyhow!("could not find a free port on 127.0.0.1 for rank 0: {io}; pass --master HOST:PORT")
        }
        e => e.into(),
    })?;
    Ok(ExitCode::SUCCESS)
}

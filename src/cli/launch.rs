//! `asgd launch`: start N local ranks of an asgd subcommand, torchrun style.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
    /// Start a failed rank (other than 0) again, up to this many times in all, instead of
    /// stopping the job: for `train --elastic`, which takes a restarted rank back.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_restarts: usize,
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
        Some(m) => Some(launch::parse_master(m).map_err(|e| anyhow!("--master: {e}"))?),
        None => None,
    };
    spec.stop = Some(stop_on_signals());
    spec.max_restarts = args.max_restarts;
    match launch::launch(&spec, launch::print_prefixed) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(LaunchError::Interrupted) => {
            eprintln!("asgd launch: {}", LaunchError::Interrupted);
            // 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
            Ok(ExitCode::from(130))
        }
        Err(LaunchError::NoFreePort(io)) => {
            bail!("could not find a free port on 127.0.0.1 for rank 0: {io}; pass --master HOST:PORT")
        }
        Err(e) => Err(e.into()),
    }
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM sets instead of ending the launcher at once, so that
/// it can stop the ranks in order (SIGTERM, then SIGKILL) and not leave them running.
fn stop_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Without the handler the launcher still dies on the signal, as before.
        let _ = signal_hook::flag::register(signal, Arc::clone(&flag));
    }
    flag
}

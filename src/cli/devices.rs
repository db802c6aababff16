//! `asgd devices`: every adapter wgpu can see.

use std::process::ExitCode;

use anyhow::Result;
use asgd::{list_adapters, BackendChoice};

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// List adapters of this API only: auto, vulkan, metal, dx12 or gl.
    #[arg(long, default_value = "auto", value_parser = |s: &str| BackendChoice::parse(s).map_err(|e| e.to_string()))]
    pub backend: BackendChoice,
}

pub fn run(args: DevicesArgs) -> Result<ExitCode> {
    let list = list_adapters(args.backend);
    if list.is_empty() {
        anyhow::bail!("{} (--backend)", asgd::engine::device::NO_ADAPTER_HINT);
    }
    println!("{:<5} {:<40} {:<8} {:<15} {:<20} driver", "index", "name", "backend", "type", "features");
    for a in list {
        let features = a.features.describe();
        println!("{:<5} {:<40} {:<8} {:<15} {:<20} {}", a.index, a.name, a.backend, a.device_type, features, a.driver);
    }
    Ok(ExitCode::SUCCESS)
}

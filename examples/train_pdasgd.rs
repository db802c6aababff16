//! PD-ASGD through the library's one entry point: an MLP on the embedded digits dataset,
//! forward and backward passes in separate threads (one forward, two backward), each layer
//! updated the moment its gradient exists. Prints the test accuracy and the staleness.
//!
//! ```text
//! cargo run --release --example train_pdasgd
//! ```
//!
//! Any other algorithm is one line away: `Algorithm::Sync`, `Algorithm::Hogwild(lanes)`, or
//! `Algorithm::with_defaults(AlgorithmKind::Lasgd)` started on several processes by
//! `asgd launch` (with `Job::from_env` in place of `Job::single`).

use asgd::data::{self, DataKind};
use asgd::{
    Algorithm, AsyncSettings, Device, DeviceOptions, Event, Job, ModelConfig, OptimConfig, RunSpec, SgdParams,
    TrainConfig,
};

fn main() -> Result<(), asgd::TrainError> {
    let dev = Device::open(&DeviceOptions::default())?;
    let splits = data::load(DataKind::Digits, None)?;

    // The published method: live weights, one batch queued between the threads, and the
    // lower momentum the asynchronous algorithms default to (stale gradients act as momentum).
    let algorithm = Algorithm::Pdasgd(AsyncSettings::default());
    let sgd = SgdParams { lr: 0.05, momentum: algorithm.default_momentum(), weight_decay: 0.0, nesterov: false };
    let config =
        TrainConfig { epochs: 10, batch: 32, seed: 42, max_steps: Some(300), log_every: 50, ..TrainConfig::default() };
    let spec = RunSpec::new(algorithm, OptimConfig::Sgd(sgd), config);

    let replicas = spec.build_replicas(&dev, &ModelConfig::Mlp { hidden: vec![64] }, &splits, 42)?;
    println!("{} on {}: {} parameters", spec.algorithm, dev.info().name, replicas[0].model.num_params());

    let summary = asgd::run(&spec, &replicas, &splits, &Job::single(), &mut |event| {
        if let Event::Epoch { epoch, train_loss, test_acc, .. } = event {
            println!("epoch {epoch}: train loss {train_loss:.4}, test accuracy {:.2}%", 100.0 * test_acc);
        }
        Ok(())
    })?;
    let staleness = summary.staleness.as_ref().map_or(0.0, |s| s.mean());
    println!(
        "{} steps in {:.1} s: test accuracy {:.2}%, mean staleness {staleness:.2}",
        summary.steps,
        summary.wall_s,
        100.0 * summary.test_acc
    );
    Ok(())
}

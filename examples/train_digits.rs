//! Training through asgd as a library: build a model, train it for some steps on the embedded
//! digits dataset, and read the loss and accuracy as they come.
//!
//! ```text
//! cargo run --release --example train_digits
//! ```

use asgd::data::{self, DataKind};
use asgd::{Device, DeviceOptions, Event, ModelConfig, Position, Sgd, SgdParams, TrainConfig};

fn main() -> Result<(), asgd::EngineError> {
    // The first GPU, else any adapter (lavapipe on a machine without a GPU).
    let dev = Device::open(&DeviceOptions::default())?;
    println!("device: {} ({})", dev.info().name, dev.info().backend);

    // 1437 training and 360 test images of 8x8 pixels, embedded in the library.
    let splits = data::load(DataKind::Digits, None)?;
    let model = ModelConfig::Mlp { hidden: vec![64] }.build(&dev, splits.train.shape, splits.train.classes, 42)?;
    println!("model: {} parameters", model.num_params());

    let sgd = Sgd::new(&model, SgdParams { lr: 0.05, momentum: 0.9, weight_decay: 0.0, nesterov: false });
    let cfg =
        TrainConfig { epochs: 10, batch: 32, seed: 42, max_steps: Some(300), log_every: 25, ..TrainConfig::default() };

    // The observer sees every event; here it prints the training loss and test accuracy.
    let summary = asgd::train_sync(&model, &sgd, &splits, &cfg, Position::default(), &mut |event| {
        match event {
            Event::Log { step, train_loss, .. } => println!("step {step:>4}: train loss {train_loss:.4}"),
            Event::Eval { step, test_acc, .. } => println!("step {step:>4}: test accuracy {:.2}%", 100.0 * test_acc),
            _ => {}
        }
        Ok(())
    })?;
    println!(
        "trained {} steps in {:.1} s: test accuracy {:.2}%, test loss {:.4}",
        summary.steps,
        summary.wall_s,
        100.0 * summary.test_acc,
        summary.test_loss
    );
    Ok(())
}

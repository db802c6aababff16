//! A small residual network built from layers and trained with PD-ASGD through the library's
//! one entry point, on the embedded digits dataset: forward and backward passes in separate
//! threads (one forward, two backward), each layer (a residual block counts as one) updated
//! the moment its gradients exist. Prints the test accuracy and the staleness.
//!
//! ```text
//! cargo run --release --example train_pdasgd
//! ```
//!
//! Any other algorithm is one line away: `Algorithm::Sync`, `Algorithm::Hogwild(lanes)`, or
//! `Algorithm::with_defaults(AlgorithmKind::Lasgd)` started on several processes by
//! `asgd launch` (with `Job::from_env` in place of `Job::single`).

use asgd::data::{self, DataKind};
use asgd::engine::layers::{BatchNorm2d, Conv2d, GlobalAvgPool, Layer, Linear, Relu, Residual};
use asgd::{
    Algorithm, AlgorithmKind, Device, DeviceOptions, Event, Job, Model, OptimConfig, Replica, RunSpec, SgdParams,
    TrainConfig,
};
use rand::SeedableRng;

/// `conv3x3 -> bn -> relu -> conv3x3 -> bn`, plus a strided 1x1 projection where the shape
/// changes, summed and passed through a ReLU: ResNet's BasicBlock, named as torchvision names it.
fn block(
    dev: &Device,
    name: &str,
    cin: usize,
    cout: usize,
    stride: usize,
    rng: &mut impl rand::Rng,
) -> asgd::engine::Result<Residual> {
    let main: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::without_bias(dev, "conv1", cin, cout, 3, stride, 1, rng)?),
        Box::new(BatchNorm2d::new(dev, "bn1", cout)?),
        Box::new(Relu::new("relu")),
        Box::new(Conv2d::without_bias(dev, "conv2", cout, cout, 3, 1, 1, rng)?),
        Box::new(BatchNorm2d::new(dev, "bn2", cout)?),
    ];
    let shortcut: Vec<Box<dyn Layer>> = if stride == 1 && cin == cout {
        Vec::new()
    } else {
        vec![
            Box::new(Conv2d::without_bias(dev, "downsample.0", cin, cout, 1, stride, 0, rng)?),
            Box::new(BatchNorm2d::new(dev, "downsample.1", cout)?),
        ]
    };
    Residual::new(name, main, shortcut)
}

fn main() -> Result<(), asgd::TrainError> {
    let dev = Device::open(&DeviceOptions::default())?;
    let splits = data::load(DataKind::Digits, None)?;

    // 1x8x8 digits: a 3x3 stem of 16 channels, one block at 16, one strided block to 32
    // channels (4x4), global average pooling, a linear classifier.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::without_bias(&dev, "conv1", 1, 16, 3, 1, 1, &mut rng)?),
        Box::new(BatchNorm2d::new(&dev, "bn1", 16)?),
        Box::new(Relu::new("relu")),
        Box::new(block(&dev, "layer1.0", 16, 16, 1, &mut rng)?),
        Box::new(block(&dev, "layer2.0", 16, 32, 2, &mut rng)?),
        Box::new(GlobalAvgPool::new("avgpool")),
        Box::new(Linear::new(&dev, "fc", 32, splits.train.classes, &mut rng)?),
    ];
    let model = Model::new(&dev, "tiny-resnet", &splits.train.shape, layers)?;

    // PD-ASGD with its defaults: weight prediction, momentum 0.9, a warm-up.
    let kind = AlgorithmKind::Pdasgd;
    let algorithm = Algorithm::with_defaults(kind);
    let sgd = SgdParams { lr: 0.02, momentum: kind.default_momentum(), weight_decay: 5e-4, nesterov: false };
    let optim = OptimConfig::Sgd(sgd);
    let config = TrainConfig { epochs: 8, batch: 32, warmup: 100, seed: 42, log_every: 50, ..TrainConfig::default() };
    let spec = RunSpec::new(algorithm, optim, config);
    let replicas = vec![Replica { optim: optim.build(&model), model }];
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

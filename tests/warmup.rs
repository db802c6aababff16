//! The learning-rate warm-up reaches the synchronous loop's updates whatever the schedule.

use asgd::data::{self, DataKind};
use asgd::engine::train::{train_sync, Schedule};
use asgd::{Device, DeviceOptions, Model, ModelConfig, Position, Sgd, SgdParams, TrainConfig};

/// One step with base rate 0.2 and a 2-step warm-up (rate 0.1 at step 0) must be the same
/// computation, bit for bit, as one step at rate 0.1 without a warm-up; and differ from one
/// step at 0.2 (so the comparison can fail).
#[test]
fn warmup_applies_to_a_constant_schedule() {
    let dev = Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut splits = data::load(DataKind::Digits, None).unwrap();
    splits.test.truncate(64);
    let run = |lr: f32, warmup: u64| -> String {
        let hyper = SgdParams { lr, momentum: 0.9, weight_decay: 0.0, nesterov: false };
        let model: Model = ModelConfig::Mlp { hidden: vec![16] }.build(&dev, splits.train.shape, 10, 3).unwrap();
        let sgd = Sgd::new(&model, hyper);
        let cfg = TrainConfig {
            epochs: 1,
            batch: 32,
            max_steps: Some(1),
            schedule: Schedule::Constant,
            warmup,
            lr,
            seed: 7,
            ..TrainConfig::default()
        };
        train_sync(&model, &sgd, &splits, &cfg, Position::default(), &mut |_| Ok(())).unwrap();
        model.checksum().unwrap()
    };
    let warm = run(0.2, 2);
    assert_eq!(warm, run(0.1, 0), "the first step of a 2-step warm-up did not use half the rate");
    assert_ne!(warm, run(0.2, 0), "the rate makes no difference to one step, so the test cannot tell");
}

//! Augmentation is keyed by a sample's place in its epoch's order, not by which thread or loop
//! gathers it: PD-ASGD with its feed shared by threads, run with no staleness, trains on
//! exactly the augmented images the synchronous loop does, to the last bit.

use asgd::data::{self, Augment, DataKind};
use asgd::engine::train::{train_decoupled, AsyncConfig, Decoupling, DelaySpec, StaleLr, Weights};
use asgd::{train_sync, Device, DeviceOptions, ModelConfig, Optimizer, Position, Sgd, SgdParams, TrainConfig};

#[test]
fn augmented_pdasgd_without_staleness_is_augmented_sync_bit_for_bit() {
    let dev = Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut plain = data::load(DataKind::Digits, None).unwrap();
    plain.test.truncate(64);
    let augmented = plain.clone().with_augment(Some(Augment::CROP_FLIP));
    let hyper = SgdParams { lr: 0.05, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    let cfg =
        TrainConfig { epochs: 1, batch: 32, max_steps: Some(10), log_every: 5, seed: 11, ..TrainConfig::default() };
    let build = || {
        let m = ModelConfig::Mlp { hidden: vec![32] }.build(&dev, plain.train.shape, 10, 3).unwrap();
        let s = Sgd::new(&m, hyper);
        (m, s)
    };
    let sync = |splits: &data::Splits| {
        let (m, s) = build();
        train_sync(&m, &s, splits, &cfg, Position::default(), &mut |_| Ok(())).unwrap();
        m.checksum().unwrap()
    };
    let (sync_plain, sync_augmented) = (sync(&plain), sync(&augmented));
    assert_ne!(sync_plain, sync_augmented, "augmentation reaches the training batches");

    let (model, sgd) = build();
    let acfg = AsyncConfig {
        decoupling: Decoupling::LayerWise,
        fwd_threads: 1,
        bwd_threads: 1,
        queue: 1,
        delays: DelaySpec::parse("all:fixed=150ms").unwrap(),
        stale_lr: StaleLr::Constant,
        weights: Weights::Live,
    };
    let summary =
        train_decoupled(&[(&model, &sgd as &dyn Optimizer)], &augmented, &cfg, &acfg, Position::default(), &mut |_| {
            Ok(())
        })
        .unwrap();
    assert_eq!(
        summary.staleness.as_ref().unwrap().max(),
        0,
        "a backward pass took over 150 ms: the comparison does not apply"
    );
    assert_eq!(
        model.checksum().unwrap(),
        sync_augmented,
        "the feed's augmentation differs from the synchronous loop's"
    );
}

//! The library's entry point: `asgd::run` runs every algorithm, picks the same loop the
//! engine offers directly, and fails with typed errors.

use asgd::data::{self, DataKind, Splits};
use asgd::{
    Algorithm, AlgorithmKind, DelaySpec, Device, DeviceOptions, Job, ModelConfig, OptimConfig, Position, RunSpec,
    SgdParams, TrainConfig, TrainError,
};

fn setup() -> (Device, Splits) {
    let dev = Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut splits = data::load(DataKind::Digits, None).unwrap();
    splits.test.truncate(64);
    (dev, splits)
}

fn spec(algorithm: Algorithm, steps: u64, lr: f32) -> RunSpec {
    let sgd = SgdParams { lr, momentum: algorithm.default_momentum(), weight_decay: 0.0, nesterov: false };
    let config =
        TrainConfig { epochs: 1, batch: 16, seed: 5, max_steps: Some(steps), log_every: 4, ..TrainConfig::default() };
    RunSpec::new(algorithm, OptimConfig::Sgd(sgd), config)
}

fn mlp() -> ModelConfig {
    ModelConfig::Mlp { hidden: vec![16] }
}

#[test]
fn every_algorithm_runs_in_one_process() {
    let (dev, splits) = setup();
    for kind in AlgorithmKind::ALL {
        let mut s = spec(Algorithm::with_defaults(kind), 6, 0.05);
        // Two replicas where the algorithm uses them: data parallel and asynchronous lanes.
        if kind == AlgorithmKind::Sync || kind.is_asynchronous() {
            s.workers = 2;
        }
        let replicas = s.build_replicas(&dev, &mlp(), &splits, 1).unwrap();
        let summary = asgd::run(&s, &replicas, &splits, &Job::single(), &mut |_| Ok(())).unwrap();
        assert_eq!(summary.samples, 6 * 16, "{kind}: 6 batches of 16, whatever the replicas");
        assert_eq!(summary.staleness.is_some(), kind.is_asynchronous(), "{kind}");
        assert!(summary.test_acc.is_finite(), "{kind}");
    }
}

#[test]
fn sync_and_local_sgd_in_one_process_are_the_engines_sgd_bit_for_bit() {
    let (dev, splits) = setup();
    let s = spec(Algorithm::Sync, 8, 0.05);
    let direct = s.build_replicas(&dev, &mlp(), &splits, 1).unwrap();
    asgd::train_sync(&direct[0].model, direct[0].optim.as_ref(), &splits, &s.config, Position::default(), &mut |_| {
        Ok(())
    })
    .unwrap();
    let want = direct[0].model.checksum().unwrap();
    for algorithm in [
        Algorithm::Sync,
        Algorithm::with_defaults(AlgorithmKind::LocalSgd),
        Algorithm::with_defaults(AlgorithmKind::Dasgd),
    ] {
        // The same momentum as the direct run, whatever the algorithm's default.
        let s = RunSpec { algorithm, ..s.clone() };
        let replicas = s.build_replicas(&dev, &mlp(), &splits, 1).unwrap();
        asgd::run(&s, &replicas, &splits, &Job::single(), &mut |_| Ok(())).unwrap();
        assert_eq!(replicas[0].model.checksum().unwrap(), want, "{algorithm}");
    }
}

#[test]
fn a_diverging_run_is_a_typed_error() {
    let (dev, splits) = setup();
    let s = spec(Algorithm::Sync, 200, 1e9);
    let replicas = s.build_replicas(&dev, &mlp(), &splits, 1).unwrap();
    match asgd::run(&s, &replicas, &splits, &Job::single(), &mut |_| Ok(())) {
        Err(e @ TrainError::Diverged { .. }) => {
            assert!(e.to_string().starts_with("the training loss became"), "{e}");
            assert!(!e.to_string().contains("--"), "the library names no flag: {e}");
        }
        other => panic!("expected a divergence, got {:?}", other.map(|s| s.test_acc)),
    }
}

#[test]
fn check_refuses_a_run_before_anything_is_built() {
    let (_, splits) = setup();
    let mut s = spec(Algorithm::Sync, 1, 0.05);
    s.config.batch = 5000;
    assert!(matches!(
        s.check(&splits, &Job::single()),
        Err(TrainError::BatchTooLarge { batch: 5000, samples: 1437, world: 1 })
    ));
    let mut s = spec(Algorithm::with_defaults(AlgorithmKind::Pdasgd), 1, 0.05);
    s.delays = DelaySpec::parse("worker=3:fixed=1ms").unwrap();
    let e = s.check(&splits, &Job::single()).unwrap_err();
    assert!(e.to_string().contains("names worker 3"), "{e}");
}

#[test]
fn a_failing_observer_stops_the_workers_of_an_asynchronous_run() {
    let (dev, splits) = setup();
    // 1000 steps of at least 20 ms each: over ten seconds even with every lane sleeping at once.
    let mut s = spec(Algorithm::with_defaults(AlgorithmKind::Pdasgd), 1000, 0.05);
    s.config.epochs = 100;
    s.delays = DelaySpec::parse("all:fixed=20ms").unwrap();
    let replicas = s.build_replicas(&dev, &mlp(), &splits, 1).unwrap();
    let t0 = std::time::Instant::now();
    let r = asgd::run(&s, &replicas, &splits, &Job::single(), &mut |e| match e {
        asgd::Event::Log { .. } => Err(asgd::EngineError::InvalidArgument("the metrics file is full".into())),
        _ => Ok(()),
    });
    assert!(matches!(r, Err(TrainError::Engine(asgd::EngineError::InvalidArgument(_)))), "{:?}", r.map(|s| s.steps));
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "the run took {:?} to stop", t0.elapsed());
}

/// Measuring the undelayed step (for delay factors) runs training-mode forward passes; they
/// must not move batch norm's running statistics, or a run with a delay factor would train
/// another model than the same run without.
#[test]
fn timing_the_base_step_leaves_batch_norm_statistics_alone() {
    let (dev, splits) = setup();
    let model = ModelConfig::Resnet { depth: 8 }.build(&dev, splits.train.shape, splits.train.classes, 3).unwrap();
    let plan = model.plan(16, true).unwrap();
    // Something other than zeros in the input, as after a training step.
    let images: Vec<f32> = (0..plan.input.numel()).map(|i| (i % 7) as f32 * 0.3).collect();
    plan.input.write_f32(&images).unwrap();
    let before: Vec<Vec<f32>> = model.buffers().iter().map(|(_, t, _)| t.to_vec_f32().unwrap()).collect();
    assert!(!before.is_empty());
    asgd::engine::train::undelayed_step_time(&model, &plan).unwrap();
    let after: Vec<Vec<f32>> = model.buffers().iter().map(|(_, t, _)| t.to_vec_f32().unwrap()).collect();
    assert_eq!(before, after, "the running statistics moved while the step was timed");
}

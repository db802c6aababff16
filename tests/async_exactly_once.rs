//! PD-ASGD and Hogwild under random thread, queue, replica and lane counts: every run shuts
//! down, every step is trained once, every update is applied exactly once on every replica
//! (counted), and so all replicas end with the same parameters. And with no staleness at all,
//! PD-ASGD is plain SGD, bit for bit.

use std::sync::mpsc;
use std::time::Duration;

use asgd::data::{self, DataKind};
use asgd::engine::train::{train_decoupled, train_sync, AsyncConfig, Decoupling, DelaySpec, StaleLr, Weights};
use asgd::{
    AdamParams, Device, DeviceOptions, Model, ModelConfig, OptimConfig, Optimizer, Position, Sgd, SgdParams,
    TrainConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn every_update_is_applied_exactly_once_and_shutdown_completes() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        run_many();
        done_tx.send(()).unwrap();
    });
    // A deadlock must fail the test, not hang it.
    done_rx.recv_timeout(Duration::from_secs(300)).expect("asynchronous runs did not finish within 300 s: deadlock?");
}

fn run_many() {
    let dev = Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut splits = data::load(DataKind::Digits, None).unwrap();
    splits.test.truncate(64);
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    for run in 0..16 {
        let workers = rng.random_range(1..=4usize);
        let acfg = AsyncConfig {
            decoupling: if rng.random_bool(0.5) { Decoupling::LayerWise } else { Decoupling::WholeModel },
            fwd_threads: rng.random_range(1..=3),
            bwd_threads: rng.random_range(1..=3),
            queue: rng.random_range(0..=3),
            delays: if rng.random_bool(0.3) { DelaySpec::parse("all:exp=1ms").unwrap() } else { DelaySpec::default() },
            stale_lr: if rng.random_bool(0.5) { StaleLr::Inverse } else { StaleLr::Constant },
            weights: [Weights::Live, Weights::Stash, Weights::Predict][rng.random_range(0..3)],
        };
        let separate = rng.random_bool(0.3);
        let steps = rng.random_range(5..40u64);
        // SGD replays a peer's update from the momentum buffer; Nesterov and Adam send the
        // difference the update made: both paths must apply every update once.
        let optim = [
            OptimConfig::Sgd(SgdParams { lr: 0.02, momentum: 0.5, weight_decay: 1e-4, nesterov: false }),
            OptimConfig::Sgd(SgdParams { lr: 0.02, momentum: 0.5, weight_decay: 1e-4, nesterov: true }),
            OptimConfig::Adam(AdamParams { lr: 1e-3, weight_decay: 1e-4, ..AdamParams::adam() }),
            OptimConfig::Adam(AdamParams { lr: 1e-3, ..AdamParams::adamw() }),
        ][rng.random_range(0..4)];
        let what =
            format!("run {run}: {workers} workers, separate lanes {separate}, {steps} steps, {optim:?}, {acfg:?}");

        let hidden = vec![16, 8];
        let replicas: Vec<(Model, Box<dyn Optimizer>)> = (0..workers)
            .map(|w| {
                let d = if w == 0 || !separate { dev.clone() } else { dev.open_sibling().unwrap() };
                let m = ModelConfig::Mlp { hidden: hidden.clone() }.build(&d, splits.train.shape, 10, 1).unwrap();
                let s = optim.build(&m);
                (m, s)
            })
            .collect();
        let refs: Vec<(&Model, &dyn Optimizer)> = replicas.iter().map(|(m, s)| (m, s.as_ref())).collect();
        let cfg = TrainConfig {
            epochs: 1,
            batch: 16,
            max_steps: Some(steps),
            log_every: 7,
            lr: optim.lr(),
            seed: run,
            ..TrainConfig::default()
        };
        let summary = train_decoupled(&refs, &splits, &cfg, &acfg, Position::default(), &mut |_| Ok(())).unwrap();

        assert_eq!(summary.steps, steps, "{what}");
        let u = summary.updates.as_ref().unwrap();
        let layers = u.layers_with_params;
        assert_eq!(layers, 3, "{what}");
        assert_eq!(u.local.iter().sum::<u64>(), steps * layers, "{what}: local updates {:?}", u.local);
        for from in 0..workers {
            for to in 0..workers {
                let expect = if from == to { 0 } else { u.local[from] };
                assert_eq!(u.sent[from][to], expect, "{what}: sent {from}->{to}");
                assert_eq!(u.applied[to][from], u.sent[from][to], "{what}: applied at {to} from {from}");
            }
        }
        assert_eq!(summary.staleness.as_ref().unwrap().total(), steps * layers, "{what}");

        // Each replica applied every update once (its own, and the others' as deltas), in its
        // own order: equal up to float rounding. A lost or doubled update is a whole step apart.
        let first = replicas[0].0.state_dict().unwrap();
        for (m, _) in &replicas[1..] {
            for (a, b) in first.iter().zip(m.state_dict().unwrap()) {
                let worst = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(worst < 1e-4, "{what}: {} differs by {worst} between replicas", a.name);
            }
        }
    }
}

/// A forward pass every 150 ms (far longer than a backward pass of this small model) leaves
/// PD-ASGD nothing to overlap: every gradient is fresh (staleness 0), and the run must then be
/// the synchronous run exactly, the same batches and learning rates in the same order, the
/// same parameters to the last bit. Anything the decoupled path computes differently (a
/// gradient taken from the wrong batch, an update applied twice or with the wrong rate, a
/// layer's backward reading parameters already updated) shows as a different checksum.
#[test]
fn without_staleness_pdasgd_is_sync_bit_for_bit() {
    let dev = Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut splits = data::load(DataKind::Digits, None).unwrap();
    splits.test.truncate(64);
    let hyper = SgdParams { lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nesterov: false };
    let cfg =
        TrainConfig { epochs: 1, batch: 32, max_steps: Some(12), log_every: 5, seed: 7, ..TrainConfig::default() };
    let build = || {
        let m = ModelConfig::Mlp { hidden: vec![32, 16] }.build(&dev, splits.train.shape, 10, 3).unwrap();
        let s = Sgd::new(&m, hyper);
        (m, s)
    };

    let (sync_model, sync_sgd) = build();
    train_sync(&sync_model, &sync_sgd, &splits, &cfg, Position::default(), &mut |_| Ok(())).unwrap();

    // Stashed and predicted weights are copies of the live ones when nothing is stale (the
    // prediction moves them by the mean staleness, 0).
    for weights in [Weights::Live, Weights::Stash, Weights::Predict] {
        let (model, sgd) = build();
        let acfg = AsyncConfig {
            decoupling: Decoupling::LayerWise,
            fwd_threads: 1,
            bwd_threads: 1,
            queue: 1,
            delays: DelaySpec::parse("all:fixed=150ms").unwrap(),
            stale_lr: StaleLr::Inverse,
            weights,
        };
        let summary = train_decoupled(
            &[(&model, &sgd as &dyn Optimizer)],
            &splits,
            &cfg,
            &acfg,
            Position::default(),
            &mut |_| Ok(()),
        )
        .unwrap();
        let staleness = summary.staleness.as_ref().unwrap();
        assert_eq!(staleness.max(), 0, "a backward pass took longer than 150 ms, so the comparison does not apply");
        assert_eq!(
            model.checksum().unwrap(),
            sync_model.checksum().unwrap(),
            "PD-ASGD ({weights:?} weights) without staleness differs from SGD"
        );
    }
}

/// With no queue (`queue: 0`) a forward pass waits until the one backward thread takes its
/// batch, so at most one of the replica's own updates lands between a batch's forward pass and
/// its update: staleness at most 1, whatever the timing.
#[test]
fn without_a_queue_one_forward_overlaps_one_backward() {
    let dev = Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut splits = data::load(DataKind::Digits, None).unwrap();
    splits.test.truncate(64);
    let m = ModelConfig::Mlp { hidden: vec![32, 16] }.build(&dev, splits.train.shape, 10, 5).unwrap();
    let s = Sgd::new(&m, SgdParams { lr: 0.02, momentum: 0.5, weight_decay: 0.0, nesterov: false });
    let cfg =
        TrainConfig { epochs: 1, batch: 16, max_steps: Some(40), log_every: 100, seed: 3, ..TrainConfig::default() };
    let acfg = AsyncConfig {
        decoupling: Decoupling::LayerWise,
        fwd_threads: 1,
        bwd_threads: 1,
        queue: 0,
        delays: DelaySpec::default(),
        stale_lr: StaleLr::Constant,
        weights: Weights::Live,
    };
    let summary = train_decoupled(&[(&m, &s)], &splits, &cfg, &acfg, Position::default(), &mut |_| Ok(())).unwrap();
    assert_eq!(summary.steps, 40);
    let staleness = summary.staleness.as_ref().unwrap();
    assert_eq!(staleness.total(), 40 * 3);
    assert!(staleness.max() <= 1, "staleness {} with no queue and one backward thread", staleness.max());
}

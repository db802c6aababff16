//! Sizes a device cannot hold are errors that name the tensor and the limit, raised before
//! wgpu sees them (its validation would panic); evaluation splits a batch that does not fit.
//! A device opened with a 64 KiB buffer limit reaches the limits with tiny models.

use asgd_engine::data::Dataset;
use asgd_engine::layers::{Flatten, Layer, Linear, Relu};
use asgd_engine::train::{evaluate, Evaluator};
use asgd_engine::{DType, Device, DeviceOptions, EngineError, Model, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const LIMIT: u64 = 64 << 10;

fn small_device() -> Device {
    Device::open_with_buffer_limit(&DeviceOptions::default(), LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Flatten, 64 -> 32 -> ReLU -> 10, seeded: the same weights on any device.
fn mlp(dev: &Device) -> Model {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Flatten::new("flatten")),
        Box::new(Linear::new(dev, "fc1", 64, 32, &mut rng).unwrap()),
        Box::new(Relu::new("relu1")),
        Box::new(Linear::new(dev, "fc2", 32, 10, &mut rng).unwrap()),
    ];
    Model::new(dev, "mlp", &[1, 8, 8], layers).unwrap()
}

fn data(n: usize) -> Dataset {
    Dataset {
        name: "made-up/test".into(),
        images: (0..n * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 30.0).collect(),
        labels: (0..n).map(|i| (i * 3 % 10) as u32).collect(),
        shape: [1, 8, 8],
        classes: 10,
        zero: vec![0.0],
        augment: None,
    }
}

#[test]
fn a_tensor_over_the_limit_is_an_error_naming_its_shape_and_the_limit() {
    let dev = small_device();
    assert_eq!(dev.max_buffer_bytes(), LIMIT);
    let err = Tensor::empty(&dev, &[129, 128], DType::F32).unwrap_err();
    assert!(matches!(err, EngineError::TooLarge { batch: None, .. }), "{err:?}");
    let line = err.to_string();
    assert!(line.starts_with("a tensor of shape [129, 128] needs 64.5 KiB, more than the 64.0 KiB"), "{line}");
    // Sizes whose byte count overflows are refused the same way, before any arithmetic wraps.
    let err = Tensor::empty(&dev, &[usize::MAX, 16], DType::F32).unwrap_err();
    assert!(err.to_string().contains("more than 2^64 bytes"), "{err}");
    // Exactly the limit fits.
    Tensor::empty(&dev, &[128, 128], DType::F32).unwrap();
    // A parameter is checked before its values are drawn.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = Linear::new(&dev, "fc1", 100_000, 100_000, &mut rng).err().unwrap();
    assert!(err.to_string().starts_with("parameter fc1.weight of shape [100000, 100000] needs"), "{err}");
}

#[test]
fn a_plan_too_large_for_the_device_names_the_layer_and_the_batch() {
    let dev = small_device();
    let model = mlp(&dev);
    // The input of a batch of 300 is 300 x 64 floats = 75 KiB.
    let err = model.plan(300, true).err().unwrap();
    let EngineError::TooLarge { batch, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*batch, Some(300));
    assert!(err.to_string().starts_with("the input: a tensor of shape [300, 1, 8, 8] for a batch of 300"), "{err}");
    model.plan(200, true).unwrap();
    dev.check_errors().unwrap();
}

#[test]
fn evaluation_splits_a_batch_that_does_not_fit_and_gets_the_same_result() {
    let big = Device::open(&DeviceOptions::default()).unwrap();
    let small = small_device();
    let test = data(700);
    let whole = evaluate(&mlp(&big), &test, 700).unwrap();
    let model = mlp(&small);
    let mut ev = Evaluator::new(&model, 700);
    let split = ev.run(&test).unwrap();
    assert!(ev.batch() < 700 && ev.batch() * 256 <= LIMIT as usize, "batch {}", ev.batch());
    assert!((whole.0 - split.0).abs() < 1e-5 * whole.0.abs().max(1.0), "{whole:?} vs {split:?}");
    assert_eq!(whole.1, split.1, "the same samples are right");
    // Again, from the plans kept.
    assert_eq!(ev.run(&test).unwrap().1, split.1);
}

#[test]
fn wgpu_validation_errors_are_errors_not_panics() {
    let dev = small_device();
    let too_big = wgpu::BufferDescriptor {
        label: Some("too big"),
        size: 2 * LIMIT,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    };
    let err = dev
        .scoped("a test buffer", || {
            let _ = dev.wgpu().create_buffer(&too_big);
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("the GPU driver refused a test buffer: "), "{err}");
    // Outside a scope, wgpu's default handler would panic; the device keeps the error for
    // the next check instead, and reports it once.
    let _ = dev.wgpu().create_buffer(&too_big);
    let err = dev.wait_idle().unwrap_err();
    assert!(err.to_string().starts_with("the GPU driver refused work: "), "{err}");
    dev.wait_idle().unwrap();
}

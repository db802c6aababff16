//! Whole-model gradients from the GPU against central finite differences of the f64 CPU
//! reference of the same model, for the MLP and LeNet-5 at their real sizes and a depth-8
//! ResNet (batch norm in training mode, projection shortcuts) on small images.

use asgd_engine::layers::Mode;
use asgd_engine::{Device, DeviceOptions, Model};
use asgd_models::ModelConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dev() -> Device {
    Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs forward + backward on the GPU for one batch and checks the loss and a sample of
/// coordinates of every parameter's gradient against finite differences.
fn check(model: &Model, batch: usize, seed: u64) {
    check_reading(model, model, batch, seed);
}

/// [`check`] for a plan of `model` that reads `values`' parameters (a model of the same
/// architecture) instead of its own: the gradients must be those at `values`' point.
fn check_reading(model: &Model, values: &Model, batch: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sample: usize = model.input_shape().iter().product();
    let images: Vec<f32> = (0..batch * sample).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..model.classes() as u32)).collect();

    let plan = if std::ptr::eq(model, values) {
        model.plan(batch, true).unwrap()
    } else {
        let copies: Vec<Vec<_>> =
            values.layers().iter().map(|l| l.params().iter().map(|p| p.value.clone()).collect()).collect();
        model.plan_reading(batch, true, &copies).unwrap()
    };
    plan.upload(&images, &labels).unwrap();
    let dev = model.device();
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        plan.record_gradients(&mut pass);
    }
    dev.queue().submit([enc.finish()]);
    let gpu_loss: f64 = plan.loss.to_vec_f32().unwrap().iter().map(|&v| v as f64).sum::<f64>() / batch as f64;

    let mut params: Vec<Vec<f64>> =
        values.params().iter().map(|(_, t)| t.to_vec_f32().unwrap().iter().map(|&v| v as f64).collect()).collect();
    let x: Vec<f64> = images.iter().map(|&v| v as f64).collect();
    // Training mode normalises by batch statistics; the buffers are not read.
    let buffers: Vec<Vec<f64>> = model.buffers().iter().map(|(_, t, _)| vec![0.0; t.numel()]).collect();
    let loss = |params: &[Vec<f64>]| model.reference_loss(params, &buffers, &x, &labels, Mode::Train);
    let cpu_loss = loss(&params);
    assert!((gpu_loss - cpu_loss).abs() < 1e-4 * (1.0 + cpu_loss.abs()), "loss: gpu {gpu_loss} cpu {cpu_loss}");

    let grads: Vec<Vec<f32>> = plan.grads.iter().flatten().map(|g| g.to_vec_f32().unwrap()).collect();
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(grads.len(), params.len());
    for (p, name) in names.iter().enumerate() {
        // The largest-magnitude coordinate plus random ones: a wiring error that zeroes or
        // misplaces gradients cannot hide in a sample of tiny values.
        let largest = (0..grads[p].len()).max_by(|&a, &b| grads[p][a].abs().total_cmp(&grads[p][b].abs())).unwrap();
        let mut coords = vec![largest];
        coords.extend((0..12).map(|_| rng.random_range(0..params[p].len())));
        for &i in &coords {
            let orig = params[p][i];
            // Small enough that a step rarely crosses a ReLU or max-pool kink (h = 1e-4 did,
            // for one LeNet coordinate), large enough for f64 round-off to stay ~1e-9.
            let h = 1e-6;
            params[p][i] = orig + h;
            let up = loss(&params);
            params[p][i] = orig - h;
            let down = loss(&params);
            params[p][i] = orig;
            let fd = (up - down) / (2.0 * h);
            let g = grads[p][i] as f64;
            assert!(
                (g - fd).abs() <= 2e-3 * fd.abs().max(g.abs()) + 2e-5,
                "{name}[{i}]: gpu gradient {g} vs finite difference {fd}"
            );
        }
    }
}

#[test]
fn mlp_gradients_match_finite_differences() {
    let dev = dev();
    let model = ModelConfig::mlp().build(&dev, [1, 28, 28], 10, 7).unwrap();
    assert_eq!(model.num_params(), 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
    check(&model, 5, 11);
    // Odd, small sizes on the 8x8 digits shape.
    let small = ModelConfig::Mlp { hidden: vec![13, 7] }.build(&dev, [1, 8, 8], 10, 3).unwrap();
    check(&small, 3, 12);
}

#[test]
fn lenet_gradients_match_finite_differences() {
    let dev = dev();
    let model = ModelConfig::Lenet.build(&dev, [1, 28, 28], 10, 5).unwrap();
    assert_eq!(model.num_params(), 61_706);
    check(&model, 3, 13);
}

#[test]
fn resnet8_gradients_match_finite_differences() {
    let dev = dev();
    // 3 channels, 7x7: stride-2 stages of 4x4 and 2x2, odd sizes where they can be.
    let model = ModelConfig::resnet(8).unwrap().build(&dev, [3, 7, 7], 7, 21).unwrap();
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"layer2.0.downsample.0.weight".to_string()), "{names:?}");
    assert!(names.contains(&"layer3.0.bn2.bias".to_string()), "{names:?}");
    check(&model, 3, 22);
}

/// Every place a plan applies a ReLU inside the layer before it: a batch norm or linear layer
/// followed by a ReLU at the top level, inside a block's main path, and at the end of a main
/// path and of a shortcut (where the block cannot add in place into the fused output).
#[test]
fn fused_relus_differentiate_like_separate_ones() {
    use asgd_engine::layers::{BatchNorm2d, Conv2d, GlobalAvgPool, Layer, Linear, Relu, Residual};
    let dev = dev();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let conv = |name: &str, cin, cout, k, stride, rng: &mut ChaCha8Rng| -> Box<dyn Layer> {
        Box::new(Conv2d::without_bias(&dev, name, cin, cout, k, stride, k / 2, rng).unwrap())
    };
    let bn = |name: &str, c| -> Box<dyn Layer> { Box::new(BatchNorm2d::new(&dev, name, c).unwrap()) };
    let relu = |name: &str| -> Box<dyn Layer> { Box::new(Relu::new(name)) };
    let ends_fused = Residual::new(
        "block1",
        vec![conv("conv1", 3, 4, 3, 2, &mut rng), bn("bn1", 4), relu("relu")],
        vec![conv("downsample.0", 3, 4, 1, 2, &mut rng), bn("downsample.1", 4), relu("relu")],
    )
    .unwrap();
    let basic = Residual::new(
        "block2",
        vec![
            conv("conv1", 4, 4, 3, 1, &mut rng),
            bn("bn1", 4),
            relu("relu"),
            conv("conv2", 4, 4, 3, 1, &mut rng),
            bn("bn2", 4),
        ],
        Vec::new(),
    )
    .unwrap();
    let layers: Vec<Box<dyn Layer>> = vec![
        conv("conv1", 2, 3, 3, 1, &mut rng),
        bn("bn1", 3),
        relu("relu"),
        Box::new(ends_fused),
        Box::new(basic),
        Box::new(GlobalAvgPool::new("avgpool")),
        Box::new(Linear::new(&dev, "fc1", 4, 6, &mut rng).unwrap()),
        relu("relu1"),
        Box::new(Linear::new(&dev, "fc2", 6, 5, &mut rng).unwrap()),
    ];
    let model = Model::new(&dev, "fused", &[2, 5, 5], layers).unwrap();
    check(&model, 3, 24);
}

/// The kernels a GPU gets, on whatever adapter the tests have: the untuned GPU defaults (the
/// workgroup-tiled product with its bias and ReLU in separate passes, im2col convolutions) and
/// one value per thread in batch norm's element-wise kernels. On a CPU driver they would
/// otherwise never run.
#[test]
fn gpu_kernel_choices_differentiate_like_the_reference() {
    let opts = DeviceOptions { tune: Some(asgd_engine::tune::TuneMode::Off), ..DeviceOptions::default() };
    let dev = Device::open_with_gpu_kernels(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(!dev.is_cpu());
    let resnet = ModelConfig::resnet(8).unwrap().build(&dev, [3, 7, 7], 7, 21).unwrap();
    check(&resnet, 3, 25);
    let lenet = ModelConfig::Lenet.build(&dev, [1, 28, 28], 10, 5).unwrap();
    let plan = lenet.plan(3, true).unwrap();
    let labels: Vec<&str> = plan.layer_dispatches(0).0.iter().map(|d| d.label()).collect();
    assert!(labels.iter().any(|l| l.contains("im2col")), "a GPU's untuned convolution is im2col: {labels:?}");
    drop(plan);
    check(&lenet, 3, 26);
    let mlp = ModelConfig::Mlp { hidden: vec![13, 7] }.build(&dev, [1, 8, 8], 10, 3).unwrap();
    check(&mlp, 3, 27);
}

#[test]
fn plans_differentiate_the_parameter_values_they_read() {
    // A plan of one model reading another's parameters (weight stashing in asynchronous
    // training) must compute that other model's loss and gradients.
    let dev = dev();
    let small = |seed| ModelConfig::Mlp { hidden: vec![13, 7] }.build(&dev, [1, 8, 8], 10, seed).unwrap();
    check_reading(&small(3), &small(4), 3, 14);
    let lenet = |seed| ModelConfig::Lenet.build(&dev, [1, 28, 28], 10, seed).unwrap();
    check_reading(&lenet(5), &lenet(6), 2, 15);
    let wrong: Vec<Vec<_>> = small(3).layers().iter().map(|_| Vec::new()).collect();
    let err = lenet(5).plan_reading(2, true, &wrong).err().unwrap().to_string();
    assert!(err.contains("do not match"), "{err}");
}

#[test]
fn lenet_refuses_digit_sized_images() {
    let err = ModelConfig::Lenet.build(&dev(), [1, 8, 8], 10, 0).err().unwrap().to_string();
    assert!(err.contains("use mlp or a 28x28 dataset"), "{err}");
}

#[test]
fn description_round_trips() {
    for c in [
        ModelConfig::mlp(),
        ModelConfig::Mlp { hidden: vec![] },
        ModelConfig::Lenet,
        ModelConfig::Resnet { depth: 14 },
        ModelConfig::Resnet18,
    ] {
        assert_eq!(ModelConfig::from_description(&c.description()).unwrap(), c);
    }
}

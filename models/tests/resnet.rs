//! ResNets as PyTorch sees them: torchvision's state_dict names and shapes, batch norm's
//! buffers in checkpoints, and eval mode normalising by the running statistics.

use asgd_engine::io::checkpoint::load_safetensors;
use asgd_engine::layers::{BufferKind, Mode};
use asgd_engine::train::{save_checkpoint, CheckpointMeta};
use asgd_engine::{Device, DeviceOptions, Model};
use asgd_models::ModelConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dev() -> Device {
    Device::open(&DeviceOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// `torchvision.models.resnet18(num_classes=10)` with `model.conv1 = nn.Conv2d(3, 64, 3, 1, 1,
/// bias=False)` and `model.maxpool = nn.Identity()`: every state_dict entry with its shape
/// (`-` for the 0-dimensional `num_batches_tracked`).
const TORCHVISION_RESNET18: &str = "
conv1.weight 64,3,3,3
bn1.weight 64
bn1.bias 64
bn1.running_mean 64
bn1.running_var 64
bn1.num_batches_tracked -
layer1.0.conv1.weight 64,64,3,3
layer1.0.bn1.weight 64
layer1.0.bn1.bias 64
layer1.0.bn1.running_mean 64
layer1.0.bn1.running_var 64
layer1.0.bn1.num_batches_tracked -
layer1.0.conv2.weight 64,64,3,3
layer1.0.bn2.weight 64
layer1.0.bn2.bias 64
layer1.0.bn2.running_mean 64
layer1.0.bn2.running_var 64
layer1.0.bn2.num_batches_tracked -
layer1.1.conv1.weight 64,64,3,3
layer1.1.bn1.weight 64
layer1.1.bn1.bias 64
layer1.1.bn1.running_mean 64
layer1.1.bn1.running_var 64
layer1.1.bn1.num_batches_tracked -
layer1.1.conv2.weight 64,64,3,3
layer1.1.bn2.weight 64
layer1.1.bn2.bias 64
layer1.1.bn2.running_mean 64
layer1.1.bn2.running_var 64
layer1.1.bn2.num_batches_tracked -
layer2.0.conv1.weight 128,64,3,3
layer2.0.bn1.weight 128
layer2.0.bn1.bias 128
layer2.0.bn1.running_mean 128
layer2.0.bn1.running_var 128
layer2.0.bn1.num_batches_tracked -
layer2.0.conv2.weight 128,128,3,3
layer2.0.bn2.weight 128
layer2.0.bn2.bias 128
layer2.0.bn2.running_mean 128
layer2.0.bn2.running_var 128
layer2.0.bn2.num_batches_tracked -
layer2.0.downsample.0.weight 128,64,1,1
layer2.0.downsample.1.weight 128
layer2.0.downsample.1.bias 128
layer2.0.downsample.1.running_mean 128
layer2.0.downsample.1.running_var 128
layer2.0.downsample.1.num_batches_tracked -
layer2.1.conv1.weight 128,128,3,3
layer2.1.bn1.weight 128
layer2.1.bn1.bias 128
layer2.1.bn1.running_mean 128
layer2.1.bn1.running_var 128
layer2.1.bn1.num_batches_tracked -
layer2.1.conv2.weight 128,128,3,3
layer2.1.bn2.weight 128
layer2.1.bn2.bias 128
layer2.1.bn2.running_mean 128
layer2.1.bn2.running_var 128
layer2.1.bn2.num_batches_tracked -
layer3.0.conv1.weight 256,128,3,3
layer3.0.bn1.weight 256
layer3.0.bn1.bias 256
layer3.0.bn1.running_mean 256
layer3.0.bn1.running_var 256
layer3.0.bn1.num_batches_tracked -
layer3.0.conv2.weight 256,256,3,3
layer3.0.bn2.weight 256
layer3.0.bn2.bias 256
layer3.0.bn2.running_mean 256
layer3.0.bn2.running_var 256
layer3.0.bn2.num_batches_tracked -
layer3.0.downsample.0.weight 256,128,1,1
layer3.0.downsample.1.weight 256
layer3.0.downsample.1.bias 256
layer3.0.downsample.1.running_mean 256
layer3.0.downsample.1.running_var 256
layer3.0.downsample.1.num_batches_tracked -
layer3.1.conv1.weight 256,256,3,3
layer3.1.bn1.weight 256
layer3.1.bn1.bias 256
layer3.1.bn1.running_mean 256
layer3.1.bn1.running_var 256
layer3.1.bn1.num_batches_tracked -
layer3.1.conv2.weight 256,256,3,3
layer3.1.bn2.weight 256
layer3.1.bn2.bias 256
layer3.1.bn2.running_mean 256
layer3.1.bn2.running_var 256
layer3.1.bn2.num_batches_tracked -
layer4.0.conv1.weight 512,256,3,3
layer4.0.bn1.weight 512
layer4.0.bn1.bias 512
layer4.0.bn1.running_mean 512
layer4.0.bn1.running_var 512
layer4.0.bn1.num_batches_tracked -
layer4.0.conv2.weight 512,512,3,3
layer4.0.bn2.weight 512
layer4.0.bn2.bias 512
layer4.0.bn2.running_mean 512
layer4.0.bn2.running_var 512
layer4.0.bn2.num_batches_tracked -
layer4.0.downsample.0.weight 512,256,1,1
layer4.0.downsample.1.weight 512
layer4.0.downsample.1.bias 512
layer4.0.downsample.1.running_mean 512
layer4.0.downsample.1.running_var 512
layer4.0.downsample.1.num_batches_tracked -
layer4.1.conv1.weight 512,512,3,3
layer4.1.bn1.weight 512
layer4.1.bn1.bias 512
layer4.1.bn1.running_mean 512
layer4.1.bn1.running_var 512
layer4.1.bn1.num_batches_tracked -
layer4.1.conv2.weight 512,512,3,3
layer4.1.bn2.weight 512
layer4.1.bn2.bias 512
layer4.1.bn2.running_mean 512
layer4.1.bn2.running_var 512
layer4.1.bn2.num_batches_tracked -
fc.weight 10,512
fc.bias 10
";

fn expected() -> Vec<(String, Vec<usize>)> {
    let mut rows: Vec<(String, Vec<usize>)> = TORCHVISION_RESNET18
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, shape) = l.split_once(' ').unwrap();
            let shape = if shape == "-" { Vec::new() } else { shape.split(',').map(|d| d.parse().unwrap()).collect() };
            (name.to_string(), shape)
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn resnet18_checkpoint_has_torchvision_names_and_shapes() {
    let dev = dev();
    let model = ModelConfig::Resnet18.build(&dev, [3, 32, 32], 10, 0).unwrap();
    assert_eq!(model.num_params(), 11_173_962);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("resnet18");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resnet18.safetensors");
    save_checkpoint(&path, &model, None, &CheckpointMeta { model: "resnet18".into(), ..Default::default() }).unwrap();
    let (tensors, _) = load_safetensors(&path).unwrap();
    let mut got: Vec<(String, Vec<usize>)> = tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
    got.sort();
    assert_eq!(got, expected());
    // PyTorch keeps the counter as int64; the file must say so for load_state_dict.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("layer4.1.bn2.num_batches_tracked").unwrap().dtype(), safetensors::Dtype::I64);
    assert_eq!(st.tensor("layer4.1.bn2.running_var").unwrap().dtype(), safetensors::Dtype::F32);
}

#[test]
fn cifar_resnets_have_the_published_sizes() {
    let dev = dev();
    // He et al.'s ResNet-20 with projection shortcuts: 0.27M parameters.
    let r20 = ModelConfig::resnet(20).unwrap().build(&dev, [3, 32, 32], 10, 0).unwrap();
    // Stem 432 + 32; stage 1: 3 x (2 x 2304 + 64); stage 2: 4608 + 9216 + 128 and
    // 2 x (2 x 9216 + 128); stage 3: 18432 + 36864 + 256 and 2 x (2 x 36864 + 256); fc 650:
    // 269,722 with identity shortcuts (the 0.27M of the paper), plus the two projections
    // 16x32 + 64 and 32x64 + 128.
    assert_eq!(r20.num_params(), 269_722 + 2_752);
    for bad in [0, 7, 9, 21] {
        let err = ModelConfig::resnet(bad).unwrap_err().to_string();
        assert!(err.contains("6n+2"), "{err}");
    }
    assert_eq!(ModelConfig::parse("resnet-56").unwrap(), ModelConfig::Resnet { depth: 56 });
    assert_eq!(ModelConfig::parse("resnet").unwrap(), ModelConfig::Resnet { depth: 20 });
    // Built for the data: one channel of 28x28 works as well.
    let gray = ModelConfig::resnet(8).unwrap().build(&dev, [1, 28, 28], 10, 0).unwrap();
    assert_eq!(gray.activation_shapes().last().unwrap(), &vec![10]);
}

/// Loss of `model`'s plan in `mode` (train plans also run their backward) on one batch.
fn gpu_loss(model: &Model, training: bool, images: &[f32], labels: &[u32]) -> f64 {
    let plan = model.plan(labels.len(), training).unwrap();
    plan.upload(images, labels).unwrap();
    let dev = model.device();
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        plan.record_forward(&mut pass);
        plan.record_loss(&mut pass);
    }
    dev.queue().submit([enc.finish()]);
    plan.loss.to_vec_f32().unwrap().iter().map(|&v| v as f64).sum::<f64>() / labels.len() as f64
}

#[test]
fn eval_mode_normalises_by_the_running_statistics() {
    let dev = dev();
    let model = ModelConfig::resnet(8).unwrap().build(&dev, [3, 10, 10], 5, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut batch = |n: usize, shift: f32| {
        let images: Vec<f32> = (0..n * 300).map(|_| rng.random_range(-1.0..1.0) * 2.0 + shift).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..5)).collect();
        (images, labels)
    };
    // Three training forward passes on shifted, scaled data move the running statistics
    // well away from (0, 1).
    for _ in 0..3 {
        let (x, y) = batch(4, 0.7);
        gpu_loss(&model, true, &x, &y);
    }
    let buffers: Vec<Vec<f64>> =
        model.buffers().iter().map(|(_, t, _)| t.to_vec_f32().unwrap().iter().map(|&v| v as f64).collect()).collect();
    for ((name, _, kind), values) in model.buffers().iter().zip(&buffers) {
        if *kind == BufferKind::Counter {
            assert_eq!(values, &vec![3.0], "{name}");
        }
    }
    let params: Vec<Vec<f64>> =
        model.params().iter().map(|(_, t)| t.to_vec_f32().unwrap().iter().map(|&v| v as f64).collect()).collect();
    let (x, y) = batch(3, 0.0);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let eval = gpu_loss(&model, false, &x, &y);
    let want = model.reference_loss(&params, &buffers, &x64, &y, Mode::Eval);
    let with_batch_stats = model.reference_loss(&params, &buffers, &x64, &y, Mode::Train);
    assert!((eval - want).abs() < 1e-4 * (1.0 + want.abs()), "eval loss: gpu {eval} cpu {want}");
    assert!(
        (eval - with_batch_stats).abs() > 100.0 * 1e-4 * (1.0 + want.abs()),
        "eval loss {eval} is the batch-statistics loss {with_batch_stats}: eval mode must use the running statistics"
    );
    // An eval pass leaves the running statistics alone.
    let after: Vec<Vec<f64>> =
        model.buffers().iter().map(|(_, t, _)| t.to_vec_f32().unwrap().iter().map(|&v| v as f64).collect()).collect();
    assert_eq!(after, buffers);
}

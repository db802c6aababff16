//! `asgd bench matmul` and `asgd bench step`: GPU throughput, printed as a table and one JSON
//! line per result.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use asgd::engine::ops::matmul::{matmul, MatmulKernel, MatmulSpec};
use asgd::engine::{kernel::time_recorded, Tensor};
use asgd::{Device, Model, ModelConfig, Optimizer, Sgd, SgdParams};

use super::common::{positive, DeviceArgs};

#[derive(clap::Args)]
pub struct BenchMatmulArgs {
    /// Kernels to time, comma-separated: auto (what training uses: the tuner's choice, or the
    /// default with --tune off), default (the choice without measuring), blocked, tiled, kdot,
    /// a register tile such as r32x32w8x4, or on a device with subgroups a subgroup tile such as
    /// s8r32x8w8x8 (`s`, the device's subgroup size, a register tile whose threads along the
    /// columns are a multiple of it).
    #[arg(long, value_delimiter = ',', default_value = "auto,blocked,tiled", value_parser = parse_kernel)]
    pub kernels: Vec<KernelArg>,
    /// Other products to time, comma-separated, as MxNxK with an optional transpose suffix
    /// `:tn`, `:nt` or `:tt` (A stored (K, M), B stored (N, K)), e.g. 6x36864x25,16x150x6400:nt;
    /// only these are timed when given.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape)]
    pub shapes: Vec<MatmulSpec>,
    /// Square sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,384,512,768,1024")]
    pub sizes: Vec<usize>,
    /// Minimum seconds of timed work per shape.
    #[arg(long, default_value_t = 0.5)]
    pub min_time: f64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(clap::Args)]
pub struct BenchStepArgs {
    /// Timed steps per model (after two warm-up steps).
    #[arg(long, default_value = "20", value_parser = positive)]
    pub steps: usize,
    /// Models to time, comma-separated (mlp at batch 128, lenet at batch 64, ResNets on
    /// 3x32x32 images at batch 128).
    #[arg(long, value_delimiter = ',', default_value = "mlp,lenet")]
    pub models: Vec<String>,
    /// Samples per step instead of each model's default.
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// Also time each layer's forward and backward pass on its own.
    #[arg(long)]
    pub per_layer: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

fn parse_shape(s: &str) -> Result<MatmulSpec, String> {
    let bad = || format!("'{s}' is not a product shape; write MxNxK, optionally with :tn, :nt or :tt");
    let (dims, flags) = s.split_once(':').unwrap_or((s, "nn"));
    let d: Vec<usize> = dims.split('x').map(|v| v.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (trans_a, trans_b) = match flags {
        "nn" => (false, false),
        "tn" => (true, false),
        "nt" => (false, true),
        "tt" => (true, true),
        _ => return Err(bad()),
    };
    match d[..] {
        [m, n, k] if m > 0 && n > 0 && k > 0 => Ok(MatmulSpec { trans_a, trans_b, ..MatmulSpec::new(m, n, k) }),
        _ => Err(bad()),
    }
}

/// A kernel named on the command line.
#[derive(Clone, Copy, Debug)]
pub enum KernelArg {
    Default,
    Kernel(MatmulKernel),
}

fn parse_kernel(s: &str) -> Result<KernelArg, String> {
    if s == "default" {
        return Ok(KernelArg::Default);
    }
    MatmulKernel::parse(s).map(KernelArg::Kernel).ok_or_else(|| {
        format!(
            "unknown kernel '{s}'; use auto, default, blocked, tiled, kdot, a register tile such as r32x32w8x4 \
             or a subgroup tile such as s8r32x8w8x8"
        )
    })
}

fn bench_one(dev: &Device, label: &str, spec: MatmulSpec, kernel: KernelArg, min_time: f64) -> Result<()> {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    // Resolved here so that the table names the kernel that ran.
    let kernel = match kernel {
        KernelArg::Default => MatmulKernel::default_for(dev, &spec),
        KernelArg::Kernel(MatmulKernel::Auto) => asgd::engine::tune::matmul_kernel(dev, &spec),
        KernelArg::Kernel(k) => k,
    };
    let a = Tensor::from_f32(dev, &[m * k], &vec![0.5; m * k])?;
    let b = Tensor::from_f32(dev, &[k * n], &vec![0.25; k * n])?;
    let c = Tensor::zeros(dev, &[m * n])?;
    let d = matmul(dev, &c, &a, &b, spec, kernel)?;
    // Warm-up (compiles the pipeline), then size the repetitions to fill min_time.
    let record = |p: &mut wgpu::ComputePass<'_>| d.iter().for_each(|d| d.record(p));
    let once = time_recorded(dev, 1, &record)?.max(1e-6);
    let reps = ((min_time / once).ceil() as usize).clamp(1, 1000);
    let secs = reps as f64 * time_recorded(dev, reps, &record)?;
    let gflops = spec.flops() * reps as f64 / secs / 1e9;
    let ms = 1e3 * secs / reps as f64;
    let kname = kernel.name();
    println!(
        "{label:<14} {m:>5} {n:>5} {k:>5} {:>3} {:>3} {kname:<12} {ms:>10.3} {gflops:>9.2}",
        t(spec.trans_a),
        t(spec.trans_b)
    );
    println!(
        "{}",
        serde_json::json!({"bench": "matmul", "shape": label, "m": m, "n": n, "k": k, "trans_a": spec.trans_a,
            "trans_b": spec.trans_b, "kernel": kname, "ms": ms, "gflops": gflops, "device": dev.info().name})
    );
    Ok(())
}

fn t(b: bool) -> &'static str {
    if b {
        "T"
    } else {
        "N"
    }
}

pub fn run_matmul(args: BenchMatmulArgs) -> Result<ExitCode> {
    let dev = args.device.open()?;
    let kernels = &args.kernels;
    println!("device: {} ({}, {})", dev.info().name, dev.info().backend, dev.info().device_type);
    println!(
        "{:<14} {:>5} {:>5} {:>5} {:>3} {:>3} {:<12} {:>10} {:>9}",
        "shape", "M", "N", "K", "A", "B", "kernel", "ms", "GFLOP/s"
    );
    // The MLP's products at batch 128: forward (X W^T), input gradient (dY W), weight gradient (dY^T X).
    let mlp: [(&str, MatmulSpec); 6] = [
        ("fc1 forward", MatmulSpec { trans_b: true, ..MatmulSpec::new(128, 512, 784) }),
        ("fc1 dW", MatmulSpec { trans_a: true, ..MatmulSpec::new(512, 784, 128) }),
        ("fc2 forward", MatmulSpec { trans_b: true, ..MatmulSpec::new(128, 512, 512) }),
        ("fc2 dX", MatmulSpec::new(128, 512, 512)),
        ("fc2 dW", MatmulSpec { trans_a: true, ..MatmulSpec::new(512, 512, 128) }),
        ("fc3 forward", MatmulSpec { trans_b: true, ..MatmulSpec::new(128, 10, 512) }),
    ];
    for &kernel in kernels {
        for &n in args.sizes.iter().filter(|_| args.shapes.is_empty()) {
            bench_one(&dev, &format!("square {n}"), MatmulSpec::new(n, n, n), kernel, args.min_time)?;
        }
        for &spec in &args.shapes {
            bench_one(&dev, "given", spec, kernel, args.min_time)?;
        }
        if !args.shapes.is_empty() {
            continue;
        }
        for (label, spec) in mlp {
            bench_one(&dev, label, spec, kernel, args.min_time)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// FLOPs of one training step: forward, input gradients (not for the first layer) and weight
/// gradients of every linear and convolution layer; element-wise work is left out.
fn step_flops(model: &Model, batch: usize) -> f64 {
    let shapes = model.activation_shapes();
    let mut total = 0.0;
    let mut first = true;
    for (layer, shape) in model.layers().iter().zip(shapes) {
        let macs = layer.forward_macs(shape);
        if macs == 0 {
            continue;
        }
        let fwd = 2.0 * (batch * macs) as f64;
        total += fwd * if first { 2.0 } else { 3.0 };
        first = false;
    }
    total
}

pub fn run_step(args: BenchStepArgs) -> Result<ExitCode> {
    let dev = args.device.open()?;
    println!("device: {} ({}, {})", dev.info().name, dev.info().backend, dev.info().device_type);
    println!(
        "{:<12} {:>6} {:>10} {:>12} {:>12} {:>10}",
        "model", "batch", "ms/step", "samples/s", "GFLOP/step", "GFLOP/s"
    );
    for name in &args.models {
        let cfg = ModelConfig::parse(name)?;
        let batch = args.batch.unwrap_or(if cfg == ModelConfig::Lenet { 64 } else { 128 });
        // ResNets on CIFAR-sized images, as the literature measures them.
        let input =
            if matches!(cfg, ModelConfig::Resnet { .. } | ModelConfig::Resnet18) { [3, 32, 32] } else { [1, 28, 28] };
        let model = cfg.build(&dev, input, 10, 0)?;
        let sgd = Sgd::new(&model, SgdParams { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false });
        let plan = model.plan(batch, true)?;
        let updates = sgd.updates(&model, &plan)?;
        let images: Vec<f32> =
            (0..batch * input.iter().product::<usize>()).map(|i| ((i * 37) % 255) as f32 / 255.0 - 0.5).collect();
        let labels: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
        let step = || -> Result<()> {
            plan.upload(&images, &labels)?;
            let mut enc = dev.wgpu().create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                plan.record_forward(&mut pass);
                plan.record_loss(&mut pass);
                for i in (0..plan.num_layers()).rev() {
                    plan.record_backward(i, &mut pass);
                    updates.record(i, &mut pass);
                }
            }
            dev.submit([enc.finish()]);
            Ok(())
        };
        step()?;
        step()?;
        dev.wait_idle()?;
        let counted = dev.counters().values();
        let t0 = Instant::now();
        for _ in 0..args.steps {
            step()?;
        }
        dev.wait_idle()?;
        let per_step = dev.counters().values() - counted;
        let secs = t0.elapsed().as_secs_f64();
        let ms = 1e3 * secs / args.steps as f64;
        let rate = (batch * args.steps) as f64 / secs;
        let gflop = step_flops(&model, batch) / 1e9;
        println!(
            "{:<12} {batch:>6} {ms:>10.2} {rate:>12.0} {gflop:>12.3} {:>10.2}",
            cfg.description(),
            gflop / (ms / 1e3)
        );
        let n = args.steps as u64;
        if args.per_layer {
            println!(
                "    per step: {} dispatches, {} bind groups built, {} submissions, {} read-backs",
                per_step.dispatches / n,
                per_step.bind_groups / n,
                per_step.submissions / n,
                per_step.readbacks / n
            );
            per_layer(&dev, &model, &plan, args.steps)?;
        }
        println!(
            "{}",
            serde_json::json!({"bench": "step", "model": cfg.description(), "batch": batch, "ms_per_step": ms,
                "samples_per_s": rate, "gflop_per_step": gflop, "gflops": gflop / (ms / 1e3), "device": dev.info().name,
                "dispatches_per_step": per_step.dispatches / n, "submissions_per_step": per_step.submissions / n,
                "readbacks_per_step": per_step.readbacks / n, "bind_groups_per_step": per_step.bind_groups / n})
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Times each layer's forward and backward dispatches alone, `reps` times each.
fn per_layer(dev: &Device, model: &Model, plan: &asgd::engine::Plan, reps: usize) -> Result<()> {
    let time = |f: &dyn Fn(&mut wgpu::ComputePass<'_>)| -> Result<f64> { Ok(1e3 * time_recorded(dev, reps, f)?) };
    for (i, layer) in model.layers().iter().enumerate() {
        let (fwd, bwd) = plan.layer_dispatches(i);
        if layer.is_relu() && fwd.is_empty() && bwd.is_empty() && i > 0 {
            println!("    {:<10} applied by {}'s kernels", layer.name(), model.layers()[i - 1].name());
            continue;
        }
        let f = time(&|p| plan.record_forward_layer(i, p))?;
        let b = time(&|p| plan.record_backward(i, p))?;
        println!("    {:<10} forward {f:>8.3} ms   backward {b:>8.3} ms", layer.name());
        // Where a layer runs several kernels, each one's share.
        for (pass, list) in [("forward", fwd), ("backward", bwd)] {
            if list.len() < 2 {
                continue;
            }
            for d in list {
                let ms = time(&|p| d.record(p))?;
                println!("        {pass:<8} {:<40} {ms:>8.3} ms", d.label());
            }
        }
    }
    let l = time(&|p| plan.record_loss(p))?;
    println!("    {:<10} {l:>8.3} ms", "loss");
    Ok(())
}

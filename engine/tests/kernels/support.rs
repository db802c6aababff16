//! Shared test helpers: one device per test binary, seeded random data, comparison.

use std::sync::OnceLock;

use asgd_engine::{Device, DeviceOptions, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The device every test in this binary uses (opened once: opening costs ~0.3 s on lavapipe).
/// With `ASGD_TEST_GPU_KERNELS=1`, opened with [`Device::open_with_gpu_kernels`]: the tests then
/// run the kernel choices of a GPU on whatever adapter there is.
pub fn dev() -> &'static Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        let opts = DeviceOptions::default();
        let dev = match std::env::var("ASGD_TEST_GPU_KERNELS").as_deref() {
            Ok("1") => Device::open_with_gpu_kernels(&opts),
            _ => Device::open(&opts),
        };
        dev.unwrap_or_else(|e| panic!("{e}"))
    })
}

/// `n` uniform values in [-1, 1) from a seeded generator.
pub fn rand_vec(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Uploads f64 values as an f32 tensor.
pub fn upload(shape: &[usize], v: &[f64]) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_f32(dev(), shape, &f).unwrap()
}

/// The f32 values rounded to what the GPU saw, as f64 (so references use the same inputs).
pub fn as_f32(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x as f32 as f64).collect()
}

/// Asserts `gpu` matches `cpu` element-wise within `tol * (1 + max |cpu|)`, naming the first
/// element that does not.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f64], tol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    let scale = 1.0 + cpu.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(
            approx::abs_diff_eq!(g as f64, c, epsilon = tol * scale),
            "{what}: element {i}: gpu {g} vs cpu {c} (tolerance {})",
            tol * scale
        );
    }
}

/// `max(v, 0)` of every value (the ReLU's CPU reference): what a kernel with a fused ReLU must
/// write.
pub fn rectified(v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    asgd_engine::ops::relu::cpu::relu_forward(&mut out, v);
    out
}

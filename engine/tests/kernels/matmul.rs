use asgd_engine::ops::matmul::RegisterTile;
use asgd_engine::ops::matmul::{cpu, matmul, MatmulKernel, MatmulSpec};
use asgd_engine::Tensor;

use crate::support::*;

// Square-ish, odd, and thin ones that make the blocked kernel pick each of its tile layouts.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (7, 13, 5),
    (65, 67, 63),
    (130, 3, 129),
    (33, 200, 17),
    (64, 64, 64),
    (6, 1001, 25),
    (17, 300, 150),
    (1003, 5, 9),
    (300, 17, 6),
    // Few output tiles and a long K: split along K (including a ragged last split).
    (70, 3, 1037),
    (40, 90, 3000),
    // Tiny outputs and a long K: threads share K (matmul_kdot), with and without splits.
    (6, 25, 5000),
    (3, 5, 1500),
    (1, 1, 40_000),
    // Multiples of 4 along every axis: the generated kernels' vec4 reads.
    (36, 44, 52),
    (8, 12, 1024),
    (132, 68, 20),
];

fn check(kernel: MatmulKernel, s: MatmulSpec, seed: u64) {
    let a = as_f32(&rand_vec(seed, s.m * s.k));
    let b = as_f32(&rand_vec(seed + 1, s.k * s.n));
    let c0 = as_f32(&rand_vec(seed + 2, s.m * s.n));
    let a_shape = if s.trans_a { [s.k, s.m] } else { [s.m, s.k] };
    let b_shape = if s.trans_b { [s.n, s.k] } else { [s.k, s.n] };
    let (ta, tb, tc) = (upload(&a_shape, &a), upload(&b_shape, &b), upload(&[s.m, s.n], &c0));
    let d = matmul(dev(), &tc, &ta, &tb, s, kernel).unwrap();
    asgd_engine::kernel::run_all(dev(), &d.iter().collect::<Vec<_>>());
    let mut want = c0.clone();
    cpu::matmul(&mut want, &a, &b, s);
    assert_close(&format!("{kernel:?} {s:?}"), &tc.to_vec_f32().unwrap(), &want, 1e-5 * (s.k as f64).sqrt().max(1.0));
}

fn all_variants(kernel: MatmulKernel) {
    let mut seed = 0;
    for &(m, n, k) in SHAPES {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for accumulate in [false, true] {
                    let alpha = if accumulate { -0.5 } else { 1.0 };
                    seed += 10;
                    check(kernel, MatmulSpec { m, n, k, trans_a, trans_b, accumulate, alpha }, seed);
                }
            }
        }
    }
}

fn tile(rows: u32, cols: u32, threads: u32, threads_x: u32) -> MatmulKernel {
    MatmulKernel::Register(RegisterTile { rows, cols, threads, threads_x })
}

#[test]
fn register_tiles_match_reference() {
    // From the smallest block to 16x16, with every kind of thread layout, on every shape.
    for kernel in [tile(4, 4, 8, 2), tile(8, 4, 32, 4), tile(4, 8, 64, 16), tile(16, 8, 8, 1), tile(12, 16, 16, 8)] {
        all_variants(kernel);
    }
}

#[test]
fn large_register_tiles_match_reference_on_aligned_shapes() {
    // Blocks above 16x16 are only chosen where both operands are read as vec4 and A is not
    // transposed (elsewhere they compile for minutes on a CPU driver): those layouts, ragged
    // against the block in M and N.
    let mut seed = 5000;
    for (m, n, k) in [(36, 44, 52), (132, 68, 20), (64, 260, 36)] {
        for trans_b in [false, true] {
            for accumulate in [false, true] {
                seed += 1;
                check(
                    tile(32, 32, 8, 4),
                    MatmulSpec { m, n, k, trans_a: false, trans_b, accumulate, alpha: 0.75 },
                    seed,
                );
            }
        }
    }
}

#[test]
fn every_default_and_candidate_kernel_matches_reference() {
    // What a plan gets without measuring, and every kernel the tuner may pick, on shapes from
    // the MLP (aligned) and from convolutions (ragged).
    for (m, n, k, trans_b) in [(128, 512, 784, true), (16, 2000, 27, false), (10, 147, 131, true)] {
        let spec = MatmulSpec { trans_b, ..MatmulSpec::new(m, n, k) };
        let mut kernels = asgd_engine::tune::candidates(dev(), &spec);
        kernels.push(MatmulKernel::default_for(dev(), &spec));
        for kernel in kernels {
            check(kernel, spec, 7);
        }
    }
}

#[test]
fn cost_model_prefers_large_blocks_that_keep_lanes_busy() {
    use asgd_engine::ops::matmul::cpu_register_tile;
    let big = cpu_register_tile(&MatmulSpec::new(512, 512, 512));
    assert_eq!((big.rows, big.cols), (32, 32), "{big:?}");
    // Not where A is transposed or a ragged K forces scalar reads.
    let t = cpu_register_tile(&MatmulSpec { trans_a: true, ..MatmulSpec::new(512, 512, 512) });
    assert!(t.rows * t.cols <= 256, "{t:?}");
    let t = cpu_register_tile(&MatmulSpec::new(512, 512, 511));
    assert!(t.rows * t.cols <= 256, "{t:?}");
    // A 6x1000 output has 6 rows: blocks taller than 8 would mostly compute padding.
    let thin = cpu_register_tile(&MatmulSpec::new(6, 1000, 64));
    assert!(thin.rows <= 8, "{thin:?}");
    // 16 outputs cannot keep 16 threads busy with large blocks.
    let small = cpu_register_tile(&MatmulSpec::new(16, 16, 64));
    assert!(small.rows * small.cols <= 16, "{small:?}");
}

#[test]
fn blocked_matches_reference() {
    all_variants(MatmulKernel::Blocked);
}

#[test]
fn tiled_matches_reference() {
    all_variants(MatmulKernel::Tiled);
}

#[test]
fn thin_products_use_thin_tiles() {
    use asgd_engine::ops::matmul::threads_along_columns;
    assert_eq!(threads_along_columns(64, 64), 16);
    assert_eq!(threads_along_columns(16, 6400), 64);
    assert_eq!(threads_along_columns(6400, 16), 4);
    let layouts: std::collections::BTreeSet<usize> =
        SHAPES.iter().map(|&(m, n, _)| threads_along_columns(m, n)).collect();
    for tx in [4, 8, 16, 32, 64] {
        assert!(layouts.contains(&tx), "SHAPES must cover layout {tx}: {layouts:?}");
    }
}

#[test]
fn tiny_outputs_with_long_k_use_kdot() {
    use asgd_engine::ops::matmul::use_kdot;
    assert!(use_kdot(6, 25, 50176));
    assert!(use_kdot(6, 25, 5000) && use_kdot(3, 5, 1500) && use_kdot(1, 1, 40_000));
    assert!(!use_kdot(16, 150, 6400), "a 16x150 output fills a thin tile well enough");
    assert!(!use_kdot(6, 25, 500), "K too short to share among 256 threads");
    assert!(!use_kdot(512, 512, 4096));
}

#[test]
fn long_thin_products_are_split_along_k() {
    use asgd_engine::ops::matmul::split_k;
    assert_eq!(split_k(1, 50176), (32, 1568));
    assert_eq!(split_k(1, 5000), (19, 272));
    assert_eq!(split_k(64, 100_000), (1, 100_000));
    assert_eq!(split_k(1, 300), (1, 300));
    let (s, chunk) = split_k(2, 1037);
    assert!(s > 1 && chunk % 16 == 0 && (s - 1) * chunk < 1037 && s * chunk >= 1037);
}

#[test]
fn shape_mismatch_is_an_error() {
    let a = Tensor::zeros(dev(), &[3, 4]).unwrap();
    let b = Tensor::zeros(dev(), &[5, 2]).unwrap();
    let c = Tensor::zeros(dev(), &[3, 2]).unwrap();
    let err = matmul(dev(), &c, &a, &b, MatmulSpec::new(3, 2, 4), MatmulKernel::Blocked).err().unwrap();
    assert!(err.to_string().contains("right operand"), "{err}");
}

/// A subgroup tile for this device's subgroup size, or `None` (with the reason printed) where
/// the device has no subgroups of one fixed size.
fn subgroup_tile(rows: u32, cols: u32, groups: u32) -> Option<MatmulKernel> {
    use asgd_engine::ops::matmul::SubgroupTile;
    let Some(lanes) = dev().subgroup_size() else {
        eprintln!("skipped: {} has no subgroups of a fixed size ({})", dev().info().name, dev().features().describe());
        return None;
    };
    let block = RegisterTile { rows, cols, threads: lanes * groups, threads_x: lanes };
    Some(MatmulKernel::Subgroup(SubgroupTile { lanes, block }))
}

// Ragged along every axis (no multiple of 4 or 8 but the last two), a K split, and aligned ones
// for the vec4 reads.
const SUBGROUP_SHAPES: &[(usize, usize, usize)] =
    &[(1, 1, 1), (7, 13, 5), (65, 67, 63), (33, 201, 17), (130, 3, 129), (70, 3, 1037), (36, 44, 52), (64, 260, 36)];

#[test]
fn subgroup_tiles_match_reference() {
    let mut seed = 9000;
    // The largest block on fewer shapes: each layout is a pipeline that takes seconds to compile.
    for (rows, cols, groups, shapes) in
        [(8, 4, 1, SUBGROUP_SHAPES), (16, 8, 2, SUBGROUP_SHAPES), (32, 8, 1, &SUBGROUP_SHAPES[1..4])]
    {
        let Some(kernel) = subgroup_tile(rows, cols, groups) else { return };
        for &(m, n, k) in shapes {
            for trans_a in [false, true] {
                for trans_b in [false, true] {
                    for accumulate in [false, true] {
                        let alpha = if accumulate { -0.5 } else { 1.25 };
                        seed += 10;
                        check(kernel, MatmulSpec { m, n, k, trans_a, trans_b, accumulate, alpha }, seed);
                    }
                }
            }
        }
    }
}

#[test]
fn a_subgroup_tile_names_round_trip_and_needs_its_subgroup_size() {
    use asgd_engine::ops::matmul::SubgroupTile;
    let block = RegisterTile { rows: 32, cols: 8, threads: 16, threads_x: 8 };
    let k = MatmulKernel::Subgroup(SubgroupTile { lanes: 8, block });
    assert_eq!(MatmulKernel::parse(&k.name()), Some(k));
    assert_eq!(k.name(), "s8r32x8w16x8");
    // A size this device does not have is an error, not a wrong result.
    let lanes = if dev().subgroup_size() == Some(128) { 64 } else { 128 };
    let wrong = MatmulKernel::Subgroup(SubgroupTile {
        lanes,
        block: RegisterTile { threads: lanes, threads_x: lanes, ..block },
    });
    let t = |n| Tensor::zeros(dev(), &[n]).unwrap();
    let err = matmul(dev(), &t(64), &t(64), &t(64), MatmulSpec::new(8, 8, 8), wrong).err().unwrap();
    assert!(err.to_string().contains("subgroups"), "{err}");
    // The tuner offers subgroup tiles exactly where the device has them.
    let spec = MatmulSpec::new(128, 512, 512);
    let offered = asgd_engine::tune::candidates(dev(), &spec).iter().any(|k| matches!(k, MatmulKernel::Subgroup(_)));
    assert_eq!(offered, dev().subgroup_size().is_some());
}

fn check_bias(kernel: MatmulKernel, s: MatmulSpec, relu: bool, seed: u64) -> usize {
    use asgd_engine::ops::matmul::matmul_bias;
    let a = as_f32(&rand_vec(seed, s.m * s.k));
    let b = as_f32(&rand_vec(seed + 1, s.k * s.n));
    let c0 = as_f32(&rand_vec(seed + 2, s.m * s.n));
    let bias = as_f32(&rand_vec(seed + 3, s.n));
    let a_shape = if s.trans_a { [s.k, s.m] } else { [s.m, s.k] };
    let b_shape = if s.trans_b { [s.n, s.k] } else { [s.k, s.n] };
    let (ta, tb, tc) = (upload(&a_shape, &a), upload(&b_shape, &b), upload(&[s.m, s.n], &c0));
    let tbias = upload(&[s.n], &bias);
    let d = matmul_bias(dev(), &tc, &ta, &tb, &tbias, relu, s, kernel).unwrap();
    asgd_engine::kernel::run_all(dev(), &d.iter().collect::<Vec<_>>());
    let mut want = c0.clone();
    cpu::matmul(&mut want, &a, &b, s);
    asgd_engine::ops::bias::cpu::bias_add(&mut want, &bias, s.m, 1);
    if relu {
        let zeroed = want.iter().filter(|&&v| v < 0.0).count();
        assert!(zeroed > want.len() / 5, "{zeroed} of {} values below 0", want.len());
        want = rectified(&want);
    }
    let tol = 1e-5 * (s.k as f64).sqrt().max(1.0);
    assert_close(&format!("{kernel:?} {s:?} + bias, relu {relu}"), &tc.to_vec_f32().unwrap(), &want, tol);
    d.len()
}

#[test]
fn bias_is_added_in_the_store_of_generated_kernels() {
    let mut kernels = vec![(tile(8, 4, 8, 2), true), (tile(32, 32, 8, 4), true), (MatmulKernel::Blocked, false)];
    kernels.extend(subgroup_tile(16, 8, 1).map(|k| (k, true)));
    let mut seed = 20_000;
    for (kernel, fused) in kernels {
        for (m, n, k, trans_b) in [(7, 13, 5, true), (33, 201, 17, false), (36, 44, 52, true), (70, 3, 1037, true)] {
            if matches!(kernel, MatmulKernel::Register(t) if t.rows > 16) && (m, n, k) != (36, 44, 52) {
                continue; // large blocks only where both reads are vec4
            }
            // The fused ReLU is only ever asked of a linear layer's forward (no accumulate).
            for (accumulate, relu) in [(false, false), (true, false), (false, true)] {
                seed += 10;
                let s = MatmulSpec { trans_b, accumulate, alpha: 0.5, ..MatmulSpec::new(m, n, k) };
                let dispatches = check_bias(kernel, s, relu, seed);
                // One dispatch where fused, even with a long K (never split); else the product's
                // (two where K is split) and the bias's.
                assert_eq!(dispatches == 1, fused, "{kernel:?} {s:?}: {dispatches} dispatches");
            }
        }
    }
}

#[test]
fn linear_forward_matches_reference_with_the_bias_and_relu_in_the_store() {
    use asgd_engine::layers::{Layer, LayerIo, Linear, Mode};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (batch, inputs, outputs) = (13, 37, 21);
    let layer = Linear::new(dev(), "fc", inputs, outputs, &mut rng).unwrap();
    let x = as_f32(&rand_vec(77, batch * inputs));
    let tx = upload(&[batch, inputs], &x);
    let params: Vec<Tensor> = layer.params().iter().map(|p| p.value.clone()).collect();
    let host: Vec<Vec<f64>> =
        params.iter().map(|p| p.to_vec_f32().unwrap().iter().map(|&v| v as f64).collect()).collect();
    let linear = layer.reference_forward(&host, &[], &x, batch, &[inputs], Mode::Eval);
    let mut kernels =
        vec![tile(4, 4, 8, 2), MatmulKernel::default_for(dev(), &MatmulSpec::new(batch, outputs, inputs))];
    kernels.extend(subgroup_tile(8, 4, 1));
    for (kernel, relu) in kernels.into_iter().flat_map(|k| [(k, false), (k, true)]) {
        let want = if relu { rectified(&linear) } else { linear.clone() };
        let y = Tensor::zeros(dev(), &[batch, outputs]).unwrap();
        let io = LayerIo {
            dev: dev(),
            batch,
            in_shape: &[inputs],
            x: &tx,
            y: &y,
            dy: None,
            dx: None,
            grads: &[],
            params: &params,
            matmul: kernel,
            mode: Mode::Eval,
            relu,
        };
        let plan = layer.build(&io).unwrap();
        // The generated kernels add the bias (and apply the ReLU) in their store; the hand-written
        // ones (a GPU's untuned default) in a pass after it.
        let fused = matches!(kernel, MatmulKernel::Register(_) | MatmulKernel::Subgroup(_));
        assert_eq!(plan.forward.len(), if fused { 1 } else { 2 }, "{kernel:?}: the bias (and ReLU) in the store");
        asgd_engine::kernel::run_all(dev(), &plan.forward.iter().collect::<Vec<_>>());
        let what = format!("linear {kernel:?}, relu {relu}");
        assert_close(&what, &y.to_vec_f32().unwrap(), &want, 1e-5 * 37f64.sqrt());
    }
}

#[test]
fn f16_conversion_rounds_to_nearest_even() {
    use asgd_engine::ops::matmul::{f16_bits, f16_value, pack_f16};
    for (x, h) in [(1.0f32, 0x3c00u16), (-2.0, 0xc000), (0.1, 0x2e66), (65504.0, 0x7bff), (1e6, 0x7c00), (0.0, 0)] {
        assert_eq!(f16_bits(x), h, "{x}");
    }
    assert_eq!(f16_bits(2f32.powi(-24)), 1, "smallest subnormal");
    assert_eq!(f16_bits(1.0 + 2f32.powi(-11)), 0x3c00, "a tie rounds to even");
    assert_eq!(f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02, "a tie rounds to even");
    for h in [0x3c00u16, 0x2e66, 0x7bff, 0x0001, 0x83ff, 0x5555] {
        assert_eq!(f16_bits(f16_value(h)), h);
    }
    assert_eq!(pack_f16(&[1.0, -2.0, 0.5]), vec![0xc000_3c00, 0x3800]);
}

/// Largest error relative to the largest reference value, and the error's norm relative to
/// the reference's.
fn relative_errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let max = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    (max / scale, norm(&mut got.iter().zip(want).map(|(&g, &w)| g as f64 - w)) / norm(&mut want.iter().copied()))
}

#[test]
fn f16_operands_match_reference_within_their_rounding() {
    use asgd_engine::ops::matmul::{f16_value, matmul_f16, pack_f16};
    if !dev().has_f16() {
        eprintln!("skipped: {} has no shader-f16 ({})", dev().info().name, dev().features().describe());
        return;
    }
    let mut seed = 30_000;
    for (m, n, k) in [(7, 13, 5), (65, 67, 63), (36, 44, 52), (128, 512, 784)] {
        for (trans_a, trans_b, accumulate) in
            [(false, false, false), (true, false, true), (false, true, false), (true, true, true)]
        {
            seed += 10;
            let s = MatmulSpec { m, n, k, trans_a, trans_b, accumulate, alpha: 0.75 };
            let a: Vec<f32> = rand_vec(seed, m * k).iter().map(|&v| v as f32).collect();
            let b: Vec<f32> = rand_vec(seed + 1, k * n).iter().map(|&v| v as f32).collect();
            let c0 = as_f32(&rand_vec(seed + 2, m * n));
            let (pa, pb) = (pack_f16(&a), pack_f16(&b));
            let ta = Tensor::from_u32(dev(), &[pa.len()], &pa).unwrap();
            let tb = Tensor::from_u32(dev(), &[pb.len()], &pb).unwrap();
            let tile = RegisterTile { rows: 8, cols: 8, threads: 8, threads_x: 2 };
            let tc = upload(&[m, n], &c0);
            let d = matmul_f16(dev(), &tc, &ta, &tb, s, tile).unwrap();
            asgd_engine::kernel::run_all(dev(), &d.iter().collect::<Vec<_>>());
            let got = tc.to_vec_f32().unwrap();
            // Against the product of the rounded operands: only f32 sums' error.
            let half = |v: &[f32]| -> Vec<f64> {
                v.iter().map(|&x| f16_value(asgd_engine::ops::matmul::f16_bits(x)) as f64).collect()
            };
            let mut rounded = c0.clone();
            cpu::matmul(&mut rounded, &half(&a), &half(&b), s);
            assert_close(&format!("f16 {s:?}"), &got, &rounded, 1e-5 * (k as f64).sqrt());
            // Against the exact product of the f32 operands: the cost of f16 storage.
            let exact_a: Vec<f64> = a.iter().map(|&v| v as f64).collect();
            let exact_b: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let mut exact = c0.clone();
            cpu::matmul(&mut exact, &exact_a, &exact_b, s);
            let (max, norm) = relative_errors(&got, &exact);
            // The f32 kernel on the same inputs, for comparison.
            let (fa, fb) = (upload(&[a.len()], &exact_a), upload(&[b.len()], &exact_b));
            let fc = upload(&[m, n], &c0);
            let d = matmul(dev(), &fc, &fa, &fb, s, MatmulKernel::Register(tile)).unwrap();
            asgd_engine::kernel::run_all(dev(), &d.iter().collect::<Vec<_>>());
            let (max32, norm32) = relative_errors(&fc.to_vec_f32().unwrap(), &exact);
            println!("f16 operands {m}x{n}x{k} {trans_a} {trans_b}: relative error max {max:.2e} norm {norm:.2e}; f32 max {max32:.2e} norm {norm32:.2e}");
            // Each operand is off by up to 2^-11 of itself: a sum of K such terms, of random
            // signs, is off by about 2^-11 sqrt(K / 3) of the sum's scale.
            assert!(norm < 2e-3 && max < 4e-3, "f16 error too large: max {max:.2e} norm {norm:.2e}");
        }
    }
}

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

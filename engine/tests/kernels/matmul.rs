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

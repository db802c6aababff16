use asgd_engine::ops::matmul::{cpu, matmul, MatmulKernel, MatmulSpec};
use asgd_engine::Tensor;

use crate::support::*;

const SHAPES: &[(usize, usize, usize)] = &[(1, 1, 1), (7, 13, 5), (65, 67, 63), (130, 3, 129), (33, 200, 17), (64, 64, 64)];

fn check(kernel: MatmulKernel, s: MatmulSpec, seed: u64) {
    let a = as_f32(&rand_vec(seed, s.m * s.k));
    let b = as_f32(&rand_vec(seed + 1, s.k * s.n));
    let c0 = as_f32(&rand_vec(seed + 2, s.m * s.n));
    let a_shape = if s.trans_a { [s.k, s.m] } else { [s.m, s.k] };
    let b_shape = if s.trans_b { [s.n, s.k] } else { [s.k, s.n] };
    let (ta, tb, tc) = (upload(&a_shape, &a), upload(&b_shape, &b), upload(&[s.m, s.n], &c0));
    matmul(dev(), &tc, &ta, &tb, s, kernel).unwrap().run(dev());
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
fn shape_mismatch_is_an_error() {
    let a = Tensor::zeros(dev(), &[3, 4]);
    let b = Tensor::zeros(dev(), &[5, 2]);
    let c = Tensor::zeros(dev(), &[3, 2]);
    let err = matmul(dev(), &c, &a, &b, MatmulSpec::new(3, 2, 4), MatmulKernel::Blocked).err().unwrap();
    assert!(err.to_string().contains("right operand"), "{err}");
}

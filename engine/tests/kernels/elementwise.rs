use asgd_engine::kernel::MAX_GROUPS_PER_DIM;
use asgd_engine::ops::elementwise::{add_relu, cpu, scale_add};

use crate::support::*;

#[test]
fn scale_add_matches_reference() {
    for (i, n) in [1usize, 333, 4097].into_iter().enumerate() {
        for (alpha, beta) in [(0.25f32, 0.0f32), (-1.5, 0.75), (1.0, 1.0)] {
            let x = as_f32(&rand_vec(300 + i as u64, n));
            let y0 = as_f32(&rand_vec(400 + i as u64, n));
            let (tx, ty) = (upload(&[n], &x), upload(&[n], &y0));
            scale_add(dev(), &ty, &tx, alpha, beta).unwrap().run(dev());
            let mut want = y0.clone();
            cpu::scale_add(&mut want, &x, alpha as f64, beta as f64);
            assert_close("scale_add", &ty.to_vec_f32().unwrap(), &want, 1e-6);
        }
    }
}

#[test]
fn add_relu_matches_reference() {
    for (i, n) in [1usize, 333, 4097].into_iter().enumerate() {
        let x = as_f32(&rand_vec(500 + i as u64, n));
        let y0 = as_f32(&rand_vec(600 + i as u64, n));
        let (tx, ty) = (upload(&[n], &x), upload(&[n], &y0));
        add_relu(dev(), &ty, &tx).unwrap().run(dev());
        let mut want = y0.clone();
        cpu::add_relu(&mut want, &x);
        assert!(n < 100 || want.iter().filter(|&&v| v == 0.0).count() > n / 4, "half the sums are negative");
        assert_close("add_relu", &ty.to_vec_f32().unwrap(), &want, 1e-6);
    }
}

/// More elements than 65535 workgroups of 256 cover: the grid folds into two dimensions and
/// every element must still be visited exactly once.
#[test]
fn folded_grid_covers_every_element() {
    let n = MAX_GROUPS_PER_DIM as usize * 256 + 1001;
    let x: Vec<f64> = (0..n).map(|i| (i % 1000) as f64).collect();
    let (tx, ty) = (upload(&[n], &x), upload(&[n], &vec![1.0; n]));
    scale_add(dev(), &ty, &tx, 2.0, 1.0).unwrap().run(dev());
    let got = ty.to_vec_f32().unwrap();
    for (i, (&g, &xv)) in got.iter().zip(&x).enumerate() {
        assert_eq!(g as f64, 2.0 * xv + 1.0, "element {i}");
    }
}

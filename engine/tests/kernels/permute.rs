use asgd_engine::ops::permute::{cpu, swap_outer};

use crate::support::*;

#[test]
fn swap_outer_matches_reference() {
    for (i, &(d0, d1, inner)) in [(1, 1, 1), (6, 7, 100), (3, 5, 1), (16, 3, 49), (2, 300, 3)].iter().enumerate() {
        let n = d0 * d1 * inner;
        let src = as_f32(&rand_vec(5000 + i as u64, n));
        let dst = upload(&[n], &vec![f64::NAN; n]);
        swap_outer(dev(), &dst, &upload(&[n], &src), d0, d1, inner).unwrap().run(dev());
        let mut want = vec![0.0; n];
        cpu::swap_outer(&mut want, &src, d0, d1, inner);
        assert_close("swap_outer", &dst.to_vec_f32().unwrap(), &want, 0.0);
    }
}

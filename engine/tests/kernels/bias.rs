use asgd_engine::ops::bias::{bias_add, channel_sum, cpu};
use asgd_engine::{DType, Tensor};

use crate::support::*;

const SHAPES: &[(usize, usize, usize)] = &[(1, 1, 1), (37, 13, 1), (5, 7, 49), (3, 300, 3), (129, 10, 1)];

#[test]
fn bias_add_matches_reference() {
    for (i, (&(outer, c, inner), relu)) in SHAPES.iter().flat_map(|s| [(s, false), (s, true)]).enumerate() {
        let n = outer * c * inner;
        let y0 = as_f32(&rand_vec(500 + i as u64, n));
        let b = as_f32(&rand_vec(600 + i as u64, c));
        let (ty, tb) = (upload(&[n], &y0), upload(&[c], &b));
        bias_add(dev(), &ty, &tb, outer, inner, relu).unwrap().run(dev());
        let mut want = y0.clone();
        cpu::bias_add(&mut want, &b, outer, inner);
        if relu {
            want = rectified(&want);
        }
        assert_close(&format!("bias_add, relu {relu}"), &ty.to_vec_f32().unwrap(), &want, 1e-6);
    }
}

#[test]
fn channel_sum_matches_reference() {
    // inner = 1 with at most 1024 rows takes the one-thread-per-column kernel (515 columns:
    // several workgroups, the last one partial); more rows, or inner > 1, the workgroup tree.
    let more = [(1000, 3, 7), (200, 515, 1), (1024, 9, 1), (1025, 9, 1), (3000, 70, 1)];
    for (i, &(outer, c, inner)) in SHAPES.iter().chain(&more).enumerate() {
        let n = outer * c * inner;
        let dy = as_f32(&rand_vec(700 + i as u64, n));
        let tdy = upload(&[n], &dy);
        let tdb = Tensor::empty(dev(), &[c], DType::F32).unwrap();
        channel_sum(dev(), &tdb, &tdy, outer, inner).unwrap().run(dev());
        let mut want = vec![0.0; c];
        cpu::channel_sum(&mut want, &dy, outer, inner);
        assert_close("channel_sum", &tdb.to_vec_f32().unwrap(), &want, 1e-5);
    }
}

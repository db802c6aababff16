use asgd_engine::ops::avgpool::{cpu, global_avg_pool, global_avg_pool_backward};
use asgd_engine::{DType, Tensor};

use crate::support::*;

#[test]
fn global_avg_pool_forward_and_backward_match_reference() {
    // (B, C, HW): a 1x1 map, odd channel counts, a 7x7 map, and B*C past one workgroup.
    for (i, &(b, c, hw)) in [(1, 3, 1), (2, 5, 7), (5, 3, 49), (3, 100, 4)].iter().enumerate() {
        let x = as_f32(&rand_vec(9000 + i as u64, b * c * hw));
        let dy = as_f32(&rand_vec(9100 + i as u64, b * c));
        let (tx, tdy) = (upload(&[b, c, hw], &x), upload(&[b, c], &dy));
        let ty = Tensor::empty(dev(), &[b, c], DType::F32).unwrap();
        // A recycled buffer may hold anything: the backward must overwrite every element.
        let tdx = upload(&[b, c, hw], &vec![f64::NAN; b * c * hw]);
        global_avg_pool(dev(), &ty, &tx, b, c, hw).unwrap().run(dev());
        global_avg_pool_backward(dev(), &tdx, &tdy, b, c, hw).unwrap().run(dev());
        let mut y = vec![0.0; b * c];
        cpu::global_avg_pool(&mut y, &x, b, c, hw);
        let mut dx = vec![0.0; b * c * hw];
        cpu::global_avg_pool_backward(&mut dx, &dy, b, c, hw);
        assert_close("avg pool forward", &ty.to_vec_f32().unwrap(), &y, 1e-6);
        assert_close("avg pool backward", &tdx.to_vec_f32().unwrap(), &dx, 1e-6);
    }
}

#[test]
fn global_avg_pool_of_constant_planes_is_that_constant() {
    // Independent of the reference: a plane of all v pools to v; dy = 49 spreads as 1.
    let (b, c, hw) = (2, 3, 49);
    let x: Vec<f64> = (0..b * c * hw).map(|i| (i / hw) as f64 - 2.5).collect();
    let tx = upload(&[b, c, hw], &x);
    let ty = Tensor::empty(dev(), &[b, c], DType::F32).unwrap();
    global_avg_pool(dev(), &ty, &tx, b, c, hw).unwrap().run(dev());
    let want: Vec<f64> = (0..b * c).map(|p| p as f64 - 2.5).collect();
    assert_close("avg pool of constants", &ty.to_vec_f32().unwrap(), &want, 1e-6);
    let tdy = upload(&[b, c], &vec![49.0; b * c]);
    let tdx = Tensor::empty(dev(), &[b, c, hw], DType::F32).unwrap();
    global_avg_pool_backward(dev(), &tdx, &tdy, b, c, hw).unwrap().run(dev());
    assert_close("avg pool backward of 49", &tdx.to_vec_f32().unwrap(), &vec![1.0; b * c * hw], 1e-6);
}

use asgd_engine::ops::maxpool::{cpu, maxpool_backward, maxpool_forward, pooled_hw, PoolShape};
use asgd_engine::{DType, Tensor};

use crate::support::*;

#[test]
fn forward_and_backward_match_reference() {
    // (planes, h, w, k): LeNet's two pools, odd sizes whose last row/column is dropped, k = 3.
    for (i, &(planes, h, w, k)) in
        [(12, 28, 28, 2), (32, 10, 10, 2), (5, 7, 9, 2), (3, 10, 11, 3), (1, 2, 2, 2)].iter().enumerate()
    {
        let (oh, ow) = pooled_hw(h, w, k).unwrap();
        let x = as_f32(&rand_vec(2000 + i as u64, planes * h * w));
        let dy = as_f32(&rand_vec(2100 + i as u64, planes * oh * ow));
        let tx = upload(&[planes, h, w], &x);
        let tdy = upload(&[planes, oh, ow], &dy);
        let ty = Tensor::empty(dev(), &[planes, oh, ow], DType::F32).unwrap();
        let targ = Tensor::empty(dev(), &[planes, oh, ow], DType::U32).unwrap();
        // A recycled buffer may hold anything: the backward must overwrite every element.
        let tdx = upload(&[planes, h, w], &vec![f64::NAN; planes * h * w]);
        let s = PoolShape { planes, h, w, k };
        maxpool_forward(dev(), &ty, &targ, &tx, s).unwrap().run(dev());
        maxpool_backward(dev(), &tdx, &tdy, &targ, s).unwrap().run(dev());
        let mut y = vec![0.0; planes * oh * ow];
        let arg = cpu::maxpool_forward(&mut y, &x, planes, h, w, k);
        let mut dx = vec![0.0; planes * h * w];
        cpu::maxpool_backward(&mut dx, &dy, &arg);
        assert_close("maxpool forward", &ty.to_vec_f32().unwrap(), &y, 0.0);
        let got_arg: Vec<usize> = targ.to_vec_u32().unwrap().into_iter().map(|v| v as usize).collect();
        assert_eq!(got_arg, arg, "argmax");
        assert_close("maxpool backward", &tdx.to_vec_f32().unwrap(), &dx, 0.0);
    }
}

use asgd_engine::ops::relu::{cpu, relu_backward, relu_forward};
use asgd_engine::{DType, Tensor};

use crate::support::*;

#[test]
fn forward_and_backward_match_reference() {
    for (i, n) in [1usize, 255, 257, 1000, 70_001].into_iter().enumerate() {
        let x = as_f32(&rand_vec(100 + i as u64, n));
        let dy = as_f32(&rand_vec(200 + i as u64, n));
        let (tx, tdy) = (upload(&[n], &x), upload(&[n], &dy));
        let ty = Tensor::empty(dev(), &[n], DType::F32).unwrap();
        let tdx = Tensor::empty(dev(), &[n], DType::F32).unwrap();
        relu_forward(dev(), &ty, &tx).unwrap().run(dev());
        relu_backward(dev(), &tdx, &tdy, &tx).unwrap().run(dev());
        let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
        cpu::relu_forward(&mut y, &x);
        cpu::relu_backward(&mut dx, &dy, &x);
        assert_close("relu forward", &ty.to_vec_f32().unwrap(), &y, 0.0);
        assert_close("relu backward", &tdx.to_vec_f32().unwrap(), &dx, 0.0);
    }
}

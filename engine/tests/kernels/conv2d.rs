use asgd_engine::ops::conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward, cpu, ConvShape};
use asgd_engine::{DType, Tensor};

use crate::support::*;

#[rustfmt::skip]
const SHAPES: &[ConvShape] = &[
    // LeNet-5's first layer on 28x28 digits, and its second.
    ConvShape { batch: 2, cin: 1, h: 28, w: 28, cout: 6, kh: 5, kw: 5, stride: 1, pad: 2 },
    ConvShape { batch: 3, cin: 6, h: 14, w: 14, cout: 16, kh: 5, kw: 5, stride: 1, pad: 0 },
    // Odd sizes, stride and padding together, a non-square kernel, stride past the kernel.
    ConvShape { batch: 3, cin: 2, h: 7, w: 9, cout: 5, kh: 3, kw: 3, stride: 1, pad: 1 },
    ConvShape { batch: 2, cin: 3, h: 11, w: 10, cout: 4, kh: 5, kw: 5, stride: 2, pad: 2 },
    ConvShape { batch: 1, cin: 4, h: 9, w: 8, cout: 3, kh: 3, kw: 2, stride: 3, pad: 0 },
    ConvShape { batch: 5, cin: 1, h: 5, w: 5, cout: 1, kh: 1, kw: 1, stride: 2, pad: 1 },
];

#[test]
fn forward_and_backward_match_reference() {
    for (i, s) in SHAPES.iter().enumerate() {
        let (nx, nw, ny) = s.sizes().unwrap();
        let (oh, ow) = s.out_hw().unwrap();
        let seed = 1000 + 10 * i as u64;
        let x = as_f32(&rand_vec(seed, nx));
        let w = as_f32(&rand_vec(seed + 1, nw));
        let dy = as_f32(&rand_vec(seed + 2, ny));
        let tx = upload(&[s.batch, s.cin, s.h, s.w], &x);
        let tw = upload(&[s.cout, s.cin, s.kh, s.kw], &w);
        let tdy = upload(&[s.batch, s.cout, oh, ow], &dy);
        let ty = Tensor::empty(dev(), &[s.batch, s.cout, oh, ow], DType::F32);
        let tdx = Tensor::empty(dev(), &[s.batch, s.cin, s.h, s.w], DType::F32);
        let tdw = Tensor::empty(dev(), &[s.cout, s.cin, s.kh, s.kw], DType::F32);
        conv2d_forward(dev(), &ty, &tx, &tw, s).unwrap().run(dev());
        conv2d_backward_input(dev(), &tdx, &tdy, &tw, s).unwrap().run(dev());
        conv2d_backward_weight(dev(), &tdw, &tdy, &tx, s).unwrap().run(dev());
        let (mut y, mut dx, mut dw) = (vec![0.0; ny], vec![0.0; nx], vec![0.0; nw]);
        cpu::conv2d_forward(&mut y, &x, &w, s);
        cpu::conv2d_backward_input(&mut dx, &dy, &w, s);
        cpu::conv2d_backward_weight(&mut dw, &dy, &x, s);
        let tol = 1e-5 * ((s.batch * oh * ow) as f64).sqrt();
        assert_close(&format!("forward {s:?}"), &ty.to_vec_f32().unwrap(), &y, tol);
        assert_close(&format!("backward input {s:?}"), &tdx.to_vec_f32().unwrap(), &dx, tol);
        assert_close(&format!("backward weight {s:?}"), &tdw.to_vec_f32().unwrap(), &dw, tol);
    }
}

#[test]
fn a_kernel_larger_than_the_input_is_an_error() {
    let s = ConvShape { batch: 1, cin: 1, h: 3, w: 3, cout: 1, kh: 5, kw: 5, stride: 1, pad: 0 };
    assert!(s.out_hw().unwrap_err().to_string().contains("does not fit"));
}

use asgd_engine::ops::conv2d::{col2im, conv2d_backward, conv2d_forward, cpu, im2col, ConvScratch, ConvShape};
use asgd_engine::ops::matmul::MatmulKernel;
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
fn im2col_and_col2im_match_reference() {
    for (i, s) in SHAPES.iter().enumerate() {
        let (nx, _, _) = s.sizes().unwrap();
        let [r, c] = s.cols_shape().unwrap();
        let x = as_f32(&rand_vec(900 + i as u64, nx));
        let dcols = as_f32(&rand_vec(950 + i as u64, r * c));
        let tcols = upload(&[r, c], &vec![f64::NAN; r * c]);
        im2col(dev(), &tcols, &upload(&[nx], &x), s).unwrap().run(dev());
        assert_close(&format!("im2col {s:?}"), &tcols.to_vec_f32().unwrap(), &cpu::im2col(&x, s), 0.0);
        let tdx = upload(&[nx], &vec![f64::NAN; nx]);
        col2im(dev(), &tdx, &upload(&[r, c], &dcols), s).unwrap().run(dev());
        let mut dx = vec![0.0; nx];
        cpu::col2im(&mut dx, &dcols, s);
        assert_close(&format!("col2im {s:?}"), &tdx.to_vec_f32().unwrap(), &dx, 1e-6);
    }
}

fn forward_and_backward(kernel: MatmulKernel) {
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
        let ty = Tensor::empty(dev(), &[s.batch, s.cout, oh, ow], DType::F32).unwrap();
        let tdx = Tensor::empty(dev(), &[s.batch, s.cin, s.h, s.w], DType::F32).unwrap();
        let tdw = Tensor::empty(dev(), &[s.cout, s.cin, s.kh, s.kw], DType::F32).unwrap();
        let scratch = ConvScratch::new(dev(), s, true).unwrap();
        let mut all = conv2d_forward(dev(), &ty, &tx, &tw, &scratch, s, kernel).unwrap();
        all.extend(conv2d_backward(dev(), &tdw, Some(&tdx), &tdy, &tw, &scratch, s, kernel).unwrap());
        asgd_engine::kernel::run_all(dev(), &all.iter().collect::<Vec<_>>());
        let (mut y, mut dx, mut dw) = (vec![0.0; ny], vec![0.0; nx], vec![0.0; nw]);
        cpu::conv2d_forward(&mut y, &x, &w, s);
        cpu::conv2d_backward_input(&mut dx, &dy, &w, s);
        cpu::conv2d_backward_weight(&mut dw, &dy, &x, s);
        let tol = 1e-5 * ((s.batch * oh * ow) as f64).sqrt();
        assert_close(&format!("{kernel:?} forward {s:?}"), &ty.to_vec_f32().unwrap(), &y, tol);
        assert_close(&format!("{kernel:?} backward input {s:?}"), &tdx.to_vec_f32().unwrap(), &dx, tol);
        assert_close(&format!("{kernel:?} backward weight {s:?}"), &tdw.to_vec_f32().unwrap(), &dw, tol);
    }
}

#[test]
fn forward_and_backward_match_reference_blocked() {
    forward_and_backward(MatmulKernel::Blocked);
}

#[test]
fn forward_and_backward_match_reference_tiled() {
    forward_and_backward(MatmulKernel::Tiled);
}

#[test]
fn forward_and_backward_match_reference_as_plans_build_them() {
    // What a plan uses: the device's default kernel for each product (register tiles on a CPU
    // driver, with split-K and K-parallel products for the weight gradients).
    forward_and_backward(MatmulKernel::Auto);
}

#[test]
fn a_kernel_larger_than_the_input_is_an_error() {
    let s = ConvShape { batch: 1, cin: 1, h: 3, w: 3, cout: 1, kh: 5, kw: 5, stride: 1, pad: 0 };
    assert!(s.out_hw().unwrap_err().to_string().contains("does not fit"));
}

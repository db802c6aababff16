use asgd_engine::ops::conv2d::{
    col2im, conv2d_backward, conv2d_forward, cpu, direct_backward, direct_forward, im2col, ConvScratch, ConvShape,
    DirectScratch,
};
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

/// Shapes for the direct kernels: channels 1, 3, 5, 6, 7 (and counts past one block of 16),
/// odd heights and widths, stride 1 and 2, padding 0 to 2 (also more than the kernel's reach
/// back, which makes the input gradient's own padding negative), kernels 1, 3 and 5, batch 1
/// and 3, and ResNet-like shapes whose rows take the `vec4` paths; [`SHAPES`] adds LeNet-5's, a
/// 5x5 kernel at stride 2 and a 3x2 kernel at stride 3. Each geometry is a pipeline of its own,
/// and a CPU driver takes seconds to compile one, so the list covers each case once.
#[rustfmt::skip]
const DIRECT_SHAPES: &[ConvShape] = &[
    ConvShape { batch: 1, cin: 1, h: 7, w: 9, cout: 6, kh: 5, kw: 5, stride: 1, pad: 2 },
    ConvShape { batch: 3, cin: 5, h: 11, w: 9, cout: 7, kh: 3, kw: 3, stride: 2, pad: 1 },
    ConvShape { batch: 1, cin: 7, h: 9, w: 11, cout: 3, kh: 1, kw: 1, stride: 2, pad: 0 },
    ConvShape { batch: 1, cin: 3, h: 7, w: 7, cout: 7, kh: 3, kw: 3, stride: 2, pad: 2 },
    ConvShape { batch: 3, cin: 5, h: 9, w: 9, cout: 6, kh: 1, kw: 1, stride: 1, pad: 1 },
    ConvShape { batch: 1, cin: 7, h: 15, w: 13, cout: 20, kh: 3, kw: 3, stride: 1, pad: 0 },
    ConvShape { batch: 3, cin: 1, h: 11, w: 13, cout: 3, kh: 3, kw: 3, stride: 1, pad: 2 },
    ConvShape { batch: 2, cin: 16, h: 16, w: 16, cout: 32, kh: 3, kw: 3, stride: 2, pad: 1 },
    ConvShape { batch: 2, cin: 16, h: 12, w: 12, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1 },
];

/// The direct kernels' forward pass (with and without the fused bias, and the fused ReLU),
/// weight gradient and input gradient against the f64 references.
#[test]
fn direct_kernels_match_reference() {
    for (i, s) in DIRECT_SHAPES.iter().chain(SHAPES).enumerate() {
        let (nx, nw, ny) = s.sizes().unwrap();
        let (oh, ow) = s.out_hw().unwrap();
        let seed = 3000 + 10 * i as u64;
        let x = as_f32(&rand_vec(seed, nx));
        let w = as_f32(&rand_vec(seed + 1, nw));
        let dy = as_f32(&rand_vec(seed + 2, ny));
        let bias = as_f32(&rand_vec(seed + 3, s.cout));
        let (with_bias, relu) = (i % 2 == 0, i % 3 == 1);
        let tx = upload(&[s.batch, s.cin, s.h, s.w], &x);
        let tw = upload(&[s.cout, s.cin, s.kh, s.kw], &w);
        let tb = upload(&[s.cout], &bias);
        let tdy = upload(&[s.batch, s.cout, oh, ow], &dy);
        // NaN where a kernel forgets to write.
        let ty = upload(&[s.batch, s.cout, oh, ow], &vec![f64::NAN; ny]);
        let tdx = upload(&[s.batch, s.cin, s.h, s.w], &vec![f64::NAN; nx]);
        let tdw = upload(&[s.cout, s.cin, s.kh, s.kw], &vec![f64::NAN; nw]);
        let scratch = DirectScratch::new(dev(), s, true).unwrap();
        let mut all = direct_forward(dev(), &ty, &tx, &tw, with_bias.then_some(&tb), relu, &scratch, s).unwrap();
        all.extend(direct_backward(dev(), &tdw, Some(&tdx), &tdy, &tx, &tw, &scratch, s).unwrap());
        asgd_engine::kernel::run_all(dev(), &all.iter().collect::<Vec<_>>());
        let (mut y, mut dx, mut dw) = (vec![0.0; ny], vec![0.0; nx], vec![0.0; nw]);
        cpu::conv2d_forward(&mut y, &x, &w, s);
        if with_bias {
            asgd_engine::ops::bias::cpu::bias_add(&mut y, &bias, s.batch, oh * ow);
        }
        if relu {
            y = rectified(&y);
        }
        cpu::conv2d_backward_input(&mut dx, &dy, &w, s);
        cpu::conv2d_backward_weight(&mut dw, &dy, &x, s);
        let tol = 1e-5 * ((s.batch * oh * ow) as f64).sqrt();
        let what = format!("direct forward (bias {with_bias}, relu {relu}) {s:?}");
        assert_close(&what, &ty.to_vec_f32().unwrap(), &y, tol);
        assert_close(&format!("direct backward input {s:?}"), &tdx.to_vec_f32().unwrap(), &dx, tol);
        assert_close(&format!("direct backward weight {s:?}"), &tdw.to_vec_f32().unwrap(), &dw, tol);
    }
}

#[test]
fn direct_weight_gradient_is_deterministic() {
    // Its slices of the batch are summed in a fixed order: two runs, the same bits.
    let s = &DIRECT_SHAPES[8];
    let (nx, nw, ny) = s.sizes().unwrap();
    let tx = upload(&[nx], &rand_vec(1, nx));
    let tdy = upload(&[ny], &rand_vec(2, ny));
    let tw = upload(&[nw], &rand_vec(3, nw));
    let scratch = DirectScratch::new(dev(), s, true).unwrap();
    let run = || {
        let tdw = upload(&[nw], &vec![0.0; nw]);
        let d = direct_backward(dev(), &tdw, None, &tdy, &tx, &tw, &scratch, s).unwrap();
        assert!(d.len() >= 2, "expected the batch split into slices");
        asgd_engine::kernel::run_all(dev(), &d.iter().collect::<Vec<_>>());
        tdw.to_vec_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

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

fn forward_and_backward(kernel: MatmulKernel, shapes: &[ConvShape]) {
    for (i, s) in shapes.iter().enumerate() {
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
    forward_and_backward(MatmulKernel::Blocked, SHAPES);
}

#[test]
fn forward_and_backward_match_reference_tiled() {
    forward_and_backward(MatmulKernel::Tiled, SHAPES);
}

#[test]
fn forward_and_backward_match_reference_as_plans_build_them() {
    // What a plan uses: the device's default kernel for each product (register tiles on a CPU
    // driver, with split-K and K-parallel products for the weight gradients).
    forward_and_backward(MatmulKernel::Auto, SHAPES);
}

#[test]
fn im2col_path_matches_reference_on_the_direct_shapes() {
    // The other selection on the same shapes as the direct kernels.
    forward_and_backward(MatmulKernel::Auto, DIRECT_SHAPES);
}

#[test]
fn a_kernel_larger_than_the_input_is_an_error() {
    let s = ConvShape { batch: 1, cin: 1, h: 3, w: 3, cout: 1, kh: 5, kw: 5, stride: 1, pad: 0 };
    assert!(s.out_hw().unwrap_err().to_string().contains("does not fit"));
}

/// A convolution with a bias and the ReLU after it fused ([`LayerIo::relu`]), in both forms (a
/// named product kernel asks for im2col; the tuner's choice otherwise): the rectified output,
/// and the gradients of the rectified output's `dy`.
#[test]
fn conv_layer_applies_a_fused_relu_in_both_forms() {
    use asgd_engine::layers::{Conv2d, Layer, LayerIo, Mode};
    use rand::SeedableRng;
    let s = ConvShape { batch: 3, cin: 2, h: 7, w: 9, cout: 5, kh: 3, kw: 3, stride: 1, pad: 1 };
    let (nx, _, ny) = s.sizes().unwrap();
    let (oh, ow) = s.out_hw().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let layer = Conv2d::new(dev(), "conv", s.cin, s.cout, s.kh, s.stride, s.pad, &mut rng).unwrap();
    let params: Vec<Tensor> = layer.params().iter().map(|p| p.value.clone()).collect();
    let host: Vec<Vec<f64>> =
        params.iter().map(|p| p.to_vec_f32().unwrap().iter().map(|&v| v as f64).collect()).collect();
    let (x, dy) = (as_f32(&rand_vec(3100, nx)), as_f32(&rand_vec(3101, ny)));
    let y: Vec<f64> = layer.reference_forward(&host, &[], &x, s.batch, &[s.cin, s.h, s.w], Mode::Train);
    let y = rectified(&y);
    let dz: Vec<f64> = dy.iter().zip(&y).map(|(&g, &v)| if v > 0.0 { g } else { 0.0 }).collect();
    assert!(dz.iter().filter(|&&g| g == 0.0).count() > ny / 5, "the ReLU masks part of dy");
    let (mut dx, mut dw, mut db) = (vec![0.0; nx], vec![0.0; host[0].len()], vec![0.0; s.cout]);
    cpu::conv2d_backward_input(&mut dx, &dz, &host[0], &s);
    cpu::conv2d_backward_weight(&mut dw, &dz, &x, &s);
    asgd_engine::ops::bias::cpu::channel_sum(&mut db, &dz, s.batch, oh * ow);
    for kernel in [MatmulKernel::Blocked, MatmulKernel::Auto] {
        let nan = |shape: &[usize]| upload(shape, &vec![f64::NAN; shape.iter().product()]);
        let (tx, tdy) = (upload(&[s.batch, s.cin, s.h, s.w], &x), upload(&[s.batch, s.cout, oh, ow], &dy));
        let (ty, tdx) = (nan(&[s.batch, s.cout, oh, ow]), nan(&[s.batch, s.cin, s.h, s.w]));
        let grads = [nan(params[0].shape()), nan(params[1].shape())];
        let io = LayerIo {
            dev: dev(),
            batch: s.batch,
            in_shape: &[s.cin, s.h, s.w],
            x: &tx,
            y: &ty,
            dy: Some(&tdy),
            dx: Some(&tdx),
            grads: &grads,
            params: &params,
            matmul: kernel,
            mode: Mode::Train,
            relu: true,
        };
        let plan = layer.build(&io).unwrap();
        let labels: Vec<&str> = plan.forward.iter().map(|d| d.label()).collect();
        // Too small a shape to be timed: the untuned default, direct on CPU drivers.
        let direct = labels.iter().any(|l| l.starts_with("conv-f"));
        assert_eq!(direct, kernel == MatmulKernel::Auto && dev().is_cpu(), "{kernel:?}: {labels:?}");
        let all: Vec<_> = plan.forward.iter().chain(&plan.backward).collect();
        asgd_engine::kernel::run_all(dev(), &all);
        let tol = 1e-5 * ((s.batch * oh * ow) as f64).sqrt();
        assert_close(&format!("{kernel:?} y"), &ty.to_vec_f32().unwrap(), &y, tol);
        assert_close(&format!("{kernel:?} dx"), &tdx.to_vec_f32().unwrap(), &dx, tol);
        assert_close(&format!("{kernel:?} dw"), &grads[0].to_vec_f32().unwrap(), &dw, tol);
        assert_close(&format!("{kernel:?} db"), &grads[1].to_vec_f32().unwrap(), &db, tol);
    }
}

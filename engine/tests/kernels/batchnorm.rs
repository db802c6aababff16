use asgd_engine::kernel::{run_all, Dispatch};
use asgd_engine::ops::batchnorm::{batchnorm_backward, batchnorm_eval_forward, batchnorm_train_forward, cpu};
use asgd_engine::ops::relu::cpu as relu;
use asgd_engine::{DType, Tensor};

use crate::support::*;

/// (B, C, HW): the smallest N = 2, a 1x1 map, a 7x7 map, odd channel counts, and N = B*HW of
/// 245 and 800 so that each thread of a channel's workgroup sums several values.
const SHAPES: &[(usize, usize, usize)] = &[
    (2, 3, 1),
    (1, 5, 7),
    (3, 2, 1),
    (5, 3, 49),
    (4, 3, 200),
    (2, 70, 3),
    (2, 4, 300),
    (3, 2, 256),
    (1, 3, 17),
    (6, 2, 33),
];
const MOMENTUM: f32 = 0.1;
const EPS: f32 = 1e-5;

fn run(d: &[Dispatch]) {
    run_all(dev(), &d.iter().collect::<Vec<_>>());
}

/// Inputs whose channel means (about 3) are large against their spread, as after a ReLU.
fn input(seed: u64, n: usize) -> Vec<f64> {
    as_f32(&rand_vec(seed, n).iter().map(|v| 3.0 + 2.0 * v).collect::<Vec<_>>())
}

/// A (C) parameter about 1 (gamma, running variance) or about 0 (beta, running mean).
fn per_channel(seed: u64, c: usize, around: f64) -> Vec<f64> {
    as_f32(&rand_vec(seed, c).iter().map(|v| around + 0.5 * v).collect::<Vec<_>>())
}

/// The reference's training-mode state: the output, the saved statistics and the running ones.
struct Reference {
    y: Vec<f64>,
    mean: Vec<f64>,
    invstd: Vec<f64>,
    rm: Vec<f64>,
    rv: Vec<f64>,
    nb: f64,
    shape: (usize, usize, usize),
}

impl Reference {
    fn new((b, c, hw): (usize, usize, usize), rm: &[f64], rv: &[f64]) -> Self {
        let (y, mean, invstd) = (vec![0.0; b * c * hw], vec![0.0; c], vec![0.0; c]);
        Self { y, mean, invstd, rm: rm.to_vec(), rv: rv.to_vec(), nb: 0.0, shape: (b, c, hw) }
    }

    /// One training-mode forward pass of `x`.
    fn forward(mut self, x: &[f64], gamma: &[f64], beta: &[f64], eps: f64) -> Self {
        let (b, c, hw) = self.shape;
        cpu::batchnorm_train_forward(
            &mut self.y,
            &mut self.mean,
            &mut self.invstd,
            &mut self.rm,
            &mut self.rv,
            &mut self.nb,
            x,
            gamma,
            beta,
            b,
            c,
            hw,
            MOMENTUM as f64,
            eps,
        );
        self
    }
}

/// The kernels' training-mode forward pass with its buffers: `x` is uploaded, rewrite `tx` for
/// another batch.
struct Gpu {
    ty: Tensor,
    tmean: Tensor,
    tinvstd: Tensor,
    trm: Tensor,
    trv: Tensor,
    tnb: Tensor,
    tx: Tensor,
    _params: [Tensor; 2],
    d: Vec<Dispatch>,
}

impl Gpu {
    #[allow(clippy::too_many_arguments)]
    fn new(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        rm: &[f64],
        rv: &[f64],
        (b, c, hw): (usize, usize, usize),
        eps: f32,
        relu: bool,
    ) -> Self {
        let ty = Tensor::empty(dev(), &[b, c, hw], DType::F32).unwrap();
        let (tmean, tinvstd) =
            (Tensor::empty(dev(), &[c], DType::F32).unwrap(), Tensor::empty(dev(), &[c], DType::F32).unwrap());
        let (trm, trv, tnb) = (upload(&[c], rm), upload(&[c], rv), upload(&[1], &[0.0]));
        let (tx, tg, tb) = (upload(&[b, c, hw], x), upload(&[c], gamma), upload(&[c], beta));
        let d = batchnorm_train_forward(
            dev(),
            &ty,
            &tmean,
            &tinvstd,
            &trm,
            &trv,
            &tnb,
            &tx,
            &tg,
            &tb,
            b,
            c,
            hw,
            MOMENTUM,
            eps,
            relu,
        )
        .unwrap();
        Self { ty, tmean, tinvstd, trm, trv, tnb, tx, _params: [tg, tb], d }
    }
}

#[test]
fn train_forward_twice_matches_reference() {
    for (k, (&(b, c, hw), relu)) in SHAPES.iter().flat_map(|s| [(s, false), (s, true)]).enumerate() {
        let s = 7000 + 10 * k as u64;
        let n = b * c * hw;
        let (x1, x2) = (input(s, n), input(s + 1, n));
        let (gamma, beta) = (per_channel(s + 2, c, 1.0), per_channel(s + 3, c, 0.0));
        let (rm, rv) = (per_channel(s + 4, c, 0.0), per_channel(s + 5, c, 1.0));
        let g = Gpu::new(&x1, &gamma, &beta, &rm, &rv, (b, c, hw), EPS, relu);
        let mut r = Reference::new((b, c, hw), &rm, &rv);
        for x in [&x1, &x2] {
            g.tx.write_f32(&x.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap();
            run(&g.d);
            r = r.forward(x, &gamma, &beta, EPS as f64);
        }
        let what = format!("(B, C, HW) = ({b}, {c}, {hw}), relu {relu}");
        let want = if relu { rectified(&r.y) } else { r.y.clone() };
        assert_close(&format!("{what} y"), &g.ty.to_vec_f32().unwrap(), &want, 1e-4);
        assert_close(&format!("{what} mean"), &g.tmean.to_vec_f32().unwrap(), &r.mean, 1e-5);
        assert_close(&format!("{what} invstd"), &g.tinvstd.to_vec_f32().unwrap(), &r.invstd, 1e-4);
        assert_close(&format!("{what} running mean"), &g.trm.to_vec_f32().unwrap(), &r.rm, 1e-5);
        assert_close(&format!("{what} running var"), &g.trv.to_vec_f32().unwrap(), &r.rv, 1e-5);
        assert_eq!(g.tnb.to_vec_f32().unwrap(), vec![2.0], "{what} num_batches");
    }
}

/// The statistics keep their digits where f32 sums would lose them: channel 0 is 1000 plus a
/// spread of 0.05 (E[x^2] - E[x]^2 in f32 cancels every digit of its variance), and channel 1
/// starts with an outlier of 60 among values of about 3 (the value a thread shifts by). The
/// variance is checked through invstd with a tiny eps, relative to each channel's own value.
#[test]
fn train_statistics_keep_their_digits() {
    let (b, c, hw) = (3, 2, 301);
    let r = rand_vec(7500, b * c * hw);
    let mut x: Vec<f64> =
        (0..b * c * hw).map(|i| if (i / hw) % c == 0 { 1000.0 + 0.05 * r[i] } else { 3.0 + 2.0 * r[i] }).collect();
    x[hw] = 60.0;
    let x = as_f32(&x);
    let eps = 1e-12;
    let (gamma, beta) = (vec![1.0; c], vec![0.0; c]);
    let g = Gpu::new(&x, &gamma, &beta, &[0.0; 2], &[1.0; 2], (b, c, hw), eps as f32, false);
    run(&g.d);
    let r = Reference::new((b, c, hw), &[0.0; 2], &[1.0; 2]).forward(&x, &gamma, &beta, eps);
    let (mean, invstd) = (&r.mean, &r.invstd);
    let (gmean, ginvstd) = (g.tmean.to_vec_f32().unwrap(), g.tinvstd.to_vec_f32().unwrap());
    for ch in 0..c {
        let rel = |g: f32, c: f64| ((g as f64 - c) / c).abs();
        assert!(rel(gmean[ch], mean[ch]) < 1e-6, "channel {ch} mean: gpu {} vs cpu {}", gmean[ch], mean[ch]);
        assert!(rel(ginvstd[ch], invstd[ch]) < 1e-3, "channel {ch} invstd: gpu {} vs cpu {}", ginvstd[ch], invstd[ch]);
    }
}

#[test]
fn train_forward_refuses_one_value_per_channel() {
    let (b, c, hw) = (1, 3, 1);
    let t = |shape: &[usize]| Tensor::zeros(dev(), shape).unwrap();
    let (y, x, s) = (t(&[b, c, hw]), t(&[b, c, hw]), t(&[c]));
    let err = batchnorm_train_forward(dev(), &y, &s, &s, &s, &s, &t(&[1]), &x, &s, &s, b, c, hw, MOMENTUM, EPS, false)
        .err()
        .expect("N = 1 accepted");
    assert!(err.to_string().contains("more than 1 value per channel"), "{err}");
}

#[test]
fn eval_forward_matches_reference() {
    let shapes = SHAPES.iter().chain(&[(1, 3, 1)]);
    for (k, (&(b, c, hw), relu)) in shapes.flat_map(|s| [(s, false), (s, true)]).enumerate() {
        let s = 7500 + 10 * k as u64;
        let n = b * c * hw;
        let x = input(s, n);
        let (gamma, beta) = (per_channel(s + 2, c, 1.0), per_channel(s + 3, c, 0.0));
        let (rm, rv) = (per_channel(s + 4, c, 3.0), per_channel(s + 5, c, 1.0));
        let ty = upload(&[b, c, hw], &vec![f64::NAN; n]);
        let d = batchnorm_eval_forward(
            dev(),
            &ty,
            &upload(&[b, c, hw], &x),
            &upload(&[c], &gamma),
            &upload(&[c], &beta),
            &upload(&[c], &rm),
            &upload(&[c], &rv),
            b,
            c,
            hw,
            EPS,
            relu,
        )
        .unwrap();
        run(&d);
        let mut y = vec![0.0; n];
        cpu::batchnorm_eval_forward(&mut y, &x, &gamma, &beta, &rm, &rv, b, c, hw, EPS as f64);
        let want = if relu { rectified(&y) } else { y };
        assert_close(&format!("eval y, relu {relu}"), &ty.to_vec_f32().unwrap(), &want, 1e-5);
    }
}

/// Batch statistics of `x` from the reference, for the backward's saved inputs.
fn saved_stats(x: &[f64], gamma: &[f64], b: usize, c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
    let r = Reference::new((b, c, hw), &vec![0.0; c], &vec![1.0; c]).forward(x, gamma, &vec![0.0; c], EPS as f64);
    (as_f32(&r.mean), as_f32(&r.invstd))
}

#[test]
fn backward_matches_reference() {
    for (k, (&(b, c, hw), relu)) in SHAPES.iter().flat_map(|s| [(s, false), (s, true)]).enumerate() {
        let s = 8000 + 10 * k as u64;
        let n = b * c * hw;
        let (x, dy, gamma) = (input(s, n), as_f32(&rand_vec(s + 1, n)), per_channel(s + 2, c, 1.0));
        let beta = per_channel(s + 3, c, 0.0);
        let (mean, invstd) = saved_stats(&x, &gamma, b, c, hw);
        // With the fused ReLU: the forward's rectified output, and the reference's gradient
        // masked by it before the batch norm's backward.
        let y = Reference::new((b, c, hw), &vec![0.0; c], &vec![1.0; c]).forward(&x, &gamma, &beta, EPS as f64).y;
        let y = as_f32(&rectified(&y));
        let mut dz = dy.clone();
        if relu {
            relu::relu_backward(&mut dz, &dy, &y);
            let kept = y.iter().filter(|&&v| v > 0.0).count();
            assert!(n < 8 || (kept > n / 5 && kept < n - n / 5), "{kept} of {n} values pass the ReLU");
        }
        // Recycled buffers may hold anything: every output must be overwritten.
        let nan = |shape: &[usize]| upload(shape, &vec![f64::NAN; shape.iter().product()]);
        let (tdg, tdb, tdx) = (nan(&[c]), nan(&[c]), nan(&[b, c, hw]));
        let (tdy, tx, ty) = (upload(&[b, c, hw], &dy), upload(&[b, c, hw], &x), upload(&[b, c, hw], &y));
        let (tmean, tinvstd, tg) = (upload(&[c], &mean), upload(&[c], &invstd), upload(&[c], &gamma));
        let mask = relu.then_some(&ty);
        #[rustfmt::skip]
        run(&batchnorm_backward(dev(), &tdg, &tdb, Some(&tdx), &tdy, &tx, &tmean, &tinvstd, &tg, b, c, hw, mask).unwrap());
        let (mut dg, mut db, mut dx) = (vec![0.0; c], vec![0.0; c], vec![0.0; n]);
        cpu::batchnorm_backward(&mut dg, &mut db, Some(&mut dx), &dz, &x, &mean, &invstd, &gamma, b, c, hw);
        let what = format!("(B, C, HW) = ({b}, {c}, {hw}), relu {relu}");
        assert_close(&format!("{what} dgamma"), &tdg.to_vec_f32().unwrap(), &dg, 1e-4);
        assert_close(&format!("{what} dbeta"), &tdb.to_vec_f32().unwrap(), &db, 1e-4);
        assert_close(&format!("{what} dx"), &tdx.to_vec_f32().unwrap(), &dx, 1e-4);

        // Without dx: only the parameter gradients, still overwritten.
        let (tdg2, tdb2) = (nan(&[c]), nan(&[c]));
        let d =
            batchnorm_backward(dev(), &tdg2, &tdb2, None, &tdy, &tx, &tmean, &tinvstd, &tg, b, c, hw, mask).unwrap();
        assert_eq!(d.len(), 1, "dispatches without dx");
        run(&d);
        assert_close(&format!("{what} dgamma without dx"), &tdg2.to_vec_f32().unwrap(), &dg, 1e-4);
        assert_close(&format!("{what} dbeta without dx"), &tdb2.to_vec_f32().unwrap(), &db, 1e-4);
    }
}

/// The GPU's gradients against central differences of the reference's training-mode loss
/// `sum(y r)`, so that a formula shared by kernel and reference but wrong cannot pass.
#[test]
fn backward_matches_finite_differences() {
    for (k, &(b, c, hw)) in [(2, 3, 1), (3, 2, 5), (1, 3, 7)].iter().enumerate() {
        let s = 8500 + 10 * k as u64;
        let n = b * c * hw;
        let (x, r) = (input(s, n), as_f32(&rand_vec(s + 1, n)));
        let (gamma, beta) = (per_channel(s + 2, c, 1.0), per_channel(s + 3, c, 0.0));
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let state = Reference::new((b, c, hw), &vec![0.0; c], &vec![1.0; c]);
            state.forward(x, gamma, beta, EPS as f64).y.iter().zip(&r).map(|(y, r)| y * r).sum::<f64>()
        };
        let h = 1e-5;
        let central = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
            let (mut up, mut down) = (v.to_vec(), v.to_vec());
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        };
        let fd_dx: Vec<f64> = (0..n).map(|i| central(&x, i, &|x| loss(x, &gamma, &beta))).collect();
        let fd_dg: Vec<f64> = (0..c).map(|i| central(&gamma, i, &|g| loss(&x, g, &beta))).collect();
        let fd_db: Vec<f64> = (0..c).map(|i| central(&beta, i, &|bt| loss(&x, &gamma, bt))).collect();

        let (mean, invstd) = saved_stats(&x, &gamma, b, c, hw);
        let (tdg, tdb) =
            (Tensor::empty(dev(), &[c], DType::F32).unwrap(), Tensor::empty(dev(), &[c], DType::F32).unwrap());
        let tdx = Tensor::empty(dev(), &[b, c, hw], DType::F32).unwrap();
        let d = batchnorm_backward(
            dev(),
            &tdg,
            &tdb,
            Some(&tdx),
            &upload(&[b, c, hw], &r),
            &upload(&[b, c, hw], &x),
            &upload(&[c], &mean),
            &upload(&[c], &invstd),
            &upload(&[c], &gamma),
            b,
            c,
            hw,
            None,
        )
        .unwrap();
        run(&d);
        let what = format!("(B, C, HW) = ({b}, {c}, {hw})");
        assert_close(&format!("{what} dx vs differences"), &tdx.to_vec_f32().unwrap(), &fd_dx, 1e-4);
        assert_close(&format!("{what} dgamma vs differences"), &tdg.to_vec_f32().unwrap(), &fd_dg, 1e-4);
        assert_close(&format!("{what} dbeta vs differences"), &tdb.to_vec_f32().unwrap(), &fd_db, 1e-4);
    }
}

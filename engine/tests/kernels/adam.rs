use asgd_engine::kernel::run_all;
use asgd_engine::ops::adam::{adam, cpu, AdamParams};

use crate::support::*;

/// `got - start` against `want - start`, within `tol` of the largest change: the weights move
/// by about lr per step, far less than their size, so comparing weights would hide errors.
fn assert_change_close(what: &str, got: &[f32], want: &[f64], start: &[f64], tol: f64) {
    let scale = want.iter().zip(start).fold(0.0f64, |s, (w, s0)| s.max((w - s0).abs()));
    for (i, ((&g, &w), &s0)) in got.iter().zip(want).zip(start).enumerate() {
        let (dg, dw) = (g as f64 - s0, w - s0);
        assert!((dg - dw).abs() <= tol * scale, "{what}: element {i}: gpu change {dg} vs cpu change {dw}");
    }
}

#[test]
fn three_adam_steps_match_reference() {
    let adam_wd = AdamParams { lr: 1e-2, weight_decay: 1e-2, ..AdamParams::adam() };
    let adamw = AdamParams { lr: 5e-2, ..AdamParams::adamw() };
    let adamw_betas = AdamParams { lr: 1e-2, beta1: 0.8, beta2: 0.99, weight_decay: 0.1, ..AdamParams::adamw() };
    for (i, &(n, h)) in [(1001, adam_wd), (7, adamw), (3001, adamw_betas)].iter().enumerate() {
        let w0 = as_f32(&rand_vec(5000 + i as u64, n));
        let (mut w, mut m, mut v, mut step, mut dir) = (w0.clone(), vec![0.0; n], vec![0.0; n], 0.0, vec![0.0; n]);
        let (tw, tm, tv, tstep) = (upload(&[n], &w), upload(&[n], &m), upload(&[n], &v), upload(&[1], &[0.0]));
        let tdir = upload(&[n], &vec![f64::NAN; n]);
        for s in 0..3u64 {
            let g = as_f32(&rand_vec(5100 + 10 * i as u64 + s, n));
            let tg = upload(&[n], &g);
            let d = adam(dev(), &tw, &tm, &tv, &tstep, &tdir, &tg, h).unwrap();
            run_all(dev(), &d.iter().collect::<Vec<_>>());
            cpu::adam(&mut w, &mut m, &mut v, &mut step, &mut dir, &g, h);
        }
        assert_change_close("adam weights", &tw.to_vec_f32().unwrap(), &w, &w0, 3e-5);
        assert_close("adam first moment", &tm.to_vec_f32().unwrap(), &m, 1e-5);
        assert_close("adam second moment", &tv.to_vec_f32().unwrap(), &v, 1e-6);
        assert_close("adam step direction", &tdir.to_vec_f32().unwrap(), &dir, 1e-4);
        assert_eq!(tstep.to_vec_f32().unwrap(), vec![3.0], "step count");
        assert_eq!(step, 3.0, "reference step count");
    }
}

/// Two AdamW steps on three elements worked by hand, independent of the reference, so that a
/// mistake shared by kernel and reference cannot pass.
#[test]
fn two_adamw_steps_match_hand_arithmetic() {
    let h = AdamParams { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, decoupled: true };
    // w = [1, -2, 0.5]; g1 = [0.5, 1, -0.25]; g2 = [0.25, -0.5, 1]. Decay factor 1 - 0.1 * 0.1 = 0.99.
    //
    // Step 1 (t = 1): 1 - 0.9 = 0.1, 1 - 0.999 = 0.001, so mhat = g1 and vhat = g1^2 and each
    // element moves by 0.1 * g / (|g| + 1e-8) = 0.1 * sign(g) (to 4e-9):
    //   w = [0.99 - 0.1, -1.98 - 0.1, 0.495 + 0.1]            = [0.89, -2.08, 0.595]
    //   m = 0.1 g1                                             = [0.05, 0.1, -0.025]
    //   v = 0.001 g1^2                                         = [0.00025, 0.001, 0.0000625]
    // Step 2 (t = 2): 1 - 0.9^2 = 0.19, 1 - 0.999^2 = 0.001999.
    //   w * 0.99                                               = [0.8811, -2.0592, 0.58905]
    //   m = 0.9 m + 0.1 g2 = [0.045 + 0.025, 0.09 - 0.05, -0.0225 + 0.1]
    //                                                          = [0.07, 0.04, 0.0775]
    //   v = 0.999 v + 0.001 g2^2 = [0.00024975 + 0.0000625, 0.000999 + 0.00025, 0.0000624375 + 0.001]
    //                                                          = [0.00031225, 0.001249, 0.0010624375]
    //   mhat = m / 0.19 = [0.36842105, 0.21052632, 0.40789474]
    //   vhat = v / 0.001999 = [0.15620310, 0.62481241, 0.53148449]; sqrt = [0.39522538, 0.79045076, 0.72902983]
    //   0.1 mhat / sqrt = [0.09321796, 0.02663370, 0.05595035]
    //   w = [0.8811 - 0.09321796, -2.0592 - 0.02663370, 0.58905 - 0.05595035]
    //                                                          = [0.78788204, -2.08583370, 0.53309965]
    let w1 = [0.89, -2.08, 0.595];
    let w2 = [0.78788204, -2.08583370, 0.53309965];
    let (m2, v2) = ([0.07, 0.04, 0.0775], [0.00031225, 0.001249, 0.0010624375]);

    let (tw, tm, tv, tstep) =
        (upload(&[3], &[1.0, -2.0, 0.5]), upload(&[3], &[0.0; 3]), upload(&[3], &[0.0; 3]), upload(&[1], &[0.0]));
    let tg = upload(&[3], &[0.5, 1.0, -0.25]);
    let tdir = upload(&[3], &[0.0; 3]);
    let d = adam(dev(), &tw, &tm, &tv, &tstep, &tdir, &tg, h).unwrap();
    run_all(dev(), &d.iter().collect::<Vec<_>>());
    assert_close("AdamW weights after step 1", &tw.to_vec_f32().unwrap(), &w1, 1e-6);
    tg.write_f32(&[0.25, -0.5, 1.0]).unwrap();
    run_all(dev(), &d.iter().collect::<Vec<_>>());
    assert_close("AdamW weights after step 2", &tw.to_vec_f32().unwrap(), &w2, 1e-6);
    assert_close("AdamW first moment", &tm.to_vec_f32().unwrap(), &m2, 1e-6);
    assert_close("AdamW second moment", &tv.to_vec_f32().unwrap(), &v2, 1e-7);
    assert_eq!(tstep.to_vec_f32().unwrap(), vec![2.0], "step count");
}

#[test]
fn defaults_are_pytorchs() {
    let a = AdamParams::adam();
    assert_eq!((a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.decoupled), (1e-3, 0.9, 0.999, 1e-8, 0.0, false));
    let w = AdamParams::adamw();
    assert_eq!((w.lr, w.beta1, w.beta2, w.eps, w.weight_decay, w.decoupled), (1e-3, 0.9, 0.999, 1e-8, 1e-2, true));
}

use asgd_engine::ops::sgd::{cpu, sgd_momentum, SgdParams};

use crate::support::*;

#[test]
fn three_momentum_steps_match_reference() {
    for (i, &(n, h)) in [
        (1001, SgdParams { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false }),
        (7, SgdParams { lr: 0.5, momentum: 0.0, weight_decay: 0.0, nesterov: false }),
        (70_000, SgdParams { lr: 0.01, momentum: 0.5, weight_decay: 0.1, nesterov: false }),
        (513, SgdParams { lr: 0.1, momentum: 0.9, weight_decay: 1e-3, nesterov: true }),
    ]
    .iter()
    .enumerate()
    {
        let mut w = as_f32(&rand_vec(4000 + i as u64, n));
        let mut v = vec![0.0; n];
        let (tw, tv) = (upload(&[n], &w), upload(&[n], &v));
        for step in 0..3u64 {
            let g = as_f32(&rand_vec(4100 + 10 * i as u64 + step, n));
            let tg = upload(&[n], &g);
            sgd_momentum(dev(), &tw, &tv, &tg, h).unwrap().run(dev());
            cpu::sgd_momentum(&mut w, &mut v, &g, h);
        }
        assert_close("sgd weights", &tw.to_vec_f32().unwrap(), &w, 1e-6);
        assert_close("sgd velocity", &tv.to_vec_f32().unwrap(), &v, 1e-6);
    }
}

/// Two Nesterov steps worked by hand, so that a mistake shared by kernel and reference fails.
#[test]
fn nesterov_steps_match_hand_arithmetic() {
    let h = SgdParams { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: true };
    // w = 1, g = 1 both steps.
    // step 1: v = 0.9 * 0 + 1 = 1;     w = 1 - 0.1 * (1 + 0.9 * 1) = 0.81
    // step 2: v = 0.9 * 1 + 1 = 1.9;   w = 0.81 - 0.1 * (1 + 0.9 * 1.9) = 0.81 - 0.271 = 0.539
    let (tw, tv, tg) = (upload(&[1], &[1.0]), upload(&[1], &[0.0]), upload(&[1], &[1.0]));
    let d = sgd_momentum(dev(), &tw, &tv, &tg, h).unwrap();
    d.run(dev());
    d.run(dev());
    assert_close("nesterov weights", &tw.to_vec_f32().unwrap(), &[0.539], 1e-6);
    assert_close("nesterov velocity", &tv.to_vec_f32().unwrap(), &[1.9], 1e-6);
}

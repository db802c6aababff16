use asgd_engine::ops::metrics::accumulate;
use asgd_engine::ops::softmax_xent::{cpu, softmax_xent};
use asgd_engine::{DType, Tensor};

use crate::support::*;

#[test]
fn loss_gradient_and_correctness_match_reference() {
    // (batch, classes, logit scale): the large scale checks that exp does not overflow.
    for (i, &(b, c, scale)) in
        [(1, 1, 1.0), (37, 10, 3.0), (5, 1000, 1.0), (300, 10, 80.0), (3, 2, 500.0)].iter().enumerate()
    {
        let z: Vec<f64> = as_f32(&rand_vec(3000 + i as u64, b * c).iter().map(|v| v * scale).collect::<Vec<_>>());
        let labels: Vec<u32> = (0..b).map(|j| ((j * 7 + i) % c) as u32).collect();
        let tz = upload(&[b, c], &z);
        let tl = Tensor::from_u32(dev(), &[b], &labels).unwrap();
        let tdz = Tensor::empty(dev(), &[b, c], DType::F32).unwrap();
        let tloss = Tensor::empty(dev(), &[b], DType::F32).unwrap();
        let tcorrect = Tensor::empty(dev(), &[b], DType::F32).unwrap();
        let inv_b = 1.0 / b as f32;
        softmax_xent(dev(), &tdz, &tloss, &tcorrect, &tz, &tl, b, c, inv_b).unwrap().run(dev());
        let (mut dz, mut loss, mut correct) = (vec![0.0; b * c], vec![0.0; b], vec![0.0; b]);
        cpu::softmax_xent(&mut dz, &mut loss, &mut correct, &z, &labels, c, inv_b as f64);
        let what = format!("softmax_xent B={b} C={c} scale={scale}");
        let gl = tloss.to_vec_f32().unwrap();
        assert!(gl.iter().all(|v| v.is_finite()), "{what}: non-finite loss");
        assert_close(&format!("{what} loss"), &gl, &loss, 1e-5);
        assert_close(&format!("{what} grad"), &tdz.to_vec_f32().unwrap(), &dz, 1e-5);
        assert_close(&format!("{what} correct"), &tcorrect.to_vec_f32().unwrap(), &correct, 0.0);

        // The running totals add each step's sums.
        let totals = Tensor::zeros(dev(), &[3]).unwrap();
        let acc = accumulate(dev(), &totals, &tloss, &tcorrect, b).unwrap();
        acc.run(dev());
        acc.run(dev());
        let t = totals.to_vec_f32().unwrap();
        let want = [2.0 * loss.iter().sum::<f64>(), 2.0 * correct.iter().sum::<f64>(), 2.0 * b as f64];
        assert_close(&format!("{what} totals"), &t, &want, 1e-5);
    }
}

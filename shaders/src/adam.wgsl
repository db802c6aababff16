// Adam and AdamW, torch.optim.Adam / torch.optim.AdamW's formulas, on one parameter tensor:
//   t = step + 1
//   Adam:  g = grad + weight_decay * w          AdamW: g = grad; w = w * (1 - lr * weight_decay)
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   w = w - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Why the step count is read from a buffer and the bias corrections computed here: a plan is
// recorded once and replayed every step, so the host never knows t at record time; the count
// advances on the GPU (counter.wgsl, dispatched after this kernel).
// The step direction m_hat / (sqrt(v_hat) + eps) is also written to dir: asynchronous training
// moves a forward pass's copy of the parameters along it (weight prediction).
// w, m, v, grad and dir are (N); step is (1). Grid: grid_1d(n, 256).

struct Params {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: u32,  // 1: AdamW, 0: Adam
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> step: array<f32>;
@group(0) @binding(5) var<storage, read> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> dir: array<f32>;

// 1 - b^t for an integer t, by square-and-multiply on the pair (b^k, 1 - b^k) with
//   1 - b^(j+k) = (1 - b^j) + b^j (1 - b^k),
// a sum of non-negative terms. Why not 1 - pow(b, t): for b = 0.999 and small t the
// subtraction cancels, and WGSL lets pow's log2 carry an absolute error of 2^-21 near 1, up to
// 3e-4 relative in the correction; this form costs a few dozen multiplies and is accurate
// to a few ulp on every device.
fn one_minus_pow(b: f32, t: u32) -> f32 {
    var pw = 1.0;       // b^(bits of t consumed so far)
    var q = 0.0;        // 1 - pw
    var pb = b;         // b^(2^k)
    var qb = 1.0 - b;   // 1 - pb, exact for b in [0.5, 1]
    var e = t;
    while (e > 0u) {
        if ((e & 1u) == 1u) {
            q = q + pw * qb;
            pw = pw * pb;
        }
        qb = qb * (1.0 + pb);
        pb = pb * pb;
        e = e >> 1u;
    }
    return q;
}

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    // The count is an integer held in f32, exact up to 2^24 steps; past that the corrections
    // are 1 to f32 precision for any beta below 1 - 1e-6.
    let t = u32(step[0]) + 1u;
    let bc1 = one_minus_pow(p.beta1, t);
    let bc2 = one_minus_pow(p.beta2, t);
    var wi = w[i];
    var g = grad[i];
    if (p.decoupled != 0u) {
        wi = wi * (1.0 - p.lr * p.weight_decay);
    } else {
        g = g + p.weight_decay * wi;
    }
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - (p.lr / bc1) * mi / (sqrt(vi) / sqrt(bc2) + p.eps);
    dir[i] = (mi / bc1) / (sqrt(vi) / sqrt(bc2) + p.eps);
}

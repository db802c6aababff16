// Batch norm, the element-wise parts, one thread per element: the normalisation (training mode
// from the batch statistics, eval mode from the running ones) and the input gradient.
// Why these two share a file and the reductions do not: their bindings line up (one output,
// then inputs only), so one layout serves both without aliased bindings.
//   normalize:   y = gamma[c] (x - mean[c]) s[c] + beta[c], with s = invstd (training) or
//                s = 1 / sqrt(running_var + eps) (eval, from_running = 1)
//   backward_dx: xhat = (x - mean) invstd;
//                dx = gamma invstd / N (N dy - dbeta - xhat dgamma), N = B*HW
// With RELU set, the ReLU that follows is applied in the same pass: normalize writes
// max(y, 0), and backward_dx takes dy as the gradient after the ReLU, counted only where the
// saved output (binding 9) is positive. Without it, binding 9 is bound but not read.
// x, y, dy and dx are (B, C, HW); every other tensor is (C). Grid: grid_1d(n, 256).

struct Params {
    batch: u32,
    channels: u32,
    hw: u32,
    n: u32,  // B * C * HW
    momentum: f32,
    eps: f32,
    from_running: u32,  // normalize: 1 when binding 4 holds running_var rather than invstd
    seg: u32,   // elements per thread of the element-wise kernels (one row of HW)
    segs: u32,  // segments per row: ceil(HW / seg)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // y (normalize) or dx (backward_dx)
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;       // batch mean or running_mean
@group(0) @binding(4) var<storage, read> scale: array<f32>;      // invstd or running_var
@group(0) @binding(5) var<storage, read> gamma: array<f32>;
@group(0) @binding(6) var<storage, read> beta_or_dy: array<f32>; // beta (C) or dy (B, C, HW)
@group(0) @binding(7) var<storage, read> dgamma: array<f32>;
@group(0) @binding(8) var<storage, read> dbeta: array<f32>;
@group(0) @binding(9) var<storage, read> relu_out: array<f32>;  // the forward's output (backward_dx)

override RELU: bool = false;

// dy at i, where the fused ReLU lets it through.
fn output_gradient(i: u32) -> f32 {
    if (RELU) {
        return select(0.0, beta_or_dy[i], relu_out[i] > 0.0);
    }
    return beta_or_dy[i];
}

// A thread normalises `seg` consecutive values of one (b, c) row, so that it divides and loads the
// channel's statistics once for all of them, not once per value: a CPU driver has no vector
// divide and turns every storage load into a loop over its SIMD lanes. GPUs get seg = 1.
// Thread g: row = g / segs (b * C + c), its values row * HW + seg_index * seg, up to the row's end.
fn segment(g: u32) -> vec3<u32> {
    let row = g / p.segs;
    let start = row * p.hw + (g - row * p.segs) * p.seg;
    return vec3<u32>(row % p.channels, start, min(start + p.seg, row * p.hw + p.hw));
}

@compute @workgroup_size(256)
fn batchnorm_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * 256u;
    if (g >= p.batch * p.channels * p.segs) { return; }
    let r = segment(g);
    let c = r.x;
    var s = scale[c];
    if (p.from_running != 0u) {
        s = 1.0 / sqrt(s + p.eps);
    }
    let m = mean[c];
    let w = gamma[c];
    let b = beta_or_dy[c];
    for (var i = r.y; i < r.z; i++) {
        let v = w * (x[i] - m) * s + b;
        out[i] = select(v, max(v, 0.0), RELU);
    }
}

@compute @workgroup_size(256)
fn batchnorm_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * 256u;
    if (g >= p.batch * p.channels * p.segs) { return; }
    let r = segment(g);
    let c = r.x;
    let nf = f32(p.batch * p.hw);
    let s = scale[c];
    let m = mean[c];
    let k = gamma[c] * s / nf;
    let db = dbeta[c];
    let dg = dgamma[c];
    for (var i = r.y; i < r.z; i++) {
        let xhat = (x[i] - m) * s;
        out[i] = k * (nf * output_gradient(i) - db - xhat * dg);
    }
}

// Batch norm, the element-wise parts, one thread per element: the normalisation (training mode
// from the batch statistics, eval mode from the running ones) and the input gradient.
// Why these two share a file and the reductions do not: their bindings line up (one output,
// then inputs only), so one layout serves both without aliased bindings.
//   normalize:   y = gamma[c] (x - mean[c]) s[c] + beta[c], with s = invstd (training) or
//                s = 1 / sqrt(running_var + eps) (eval, from_running = 1)
//   backward_dx: xhat = (x - mean) invstd;
//                dx = gamma invstd / N (N dy - dbeta - xhat dgamma), N = B*HW
// x, y, dy and dx are (B, C, HW); every other tensor is (C). Grid: grid_1d(n, 256).

struct Params {
    batch: u32,
    channels: u32,
    hw: u32,
    n: u32,  // B * C * HW
    momentum: f32,
    eps: f32,
    from_running: u32,  // normalize: 1 when binding 4 holds running_var rather than invstd
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

@compute @workgroup_size(256)
fn batchnorm_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let c = (i / p.hw) % p.channels;
    var s = scale[c];
    if (p.from_running != 0u) {
        s = 1.0 / sqrt(s + p.eps);
    }
    out[i] = gamma[c] * (x[i] - mean[c]) * s + beta_or_dy[c];
}

@compute @workgroup_size(256)
fn batchnorm_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let c = (i / p.hw) % p.channels;
    let nf = f32(p.batch * p.hw);
    let s = scale[c];
    let xhat = (x[i] - mean[c]) * s;
    out[i] = gamma[c] * s / nf * (nf * beta_or_dy[i] - dbeta[c] - xhat * dgamma[c]);
}
